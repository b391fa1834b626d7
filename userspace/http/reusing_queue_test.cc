#include "http/reusing_queue.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace httptraced::http {
namespace {

std::vector<int> Contents(const ReusingQueue<int>& q) { return {q.begin(), q.end()}; }

TEST_CASE("ReusingQueue is first in, first out") {
  ReusingQueue<int> q;
  CHECK(q.empty());
  CHECK(q.size() == 0);
  for (int i = 1; i <= 3; ++i) q.emplace_back() = i;
  CHECK(q.size() == 3);
  CHECK(q.front() == 1);
  CHECK(q[2] == 3);
  q.pop_front();
  CHECK(q.front() == 2);
  CHECK(q[0] == 2);
  CHECK(q[1] == 3);
  CHECK(Contents(q) == std::vector<int>{2, 3});
  q.emplace_back() = 4;
  CHECK(Contents(q) == std::vector<int>{2, 3, 4});
  q.pop_front();
  q.pop_front();
  q.pop_front();
  CHECK(q.empty());
  CHECK(Contents(q).empty());
}

TEST_CASE("ReusingQueue keeps its storage when it drains") {
  ReusingQueue<std::string> q;
  q.emplace_back() = "first";
  const std::string* slot = &q.front();
  for (int i = 0; i < 1000; ++i) {
    q.pop_front();
    CHECK(q.empty());
    CHECK(q.stored() == 0);
    q.emplace_back() = "request " + std::to_string(i);
    // The same slot every time: no reallocation for a queue of one.
    CHECK(&q.front() == slot);
    CHECK(q.front() == "request " + std::to_string(i));
  }
}

TEST_CASE("ReusingQueue compacts dead entries when it never drains") {
  ReusingQueue<int> q;
  int next_in = 0, next_out = 0;
  for (int i = 0; i < 3; ++i) q.emplace_back() = next_in++;
  // Pipelining: always three waiting, one in and one out at a time.
  for (int round = 0; round < 10000; ++round) {
    q.emplace_back() = next_in++;
    REQUIRE(q.front() == next_out);
    q.pop_front();
    ++next_out;
    REQUIRE(q.size() == 3);
    // Dead entries are at most as many as live ones, or fewer than 16.
    REQUIRE(q.stored() <= 2 * q.size() + 16);
  }
  CHECK(Contents(q) == std::vector<int>{next_out, next_out + 1, next_out + 2});
}

TEST_CASE("ReusingQueue clear empties it") {
  ReusingQueue<int> q;
  for (int i = 0; i < 20; ++i) q.emplace_back() = i;
  q.pop_front();
  q.clear();
  CHECK(q.empty());
  CHECK(q.stored() == 0);
  q.emplace_back() = 7;
  CHECK(Contents(q) == std::vector<int>{7});
}

}  // namespace
}  // namespace httptraced::http
