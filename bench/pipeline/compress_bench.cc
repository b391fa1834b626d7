// Rotated-log compression as the daemon does it (output::CompressFileAt), per
// codec, on a real log file: CPU time, MB/s of input and output size.
//
//   compress_bench FILE [rounds]
//
// Each round copies FILE into a private temporary directory and compresses the
// copy with each codec in turn (order alternating between rounds, so drift
// cancels); the figures are the median over the rounds. The copy's bytes are
// in the page cache, as a just-rotated backup's are.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "output/backup_maintenance.h"
#include "output/backup_name.h"
#include "thread_cpu.h"

namespace {

using httptraced::bench::Median;
using httptraced::bench::ThreadCpuSeconds;
using httptraced::output::CodecName;
using httptraced::output::Compression;

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: compress_bench FILE [rounds]\n");
    return 2;
  }
  const std::filesystem::path source = argv[1];
  const int rounds = argc == 3 ? std::atoi(argv[2]) : 5;
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(source, ec);
  if (ec || size == 0 || rounds < 1) {
    std::fprintf(stderr, "compress_bench: %s: %s\n", source.c_str(),
                 ec ? ec.message().c_str() : "empty file or bad round count");
    return 2;
  }
  char dir_template[] = "/tmp/compress-bench-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    std::perror("compress_bench: mkdtemp");
    return 1;
  }
  const std::filesystem::path dir = dir_template;
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const Compression codecs[] = {Compression::kZstd, Compression::kGzip};
  std::vector<double> seconds[2];
  uintmax_t out_size[2] = {};
  std::atomic<bool> stop{false};
  int status = 0;
  for (int round = 0; round < rounds && status == 0; ++round) {
    for (int k = 0; k < 2 && status == 0; ++k) {
      const int c = (round + k) % 2;
      std::filesystem::copy_file(source, dir / "in.json",
                                 std::filesystem::copy_options::overwrite_existing, ec);
      if (ec) {
        std::fprintf(stderr, "compress_bench: copy: %s\n", ec.message().c_str());
        status = 1;
        break;
      }
      const double t0 = ThreadCpuSeconds();
      const absl::Status s = httptraced::output::CompressFileAt(
          dir_fd, codecs[c], "in.json", ".out.tmp", "out", stop);
      const double t1 = ThreadCpuSeconds();
      if (!s.ok()) {
        std::fprintf(stderr, "compress_bench: %s\n", std::string(s.message()).c_str());
        status = 1;
        break;
      }
      seconds[c].push_back(t1 - t0);
      out_size[c] = std::filesystem::file_size(dir / "out");
      std::filesystem::remove(dir / "out");
    }
  }
  ::close(dir_fd);
  std::filesystem::remove_all(dir, ec);
  if (status != 0) return status;

  std::printf("%s: %.1f MiB, median of %d rounds (CPU time of the compressing thread)\n",
              source.c_str(), static_cast<double>(size) / (1 << 20), rounds);
  std::printf("codec   MB/s in   output %%   ms\n");
  for (int c = 0; c < 2; ++c) {
    const double s = Median(seconds[c]);
    std::printf("%-6s %8.0f   %7.2f   %6.1f\n", std::string(CodecName(codecs[c])).c_str(),
                static_cast<double>(size) / s / 1e6,
                100.0 * static_cast<double>(out_size[c]) / static_cast<double>(size),
                s * 1e3);
  }
  std::printf("zstd / gzip CPU time: %.2f\n", Median(seconds[0]) / Median(seconds[1]));
  return 0;
}
