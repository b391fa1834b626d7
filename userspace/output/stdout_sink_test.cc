#include "output/stdout_sink.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <thread>

#include "absl/strings/str_cat.h"
#include "output/test_support.h"
#include "output/unique_fd.h"

namespace httptraced::output {
namespace {

using testing::EventLog;
using testing::FakeClock;
using testing::Lines;

constexpr char kLaterRecovers[] =
    " records lost; further losses from this cause are only counted until "
    "output recovers)";

struct Pipe {
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    read_end.reset(fds[0]);
    write_end.reset(fds[1]);
  }
  // A non-blocking write end with one page of buffer.
  void MakeSmallNonBlocking() {
    REQUIRE(::fcntl(write_end.get(), F_SETPIPE_SZ, 4096) == 4096);
    REQUIRE(::fcntl(write_end.get(), F_SETFL, O_NONBLOCK) == 0);
  }
  // Everything currently buffered.
  std::string Drain() {
    REQUIRE(::fcntl(read_end.get(), F_SETFL, O_NONBLOCK) == 0);
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(read_end.get(), buf, sizeof(buf))) > 0)
      out.append(buf, n);
    return out;
  }
  UniqueFd read_end;
  UniqueFd write_end;
};

struct Fixture {
  explicit Fixture(int fd) {
    options.fd = fd;
    options.on_event = events.AsCallback();
  }
  StdoutSink Make() { return StdoutSink(options, clock.AsClock()); }
  FakeClock clock;
  EventLog events;
  StdoutSink::Options options;
};

TEST_CASE("StdoutSink writes a batch with one write(2)") {
  Pipe pipe;
  Fixture f(pipe.write_end.get());
  int calls = 0;
  f.options.write_fn = [&calls](int fd, const void* buf, size_t count) {
    ++calls;
    return ::write(fd, buf, count);
  };
  StdoutSink sink = f.Make();
  REQUIRE(sink.Write(Lines(0, 20)).ok());
  CHECK(calls == 1);
  CHECK(sink.Reopen().ok());
  CHECK(pipe.Drain() == Lines(0, 20));
  CHECK(sink.stats().records_written == 20);
  CHECK(sink.stats().bytes_written == 200);
  CHECK(sink.stats().records_lost == 0);
  CHECK(sink.stats().write_errors == 0);
  CHECK(sink.Write("").ok());
  CHECK(calls == 1);
}

TEST_CASE("StdoutSink retries short writes and EINTR") {
  Pipe pipe;
  Fixture f(pipe.write_end.get());
  int calls = 0;
  f.options.write_fn = [&calls](int fd, const void* buf,
                                size_t count) -> ssize_t {
    if (++calls % 3 == 1) {
      errno = EINTR;
      return -1;
    }
    return ::write(fd, buf, std::min<size_t>(count, 9));
  };
  StdoutSink sink = f.Make();
  REQUIRE(sink.Write(Lines(0, 10)).ok());
  CHECK(pipe.Drain() == Lines(0, 10));
  CHECK(calls == 12 + 6);  // ceil(100 / 9) writes, every third call EINTR
  CHECK(sink.stats().records_written == 10);
}

TEST_CASE("StdoutSink rejects a batch without a final newline") {
  Pipe pipe;
  Fixture f(pipe.write_end.get());
  StdoutSink sink = f.Make();
  CHECK(sink.Write("a\nb") ==
        absl::InvalidArgumentError("StdoutSink::Write: batch does not end in "
                                   "a newline; 2 records dropped"));
  CHECK(sink.stats().records_lost == 2);
  CHECK(pipe.Drain() == "");
}

TEST_CASE("StdoutSink on a full pipe: gives up, keeps lines whole") {
  Pipe pipe;
  pipe.MakeSmallNonBlocking();
  Fixture f(pipe.write_end.get());
  f.options.max_block = absl::Milliseconds(20);
  StdoutSink sink = f.Make();

  // 6000 bytes into 4096 of room: 40 lines and 96 bytes of the 41st fit.
  absl::Status s = sink.Write(Lines(0, 60, 100));
  CHECK(s.code() == absl::StatusCode::kUnavailable);
  CHECK(s.message() ==
        absl::StrCat("write to fd ", pipe.write_end.get(),
                     ": output blocked (reader too slow) for 20ms (19",
                     kLaterRecovers));
  CHECK(sink.failing());
  CHECK(sink.stats().records_written == 40);
  CHECK(sink.stats().records_lost == 19);  // the 41st is still to be finished
  CHECK(sink.stats().bytes_written == 4096);
  CHECK(sink.Write(Lines(60, 1, 100)).ok());  // still full: quiet, counted
  CHECK(sink.stats().records_lost == 20);
  std::string got = pipe.Drain();
  CHECK(got == Lines(0, 41, 100).substr(0, 4096));

  SECTION("the next Write completes the line first") {
    REQUIRE(sink.Write(Lines(61, 2, 100)).ok());
    got += pipe.Drain();
    CHECK(got == Lines(0, 41, 100) + Lines(61, 2, 100));
    CHECK(sink.stats().records_written == 43);
  }
  SECTION("Tick completes the line") {
    sink.Tick();
    got += pipe.Drain();
    CHECK(got == Lines(0, 41, 100));
    CHECK(sink.stats().records_written == 41);
    sink.Tick();  // nothing left to do
    CHECK(pipe.Drain() == "");
  }
  CHECK_FALSE(sink.failing());
  REQUIRE(f.events.events.size() == 1);
  CHECK(f.events.events[0].kind == SinkEvent::Kind::kRecovered);
  CHECK(f.events.events[0].records_lost == 20);
  CHECK(f.events.events[0].failed_writes == 2);
  CHECK(sink.stats().records_lost == 20);
}

TEST_CASE("StdoutSink waits for a slow reader without losing anything") {
  Pipe pipe;
  pipe.MakeSmallNonBlocking();
  Fixture f(pipe.write_end.get());
  f.options.max_block = absl::Seconds(10);
  StdoutSink sink = f.Make();
  const std::string batch = Lines(0, 1000, 100);
  std::string got;
  std::thread reader([&] {
    char buf[1000];
    while (got.size() < batch.size()) {
      ssize_t n = ::read(pipe.read_end.get(), buf, sizeof(buf));
      if (n <= 0) break;
      got.append(buf, n);
    }
  });
  absl::Status s = sink.Write(batch);
  reader.join();
  CHECK(s.ok());
  CHECK(got == batch);
  CHECK(sink.stats().records_written == 1000);
  CHECK(sink.stats().records_lost == 0);
}

TEST_CASE("StdoutSink reports a closed reader once") {
  struct sigaction ignore = {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction old = {};
  REQUIRE(::sigaction(SIGPIPE, &ignore, &old) == 0);
  Pipe pipe;
  pipe.read_end.reset();
  Fixture f(pipe.write_end.get());
  StdoutSink sink = f.Make();
  absl::Status s = sink.Write("a\nb\n");
  CHECK(s.message() == absl::StrCat("write to fd ", pipe.write_end.get(),
                                    ": Broken pipe (2", kLaterRecovers));
  CHECK(sink.Write("c\n").ok());
  CHECK(sink.stats().records_lost == 3);
  CHECK(sink.stats().write_errors == 2);
  CHECK(f.events.events.empty());
  ::sigaction(SIGPIPE, &old, nullptr);
}

}  // namespace
}  // namespace httptraced::output
