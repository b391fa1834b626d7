#include "http/recycler.h"

#include <utility>

namespace httptraced::http {
namespace {

// What a std::string holds without a heap buffer (15 bytes in libstdc++).
const size_t kInlineCapacity = std::string().capacity();

// The heap bytes a string holds: its capacity past the inline buffer.
size_t HeapCapacity(const std::string& s) {
  return s.capacity() > kInlineCapacity ? s.capacity() : 0;
}

}  // namespace

void MessageRecycler::Reclaim(Exchange& exchange) {
  if (exchange.request) Reclaim(*exchange.request);
  if (exchange.response) Reclaim(*exchange.response);
}

void MessageRecycler::Reclaim(Message& message) {
  ReclaimFields(message.headers, SparesFor(message.kind));
  std::string& content = message.body.content;
  const size_t body_bytes = HeapCapacity(content);
  if (body_bytes > 0 && body_bytes <= kMaxBodyCapacity && bodies_.size() < kMaxBodies) {
    content.clear();
    bodies_.push_back(std::move(content));
  }
}

void MessageRecycler::ReclaimFields(Fields& fields, std::vector<Fields>& spares) {
  const size_t capacity = fields.capacity();
  if (capacity == 0 || capacity > kMaxVectorCapacity || spares.size() == kMaxVectors) return;
  for (Header& field : fields) {
    // A rare huge value (a cookie) is not worth keeping.
    if (field.name.capacity() > kMaxFieldCapacity) std::string().swap(field.name);
    if (field.value.capacity() > kMaxFieldCapacity) std::string().swap(field.value);
  }
  spares.push_back(std::move(fields));
}

void MessageRecycler::PrepareFields(std::vector<Header>* fields, Message::Kind kind,
                                    size_t want) {
  std::vector<Fields>& spares = SparesFor(kind);
  if (fields->capacity() == 0 && !spares.empty()) {
    *fields = std::move(spares.back());
    spares.pop_back();
  }
  if (fields->capacity() < want) fields->reserve(want);
}

void MessageRecycler::PrepareBody(std::string* content, size_t want) {
  if (!content->empty() || content->capacity() >= want) return;
  if (HeapCapacity(*content) == 0 && !bodies_.empty()) {
    *content = std::move(bodies_.back());
    bodies_.pop_back();
  }
  content->reserve(want);
}

size_t MessageRecycler::spare_bytes() const {
  size_t bytes = 0;
  for (const std::vector<Fields>& spares : vectors_) {
    bytes += spares.capacity() * sizeof(Fields);
    for (const Fields& fields : spares) {
      bytes += fields.capacity() * sizeof(Header);
      for (const Header& field : fields) {
        bytes += HeapCapacity(field.name) + HeapCapacity(field.value);
      }
    }
  }
  bytes += bodies_.capacity() * sizeof(std::string);
  for (const std::string& body : bodies_) bytes += HeapCapacity(body);
  return bytes;
}

}  // namespace httptraced::http
