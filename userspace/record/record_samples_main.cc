// record_samples <file>: writes the record of every sample exchange to <file>,
// one per line, for tests/schema/validate.py to check against the schema.
#include <cstdio>
#include <string>

#include "record/record_samples.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output.jsonl>\n", argv[0]);
    return 2;
  }
  std::string out;
  for (const auto& sample : httptraced::record::samples::AllSamples()) {
    out += httptraced::record::samples::Render(sample);
  }
  std::FILE* f = std::fopen(argv[1], "wb");
  if (f == nullptr) {
    std::perror(argv[1]);
    return 1;
  }
  const bool ok = std::fwrite(out.data(), 1, out.size(), f) == out.size();
  if (std::fclose(f) != 0 || !ok) {
    std::perror(argv[1]);
    return 1;
  }
  std::printf("wrote %zu bytes to %s\n", out.size(), argv[1]);
  return 0;
}
