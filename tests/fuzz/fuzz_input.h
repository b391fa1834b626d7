// Helpers shared by the fuzz targets in tests/fuzz: a reader that turns the
// fuzzer's bytes into bounded integers and byte strings (running out of input
// gives zeros, never an error), and a check that names the broken invariant
// before aborting, so a replayed corpus file that fails says why.
#ifndef HTTPTRACED_TESTS_FUZZ_FUZZ_INPUT_H_
#define HTTPTRACED_TESTS_FUZZ_FUZZ_INPUT_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#define FUZZ_CHECK(cond)                                                                \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)

namespace httptraced::fuzz {

class Input {
 public:
  Input(const uint8_t* data, size_t size) : bytes_(reinterpret_cast<const char*>(data), size) {}

  bool empty() const { return bytes_.empty(); }
  size_t remaining() const { return bytes_.size(); }

  uint8_t U8() {
    if (bytes_.empty()) return 0;
    const uint8_t v = static_cast<uint8_t>(bytes_.front());
    bytes_.remove_prefix(1);
    return v;
  }
  // Little-endian, the first byte read the lowest. Each read is a statement of
  // its own: the operands of `|` (like a call's arguments) are evaluated in no
  // set order, and gcc and clang pick differently, so a corpus found with the
  // clang fuzzer would replay as other values in a gcc build.
  uint16_t U16() {
    const uint16_t lo = U8();
    return static_cast<uint16_t>(lo | (U8() << 8));
  }
  uint32_t U32() {
    const uint32_t lo = U16();
    return lo | (static_cast<uint32_t>(U16()) << 16);
  }
  uint64_t U64() {
    const uint64_t lo = U32();
    return lo | (static_cast<uint64_t>(U32()) << 32);
  }
  // A value in [0, n) (n > 0), from as few bytes as n needs.
  uint64_t Below(uint64_t n) {
    if (n <= 1) return 0;
    if (n <= 0x100) return U8() % n;
    if (n <= 0x10000) return U16() % n;
    if (n <= 0x100000000ull) return U32() % n;
    return U64() % n;
  }
  // Up to `max` raw bytes (their count taken from the input first).
  std::string_view Bytes(size_t max) {
    // Below() consumes input: it must run before bytes_.size() is read (as
    // arguments of one call, their order is unspecified; gcc read the size
    // first, and remove_prefix then ran past the end).
    const size_t wanted = Below(max + 1);
    const size_t n = std::min<size_t>(wanted, bytes_.size());
    const std::string_view out = bytes_.substr(0, n);
    bytes_.remove_prefix(n);
    return out;
  }
  // Everything left.
  std::string_view Rest() {
    const std::string_view out = bytes_;
    bytes_ = {};
    return out;
  }

 private:
  std::string_view bytes_;
};

}  // namespace httptraced::fuzz

#endif  // HTTPTRACED_TESTS_FUZZ_FUZZ_INPUT_H_
