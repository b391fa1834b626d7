#include "http/recycler.h"

#include <algorithm>
#include <iterator>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "http/parser.h"
#include "http/test_util.h"

namespace httptraced::http {
namespace {

using testing::DumpAll;
using testing::RequestBytes;
using testing::ResponseBytes;

// Longer than any small-string buffer: always on the heap.
const std::string kLong(40, 'v');

Message WithFields(std::vector<Header> fields) {
  Message m;
  m.headers = std::move(fields);
  return m;
}

TEST_CASE("A reclaimed field vector comes back with its fields' strings") {
  MessageRecycler recycler;
  Message m = WithFields({{"Date", kLong}, {"Host", "a"}, {"X-Long-Header-Name-Here", "b"}});
  const char* const date_value = m.headers[0].value.data();
  const char* const long_name = m.headers[2].name.data();
  const Header* const vector_storage = m.headers.data();
  const size_t vector_capacity = m.headers.capacity();
  recycler.Reclaim(m);
  CHECK(recycler.spare_vectors() == 1);
  CHECK(recycler.spare_bodies() == 0);
  const size_t held = recycler.spare_bytes();
  CHECK(held >= vector_capacity * sizeof(Header) + 2 * kLong.size());

  std::vector<Header> fields;
  recycler.PrepareFields(&fields, Message::Kind::kRequest, 2);
  CHECK(recycler.spare_vectors() == 0);
  CHECK(recycler.spare_bytes() < held);
  CHECK(fields.data() == vector_storage);
  CHECK(fields.capacity() == vector_capacity);
  // The stale fields, in order, for the parser to overwrite.
  REQUIRE(fields.size() == 3);
  CHECK(fields[0].value.data() == date_value);
  CHECK(fields[2].name.data() == long_name);
  fields[0].value.assign(kLong.size(), 'w');
  CHECK(fields[0].value.data() == date_value);  // fits: no new allocation

  // Requests are built in requests' vectors, responses in responses'.
  Message response = WithFields({{"Server", "nginx"}});
  response.kind = Message::Kind::kResponse;
  const Header* const response_storage = response.headers.data();
  recycler.Reclaim(response);
  CHECK(recycler.spare_vectors() == 1);
  // Nothing spare for a request: only the room asked for.
  std::vector<Header> fresh;
  recycler.PrepareFields(&fresh, Message::Kind::kRequest, 16);
  CHECK(fresh.empty());
  CHECK(fresh.capacity() == 16);
  std::vector<Header> for_response;
  recycler.PrepareFields(&for_response, Message::Kind::kResponse, 1);
  CHECK(for_response.data() == response_storage);
  CHECK(recycler.spare_vectors() == 0);
}

TEST_CASE("Reclaimed bodies come back for bodies that fit them") {
  MessageRecycler recycler;
  Message m;
  m.body.content.assign(1000, 'b');
  const char* const storage = m.body.content.data();
  const size_t capacity = m.body.content.capacity();
  recycler.Reclaim(m);
  CHECK(recycler.spare_bodies() == 1);
  CHECK(recycler.spare_bytes() >= capacity);

  std::string content;
  recycler.PrepareBody(&content, 600);
  CHECK(content.data() == storage);
  CHECK(content.empty());
  CHECK(content.capacity() == capacity);
  CHECK(recycler.spare_bodies() == 0);
  // A body that already has its room is left alone.
  std::string other;
  other.reserve(700);
  const char* const other_storage = other.data();
  recycler.Reclaim(m);  // moved-from: nothing to keep
  CHECK(recycler.spare_bodies() == 0);
  recycler.PrepareBody(&other, 600);
  CHECK(other.data() == other_storage);
  // Nothing spare: room is reserved as asked.
  std::string fresh;
  recycler.PrepareBody(&fresh, 5000);
  CHECK(fresh.capacity() >= 5000);
}

TEST_CASE("What the recycler keeps is bounded") {
  MessageRecycler recycler;
  // Oversized strings are freed, their field vector kept; oversized bodies freed.
  Message big = WithFields({{"Cookie", std::string(MessageRecycler::kMaxFieldCapacity + 1, 'c')},
                            {"Date", kLong}});
  big.body.content.assign(MessageRecycler::kMaxBodyCapacity + 1, 'b');
  recycler.Reclaim(big);
  CHECK(recycler.spare_bodies() == 0);
  REQUIRE(recycler.spare_vectors() == 1);
  std::vector<Header> fields;
  recycler.PrepareFields(&fields, Message::Kind::kRequest, 2);
  REQUIRE(fields.size() == 2);
  CHECK(fields[0].value.capacity() == std::string().capacity());
  CHECK(fields[1].value.capacity() >= kLong.size());
  // Vectors with room for more than kMaxVectorCapacity fields are freed.
  Message wide;
  wide.headers.reserve(MessageRecycler::kMaxVectorCapacity + 1);
  recycler.Reclaim(wide);
  CHECK(recycler.spare_vectors() == 0);

  // Counts stop at their limits, however many messages come back.
  for (size_t i = 0; i < MessageRecycler::kMaxVectors + 10; ++i) {
    Message m = WithFields(std::vector<Header>(8, Header{kLong, kLong}));
    m.body.content = kLong;
    recycler.Reclaim(m);
  }
  CHECK(recycler.spare_vectors() == MessageRecycler::kMaxVectors);
  CHECK(recycler.spare_bodies() == MessageRecycler::kMaxBodies);
  // At most: vectors of kMaxVectorCapacity fields, each with two strings of
  // kMaxFieldCapacity bytes; bodies of kMaxBodyCapacity; the lists themselves.
  CHECK(recycler.spare_bytes() <
        MessageRecycler::kMaxVectors * (MessageRecycler::kMaxVectorCapacity *
                                            (sizeof(Header) + 2 * MessageRecycler::kMaxFieldCapacity) +
                                        64) +
            MessageRecycler::kMaxBodies * (MessageRecycler::kMaxBodyCapacity + sizeof(std::string)));
}

// The same stream parsed by a parser whose every emitted message is
// reclaimed at once and by one without a recycler: the same messages.
TEST_CASE("A parser building in reclaimed storage parses as one without") {
  std::string stream;
  for (int i = 0; i < 20; ++i) {
    stream += RequestBytes(
        i % 3 == 0 ? "POST" : "GET", "/items/" + std::to_string(i) + "?with=a-long-query-string",
        {{"Host", "example.test"},
         {"User-Agent", "curl/7.88.1 (x86_64-pc-linux-gnu) libcurl/7.88.1"},
         {"X-Request-Number", std::to_string(i)},
         {"Cookie", std::string(static_cast<size_t>(10 + 37 * i), 'k')}},
        std::string(static_cast<size_t>(i % 3 == 0 ? 100 * i : 0), 'p'));
  }
  // Chunked, with trailers, and an obs-fold continuing a recycled value.
  stream +=
      "POST /chunked HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Folded: first part of it\r\n"
      " continued on the next line\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer-Checksum: "
      "0123456789abcdef0123\r\n\r\n";
  stream += RequestBytes("GET", "/", {{"Host", "h"}});

  ParserOptions plain;
  plain.max_body_bytes = 1000;
  ParserOptions recycling = plain;
  MessageRecycler recycler;
  recycling.recycler = &recycler;
  MessageParser without(ParseMode::kRequest, plain);
  MessageParser with(ParseMode::kRequest, recycling);
  std::vector<Message> expected;
  std::vector<Message> got;
  std::vector<Message> batch;
  // Fed in pieces of 97 bytes: messages end at every kind of boundary.
  for (size_t pos = 0; pos < stream.size(); pos += 97) {
    const std::string_view piece = std::string_view(stream).substr(pos, 97);
    without.Feed(piece, {}, &expected);
    with.Feed(piece, {}, &batch);
    for (Message& m : batch) {
      got.push_back(m);  // a copy, its own storage
      recycler.Reclaim(m);
    }
    batch.clear();
  }
  without.Finish(&expected);
  with.Finish(&got);
  REQUIRE(expected.size() == 22);
  CHECK(DumpAll(got) == DumpAll(expected));
  CHECK(expected[21].trailers.empty());
  REQUIRE(expected[20].trailers.size() == 1);
  CHECK(expected[20].trailers[0].value == "0123456789abcdef0123");
  CHECK(recycler.spare_vectors() > 0);
}

TEST_CASE("In steady state a keep-alive exchange reuses the last one's storage") {
  const std::string request = RequestBytes(
      "GET", "/", {{"Host", "127.0.0.1:8080"}, {"User-Agent", "Mozilla/5.0 (X11; Linux x86_64)"}});
  const std::string response =
      ResponseBytes(200, "OK",
                    {{"Date", "Tue, 24 Nov 2026 03:50:04 GMT"},
                     {"Last-Modified", "Mon, 23 Nov 2026 10:00:00 GMT"},
                     {"Content-Length", "600"}},
                    std::string(600, 'x'));
  MessageRecycler recycler;
  ParserOptions options;
  options.recycler = &recycler;
  MessageParser requests(ParseMode::kRequest, options);
  MessageParser responses(ParseMode::kResponse, options);
  // The heap storage of an exchange's messages: long values, field vectors, body.
  const auto storage = [](const std::vector<Message>& ms) {
    std::vector<const void*> blocks;
    for (const Message& m : ms) {
      const size_t inline_capacity = std::string().capacity();
      blocks.push_back(m.headers.data());
      if (m.body.content.capacity() > inline_capacity) blocks.push_back(m.body.content.data());
      for (const Header& h : m.headers) {
        if (h.value.capacity() > inline_capacity) blocks.push_back(h.value.data());
      }
    }
    std::sort(blocks.begin(), blocks.end());
    return blocks;
  };
  std::vector<Message> out;
  std::vector<const void*> last;
  for (int i = 0; i < 6; ++i) {
    requests.Feed(request, {}, &out);
    responses.Feed(response, {}, &out);
    REQUIRE(out.size() == 2);
    CHECK(out[0].headers[1].value == "Mozilla/5.0 (X11; Linux x86_64)");
    CHECK(out[1].headers[1].value == "Mon, 23 Nov 2026 10:00:00 GMT");
    CHECK(out[1].body.content == std::string(600, 'x'));
    const std::vector<const void*> now = storage(out);
    INFO("exchange " << i);
    // Two header vectors, the response's body, three long values.
    CHECK(now.size() == 6);
    if (i > 0) {
      // Every block is one of the last exchange's: nothing new. (A request
      // is built in the last request's vector, a response in the last
      // response's: same fields, same sizes.)
      std::vector<const void*> reused;
      std::set_intersection(now.begin(), now.end(), last.begin(), last.end(),
                            std::back_inserter(reused));
      CHECK(reused.size() == 6);
    }
    last = now;
    for (Message& m : out) recycler.Reclaim(m);
    out.clear();
    CHECK(recycler.spare_vectors() == 2);
    CHECK(recycler.spare_bodies() == 1);
  }
}

}  // namespace
}  // namespace httptraced::http
