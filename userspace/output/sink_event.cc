#include "output/sink_event.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace httptraced::output {

std::string SinkEvent::ToString() const {
  switch (kind) {
    case Kind::kFailing:
      return absl::StrCat("output failing: ", status.message());
    case Kind::kRecovered:
      return absl::StrCat("output recovered after ",
                          absl::FormatDuration(duration), ": ", records_lost,
                          " records lost in ", failed_writes,
                          " failed writes (cause: ", status.message(), ")");
    case Kind::kWarning:
      return absl::StrCat("output warning: ", status.message());
  }
  return "";
}

absl::Status OutageTracker::Failed(const absl::Status& cause, uint64_t records,
                                   bool count_failed_write) {
  const bool new_condition = !failing_ || cause != cause_;
  if (!failing_) {
    failing_ = true;
    since_ = clock_();
    records_lost_ = 0;
    failed_writes_ = 0;
  }
  cause_ = cause;
  records_lost_ += records;
  if (count_failed_write) ++failed_writes_;
  if (!new_condition) return absl::OkStatus();
  if (records == 0) return cause;
  return absl::Status(
      cause.code(),
      absl::StrCat(cause.message(), " (", records,
                   " records lost; further losses from this cause are only "
                   "counted until output recovers)"));
}

std::optional<SinkEvent> OutageTracker::Succeeded() {
  if (!failing_) return std::nullopt;
  SinkEvent event;
  event.kind = SinkEvent::Kind::kRecovered;
  event.status = std::exchange(cause_, absl::OkStatus());
  event.records_lost = std::exchange(records_lost_, 0);
  event.failed_writes = std::exchange(failed_writes_, 0);
  event.duration = clock_() - since_;
  failing_ = false;
  return event;
}

bool WarningDeduper::ShouldReport(absl::string_view key) {
  if (!last_.empty() && key == last_) return false;
  last_ = std::string(key);
  return true;
}

std::string ConditionKey(absl::string_view op, const absl::Status& status) {
  absl::string_view msg = status.message();
  const size_t colon = msg.rfind(": ");
  if (colon != absl::string_view::npos) msg.remove_prefix(colon + 2);
  return absl::StrCat(op, ": ", msg);
}

absl::Status ErrnoError(int err, absl::string_view what) {
  return absl::ErrnoToStatus(err, what);
}

}  // namespace httptraced::output
