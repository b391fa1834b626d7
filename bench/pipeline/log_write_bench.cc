// The rotating log's write path as the daemon drives it (output::RotatingLog,
// 1 MiB batches of whole lines, rotation included), with and without the
// ext4 reserve ahead of the active file (RotatingLog::Options::
// reserve_ahead_bytes): CPU time of the writing thread per MiB and per record.
//
//   log_write_bench DIR [MiB per round] [rounds] [record bytes] [batch KiB]
//
// DIR must be on the filesystem to measure (the reserve is only taken on
// ext4). Each round writes into a fresh directory under DIR, once with the
// reserve and once without, in alternating order so drift cancels; rotated
// files are kept plain and pruned by the log's own background thread, whose
// CPU is not counted. The figures are medians over the rounds. The batch
// size defaults to the daemon's (kFlushBytes in daemon/daemon.cc).
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "output/rotating_log.h"
#include "thread_cpu.h"

namespace {

using httptraced::bench::Median;
using httptraced::bench::ThreadCpuSeconds;
using httptraced::output::Compression;
using httptraced::output::RotatingLog;

// A batch of `bytes` (about) made of record-sized JSON-looking lines.
std::string Batch(size_t bytes, size_t record) {
  std::string line = "{\"http\":{\"request\":{\"body\":{\"content\":\"";
  line.resize(record - 4, 'x');
  line += "\"}}\n";
  std::string out;
  while (out.size() + line.size() <= bytes) out += line;
  return out;
}

// CPU seconds of this thread to write `total` bytes in `batch`es, or -1.
double WriteRound(const std::string& dir, bool reserve, uint64_t total,
                  const std::string& batch) {
  RotatingLog::Options o;
  o.dir = dir;
  o.compress = Compression::kNone;
  o.max_files = 2;
  if (!reserve) o.reserve_ahead_bytes = 0;
  auto log = RotatingLog::Open(o);
  if (!log.ok()) {
    std::fprintf(stderr, "log_write_bench: %s\n", log.status().ToString().c_str());
    return -1;
  }
  const double start = ThreadCpuSeconds();
  for (uint64_t done = 0; done < total; done += batch.size()) {
    if (absl::Status s = (*log)->Write(batch); !s.ok()) {
      std::fprintf(stderr, "log_write_bench: %s\n", s.ToString().c_str());
      return -1;
    }
  }
  const double cpu = ThreadCpuSeconds() - start;
  (*log)->WaitForBackgroundWork();
  return cpu;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: log_write_bench DIR [MiB per round] [rounds] [record bytes] [batch KiB]\n");
    return 2;
  }
  const std::string base = argv[1];
  const uint64_t mib = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 400;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 5;
  const size_t record = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 3200;
  const size_t batch_kib = argc > 5 ? std::strtoull(argv[5], nullptr, 10) : 1024;
  if (mib == 0 || rounds <= 0 || record < 64 || batch_kib == 0 || batch_kib > (64 << 10) ||
      record > (batch_kib << 10)) {
    std::fprintf(stderr, "log_write_bench: bad arguments\n");
    return 2;
  }
  const std::string batch = Batch(batch_kib << 10, record);
  const uint64_t total = mib << 20;
  std::vector<double> with, without;
  for (int r = 0; r < rounds; ++r) {
    for (int i = 0; i < 2; ++i) {
      const bool reserve = (i == 0) == (r % 2 == 0);
      const std::string dir = base + "/log_write_bench." + std::to_string(r) + (reserve ? "r" : "n");
      const double cpu = WriteRound(dir, reserve, total, batch);
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
      if (cpu < 0) return 1;
      (reserve ? with : without).push_back(cpu);
    }
  }
  const double records = static_cast<double>(total) / static_cast<double>(record);
  for (const auto& [name, v] : {std::pair{"reserve", &with}, std::pair{"no reserve", &without}}) {
    const double cpu = Median(*v);
    std::printf("%-10s  %7.1f ms per %llu MiB  %6.3f ms/MiB  %5.0f ns per %zu-byte record\n", name,
                cpu * 1e3, static_cast<unsigned long long>(mib), cpu * 1e3 / static_cast<double>(mib),
                cpu * 1e9 / records, record);
  }
  std::printf("reserve / no reserve: %.2f\n", Median(with) / Median(without));
  return 0;
}
