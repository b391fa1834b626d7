// libFuzzer target for proc::ContainerIdFromCgroup, which parses
// /proc/<pid>/cgroup: any bytes, as the file could hold after a truncated
// read or from a process's own cgroup names.
//
// Invariants: the id found is empty or exactly 64 hex digits, lies inside the
// input, stands on a line's path (after its second ':'), is not part of a
// longer hex run, and the same input gives the same answer.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "proc/process_cache.h"

namespace {

bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::string_view id = httptraced::proc::ContainerIdFromCgroup(in);
  if (id.empty()) {
    Check(id.data() == nullptr || (id.data() >= in.data() && id.data() <= in.data() + in.size()));
    return 0;
  }
  Check(id.size() == 64);
  Check(id.data() >= in.data() && id.data() + id.size() <= in.data() + in.size());
  for (const char c : id) Check(IsHex(c));
  const size_t at = static_cast<size_t>(id.data() - in.data());
  Check(at == 0 || !IsHex(in[at - 1]));
  Check(at + 64 == in.size() || !IsHex(in[at + 64]));
  // On its line, after the second ':'.
  const size_t line_start = in.rfind('\n', at) == std::string_view::npos ? 0 : in.rfind('\n', at) + 1;
  const std::string_view before = in.substr(line_start, at - line_start);
  const size_t first = before.find(':');
  Check(first != std::string_view::npos && before.find(':', first + 1) != std::string_view::npos);
  Check(httptraced::proc::ContainerIdFromCgroup(in) == id);
  return 0;
}
