// ConnTable: every traced connection's state in the daemon, keyed by the
// kernel's connection identity (tgid, fd, generation). Events go in; finished
// exchanges come out through an ExchangeSink.
#ifndef HTTPTRACED_CONN_CONN_TABLE_H_
#define HTTPTRACED_CONN_CONN_TABLE_H_

#include <cstdint>
#include <deque>
#include <vector>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "bpf/event.h"
#include "conn/conn_info.h"
#include "conn/data_stream.h"
#include "http/recycler.h"
#include "http/session.h"

namespace httptraced::conn {

class ExchangeSink {
 public:
  virtual ~ExchangeSink() = default;
  // conn.role is the session's role once known (the kernel may not have known it).
  // The sink may move out what it keeps; the table reuses the storage of what
  // is left once the call returns.
  virtual void OnExchange(const ConnInfo& conn, http::Exchange&& exchange) = 0;
};

// Lets the table act on the kernel's view of a connection.
class ConnController {
 public:
  virtual ~ConnController() = default;
  // Stop sending this connection's events (not HTTP, switched protocols).
  virtual void StopTracing(const ConnKey& key) = 0;
  // The table forgot this connection (idle, evicted): the kernel should too,
  // so that later traffic on it comes back as a new connection (new
  // identity, endpoints, seq from 0) instead of reusing this one's.
  virtual void Forget(const ConnKey& key) = 0;
  // Events the kernel could not queue so far (ring buffer full), for deciding
  // whether a connection's stream can be trusted to end where it was last seen.
  virtual uint64_t KernelDrops() = 0;
  // True when the kernel has counted bytes on this connection beyond
  // `consumed` (per direction, in the kernel's positions): their events are
  // still in the ring buffer, so the connection is not idle after all.
  virtual bool KernelAhead(const ConnKey& key, const uint64_t consumed[2]) = 0;
  // The session would only count the bytes of `dir` from kernel position
  // `from` up to `until`, past what the body cap keeps: the kernel may
  // announce them as skipped instead of copying them. Replaces the
  // direction's earlier range.
  virtual void SkipBody(const ConnKey& key, http::Direction dir, uint64_t from, uint64_t until) = 0;
  // The connection's skip ranges are no longer wanted (it is gone from the table).
  virtual void ClearSkips(const ConnKey& key) = 0;
};

struct ConnTableOptions {
  http::SessionOptions session;
  DataStreamLimits stream;
  // Unanswered requests older than this are written as incomplete.
  uint64_t request_timeout_ns = 60'000'000'000;
  // A connection with no event for this long is forgotten (after flushing).
  uint64_t conn_idle_timeout_ns = 600'000'000'000;
  size_t max_connections = 65536;  // tracked at once; the idlest are evicted beyond
  // Above this many connections an idle session hibernates right after its
  // exchange (else after a quiet sweep): bounded memory for 10k idle
  // keep-alive connections, no churn for a few busy ones.
  size_t eager_hibernate_above = 1024;
  // Timeouts and idleness are checked this often (holes at every Tick).
  uint64_t sweep_interval_ns = 1'000'000'000;
  // A body with at least this many bytes past the body cap still to come
  // gets a ConnController::SkipBody (a map update costs a syscall; the
  // kernel copies up to 64 KiB per syscall). 0: never.
  uint64_t skip_body_min_bytes = 64 * 1024;
  // Non-empty: a Unix connection is followed only when either end's name
  // (Endpoint::text, @ for an abstract name's NUL) is one of these; the others
  // are stopped at their open event (--unix_path).
  std::vector<std::string> unix_names;
};

struct ConnTableStats {
  uint64_t opened = 0;
  uint64_t closed = 0;
  uint64_t evicted = 0;        // dropped to stay under max_connections
  // The kernel dropped its entry for a live connection (its map is an
  // approximate LRU) and found it again: the same tracker carried on.
  uint64_t resumed = 0;
  // Spared from eviction or expiry: the kernel had counted bytes on it whose
  // events were still in the ring buffer.
  uint64_t reprieved = 0;
  uint64_t expired = 0;        // forgotten after conn_idle_timeout
  uint64_t process_exited = 0;  // ended with their process (no close() was seen)
  uint64_t not_http = 0;       // given up by the parser
  uint64_t unix_filtered = 0;  // Unix connections whose names --unix_path does not list
  uint64_t switched = 0;       // Upgrade / CONNECT: no longer HTTP/1.x
  uint64_t unknown_conn = 0;   // data for a connection whose open event never came
  uint64_t stale_events = 0;   // events for a connection already forgotten
  uint64_t hibernated = 0;     // idle sessions whose parsing state was freed
  uint64_t gaps = 0;           // holes in streams: bytes that never arrived
  uint64_t gap_bytes = 0;
  uint64_t uncopied = 0;       // chunks whose bytes the kernel counted, not copied
  uint64_t uncopied_bytes = 0;
  uint64_t parse_errors = 0;
  uint64_t body_skips = 0;     // bodies whose unkept bytes the kernel was told to skip
};

class ConnTable {
 public:
  ConnTable(ConnTableOptions options, ExchangeSink& sink, ConnController& controller);
  ~ConnTable();

  void OnOpen(const bpf::OpenEvent& ev, std::string executable, std::string container_id = {});
  void OnData(const bpf::DataEvent& ev, uint64_t now_ns);
  void OnClose(const bpf::CloseEvent& ev);
  // The process ended: its connections end at the next Tick (one walk of
  // the table for all the exits since the last).
  void OnProcessExit(const bpf::ExitEvent& ev);
  // Periodic work: holes become gaps, stale requests become incomplete,
  // connections of exited processes and idle ones are forgotten.
  void Tick(uint64_t now_ns);
  // Shutdown: every connection is finished; in-flight exchanges come out incomplete.
  void FinishAll();

  // New limits and timeouts: timeouts apply at once, session limits to
  // connections opened from now on.
  void SetOptions(const ConnTableOptions& options) {
    options_ = options;
    options_.session.recycler = &recycler_;
  }

  size_t size() const { return conns_.size(); }
  // Keys of forgotten connections whose late events are still dropped.
  size_t forgotten_keys() const { return forgotten_.size(); }
  // Counters including the per-connection ones (walks the table).
  ConnTableStats stats() const;
  // The table's own counters only (cheap): opened, closed, evicted, expired...
  const ConnTableStats& stats_counters() const { return stats_; }
  // Heap bytes kept from written exchanges for the next ones (bounded).
  size_t recycled_bytes() const { return recycler_.spare_bytes(); }

 private:
  class Tracker;
  Tracker& GetOrCreate(const ConnKey& key, uint64_t ts_ns);
  // A connection the kernel reports as newly discovered may be one it was
  // already tracking and lost from its map: carries on with that tracker.
  bool TryResume(const bpf::OpenEvent& ev);
  // Spares, once, a connection about to be evicted or expired whose bytes the
  // kernel has counted but the table has not seen yet.
  bool Reprieve(const ConnKey& key, Tracker& t);
  // Events for key that arrive from now on are dropped as stale. Only events
  // already on their way can come for it (the kernel forgets it too, or its
  // process is gone), and those were made before this moment: the key is let
  // go once an event made a second after it has been read (or when the set
  // is full, oldest first).
  void IgnoreLateEvents(const ConnKey& key);
  void LetGoOfForgotten();
  void PopForgotten();
  bool UnixNameListed(std::string_view name) const;
  // Removes a connection from the table and its indexes.
  void Erase(absl::flat_hash_map<ConnKey, std::unique_ptr<Tracker>>::iterator it);
  void Finish(Tracker& t, const uint64_t* end_pos, uint64_t ts_ns);
  void EvictIdlest(size_t count);
  void EndExitedProcesses();
  // Finishes and removes a connection the kernel may still be tracking.
  void ForgetConn(absl::flat_hash_map<ConnKey, std::unique_ptr<Tracker>>::iterator it,
                  uint64_t ts_ns);
  // Hands the session's finished exchanges to the sink.
  void Drain(Tracker& t);
  // Tells the kernel about a body in direction d whose bytes ahead the
  // session would only count (once per body).
  void MaybeSkipBody(const ConnKey& key, Tracker& t, int d);

  // Written exchanges' storage, reused by every connection's parsers. Declared
  // before the connections, whose sessions point to it.
  http::MessageRecycler recycler_;
  // Every connection's streams count into these (gaps, uncopied chunks);
  // declared before the connections, whose streams point to them.
  DataStreamStats stream_stats_;
  ConnTableOptions options_;
  ExchangeSink& sink_;
  ConnController& controller_;
  absl::flat_hash_map<ConnKey, std::unique_ptr<Tracker>> conns_;
  absl::flat_hash_set<ConnKey> holes_;  // connections with bytes waiting behind a hole
  // The newest generation tracked for each (tgid, fd): how a connection the
  // kernel rediscovers under a new generation is found again.
  absl::flat_hash_map<uint64_t, uint64_t> newest_gen_;
  // Kernel drops as last read, and the event time when they were last seen to
  // grow: a stream last seen before then may have lost its tail.
  uint64_t drops_seen_ = 0;
  uint64_t drops_seen_at_ns_ = 0;
  // Connections forgotten (idle, evicted) whose events may still be in
  // flight: those are dropped, not turned into a new tracker with the same
  // identity. Bounded, oldest out first.
  absl::flat_hash_map<ConnKey, uint64_t> forgotten_;  // and when (now_ns_)
  std::deque<std::pair<ConnKey, uint64_t>> forgotten_order_;
  // The daemon's clock (CLOCK_MONOTONIC, as the kernel's event times) at the
  // latest Tick or OnData, and the newest event time read.
  uint64_t now_ns_ = 0;
  uint64_t newest_event_ns_ = 0;
  uint64_t last_sweep_ns_ = 0;
  // Processes that exited since the last Tick.
  std::vector<bpf::ExitEvent> exits_;
  absl::flat_hash_set<uint32_t> exited_tgids_;
  ConnTableStats stats_;
};

}  // namespace httptraced::conn

#endif  // HTTPTRACED_CONN_CONN_TABLE_H_
