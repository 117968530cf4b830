// Engine: the TCP proxy's native half — listeners, worker threads, the hand-off of headers to
// JavaScript and of decisions back, and the counters. Plain C++; the N-API binding lives in
// engine_binding.cc. Each member function says which thread may call it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "allow_table.h"
#include "counters.h"
#include "sock_addr.h"
#include "transparent_socket.h"
#include "unique_fd.h"

namespace mmproxy {

class WorkerThread;

struct EngineConfig {
  SockAddr listen;
  int listeners = 1;
  // Sockets passed in (systemd's socket activation): the listeners, in place of `listeners`
  // sockets opened on `listen`. The engine owns them once listen() succeeded.
  std::vector<int> listen_fds;
  int workers = 1;
  int64_t header_timeout_ms = 10000;
  int64_t max_connections = 0;     // 0: unlimited
  int type = SOCK_STREAM;          // SOCK_DGRAM: the UDP proxy
  int64_t close_after_ms = 60000;  // UDP: idle flows end after this
  int64_t max_flows = 65536;       // UDP: new flows past this many are refused and counted
  int backlog = 4096;
};

// Worker → JavaScript: a connection whose header bytes are complete (or show garbage).
struct HeaderRecord {
  double id;
  SockAddr peer;
  std::vector<uint8_t> bytes;
};

// Worker → JavaScript: an admitted connection whose upstream could not be opened.
struct ErrorRecord {
  double id;
  int err;  // positive errno
  std::string syscall;
  SockAddr source;   // what the upstream socket was bound to
  SockAddr address;  // the target
};

// ErrorRecord::id of a listener that failed for good; `address` is the listening address.
constexpr double kListenerFailed = -1;

// JavaScript → worker.
struct Decision {
  uint64_t id = 0;
  bool admit = false;
  int reason = 0;  // RejectReason when !admit
  SockAddr source;
  SockAddr target;
  uint32_t mark = 0;
};

// Records waiting for JavaScript. The worker whose push finds the batch empty owes one `notify`,
// which it makes at the end of its round of events; records other workers add meanwhile ride
// along (they wait at most for the rest of that round). So there is at most one pending call into
// JavaScript per batch. Any thread.
class Outbox {
 public:
  struct Batch {
    std::vector<HeaderRecord> headers;
    std::vector<ErrorRecord> errors;
    bool empty() const { return headers.empty() && errors.empty(); }
  };
  void set_notify(std::function<void()> notify) { notify_ = std::move(notify); }
  // Any thread: add a record. True when the batch was empty before: the caller then owes one
  // notify(), which it may hold back until the end of its round of events so that JavaScript is
  // woken once for all the records of the round, not once per record.
  bool push(HeaderRecord&& r);
  bool push(ErrorRecord&& r);
  void notify();
  Batch take();

 private:
  std::mutex mu_;
  Batch batch_;
  std::function<void()> notify_;
};

class Engine {
 public:
  explicit Engine(const EngineConfig& config);
  ~Engine();  // stops and joins the workers if close() was not called

  // JS thread: opens the listeners and starts the workers; returns 0 or -errno with err filled.
  // Returns only once every worker thread runs.
  int listen(SocketError* err);
  // The first listener's bound address (JS thread, after listen()).
  // Any thread after listen() returned.
  const SockAddr& local_address() const { return local_address_; }

  // JS thread: true when every worker has come round its event loop since the previous call
  // (it answered that call's ping); then pings each again. A worker stuck in a loop or a system
  // call does not answer. False once the workers are gone. Cheap: one eventfd write per worker.
  bool ping();

  // JS thread: hand decisions to their workers (one wake-up per worker per call).
  void decide(std::vector<Decision>&& decisions);
  // JS thread: swap the allowlist atomically; null allows everyone.
  void set_allowlist(std::shared_ptr<const AllowTable> table);
  std::shared_ptr<const AllowTable> allowlist() const;
  // Any thread: the counters of every worker, summed.
  void stats(Counters* out) const;

  // Blocking (never on the JS thread): stop accepting at once, let live connections finish
  // until drain_deadline_ms (CLOCK_MONOTONIC milliseconds), end the rest, join every worker.
  // Idempotent.
  void close(int64_t drain_deadline_ms);
  // Any thread: bring a running close() deadline forward to now.
  void hurry();

  Outbox& outbox() { return outbox_; }
  const EngineConfig& config() const { return config_; }
  const std::vector<UniqueFd>& listeners() const { return listeners_; }
  std::atomic<int64_t>& live_connections() { return live_; }
  // Worker thread: a worker has removed the listeners from its epoll set.
  void ack_stop_accepting();
  // Worker thread: listener `index` failed for good (accept() or recvmmsg() on it fails at once
  // and always, as after `ss -K` destroyed it). True for the first report of that listener: the
  // caller then hands JavaScript one ErrorRecord with id kListenerFailed.
  bool claim_listener_failure(int index);

 private:
  // JS thread, from listen(): config_.listen_fds checked and made the listeners.
  int adopt_listeners(SocketError* err);

  EngineConfig config_;
  std::vector<UniqueFd> listeners_;
  SockAddr local_address_;
  // Guarded by workers_mu_ once close() may run: it frees the workers after joining them.
  std::vector<std::unique_ptr<WorkerThread>> workers_;
  mutable std::mutex workers_mu_;
  Counters final_counters_;  // the workers' counters, kept when close() frees them
  Outbox outbox_;
  std::shared_ptr<const AllowTable> allow_;  // accessed with std::atomic_load/atomic_store
  std::atomic<int64_t> live_{0};
  std::mutex close_mu_;
  std::condition_variable acks_cv_;
  std::mutex acks_mu_;
  std::mutex failed_mu_;
  std::vector<bool> failed_listeners_;  // guarded by failed_mu_
  int acks_ = 0;
  bool closed_ = false;
};

int64_t monotonic_ms();
int64_t monotonic_us();

}  // namespace mmproxy
