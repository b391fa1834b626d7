#include "bpf/tls_libraries.h"

#include <dirent.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace httptraced::bpf {
namespace {

struct FileId {
  dev_t dev;
  ino_t ino;
  bool operator==(const FileId&) const = default;
};

// "libssl.so.3", "libssl.so.1.1", "libgnutls.so.30": a versioned name, not the
// .so development link (which points at one of them anyway).
bool IsVersionedTlsLibrary(std::string_view name) {
  using std::string_view_literals::operator""sv;
  for (std::string_view prefix : {"libssl.so."sv, "libgnutls.so."sv}) {
    if (name.size() <= prefix.size() || name.substr(0, prefix.size()) != prefix) continue;
    name.remove_prefix(prefix.size());
    return std::all_of(name.begin(), name.end(), [](char c) {
      return absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '.';
    });
  }
  return false;
}

// Adds path unless its file is already listed.
void AddUnique(const std::string& path, const struct stat& st, std::vector<FileId>& seen,
               std::vector<std::string>& out) {
  const FileId id{st.st_dev, st.st_ino};
  if (std::find(seen.begin(), seen.end(), id) != seen.end()) return;
  seen.push_back(id);
  out.push_back(path);
}

}  // namespace

std::vector<std::string> DefaultTlsLibraryDirs() {
  return {"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib/x86_64-linux-gnu",
          "/lib/aarch64-linux-gnu",    "/usr/lib64",                 "/usr/lib",
          "/lib64",                    "/lib"};
}

std::vector<std::string> FindTlsLibraries(const std::vector<std::string>& dirs) {
  std::vector<FileId> seen;
  std::vector<std::string> out;
  for (const std::string& dir : dirs) {
    std::unique_ptr<DIR, int (*)(DIR*)> d(opendir(dir.c_str()), closedir);
    if (d == nullptr) continue;
    std::vector<std::string> names;
    while (const dirent* e = readdir(d.get())) {
      if (IsVersionedTlsLibrary(e->d_name)) names.emplace_back(e->d_name);
    }
    std::sort(names.begin(), names.end());  // readdir's order is the filesystem's
    for (const std::string& name : names) {
      const std::string path = absl::StrCat(dir, "/", name);
      struct stat st;
      if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      AddUnique(path, st, seen, out);
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> CheckTlsLibraries(const std::vector<std::string>& paths) {
  std::vector<FileId> seen;
  std::vector<std::string> out;
  for (const std::string& path : paths) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
      return absl::NotFoundError(
          absl::StrCat("--tls_libraries: ", path, ": ", std::strerror(errno)));
    }
    if (!S_ISREG(st.st_mode) || access(path.c_str(), R_OK) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls_libraries: ", path, " is not a readable file"));
    }
    AddUnique(path, st, seen, out);
  }
  return out;
}

std::vector<uint64_t> SharedCallTargets(const CodeAt& a, const CodeAt& b) {
  auto targets = [](const CodeAt& f) {
    std::vector<uint64_t> out;
    for (size_t i = 0; i + 5 <= f.code.size(); ++i) {
      if (f.code[i] != 0xe8) continue;
      int32_t rel;
      std::memcpy(&rel, &f.code[i + 1], sizeof(rel));
      const uint64_t t = f.addr + i + 5 + static_cast<uint64_t>(static_cast<int64_t>(rel));
      if (std::find(out.begin(), out.end(), t) == out.end()) out.push_back(t);
    }
    return out;
  };
  const std::vector<uint64_t> ta = targets(a), tb = targets(b);
  std::vector<uint64_t> out;
  for (uint64_t t : ta) {
    if (std::find(tb.begin(), tb.end(), t) != tb.end()) out.push_back(t);
  }
  return out;
}

std::optional<uint64_t> EmulatedEntrySkip(std::span<const uint8_t> code) {
  size_t i = 0;
  constexpr uint8_t kEndbr64[] = {0xf3, 0x0f, 0x1e, 0xfa};
  if (code.size() >= 4 && std::equal(code.begin(), code.begin() + 4, kEndbr64)) i = 4;
  auto is_push = [](uint8_t op) { return op >= 0x50 && op <= 0x57; };
  if (i < code.size() && is_push(code[i])) return i;                       // push %rbx ...
  if (i + 1 < code.size() && code[i] == 0x41 && is_push(code[i + 1])) return i;  // push %r12 ...
  return std::nullopt;
}

namespace {

struct ElfFile {
  int fd = -1;
  Elf* elf = nullptr;
  ~ElfFile() {
    if (elf != nullptr) elf_end(elf);
    if (fd >= 0) close(fd);
  }
};

struct FuncSym {
  uint64_t addr = 0;
  uint64_t size = 0;
  // The section holding it: its address and file offset.
  uint64_t sec_addr = 0;
  uint64_t sec_size = 0;
  uint64_t sec_offset = 0;

  bool Holds(uint64_t a) const { return a >= sec_addr && a < sec_addr + sec_size; }
  uint64_t FileOffset(uint64_t a) const { return a - sec_addr + sec_offset; }
};

// Up to n bytes of code at address a (in sym's section).
std::vector<uint8_t> ReadCode(int fd, const FuncSym& sym, uint64_t a, size_t n) {
  if (!sym.Holds(a)) return {};
  n = std::min<uint64_t>(n, sym.sec_addr + sym.sec_size - a);
  std::vector<uint8_t> out(n);
  const ssize_t got = pread(fd, out.data(), n, static_cast<off_t>(sym.FileOffset(a)));
  out.resize(got > 0 ? static_cast<size_t>(got) : 0);
  return out;
}

}  // namespace

absl::StatusOr<std::vector<TlsProbe>> FindTlsProbes(const std::string& path) {
  constexpr const char* kWanted[] = {"SSL_read",           "SSL_write",
                                     "SSL_read_ex",        "SSL_write_ex",
                                     "SSL_do_handshake",   "SSL_connect",
                                     "SSL_accept",         "gnutls_record_recv",
                                     "gnutls_record_send", "gnutls_record_send2",
                                     "gnutls_handshake"};
  if (elf_version(EV_CURRENT) == EV_NONE) return absl::InternalError("libelf is unusable");
  ElfFile f;
  f.fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  f.elf = elf_begin(f.fd, ELF_C_READ, nullptr);
  if (f.elf == nullptr || elf_kind(f.elf) != ELF_K_ELF) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not an ELF file"));
  }
  struct stat st;
  if (fstat(f.fd, &st) != 0) return absl::InternalError(absl::StrCat(path, ": cannot stat"));
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  // The exported functions wanted, from the dynamic symbol table.
  absl::flat_hash_map<std::string, FuncSym> syms;
  Elf_Scn* scn = nullptr;
  while ((scn = elf_nextscn(f.elf, scn)) != nullptr) {
    GElf_Shdr sh;
    if (gelf_getshdr(scn, &sh) == nullptr || sh.sh_type != SHT_DYNSYM || sh.sh_entsize == 0) {
      continue;
    }
    Elf_Data* data = elf_getdata(scn, nullptr);
    if (data == nullptr) continue;
    const size_t n = sh.sh_size / sh.sh_entsize;
    for (size_t i = 0; i < n; ++i) {
      GElf_Sym sym;
      if (gelf_getsym(data, static_cast<int>(i), &sym) == nullptr ||
          GELF_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_shndx == SHN_UNDEF ||
          sym.st_shndx >= SHN_LORESERVE) {
        continue;
      }
      const char* name = elf_strptr(f.elf, sh.sh_link, sym.st_name);
      if (name == nullptr ||
          std::none_of(std::begin(kWanted), std::end(kWanted),
                       [&](const char* w) { return std::strcmp(w, name) == 0; }) ||
          syms.contains(name)) {
        continue;
      }
      GElf_Shdr text;
      // Code in the file: a probe offset is a file offset.
      if (gelf_getshdr(elf_getscn(f.elf, sym.st_shndx), &text) == nullptr ||
          text.sh_type != SHT_PROGBITS || text.sh_offset > file_size ||
          text.sh_size > file_size - text.sh_offset) {
        continue;
      }
      FuncSym fs{.addr = sym.st_value, .size = sym.st_size, .sec_addr = text.sh_addr,
                 .sec_size = text.sh_size, .sec_offset = text.sh_offset};
      if (fs.Holds(fs.addr)) syms.emplace(name, fs);
    }
  }

  std::vector<TlsProbe> out;
  const struct {
    const char* api;
    const char* api_ex;
    TlsProbeKind kind, kind_ex;
  } dirs[] = {{"SSL_read", "SSL_read_ex", TlsProbeKind::kRead, TlsProbeKind::kReadEx},
              {"SSL_write", "SSL_write_ex", TlsProbeKind::kWrite, TlsProbeKind::kWriteEx}};
  for (const auto& d : dirs) {
    const auto api = syms.find(d.api), ex = syms.find(d.api_ex);
    if (api != syms.end() && ex != syms.end()) {
      constexpr uint64_t kMaxScan = 256;
      const std::vector<uint8_t> a = ReadCode(f.fd, api->second, api->second.addr,
                                              std::clamp<uint64_t>(api->second.size, 16, kMaxScan));
      const std::vector<uint8_t> b = ReadCode(f.fd, ex->second, ex->second.addr,
                                              std::clamp<uint64_t>(ex->second.size, 16, kMaxScan));
      std::vector<uint64_t> sites;
      for (uint64_t t : SharedCallTargets({api->second.addr, a}, {ex->second.addr, b})) {
        const std::vector<uint8_t> head = ReadCode(f.fd, api->second, t, 8);
        if (std::optional<uint64_t> skip = EmulatedEntrySkip(head)) {
          sites.push_back(api->second.FileOffset(t + *skip));
        }
      }
      if (sites.size() == 1) {
        out.push_back({absl::StrCat("the function ", d.api, " and ", d.api_ex, " call"), sites[0],
                       d.kind_ex});
        continue;
      }
    }
    if (api != syms.end()) {
      out.push_back({d.api, api->second.FileOffset(api->second.addr), d.kind});
    }
    if (ex != syms.end()) {
      out.push_back({d.api_ex, ex->second.FileOffset(ex->second.addr), d.kind_ex});
    }
  }
  if (out.empty()) {
    // GnuTLS: gnutls_record_recv(session, data, size) and gnutls_record_send
    // take and return what SSL_read and SSL_write do (a session pointer, a
    // buffer, its size; the bytes moved, or a negative error). Both begin
    // with an instruction the kernel single-steps (GnuTLS 3.7: sub, xor).
    // gnutls_record_send only passes its arguments on to gnutls_record_send2
    // (session, data, size, pad, flags; GnuTLS 3.6.3), which begins with a
    // push: that one is probed where it begins so, and its direct callers are
    // seen too. gnutls_record_recv's callee takes other arguments: the
    // public function is probed, single-stepped on each call.
    if (auto it = syms.find("gnutls_record_recv"); it != syms.end()) {
      out.push_back({"gnutls_record_recv", it->second.FileOffset(it->second.addr),
                     TlsProbeKind::kRead});
    }
    const auto send = syms.find("gnutls_record_send"), send2 = syms.find("gnutls_record_send2");
    std::optional<uint64_t> skip;
    if (send2 != syms.end()) {
      skip = EmulatedEntrySkip(ReadCode(f.fd, send2->second, send2->second.addr, 8));
    }
    if (send != syms.end() && skip.has_value()) {
      out.push_back({"gnutls_record_send2 (gnutls_record_send calls it)",
                     send2->second.FileOffset(send2->second.addr + *skip), TlsProbeKind::kWrite});
    } else if (send != syms.end()) {
      out.push_back({"gnutls_record_send", send->second.FileOffset(send->second.addr),
                     TlsProbeKind::kWrite});
    }
  }
  if (out.empty()) {
    return absl::NotFoundError(absl::StrCat(
        path, " exports neither SSL_read nor SSL_write nor gnutls_record_recv nor "
              "gnutls_record_send (is it libssl or libgnutls?)"));
  }
  for (const char* name : {"SSL_do_handshake", "SSL_connect", "SSL_accept", "gnutls_handshake"}) {
    if (auto it = syms.find(name); it != syms.end()) {
      out.push_back({name, it->second.FileOffset(it->second.addr), TlsProbeKind::kHandshake});
    }
  }
  return out;
}

const char* TlsLibraryOf(const std::vector<TlsProbe>& probes) {
  for (const TlsProbe& p : probes) {
    if (p.name.starts_with("gnutls_")) return "GnuTLS";
  }
  return "libssl";
}

}  // namespace httptraced::bpf
