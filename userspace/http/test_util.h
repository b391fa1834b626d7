// Test helpers for the HTTP parser, stitcher and session: builders for the bytes
// of requests and responses, a canonical dump of messages and exchanges (so that
// a test compares every field at once and a failure shows the difference), and
// a driver that parses an input whole, split at every chunk boundary and byte by
// byte, and requires identical results.
#ifndef HTTPTRACED_HTTP_TEST_UTIL_H_
#define HTTPTRACED_HTTP_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/message.h"
#include "http/parser.h"

namespace httptraced::http::testing {

// --- Builders ---------------------------------------------------------------

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// "METHOD target HTTP/1.1\r\nName: value\r\n...\r\n" + body.
std::string RequestBytes(std::string_view method, std::string_view target,
                         const HeaderList& headers = {}, std::string_view body = "");
// "HTTP/1.1 status reason\r\n...\r\n" + body.
std::string ResponseBytes(int status, std::string_view reason, const HeaderList& headers = {},
                          std::string_view body = "");
// The chunked encoding of `chunks` (a last chunk and an empty trailer section follow).
std::string Chunked(const std::vector<std::string>& chunks);

// Expected messages, to be completed field by field in a test.
Message Request(std::string_view method, std::string_view target, const HeaderList& headers = {},
                std::string_view body = "");
Message Response(int status, std::string_view reason, const HeaderList& headers = {},
                 std::string_view body = "");

// --- Canonical dumps ----------------------------------------------------------

// Every field of a message on a few lines (timing only when with_meta).
std::string Dump(const Message& m, bool with_meta = false);
std::string DumpAll(const std::vector<Message>& ms, bool with_meta = false);
std::string Dump(const Exchange& e, bool with_meta = false);
std::string DumpAll(const std::vector<Exchange>& es, bool with_meta = false);
std::string Dump(const ParserStats& s);

// --- Driving a parser ---------------------------------------------------------

// One step of an input stream: bytes, or a gap of `gap` bytes.
struct Step {
  std::string bytes;
  uint64_t gap = 0;
  ChunkMeta meta;
};
Step Bytes(std::string bytes, ChunkMeta meta = {});
Step Gap(uint64_t len, ChunkMeta meta = {});

struct ParseSetup {
  ParseMode mode = ParseMode::kRequest;
  ParserOptions options;
  // Methods of the requests that the responses answer, in order (a stitcher
  // stand-in: the driver advances it by the final responses of each call).
  // Empty: the parser has no RequestLookup.
  std::vector<std::string> request_methods;
  bool mid_stream = false;  // StartMidStream() first
  bool finish = true;       // Finish() at the end
};

struct ParseResult {
  std::vector<Message> messages;
  ParserStats stats;
  bool switched = false;
  // The steps ended inside a body delimited by the close (before Finish).
  bool in_body_to_close = false;
};

// Parses `steps` with each byte step fed as given.
ParseResult ParseSteps(const std::vector<Step>& steps, const ParseSetup& setup);
// Each step's bytes further cut at the given offsets of the concatenated bytes.
ParseResult ParseStepsSplit(const std::vector<Step>& steps, const ParseSetup& setup,
                            const std::vector<size_t>& cuts);

// Parses `steps` as given, then with the bytes split at every possible position
// (one cut at a time), split at every position pair for short inputs, and byte by
// byte. Every run must give the same messages (timing included: all chunks of a
// step carry the step's meta) and the same stats; the CHECKs report the first
// split that differs. Returns the result of the unsplit run.
ParseResult ParseEverySplit(const std::vector<Step>& steps, const ParseSetup& setup);
ParseResult ParseEverySplit(std::string_view input, const ParseSetup& setup);

}  // namespace httptraced::http::testing

#endif  // HTTPTRACED_HTTP_TEST_UTIL_H_
