// Helpers shared by the output tests (not part of the library).
#ifndef HTTPTRACED_OUTPUT_TEST_SUPPORT_H_
#define HTTPTRACED_OUTPUT_TEST_SUPPORT_H_

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "output/sink_event.h"
#include "output/unique_fd.h"

namespace httptraced::output::testing {

// A fresh directory per test, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string templ = "/tmp/httptraced-output-test.XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(absl::string_view name) const {
    return absl::StrCat(path_, "/", name);
  }

 private:
  std::string path_;
};

// Sets the umask for the scope.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old_); }
  ScopedUmask(const ScopedUmask&) = delete;
  ScopedUmask& operator=(const ScopedUmask&) = delete;

 private:
  mode_t old_;
};

struct FakeClock {
  // 2026-11-21T20:45:59.123Z
  absl::Time now = absl::FromCivil(absl::CivilSecond(2026, 11, 21, 20, 45, 59),
                                   absl::UTCTimeZone()) +
                   absl::Milliseconds(123);
  Clock AsClock() {
    return [this] { return now; };
  }
};

// Records sink events.
struct EventLog {
  std::vector<SinkEvent> events;
  EventCallback AsCallback() {
    return [this](const SinkEvent& e) { events.push_back(e); };
  }
};

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteFile(const std::string& path, absl::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  if (!out) throw std::runtime_error("cannot write " + path);
}

// Names in a directory, sorted.
inline std::vector<std::string> ListDir(const std::string& path) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(path)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

inline mode_t Mode(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

// A .gz file's bytes decompressed as gzip(1) does: every member, in order.
struct Gunzipped {
  std::string data;
  int members = 0;
};

inline Gunzipped GunzipMembers(const std::string& gz) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) throw std::runtime_error("inflate");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
  z.avail_in = static_cast<uInt>(gz.size());
  Gunzipped out;
  char buf[4096];
  while (true) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof(buf);
    const int rc = inflate(&z, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&z);
      throw std::runtime_error("corrupt gzip");
    }
    out.data.append(buf, sizeof(buf) - z.avail_out);
    if (rc == Z_STREAM_END) {
      ++out.members;
      if (z.avail_in == 0) break;
      inflateReset(&z);  // the next member
    } else if (z.avail_in == 0 && z.avail_out != 0) {
      inflateEnd(&z);
      throw std::runtime_error("truncated gzip");
    }
  }
  inflateEnd(&z);
  return out;
}

inline std::string Gunzip(const std::string& gz) { return GunzipMembers(gz).data; }

// A .zst file's bytes decompressed as zstd(1) does: every frame, in order,
// each checked against its content checksum when it has one.
struct Unzstded {
  std::string data;
  int frames = 0;
  int checksummed = 0;  // frames that carry a content checksum
};

inline Unzstded UnzstdFrames(const std::string& zst) {
  Unzstded out;
  size_t at = 0;
  while (at < zst.size()) {
    // RFC 8878 3.1.1: the 4-byte magic number, then the frame header
    // descriptor, whose bit 2 is the content checksum flag.
    if (zst.size() - at < 5 || zst.compare(at, 4, "\x28\xb5\x2f\xfd") != 0) {
      throw std::runtime_error("not a zstd frame");
    }
    const bool checksummed = (static_cast<unsigned char>(zst[at + 4]) & 0x04) != 0;
    const size_t frame = ZSTD_findFrameCompressedSize(zst.data() + at, zst.size() - at);
    if (ZSTD_isError(frame)) throw std::runtime_error("truncated zstd frame");
    ZSTD_DCtx* dctx = ZSTD_createDCtx();
    ZSTD_inBuffer in{zst.data() + at, frame, 0};
    char buf[4096];
    size_t left = 1;
    while (left != 0) {
      ZSTD_outBuffer o{buf, sizeof(buf), 0};
      left = ZSTD_decompressStream(dctx, &o, &in);
      if (ZSTD_isError(left)) {
        ZSTD_freeDCtx(dctx);
        throw std::runtime_error(std::string("corrupt zstd: ") + ZSTD_getErrorName(left));
      }
      out.data.append(buf, o.pos);
      if (left != 0 && in.pos == in.size && o.pos == 0) {
        ZSTD_freeDCtx(dctx);
        throw std::runtime_error("truncated zstd");
      }
    }
    ZSTD_freeDCtx(dctx);
    ++out.frames;
    out.checksummed += checksummed;
    at += frame;
  }
  return out;
}

inline std::string Unzstd(const std::string& zst) { return UnzstdFrames(zst).data; }

// "rec-0000 <padding>\n" lines of exactly `width` bytes (newline included).
inline std::string Lines(int first, int count, size_t width = 10) {
  std::string out;
  for (int i = first; i < first + count; ++i) {
    std::string line = absl::StrCat("rec-", i);
    line.resize(width - 1, '.');
    out += line;
    out += '\n';
  }
  return out;
}

// A small tmpfs, private to this process where possible, unmounted on exit.
// Mounting needs CAP_SYS_ADMIN: a test that cannot mount must fail, not skip.
class TmpfsMount {
 public:
  TmpfsMount(const std::string& path, absl::string_view size) : path_(path) {
    // A private mount namespace keeps the mount from outliving a crash.
    if (::unshare(CLONE_NEWNS) == 0) {
      ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr);
    }
    const std::string opts = absl::StrCat("size=", size, ",mode=0755");
    if (::mkdir(path.c_str(), 0755) != 0 ||
        ::mount("tmpfs", path.c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
                opts.c_str()) != 0) {
      error_ = strerror(errno);
    } else {
      mounted_ = true;
    }
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }

 private:
  std::string path_;
  bool mounted_ = false;
  std::string error_;
};

// Fills the filesystem at `path` with a file; returns its name.
inline std::string FillUp(const std::string& path) {
  const std::string filler = path + "/filler";
  UniqueFd fd(::open(filler.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  const std::string block(4096, 'f');
  while (::write(fd.get(), block.data(), block.size()) > 0) {
  }
  return filler;
}

}  // namespace httptraced::output::testing

#endif  // HTTPTRACED_OUTPUT_TEST_SUPPORT_H_
