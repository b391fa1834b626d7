// Incremental HTTP/1.x message parser: one direction's byte stream in, complete
// messages out.
//
// The parser is pure over bytes: it does no I/O, keeps no clock and reads no
// globals. Feed it the stream in order, in chunks of any size (the result does not
// depend on where the chunks are split), with explicit gaps where bytes were not
// captured:
//
//   MessageParser parser(ParseMode::kRequest, options);
//   parser.Feed(bytes, meta, &out);     // zero or more messages appended to out
//   parser.FeedGap(len, meta, &out);    // `len` bytes were lost
//   parser.Finish(&out);                // end of stream (close)
//
// Framing follows RFC 9112 section 6: Transfer-Encoding with chunked as the final
// coding wins over Content-Length; a response without either runs until the
// connection closes (so does one whose final coding is not chunked); a request
// with Transfer-Encoding but not chunked last cannot be delimited (parse error);
// requests without either, and CONNECT requests, have no body; responses to
// HEAD, 1xx, 204, 304 and 2xx answers to CONNECT have no body (the parser asks
// its RequestLookup which request a response answers). A 101, or a 2xx answer to
// CONNECT, switches protocols: the parser stops. Content-Length must be digits
// (a list of equal values is accepted); anything else, several different values
// or more than kMaxBodyLength is a parse error, never trusted.
//
// Leniency (a tracer reports what peers did, it does not police them): lines may
// end in CRLF or a bare LF; blank lines between messages are skipped; header
// values are trimmed of SP/HTAB and may hold any byte but CR and NUL; obs-fold
// continuation lines are joined to the previous value with one SP; chunk sizes
// may be followed by whitespace and extensions (ignored); request targets may
// hold UTF-8. Malformed are: a start line that is not HTTP/1.x, a field line
// without ':' or whose name is not a token (whitespace before ':' included), a
// bare CR inside a line, obs-fold before the first field or of a framing field.
//
// Timing: Message::first is the meta of the chunk holding the message's first
// byte, Message::last that of the chunk (or gap) holding its last byte.
//
// Losing sync. A gap inside a body whose remaining length is known, or inside
// a body delimited by the close, is skipped without losing sync (Body::gap,
// set when the gap took bytes that max_body_bytes would have kept). A gap that
// takes chunk framing (a read of several chunks larger than the capture cap)
// holds the chunked message back while the parser resynchronises as below:
// the last chunk with an empty trailer section, CRLF "0" CRLF CRLF, completes
// it (Body::framing_lost, its size counting the framing after the gap, no
// parse error); a message start found first, the end of the stream, or
// GiveUpHeldOlderThan emits it cut short as any other loss of sync. Anywhere else a gap, like malformed
// bytes,
// makes the parser emit the message in progress with complete=false (when it
// got past its start line) and resynchronise: it scans for the next plausible
// message start, never joining bytes from both sides of a gap into one message.
// Candidate starts are
//   - a request line `TOKEN SP target SP HTTP/1.D [CR] LF`, found when its line
//     ends. The method token must begin the line (or follow a gap or the end of
//     the previous message), or else be a well-known method glued to preceding
//     bytes (a JSON body without a trailing newline followed by "POST /x ...").
//   - a status line prefix `HTTP/1.D SP DDD` followed by SP, CR or LF, anywhere.
// The first message after a resynchronisation has gap_before=true. A message
// found by resynchronising whose head then proves malformed is taken for a false
// start and dropped (counted as skipped bytes), so that a stray "HTTP/1.1 200" in
// a body does not become a response paired with some request.
//
// ParserStats::parse_errors counts the times sync was lost: a malformed or
// undelimitable message, a gap outside a body of known length, or garbage where
// a message should have started. Joining a stream mid-way (StartMidStream) is not
// an error; its leading bytes only count as skipped.
//
// Memory is bounded whatever arrives: the head of a message is buffered up to
// max_header_bytes (the rest of the head is scanned, not stored, and abandoned
// after kMaxHeadScanFactor times that), a line being searched for a start line is
// kept up to max_header_bytes, bodies up to max_body_bytes.
//
// A request line longer than max_header_bytes (a huge target) still starts a
// request when all of it fits the request-line grammar and it is at most
// kMaxHeadScanFactor times the cap: the target is cut to fit half the cap (the
// other half is for the fields) and the message is marked headers_truncated.
// (Dropping it instead would hide the connection: its first line would not be
// HTTP.) Scanning resumes where
// it stopped, so byte-at-a-time input costs O(n).
#ifndef HTTPTRACED_HTTP_PARSER_H_
#define HTTPTRACED_HTTP_PARSER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/message.h"
#include "http/recycler.h"

namespace httptraced::http {

// Which messages a parser accepts. kBoth decides per message from its start line
// (used while a connection's role is unknown).
enum class ParseMode { kRequest, kResponse, kBoth };

struct ParserOptions {
  size_t max_body_bytes = 16384;    // body bytes kept in Body::content
  size_t max_header_bytes = 65536;  // start line + headers buffered per message
  size_t max_headers = 512;         // header (and trailer) fields kept per message
  // Where fields and bodies are built in storage of written messages (not
  // owned; outlives the parser). Null: every message allocates afresh.
  MessageRecycler* recycler = nullptr;
};

// What a response parser needs to know about the request a response answers.
class RequestLookup {
 public:
  virtual ~RequestLookup() = default;
  // The method of the request that `response` (its head parsed, body not yet)
  // answers, or "" when unknown (then GET rules apply). `skip` final responses
  // were completed earlier in the same Feed/FeedGap/Finish call and have not been
  // handed to the stitcher yet: the answer is that many places further down the
  // queue of unanswered requests.
  virtual std::string_view RequestMethodFor(const Message& response, size_t skip) const = 0;
};

struct ParserStats {
  uint64_t messages = 0;      // messages emitted (complete or not)
  uint64_t parse_errors = 0;  // times sync was lost (malformed bytes, gap) and regained by scanning
  uint64_t bytes_skipped = 0;  // bytes discarded while resynchronising (blank lines excluded)
};

// A loss of sync (see ParserStats::parse_errors), reported so that a stitcher can
// tell which requests may have lost their responses.
struct SyncLoss {
  size_t messages_before = 0;  // messages the same call had emitted before the loss
  ChunkMeta at;                // the chunk (or gap) where the lost or skipped bytes begin
};

class MessageParser {
 public:
  // `lookup` may be null (responses then follow GET rules) and must outlive the parser.
  MessageParser(ParseMode mode, const ParserOptions& options,
                const RequestLookup* lookup = nullptr);
  MessageParser(const MessageParser&) = delete;
  MessageParser& operator=(const MessageParser&) = delete;
  MessageParser(MessageParser&&) noexcept = default;
  MessageParser& operator=(MessageParser&&) noexcept = default;

  // Parses the next `bytes` of the stream, carried by the syscall `meta`.
  void Feed(std::string_view bytes, const ChunkMeta& meta, std::vector<Message>* out);
  // The next `len` bytes of the stream were not captured. Returns true when the
  // parser still knows where it is (the gap fell inside a body of known length),
  // false when it lost sync (it will resynchronise on the bytes that follow).
  bool FeedGap(uint64_t len, const ChunkMeta& meta, std::vector<Message>* out);
  // End of stream: a body delimited by close completes; a message cut short is
  // emitted with complete=false. The parser is then ready for a new stream.
  void Finish(std::vector<Message>* out);
  // A chunked message held for its last chunk since a gap took its framing
  // (see "Losing sync"), whose last bytes came before deadline_ns, is emitted
  // cut short, as if another message had started. True when one was.
  bool GiveUpHeldOlderThan(uint64_t deadline_ns, std::vector<Message>* out);

  // The stream is joined at an unknown position (a connection found mid-stream):
  // leading bytes up to the first message start are skipped without counting a
  // parse error, and that message gets gap_before=true.
  void StartMidStream();
  // Changes which messages are accepted from now on.
  void SetMode(ParseMode mode);
  ParseMode mode() const { return mode_; }
  // Stops parsing for good (the connection switched protocols): bytes are ignored.
  void Stop();
  bool stopped() const { return state_ == State::kStopped; }
  // A 101 response or a 2xx answer to CONNECT was parsed; the parser has stopped.
  bool switched_protocols() const { return switched_; }
  // Between messages with nothing pending (no partial message, no partial line).
  bool idle() const;
  // The message under construction (its head or body still arriving; fields
  // may be partial), or nullptr between messages.
  const Message* in_progress() const;
  // This stream was fed from its start and its first line is not an HTTP/1.x start line.
  bool rejected_stream_start() const { return rejected_stream_start_; }
  // Inside a body delimited by Content-Length, or inside one chunk's data:
  // the stream bytes ahead that would only be counted, past what
  // max_body_bytes keeps (to the end of the body, or of the chunk). Feeding
  // them as a gap (FeedGap) instead gives the same messages, so the caller
  // may ask the kernel not to copy them. A body delimited by the close runs
  // to the end of the stream: len is kToTheClose. {} elsewhere: heads and
  // chunk framing, which must be read.
  BodySkip UnkeptBodyAhead() const;
  static constexpr uint64_t kToTheClose = ~uint64_t{0};
  // Bytes discarded so far while resynchronising, including the current scan.
  uint64_t garbage_bytes() const;
  // Heap bytes held by the parser's buffers and the message under construction
  // (capacity, approximately): at most about 3 * max_header_bytes + max_body_bytes
  // plus the parsed fields of one message, whatever the input (4 * max_header_bytes
  // while scanning a request line longer than twice the cap).
  size_t buffered_bytes() const;
  const ParserStats& stats() const { return stats_; }
  // The losses of sync during the last Feed/FeedGap/Finish call, in order. Not
  // reported: the skipping of leading bytes after StartMidStream.
  const std::vector<SyncLoss>& sync_losses() const { return sync_losses_; }

  // Abandon the head of a message after scanning this many times
  // max_header_bytes without finding its end.
  static constexpr uint64_t kMaxHeadScanFactor = 8;
  // Longest request method accepted at the start of a line.
  static constexpr size_t kMaxMethodLength = 32;
  // Longest chunk-size line (size, extensions) accepted.
  static constexpr size_t kMaxChunkLineLength = 4096;
  // Content-Length and chunk sizes above this are treated as invalid.
  static constexpr uint64_t kMaxBodyLength = uint64_t{1} << 40;

 private:
  enum class State : uint8_t {
    kSeek,          // looking for the start of a message
    kHead,          // inside the start line and header fields
    kBodyLength,    // body of known length (Content-Length)
    kChunkSize,     // chunk-size line
    kChunkData,     // chunk data
    kChunkDataEnd,  // CRLF after chunk data
    kTrailers,      // trailer section
    kBodyClose,     // body delimited by connection close
    kStopped,       // protocol switched: everything ignored
  };

  // Incremental check that the line at an expected message start can still be
  // a start line, so that garbage is noticed before its line ends.
  struct StartLineCheck {
    enum class Verdict { kMore, kReject };
    void Reset(ParseMode mode);
    Verdict Step(char c);
    uint8_t req = 0;   // request-line state (0: ruled out)
    uint8_t resp = 0;  // status-line state (0: ruled out)
    uint32_t req_count = 0;
    uint8_t resp_count = 0;
    uint32_t seen = 0;
    bool leading_cr = false;
  };

  uint64_t Abs(size_t pos) const { return chunk_abs_ + pos; }
  void BeginCall();
  void NoteSyncLoss(const ChunkMeta& at);

  // kSeek.
  void EnterSeekAt(uint64_t abs, size_t chunk_pos, bool in_sync, bool at_line_start);
  void SeekChunkStart();
  size_t SeekStep(std::string_view data, size_t pos);
  void SeekLoseSync();
  bool TryRequestAt(std::string_view data, size_t lf);
  void StartResponseAt(std::string_view data, size_t thirteenth);
  void BeginMessage(Message::Kind kind, uint64_t start_abs);
  void AppendLine(uint64_t abs, std::string_view part);
  // A request line longer than the head cap whose bytes all fit the grammar
  // (METHOD SP target SP HTTP/1.D): begins the request, its target cut.
  bool TryLongRequestAt(std::string_view line);
  void ResetLongLine();
  ChunkMeta MetaAt(uint64_t abs) const;

  // Heads, bodies, trailers.
  size_t FindSectionEnd(std::string_view data, size_t pos);
  size_t SectionScanEnd(std::string_view data) const;
  void AppendCapped(std::string* buf, std::string_view part) const;
  size_t HeadStep(std::string_view data, size_t pos, std::vector<Message>* out);
  void CompleteHead(std::string_view head, uint64_t total, size_t end, std::vector<Message>* out);
  size_t BodyLengthStep(std::string_view data, size_t pos, std::vector<Message>* out);
  size_t ChunkSizeStep(std::string_view data, size_t pos, std::vector<Message>* out);
  size_t ChunkDataStep(std::string_view data, size_t pos);
  size_t ChunkDataEndStep(std::string_view data, size_t pos, std::vector<Message>* out);
  size_t TrailersStep(std::string_view data, size_t pos, std::vector<Message>* out);
  size_t BodyCloseStep(std::string_view data, size_t pos);
  void AppendBody(std::string_view bytes);
  void SkipBody(uint64_t len);

  // A chunked message whose framing a gap took (see "Losing sync").
  void HoldLostChunked(uint64_t counted_to, const ChunkMeta& gap);
  size_t LostChunkedSeekStep(std::string_view data, size_t pos, std::vector<Message>* out);
  // End of the last chunk in data from pos (the index past it), or kNpos;
  // lost_match_ carries a partial match to the next call.
  size_t FindLastChunk(std::string_view data, size_t pos);
  void EmitLostChunked(bool complete, std::vector<Message>* out);

  // Ending messages.
  void Emit(Message* m, bool complete, std::vector<Message>* out);
  void EmitMessage(bool complete, std::vector<Message>* out);
  void EmitPartialHead(uint64_t total, std::vector<Message>* out);
  void DropMessage();
  // Gives up on the message in progress after malformed bytes (emitting it cut
  // short when `emit`) and resynchronises from `pos` in the current chunk.
  void AbandonMessage(size_t pos, bool emit, bool at_line_start, std::vector<Message>* out);

  ParseMode mode_;
  ParserOptions options_;
  const RequestLookup* lookup_;
  State state_ = State::kSeek;
  ParserStats stats_;
  bool switched_ = false;
  bool rejected_stream_start_ = false;

  // Position in the stream.
  uint64_t stream_pos_ = 0;        // absolute offset of the next byte to arrive
  uint64_t chunk_abs_ = 0;         // absolute offset of the chunk being parsed
  ChunkMeta meta_;                 // the chunk being parsed
  size_t final_in_call_ = 0;       // final responses completed in this call
  uint64_t messages_at_call_ = 0;  // stats_.messages when this call began
  std::vector<SyncLoss> sync_losses_;

  // kSeek.
  bool in_sync_ = true;           // a message should start at the next non-blank line
  bool at_stream_start_ = true;   // nothing parsed and nothing lost yet
  bool gap_before_ = false;       // the next message follows lost or skipped bytes
  bool error_counted_ = false;    // this episode already counted a parse error
  bool line_at_boundary_ = true;  // the current line starts at a true boundary
  uint64_t line_abs_ = 0;         // absolute offset of the current line
  uint64_t line_len_ = 0;         // bytes of the current line so far (no LF)
  char line_first_ = 0;           // first byte of the current line
  size_t line_start_chunk_ = 0;   // where the current line starts in this chunk
  std::string line_buf_;          // the current line's bytes from earlier chunks
  uint64_t line_buf_abs_ = 0;     // absolute offset of line_buf_[0]
  std::vector<std::pair<uint64_t, ChunkMeta>> line_metas_;  // chunk starts in the line
  // A line at a boundary longer than 2 * max_header_bytes: its first bytes
  // (kept when line_buf_ first drops some), and whether every byte dropped after
  // them could be part of a request-target.
  std::string line_head_;
  bool long_line_ok_ = true;
  uint64_t content_abs_ = 0;                                // first non-blank byte of this episode
  bool has_content_ = false;
  StartLineCheck check_;
  bool check_active_ = true;
  uint8_t resp_match_ = 0;  // bytes of "HTTP/1.D SP DDD" matched so far

  // The message under construction.
  Message msg_;
  // kHead and kTrailers: the section being scanned for its empty line.
  std::string head_buf_;
  bool head_in_place_ = false;  // head bytes are all in the current chunk, unbuffered
  size_t head_start_ = 0;       // where the head starts in the current chunk (in place)
  uint64_t head_abs_ = 0;       // absolute offset of the section's first byte
  uint64_t section_line_len_ = 0;
  char section_prev_ = '\n';
  // Bodies.
  uint64_t remaining_ = 0;  // kBodyLength / kChunkData
  std::string chunk_line_;
  bool chunk_line_long_ = false;
  uint64_t chunk_line_bytes_ = 0;
  bool saw_cr_ = false;  // kChunkDataEnd
  // A chunked message held while kSeek looks for its last chunk.
  Message lost_;
  bool lost_active_ = false;
  uint64_t lost_from_ = 0;  // stream offset from which lost_'s body is not counted yet
  ChunkMeta lost_at_;       // the gap that took its framing
  uint64_t lost_seen_ns_ = 0;  // when its last bytes (or gap) came
  uint8_t lost_match_ = 0;  // bytes of CRLF "0" CRLF CRLF matched so far
};

// Case-insensitive ASCII comparison of header names.
bool HeaderNameEquals(std::string_view a, std::string_view b);
// The value of the first header named `name` (case-insensitive), or nullptr.
const std::string* FindHeader(const std::vector<Header>& headers, std::string_view name);

}  // namespace httptraced::http

#endif  // HTTPTRACED_HTTP_PARSER_H_
