#include "output/lines.h"

#include <cstring>

namespace httptraced::output {

uint64_t CountLines(std::string_view s) {
  uint64_t n = 0;
  const char* p = s.data();
  const char* const end = p + s.size();
  while (p < end) {
    const void* nl = std::memchr(p, '\n', static_cast<size_t>(end - p));
    if (nl == nullptr) break;
    ++n;
    p = static_cast<const char*>(nl) + 1;
  }
  return n;
}

}  // namespace httptraced::output
