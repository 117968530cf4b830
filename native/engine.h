// Engine: the proxy's native half — listeners, the relay workers that JavaScript threads drive,
// the allowlist they check, and the counters. Plain C++; the N-API binding lives in
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

// The records a worker hands to the decision code during one round of its events. Only the
// worker's attached thread uses it.
class Outbox {
 public:
  struct Batch {
    std::vector<HeaderRecord> headers;
    std::vector<ErrorRecord> errors;
    bool empty() const { return headers.empty() && errors.empty(); }
  };
  void push(HeaderRecord&& r) { batch_.headers.push_back(std::move(r)); }
  void push(ErrorRecord&& r) { batch_.errors.push_back(std::move(r)); }
  bool empty() const { return batch_.empty(); }
  Batch take() {
    Batch out;
    std::swap(out, batch_);
    return out;
  }

 private:
  Batch batch_;
};

class Engine {
 public:
  explicit Engine(const EngineConfig& config);
  ~Engine();

  // JS thread: opens the listeners and prepares the workers, which JavaScript threads then
  // attach (attach()); returns 0 or -errno with err filled.
  int listen(SocketError* err);
  // The first listener's bound address. Any thread after listen() returned.
  const SockAddr& local_address() const { return local_address_; }
  // How many workers listen() prepared (UDP: no more than listeners).
  int worker_count() const { return int(workers_.size()); }

  // Any thread: worker `index` for the calling thread to drive, or null when it does not exist,
  // is already attached, or the engine is closing. The caller drives it until round() returns
  // false, then calls ended(index).
  WorkerThread* attach(int index);
  // The attached thread: its worker has ended (after release()).
  void ended(int index);

  // JS thread: true when every worker has come round its event loop since the previous call
  // (it answered that call's ping); then pings each again. A worker stuck in a loop or a system
  // call does not answer. False once the workers are gone. Cheap: one eventfd write per worker.
  bool ping();
  // JS thread: swap the allowlist atomically; null allows everyone.
  void set_allowlist(std::shared_ptr<const AllowTable> table);
  std::shared_ptr<const AllowTable> allowlist() const;
  // Any thread: the counters of every worker, summed.
  void stats(Counters* out) const;

  // Blocking (never on a thread that drives a worker): stop accepting at once, let live
  // connections finish until drain_deadline_ms (CLOCK_MONOTONIC milliseconds), end the rest,
  // and wait until every attached worker has ended. Workers never attached end at once.
  // Idempotent.
  void close(int64_t drain_deadline_ms);
  // Any thread: bring a running close() deadline forward to now.
  void hurry();

  const EngineConfig& config() const { return config_; }
  const std::vector<UniqueFd>& listeners() const { return listeners_; }
  std::atomic<int64_t>& live_connections() { return live_; }
  // Attached thread: a worker has removed the listeners from its epoll set.
  void ack_stop_accepting();
  // Attached thread: listener `index` failed for good (accept() or recvmmsg() on it fails at
  // once and always, as after `ss -K` destroyed it). True for the first report of that listener:
  // the caller then hands JavaScript one ErrorRecord with id kListenerFailed.
  bool claim_listener_failure(int index);

 private:
  enum class WorkerState : uint8_t { kWaiting, kAttached, kEnded };

  // JS thread, from listen(): config_.listen_fds checked and made the listeners.
  int adopt_listeners(SocketError* err);

  EngineConfig config_;
  std::vector<UniqueFd> listeners_;
  SockAddr local_address_;
  // Created by listen() and kept until the engine is destroyed: the threads that drive them
  // hold the engine (a shared_ptr) until they let go of their worker.
  std::vector<std::unique_ptr<WorkerThread>> workers_;
  std::vector<WorkerState> states_;  // guarded by states_mu_
  std::mutex states_mu_;
  std::condition_variable states_cv_;        // a worker ended
  bool closing_ = false;                     // guarded by states_mu_: attach() refuses from now on
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

// The engines that are listening, by id, so that a worker's JavaScript thread can find the one
// it drives. Any thread.
uint32_t register_engine(std::shared_ptr<Engine> engine);
std::shared_ptr<Engine> find_engine(uint32_t id);
void unregister_engine(uint32_t id);

int64_t monotonic_ms();
int64_t monotonic_us();

}  // namespace mmproxy
