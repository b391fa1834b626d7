#include "output/sink_event.h"

#include <catch2/catch.hpp>

#include "output/test_support.h"

namespace httptraced::output {
namespace {

using testing::FakeClock;

TEST_CASE("OutageTracker reports a condition once and sums the losses") {
  FakeClock clock;
  OutageTracker tracker(clock.AsClock());
  const absl::Status enospc = absl::ResourceExhaustedError(
      "write /l/httptraced.json: No space left on device");
  const absl::Status gone =
      absl::NotFoundError("create log directory /l: No such file");

  CHECK_FALSE(tracker.Succeeded().has_value());
  absl::Status first = tracker.Failed(enospc, 3, true);
  CHECK(first.code() == absl::StatusCode::kResourceExhausted);
  CHECK(first.message() ==
        "write /l/httptraced.json: No space left on device (3 records lost; "
        "further losses from this cause are only counted until output "
        "recovers)");
  CHECK(tracker.failing());
  clock.now += absl::Seconds(5);
  CHECK(tracker.Failed(enospc, 4, true).ok());  // same condition: quiet
  CHECK(tracker.outage_records_lost() == 7);
  // A different cause is a new condition; without records it is the cause.
  CHECK(tracker.Failed(gone, 0, false) == gone);
  CHECK(tracker.Failed(gone, 2, true).ok());
  clock.now += absl::Seconds(5);

  std::optional<SinkEvent> recovered = tracker.Succeeded();
  REQUIRE(recovered.has_value());
  CHECK(recovered->kind == SinkEvent::Kind::kRecovered);
  CHECK(recovered->status == gone);
  CHECK(recovered->records_lost == 9);
  CHECK(recovered->failed_writes == 3);
  CHECK(recovered->duration == absl::Seconds(10));
  CHECK(recovered->ToString() ==
        "output recovered after 10s: 9 records lost in 3 failed writes "
        "(cause: create log directory /l: No such file)");
  CHECK_FALSE(tracker.failing());
  CHECK_FALSE(tracker.Succeeded().has_value());
  // The same cause after recovery is reported again.
  CHECK_FALSE(tracker.Failed(enospc, 1, true).ok());
}

TEST_CASE("WarningDeduper suppresses consecutive repeats only") {
  WarningDeduper dedup;
  CHECK(dedup.ShouldReport("gzip: No space left on device"));
  CHECK_FALSE(dedup.ShouldReport("gzip: No space left on device"));
  CHECK(dedup.ShouldReport("prune: Permission denied"));
  CHECK(dedup.ShouldReport("gzip: No space left on device"));
  dedup.Clear();
  CHECK(dedup.ShouldReport("gzip: No space left on device"));
}

TEST_CASE("ConditionKey drops the file names") {
  CHECK(ConditionKey("gzip", absl::ResourceExhaustedError(
                                 "gzip: write /l/.x.tmp: No space left on "
                                 "device")) == "gzip: No space left on device");
  CHECK(ConditionKey("rotate", absl::InternalError("no colon")) ==
        "rotate: no colon");
  CHECK(ErrnoError(ENOSPC, "write x").message() ==
        "write x: No space left on device");
  CHECK(ErrnoError(ENOSPC, "write x").code() ==
        absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace httptraced::output
