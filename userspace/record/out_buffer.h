// A growable byte buffer for building records in place, whose room past the
// contents is left uninitialised.
//
// std::string cannot hand out room without writing it first (resize() zeroes
// every byte it adds; resize_and_overwrite is C++23), and a record writer
// that reserves a few KiB per record would zero them on every record only to
// overwrite them. Here a writer asks for room with Reserve(), fills it through
// data() and then sets the size to what it wrote.
#ifndef HTTPTRACED_RECORD_OUT_BUFFER_H_
#define HTTPTRACED_RECORD_OUT_BUFFER_H_

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>

namespace httptraced::record {

class OutBuffer {
 public:
  OutBuffer() = default;
  explicit OutBuffer(size_t capacity) { Reserve(capacity); }
  // A moved-from buffer is empty, with no capacity.
  OutBuffer(OutBuffer&& other) noexcept
      : data_(std::move(other.data_)),
        size_(std::exchange(other.size_, 0)),
        capacity_(std::exchange(other.capacity_, 0)) {}
  OutBuffer& operator=(OutBuffer&& other) noexcept {
    data_ = std::move(other.data_);
    size_ = std::exchange(other.size_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
    return *this;
  }
  OutBuffer(const OutBuffer&) = delete;
  OutBuffer& operator=(const OutBuffer&) = delete;

  char* data() { return data_.get(); }
  const char* data() const { return data_.get(); }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  bool empty() const { return size_ == 0; }
  std::string_view view() const { return std::string_view(data_.get(), size_); }

  void clear() { size_ = 0; }

  // Makes the capacity at least n, keeping the contents (the first size()
  // bytes). Grows at least twofold, so appending is amortised constant time.
  void Reserve(size_t n) {
    if (n <= capacity_) return;
    const size_t capacity = std::max(n, capacity_ * 2);
    auto grown = std::make_unique_for_overwrite<char[]>(capacity);
    if (size_ > 0) std::memcpy(grown.get(), data_.get(), size_);
    data_ = std::move(grown);
    capacity_ = capacity;
  }

  // Makes the first n bytes the contents: after a writer filled data()[size()]
  // up to data()[n] (n <= capacity()), or to cut the contents back.
  void SetSize(size_t n) {
    assert(n <= capacity_);
    size_ = n;
  }

  void Append(std::string_view s) {
    Reserve(size_ + s.size());
    if (!s.empty()) std::memcpy(data_.get() + size_, s.data(), s.size());
    size_ += s.size();
  }

 private:
  std::unique_ptr<char[]> data_;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

}  // namespace httptraced::record

#endif  // HTTPTRACED_RECORD_OUT_BUFFER_H_
