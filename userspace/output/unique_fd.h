// RAII owner of a file descriptor.
#ifndef HTTPTRACED_OUTPUT_UNIQUE_FD_H_
#define HTTPTRACED_OUTPUT_UNIQUE_FD_H_

#include <unistd.h>

#include <utility>

namespace httptraced::output {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0)
      ::close(fd_);  // close(2) errors carry no actionable info here
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace httptraced::output

#endif  // HTTPTRACED_OUTPUT_UNIQUE_FD_H_
