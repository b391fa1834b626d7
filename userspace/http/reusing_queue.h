// A FIFO that keeps its storage: a std::vector read from a moving head.
//
// The stitcher's queue of requests waiting for their responses holds one entry
// most of the time (request in, response out). std::deque allocates and frees
// a node for nearly every push of an element as large as a Message; this
// queue reuses its vector's capacity: popping the last element empties the
// vector without freeing it, and dead entries at the front are compacted away
// only when they are at least half of it (amortised O(1) per element).
//
// A popped element is destroyed only at the next clear() or compaction: move
// out what it owns before popping it (the stitcher moves each request out).
#ifndef HTTPTRACED_HTTP_REUSING_QUEUE_H_
#define HTTPTRACED_HTTP_REUSING_QUEUE_H_

#include <cassert>
#include <cstddef>
#include <iterator>
#include <utility>
#include <vector>

namespace httptraced::http {

template <typename T>
class ReusingQueue {
 public:
  using iterator = typename std::vector<T>::iterator;
  using const_iterator = typename std::vector<T>::const_iterator;

  bool empty() const { return head_ == items_.size(); }
  size_t size() const { return items_.size() - head_; }

  // A new element, value-initialised, at the back.
  T& emplace_back() { return items_.emplace_back(); }

  T& front() {
    assert(!empty());
    return items_[head_];
  }
  const T& front() const {
    assert(!empty());
    return items_[head_];
  }
  T& operator[](size_t i) { return items_[head_ + i]; }
  const T& operator[](size_t i) const { return items_[head_ + i]; }

  void pop_front() {
    assert(!empty());
    ++head_;
    if (head_ == items_.size()) {
      clear();
    } else if (head_ >= kCompactAt && head_ * 2 >= items_.size()) {
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }

  // Destroys every element; the storage stays for the next ones.
  void clear() {
    items_.clear();
    head_ = 0;
  }

  iterator begin() { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
  iterator end() { return items_.end(); }
  const_iterator begin() const { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
  const_iterator end() const { return items_.end(); }

  // Elements held in storage, the dead ones before the head included (tests).
  size_t stored() const { return items_.size(); }

 private:
  // Below this many dead entries the front is left alone: compacting a queue
  // that drains to empty every few pushes would only move live elements.
  static constexpr size_t kCompactAt = 16;

  std::vector<T> items_;
  size_t head_ = 0;  // index of the front element in items_
};

}  // namespace httptraced::http

#endif  // HTTPTRACED_HTTP_REUSING_QUEUE_H_
