#include "output/lines.h"

#include <string>

#include <catch2/catch.hpp>

namespace httptraced::output {
namespace {

TEST_CASE("CountLines counts newlines, wherever they are") {
  CHECK(CountLines("") == 0);
  CHECK(CountLines("{}") == 0);
  CHECK(CountLines("\n") == 1);
  CHECK(CountLines("{}\n") == 1);
  CHECK(CountLines("{}\n{}\n{}\n") == 3);
  CHECK(CountLines("{}\n{}") == 1);  // a partial last line is no line
  CHECK(CountLines("\n\n\n\n") == 4);
  CHECK(CountLines(std::string_view("a\0b\n\0\n", 6)) == 2);  // NULs are bytes like others
  std::string big;
  for (int i = 0; i < 1000; ++i) big += std::string(static_cast<size_t>(i % 97 + 1), 'x') + "\n";
  CHECK(CountLines(big) == 1000);
  CHECK(CountLines(std::string_view(big).substr(1)) == 1000);  // starts inside a line
  CHECK(CountLines(std::string_view(big).substr(0, big.size() - 1)) == 999);
}

}  // namespace
}  // namespace httptraced::output
