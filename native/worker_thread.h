// WorkerThread: what every relay worker has in common — its epoll set, the eventfd that wakes
// it, the close handshake, and the records it hands to the decision code. TcpWorker and
// UdpWorker add their protocol.
//
// A worker has no thread of its own: the JavaScript thread that attached it (a Node.js worker
// thread, see worker_binding.cc) watches its epoll descriptor from its own event loop and calls
// round() when it is readable or when next_wait_ms() has passed. The records a round produced
// are then decided synchronously in that thread and the decisions given back with apply().
// "Attached thread" below means that thread; the others are marked.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

#include "counters.h"
#include "engine.h"
#include "transparent_socket.h"
#include "unique_fd.h"

namespace mmproxy {

// What epoll_event.data.ptr points to: which object, and which of its sockets.
struct EpollTag {
  enum Kind : uint8_t { kWake, kListener, kClient, kUpstream, kFlow } kind = kWake;
  void* object = nullptr;
  int index = -1;
};

class WorkerThread {
 public:
  WorkerThread(Engine& engine, int index) : engine_(engine), index_(index) {}
  virtual ~WorkerThread() = default;

  // Engine::listen() (JS thread): creates the epoll set and wake fd and lets the protocol
  // register its sockets. 0, or -errno with err filled.
  int start(SocketError* err);
  // Any thread: stop accepting now and finish by the deadline (CLOCK_MONOTONIC ms).
  void begin_close(int64_t deadline_ms);
  // Any thread: ask the worker to show it is alive: its loop answers when it next comes round.
  void ping();
  // Any thread: whether every ping so far has been answered.
  bool answered_ping() const {
    return pings_answered_.load(std::memory_order_acquire) ==
           pings_sent_.load(std::memory_order_acquire);
  }
  // Any thread: this worker's counters (written only by the attached thread).
  const Counters& counters() const { return counters_; }

  // Attached thread: the descriptor to watch for readability (the epoll set).
  int poll_fd() const { return epoll_.get(); }
  // Attached thread: one round of the events that are ready (never waits). False once the
  // worker has ended: closing is complete and every session or flow it had is gone.
  virtual bool round() = 0;
  // Attached thread: milliseconds until round() has timed work (a header deadline, a drain
  // deadline, an idle flow, a session with work left: 0); -1 when only events can bring work.
  virtual int next_wait_ms() const = 0;
  // Attached thread: the decisions for records this worker handed off. Unknown ids (a
  // connection that has ended meanwhile) are ignored.
  virtual void apply(const std::vector<Decision>& decisions) = 0;
  // Attached thread: whether the connection or flow is still waiting for its decision.
  virtual bool pending(uint64_t id) const = 0;
  // Attached thread: the records handed off since the last call.
  Outbox::Batch take_records() { return records_.take(); }
  // Attached thread, after round() returned false: closes the epoll set and the wake fd.
  void release();

 protected:
  // From start(): register listeners etc. in epoll_.
  virtual int setup(SocketError* err) = 0;

  // Attached thread: empties the wake fd. The close deadline, or -1 unless closing.
  int64_t take_wake();
  // Attached thread: add fd to epoll_ with the tag; false (errno set) on failure.
  bool watch(int fd, uint32_t events, EpollTag* tag);
  // Attached thread: hand a record to the decision code, which takes it after the round.
  template <class Record>
  void hand_off(Record&& r) {
    records_.push(std::forward<Record>(r));
  }

  Engine& engine_;
  const int index_;
  Counters counters_;
  UniqueFd epoll_;
  UniqueFd wake_fd_;
  EpollTag wake_tag_;

 private:
  // ping() counts up pings_sent_, then wakes the worker; take_wake() reads the wake fd, then
  // copies pings_sent_ to pings_answered_. So a ping counted after that copy also woke the worker
  // again, and every ping is answered by the loop round that follows it.
  std::atomic<uint64_t> pings_sent_{0};
  std::atomic<uint64_t> pings_answered_{0};
  Outbox records_;
  std::mutex wake_mu_;              // close_deadline_ms_, released_, and writes to wake_fd_
  int64_t close_deadline_ms_ = -1;  // -1: not closing
  bool released_ = false;
};

}  // namespace mmproxy
