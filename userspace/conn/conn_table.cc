#include "conn/conn_table.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace httptraced::conn {

// One connection: two reassembled directions feeding one HTTP session.
class ConnTable::Tracker {
 public:
  Tracker(ConnInfo info, const ConnTableOptions& options, DataStreamStats* stream_counters)
      : info_(std::move(info)),
        session_(options.session, info_.role),
        streams_{DataStream(options.stream, stream_counters),
                 DataStream(options.stream, stream_counters)} {}

  // Ends a direction's reassembled bytes in the session. Made where a stream
  // is fed (two members per tracker would be 48 of its bytes, times 10k).
  class Feed final : public StreamConsumer {
   public:
    Feed(Tracker* t, int d) : t_(t), dir_(static_cast<http::Direction>(d)) {}
    void OnBytes(std::string_view bytes, const http::ChunkMeta& meta) override {
      t_->session_.OnData(dir_, bytes, meta);
    }
    void OnGap(uint64_t len, const http::ChunkMeta& meta) override {
      t_->session_.OnGap(dir_, len, meta);
    }

   private:
    Tracker* t_;
    http::Direction dir_;
  };

  ConnInfo info_;
  http::HttpSession session_;
  DataStream streams_[2];
  uint64_t last_event_ns_ = 0;
  // Added to the kernel's stream positions: non-zero once the kernel lost the
  // connection and found it again, counting from 0 under a new generation.
  uint64_t base_[2] = {0, 0};
  // Spared once from eviction or expiry because the kernel had counted bytes
  // not consumed yet (not again: a lost event would keep it ahead for ever).
  bool reprieved_ = false;
  bool ignored_ = false;  // not HTTP / switched protocols: events are dropped until close
  // End (kernel position) of the last range sent with SkipBody, per direction.
  uint64_t skip_until_[2] = {0, 0};
  bool has_skips() const { return (skip_until_[0] | skip_until_[1]) != 0; }
};

ConnTable::ConnTable(ConnTableOptions options, ExchangeSink& sink, ConnController& controller)
    : options_(std::move(options)), sink_(sink), controller_(controller) {
  options_.session.recycler = &recycler_;
}

ConnTable::~ConnTable() = default;

namespace {
uint64_t FdOf(const ConnKey& key) {
  return (uint64_t{key.tgid} << 32) | static_cast<uint32_t>(key.fd);
}
}  // namespace

void ConnTable::OnOpen(const bpf::OpenEvent& ev, std::string executable, std::string container_id) {
  if (ev.info.family == AF_UNIX && !options_.unix_names.empty() &&
      !UnixNameListed(ev.info.local.text) && !UnixNameListed(ev.info.remote.text)) {
    // Not a socket --unix_path names: the kernel stops copying it, and what
    // it sent already (raced ahead of this event, or on its way) is dropped
    // by an ignored tracker, kept until the close as a not-HTTP one is.
    auto& slot = conns_[ev.info.key];
    if (slot == nullptr) {
      slot = std::make_unique<Tracker>(ev.info, options_, &stream_stats_);
      newest_gen_[FdOf(ev.info.key)] = ev.info.key.gen;
      ++stats_.opened;  // a tracker like any other, until its close
    }
    slot->last_event_ns_ = ev.info.open_ts_ns;
    if (!slot->ignored_) {
      slot->ignored_ = true;
      ++stats_.unix_filtered;
      controller_.StopTracing(ev.info.key);
    }
    if (conns_.size() > options_.max_connections) EvictIdlest(conns_.size() / 10 + 1);
    return;
  }
  // Data raced ahead of its open event: keep what we have.
  if (conns_.contains(ev.info.key)) return;
  if (ev.info.origin == Origin::kDiscovered && TryResume(ev)) return;
  auto& slot = conns_[ev.info.key];
  newest_gen_[FdOf(ev.info.key)] = ev.info.key.gen;
  ConnInfo info = ev.info;
  info.executable = std::move(executable);
  info.container_id = std::move(container_id);
  // Formatted once here rather than for every record (a Unix socket's name
  // was decoded as text).
  if (info.family != AF_UNIX) {
    info.local.text = AddressText(info.family, info.local.addr);
    info.remote.text = AddressText(info.family, info.remote.addr);
  }
  slot = std::make_unique<Tracker>(std::move(info), options_, &stream_stats_);
  slot->last_event_ns_ = ev.info.open_ts_ns;
  slot->streams_[0].StartAt(ev.start_pos[0]);
  slot->streams_[1].StartAt(ev.start_pos[1]);
  ++stats_.opened;
  if (conns_.size() > options_.max_connections) EvictIdlest(conns_.size() / 10 + 1);
}

bool ConnTable::UnixNameListed(std::string_view name) const {
  if (name.empty()) return false;
  for (const std::string& listed : options_.unix_names) {
    if (listed == name) return true;
  }
  return false;
}

ConnTable::Tracker& ConnTable::GetOrCreate(const ConnKey& key, uint64_t ts_ns) {
  auto& slot = conns_[key];
  if (slot == nullptr) {
    // Its open event was lost (ring buffer full) or it was evicted: carry on
    // with what the key tells.
    ConnInfo info;
    info.key = key;
    info.open_ts_ns = ts_ns;
    slot = std::make_unique<Tracker>(std::move(info), options_, &stream_stats_);
    newest_gen_[FdOf(key)] = key.gen;
    ++stats_.unknown_conn;
    ++stats_.opened;
  }
  return *slot;
}

bool ConnTable::TryResume(const bpf::OpenEvent& ev) {
  const ConnKey& key = ev.info.key;
  const auto newest = newest_gen_.find(FdOf(key));
  if (newest == newest_gen_.end() || newest->second >= key.gen) return false;
  const auto it = conns_.find(ConnKey{.tgid = key.tgid, .fd = key.fd, .gen = newest->second});
  if (it == conns_.end()) return false;
  Tracker& t = *it->second;
  const ConnInfo& was = t.info_;
  // The same socket of the same process: no close was seen for it, and the
  // same endpoints are on the same fd. (Its open event told them; a tracker
  // made up from data alone is not resumed.)
  // A Unix socket's names are shared by every connection to its server
  // (and empty for a socketpair): they tell no two sockets apart.
  if (was.family == AF_UNIX) return false;
  if (t.ignored_ || was.family == 0 || was.family != ev.info.family ||
      was.local.addr != ev.info.local.addr || was.local.port != ev.info.local.port ||
      was.remote.addr != ev.info.remote.addr || was.remote.port != ev.info.remote.port ||
      was.proc_start != ev.info.proc_start || was.exec_id != ev.info.exec_id) {
    return false;
  }
  // Its stream must be known to end where its last event did: no event lost
  // to a full ring buffer since (or the next bytes would be glued on).
  const uint64_t drops = controller_.KernelDrops();
  if (drops != drops_seen_) {
    drops_seen_ = drops;
    drops_seen_at_ns_ = ev.info.open_ts_ns;
    return false;
  }
  if (t.last_event_ns_ <= drops_seen_at_ns_) return false;

  std::unique_ptr<Tracker> tracker = std::move(it->second);
  const ConnKey old_key = it->first;
  Erase(it);
  // Ranges were in the old generation's positions.
  if (tracker->has_skips()) controller_.ClearSkips(old_key);
  tracker->skip_until_[0] = tracker->skip_until_[1] = 0;
  // Events of the old generation still in flight are not a new connection.
  IgnoreLateEvents(old_key);
  const http::ChunkMeta meta{.ts_ns = ev.info.open_ts_ns, .tid = ev.tid};
  for (int d = 0; d < 2; ++d) {
    DataStream& s = tracker->streams_[d];
    Tracker::Feed feed(tracker.get(), d);
    s.FlushHoles(0, /*force=*/true, feed);
    tracker->base_[d] = s.next_pos();
    // Bytes the kernel saw again before it knew the stream was HTTP: lost
    // to us, a gap.
    s.SkipLost(ev.start_pos[d], meta, feed);
  }
  tracker->last_event_ns_ = ev.info.open_ts_ns;
  Drain(*tracker);
  conns_[key] = std::move(tracker);
  newest_gen_[FdOf(key)] = key.gen;
  ++stats_.resumed;
  return true;
}

bool ConnTable::Reprieve(const ConnKey& key, Tracker& t) {
  if (t.reprieved_) return false;
  uint64_t consumed[2];
  for (int d = 0; d < 2; ++d) consumed[d] = t.streams_[d].end_pos() - t.base_[d];
  if (!controller_.KernelAhead(key, consumed)) return false;
  // Its events are on their way: it is not idle. Forgetting it now would drop
  // them as stale and split its exchange.
  t.reprieved_ = true;
  ++stats_.reprieved;
  return true;
}

void ConnTable::Erase(absl::flat_hash_map<ConnKey, std::unique_ptr<Tracker>>::iterator it) {
  const ConnKey key = it->first;
  if (it->second != nullptr && it->second->has_skips()) controller_.ClearSkips(key);
  conns_.erase(it);
  holes_.erase(key);
  const auto newest = newest_gen_.find(FdOf(key));
  if (newest != newest_gen_.end() && newest->second == key.gen) newest_gen_.erase(newest);
}

void ConnTable::OnData(const bpf::DataEvent& ev, uint64_t now_ns) {
  now_ns_ = std::max(now_ns_, now_ns);
  newest_event_ns_ = std::max(newest_event_ns_, ev.ts_ns);
  if (!forgotten_.empty() && forgotten_.contains(ev.key)) {
    ++stats_.stale_events;
    return;
  }
  Tracker& t = GetOrCreate(ev.key, ev.ts_ns);
  t.last_event_ns_ = ev.ts_ns;
  if (t.ignored_) return;
  const int d = static_cast<int>(ev.dir);
  const http::ChunkMeta meta{.ts_ns = ev.ts_ns, .tid = ev.tid};
  Tracker::Feed feed(&t, d);
  t.streams_[d].Add(ev.pos + t.base_[d], ev.payload, ev.skip, ev.stream_start, meta, now_ns,
                    feed);

  if (t.streams_[d].has_pending()) holes_.insert(ev.key);
  if (options_.skip_body_min_bytes != 0) MaybeSkipBody(ev.key, t, d);
  Drain(t);
  // With many connections, memory matters more than the cost of bringing a
  // session back: hibernate as soon as an exchange is done.
  if (conns_.size() > options_.eager_hibernate_above && !t.ignored_ && !t.session_.busy() &&
      t.session_.Hibernate()) {
    ++stats_.hibernated;
  }
  if (t.session_.not_http() || t.session_.switched_protocols()) {
    ++(t.session_.not_http() ? stats_.not_http : stats_.switched);
    t.ignored_ = true;
    controller_.StopTracing(ev.key);
  }
  if (conns_.size() > options_.max_connections) EvictIdlest(conns_.size() / 10 + 1);
}

void ConnTable::MaybeSkipBody(const ConnKey& key, Tracker& t, int d) {
  const auto dir = static_cast<http::Direction>(d);
  const http::BodySkip skip = t.session_.UnkeptBodyAhead(dir);
  if (skip.len < options_.skip_body_min_bytes) return;
  // In the kernel's positions: without what a resumption added.
  const uint64_t from = t.streams_[d].next_pos() - t.base_[d] + skip.keep;
  const uint64_t until = skip.len > ~from ? ~uint64_t{0} : from + skip.len;  // saturated
  if (until <= t.skip_until_[d]) return;  // this body was announced already
  t.skip_until_[d] = until;
  controller_.SkipBody(key, dir, from, until);
  ++stats_.body_skips;
}

void ConnTable::Finish(Tracker& t, const uint64_t* end_pos, uint64_t ts_ns) {
  const http::ChunkMeta meta{.ts_ns = ts_ns, .tid = 0};
  if (!t.ignored_) {
    for (int d = 0; d < 2; ++d) {
      Tracker::Feed feed(&t, d);
      if (end_pos != nullptr) {
        t.streams_[d].Finish(end_pos[d] + t.base_[d], meta, feed);
      } else {
        t.streams_[d].FlushHoles(0, /*force=*/true, feed);
      }
    }
    t.session_.OnClose(meta);
  }
  Drain(t);
  stats_.parse_errors += t.session_.stats().parse_errors;
}

void ConnTable::OnClose(const bpf::CloseEvent& ev) {
  if (!forgotten_.empty()) forgotten_.erase(ev.key);
  auto it = conns_.find(ev.key);
  if (it == conns_.end()) return;
  Finish(*it->second, ev.end_pos, ev.ts_ns);
  Erase(it);
  ++stats_.closed;
}

void ConnTable::OnProcessExit(const bpf::ExitEvent& ev) {
  exits_.push_back(ev);
  exited_tgids_.insert(ev.tgid);
  // A storm of exits between two ticks: walk the table now rather than queue
  // without bound.
  constexpr size_t kMaxQueuedExits = 4096;
  if (exits_.size() >= kMaxQueuedExits) EndExitedProcesses();
}

void ConnTable::EndExitedProcesses() {
  std::vector<std::pair<ConnKey, uint64_t>> ended;  // and the exit's time
  for (const auto& [key, t] : conns_) {
    if (!exited_tgids_.contains(key.tgid)) continue;
    for (const bpf::ExitEvent& e : exits_) {
      // The same process, not a later one that got its pid: the start time
      // the kernel reported with the connection, or (its open event lost)
      // a first sight before the exit.
      const ConnInfo& info = t->info_;
      if (e.tgid == key.tgid && (info.proc_start != 0 ? info.proc_start == e.proc_start
                                                      : info.open_ts_ns <= e.ts_ns)) {
        ended.emplace_back(key, e.ts_ns);
        break;
      }
    }
  }
  exits_.clear();
  exited_tgids_.clear();
  for (const auto& [key, ts] : ended) {
    ForgetConn(conns_.find(key), ts);
    ++stats_.process_exited;
  }
}

void ConnTable::Tick(uint64_t now_ns) {
  now_ns_ = std::max(now_ns_, now_ns);
  if (!exits_.empty()) EndExitedProcesses();
  LetGoOfForgotten();
  // Holes are aged often, but only where there are some.
  for (auto it = holes_.begin(); it != holes_.end();) {
    auto conn = conns_.find(*it);
    if (conn == conns_.end()) {
      holes_.erase(it++);
      continue;
    }
    Tracker& t = *conn->second;
    bool pending = false;
    for (int d = 0; d < 2; ++d) {
      if (t.streams_[d].has_pending()) {
        Tracker::Feed feed(&t, d);
        t.streams_[d].FlushHoles(now_ns, /*force=*/false, feed);
      }
      pending = pending || t.streams_[d].has_pending();
    }
    Drain(t);
    if (!pending) {
      holes_.erase(it++);
    } else {
      ++it;
    }
  }
  // Everything else once per sweep interval: a table of 10k idle connections
  // is not walked twenty times a second.
  if (now_ns - std::min(now_ns, last_sweep_ns_) < options_.sweep_interval_ns) return;
  last_sweep_ns_ = now_ns;
  const uint64_t request_deadline =
      now_ns > options_.request_timeout_ns ? now_ns - options_.request_timeout_ns : 0;
  std::vector<ConnKey> idle;
  for (auto& [key, t] : conns_) {
    if (!t->ignored_ && t->session_.busy()) {
      t->session_.ExpireOlderThan(request_deadline);
      Drain(*t);
    }
    // A connection quiet for a sweep keeps only what spans exchanges.
    if (!t->ignored_ && now_ns - std::min(now_ns, t->last_event_ns_) >= options_.sweep_interval_ns &&
        !t->session_.hibernating() && t->session_.Hibernate()) {
      ++stats_.hibernated;
    }
    if (now_ns - std::min(now_ns, t->last_event_ns_) > options_.conn_idle_timeout_ns) {
      idle.push_back(key);
    }
  }
  for (const ConnKey& key : idle) {
    auto it = conns_.find(key);
    if (Reprieve(key, *it->second)) continue;
    ForgetConn(it, now_ns);
    ++stats_.expired;
  }
}

void ConnTable::ForgetConn(absl::flat_hash_map<ConnKey, std::unique_ptr<Tracker>>::iterator it,
                           uint64_t ts_ns) {
  const ConnKey key = it->first;
  Finish(*it->second, nullptr, ts_ns);
  Erase(it);
  controller_.Forget(key);
  IgnoreLateEvents(key);
}

void ConnTable::IgnoreLateEvents(const ConnKey& key) {
  constexpr size_t kMaxForgotten = 65536;
  if (forgotten_.try_emplace(key, now_ns_).second) forgotten_order_.emplace_back(key, now_ns_);
  while (forgotten_order_.size() > kMaxForgotten) PopForgotten();
}

void ConnTable::PopForgotten() {
  // Its own entry only: one closed since (OnClose) and forgotten again is newer.
  const auto& [key, at] = forgotten_order_.front();
  const auto it = forgotten_.find(key);
  if (it != forgotten_.end() && it->second == at) forgotten_.erase(it);
  forgotten_order_.pop_front();
}

void ConnTable::LetGoOfForgotten() {
  // Events are read in the order they were reserved in the ring, within
  // microseconds of their time: one made a second after a key was forgotten
  // comes after every event made before.
  constexpr uint64_t kMarginNs = 1'000'000'000;
  while (!forgotten_order_.empty() &&
         forgotten_order_.front().second + kMarginNs < newest_event_ns_) {
    PopForgotten();
  }
}

void ConnTable::Drain(Tracker& t) {
  if (t.info_.role == http::Role::kUnknown) t.info_.role = t.session_.role();
  for (http::Exchange& ex : t.session_.ready()) {
    sink_.OnExchange(t.info_, std::move(ex));
    recycler_.Reclaim(ex);
  }
  t.session_.ready().clear();
}

void ConnTable::EvictIdlest(size_t count) {
  // Connections between exchanges go first, the idlest of them first; one
  // with an exchange in flight only when there are not enough of those. (A
  // client that waits long for a response, or is not scheduled for a while,
  // must not lose its exchange to connections that are merely newer.)
  struct Candidate {
    bool busy;
    uint64_t last_event_ns;
    ConnKey key;
  };
  std::vector<Candidate> by_age;
  by_age.reserve(conns_.size());
  for (const auto& [key, t] : conns_) {
    by_age.push_back({!t->ignored_ && t->session_.busy(), t->last_event_ns_, key});
  }
  count = std::min(count, by_age.size());
  std::nth_element(by_age.begin(), by_age.begin() + static_cast<std::ptrdiff_t>(count),
                   by_age.end(), [](const Candidate& a, const Candidate& b) {
                     return a.busy != b.busy ? b.busy : a.last_event_ns < b.last_event_ns;
                   });
  for (size_t i = 0; i < count; ++i) {
    auto it = conns_.find(by_age[i].key);
    if (Reprieve(it->first, *it->second)) continue;
    ForgetConn(it, it->second->last_event_ns_);
    ++stats_.evicted;
  }
}

void ConnTable::FinishAll() {
  for (auto& [key, t] : conns_) Finish(*t, nullptr, t->last_event_ns_);
  stats_.closed += conns_.size();
  conns_.clear();
  holes_.clear();
  newest_gen_.clear();
}

ConnTableStats ConnTable::stats() const {
  ConnTableStats out = stats_;
  out.gaps = stream_stats_.gaps;
  out.gap_bytes = stream_stats_.gap_bytes;
  out.uncopied = stream_stats_.uncopied;
  out.uncopied_bytes = stream_stats_.uncopied_bytes;
  for (const auto& [key, t] : conns_) {
    out.parse_errors += t->session_.stats().parse_errors;
  }
  return out;
}

}  // namespace httptraced::conn
