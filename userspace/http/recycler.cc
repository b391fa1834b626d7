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
    spare_bytes_ += body_bytes;
    bodies_.push_back(std::move(content));
  }
}

void MessageRecycler::ReclaimFields(std::vector<Header>& fields,
                                    std::vector<SpareFields>& spares) {
  const size_t capacity = fields.capacity();
  if (capacity == 0 || capacity > kMaxVectorCapacity || spares.size() == kMaxVectors) return;
  size_t bytes = capacity * sizeof(Header);
  for (Header& field : fields) {
    for (std::string* s : {&field.name, &field.value}) {
      if (s->capacity() > kMaxFieldCapacity) {
        std::string().swap(*s);  // a rare huge value (a cookie): not worth keeping
      } else {
        bytes += HeapCapacity(*s);
      }
    }
  }
  spare_bytes_ += bytes;
  spares.push_back({std::move(fields), bytes});
}

void MessageRecycler::PrepareFields(std::vector<Header>* fields, Message::Kind kind,
                                    size_t want) {
  std::vector<SpareFields>& spares = SparesFor(kind);
  if (fields->capacity() == 0 && !spares.empty()) {
    SpareFields& spare = spares.back();
    *fields = std::move(spare.fields);
    spare_bytes_ -= spare.bytes;
    spares.pop_back();
  }
  if (fields->capacity() < want) fields->reserve(want);
}

void MessageRecycler::PrepareBody(std::string* content, size_t want) {
  if (!content->empty() || content->capacity() >= want) return;
  if (HeapCapacity(*content) == 0 && !bodies_.empty()) {
    *content = std::move(bodies_.back());
    bodies_.pop_back();
    spare_bytes_ -= content->capacity();
  }
  content->reserve(want);
}

}  // namespace httptraced::http
