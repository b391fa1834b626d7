// MessageRecycler: the heap storage of written messages, kept for the next ones.
//
// Every exchange the daemon records is parsed into fresh Messages and freed
// once its record is written. Much of that is allocator work: a field vector
// per message, a string per field value too long for the small-string buffer
// (Date, Last-Modified, ETag, User-Agent, Cookie ...), the body. The conn
// table gives each written exchange back here (Reclaim) and the parsers build
// the next messages in that storage (PrepareFields, PrepareBody), so in
// steady state a keep-alive exchange allocates nothing for them.
//
// A field vector comes back with its fields in it: the parser assigns the new
// fields over the old ones, whose strings keep their heap buffers, and cuts
// off those it did not reuse. That costs no more than building fresh fields
// (no string is moved or constructed), where taking fields out one by one
// would cost more than the allocations it saves.
//
// One recycler serves every connection of a table (not a parser's own: 10k
// idle connections must not each keep a spare message). What it keeps is
// bounded: at most kMaxVectors header vectors of each kind, of at most
// kMaxVectorCapacity fields, strings of at most kMaxFieldCapacity bytes in
// them (longer ones are freed), kMaxBodies bodies of at most
// kMaxBodyCapacity bytes.
//
// Not thread-safe: the table, its sessions and their parsers run on one thread.
#ifndef HTTPTRACED_HTTP_RECYCLER_H_
#define HTTPTRACED_HTTP_RECYCLER_H_

#include <cstddef>
#include <string>
#include <vector>

#include "http/message.h"

namespace httptraced::http {

class MessageRecycler {
 public:
  static constexpr size_t kMaxVectors = 32;
  static constexpr size_t kMaxVectorCapacity = 64;
  static constexpr size_t kMaxFieldCapacity = 256;
  static constexpr size_t kMaxBodies = 32;
  static constexpr size_t kMaxBodyCapacity = 65536;

  MessageRecycler() = default;
  MessageRecycler(const MessageRecycler&) = delete;
  MessageRecycler& operator=(const MessageRecycler&) = delete;

  // Takes the heap storage of the exchange's messages (header vectors with
  // their fields, body content; trailers are too rare to be worth it); what
  // is left is valid but unspecified.
  void Reclaim(Exchange& exchange);
  void Reclaim(Message& message);

  // For an empty *fields with no storage: the header vector of a reclaimed
  // message of the same kind, whose stale fields the caller overwrites and
  // cuts off (their strings' buffers are what is reused; a request's fields
  // look like the last request's far more than like a response's). Then, or
  // otherwise, room for `want` fields.
  void PrepareFields(std::vector<Header>* fields, Message::Kind kind, size_t want);
  // Gives an empty *content with less than `want` bytes of room a reclaimed
  // body's storage, or else room for `want` bytes.
  void PrepareBody(std::string* content, size_t want);

  // Heap bytes held for reuse (capacities), counted when asked: the
  // daemon's stats line reports it, so the hot path keeps no running count.
  size_t spare_bytes() const;
  size_t spare_vectors() const { return vectors_[0].size() + vectors_[1].size(); }
  size_t spare_bodies() const { return bodies_.size(); }

 private:
  using Fields = std::vector<Header>;
  void ReclaimFields(Fields& fields, std::vector<Fields>& spares);
  std::vector<Fields>& SparesFor(Message::Kind kind) {
    return vectors_[kind == Message::Kind::kRequest ? 0 : 1];
  }

  std::vector<Fields> vectors_[2];    // requests', responses'
  std::vector<std::string> bodies_;  // empty, with heap capacity
};

}  // namespace httptraced::http

#endif  // HTTPTRACED_HTTP_RECYCLER_H_
