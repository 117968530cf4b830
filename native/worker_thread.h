// WorkerThread: what every relay thread has in common — its epoll set, the eventfd that wakes
// it, the inbox through which the JavaScript thread hands it decisions, and the close handshake.
// TcpWorker and UdpWorker add their protocol. Each function says which thread may call it.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
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
  virtual ~WorkerThread();

  // JS thread: creates the epoll set and wake fd, lets the protocol register its sockets, and
  // starts the thread; returns only once it runs. 0, or -errno with err filled.
  int start(SocketError* err);
  // Any thread: queue decisions for this worker.
  void post(std::vector<Decision>&& decisions);
  // Any thread: stop accepting now and finish by the deadline (CLOCK_MONOTONIC ms).
  void begin_close(int64_t deadline_ms);
  // Any thread but this worker's: wait for the thread to end (after begin_close).
  void join();
  // Any thread: ask the worker to show it is alive: its loop answers when it next comes round.
  void ping();
  // Any thread: whether every ping so far has been answered.
  bool answered_ping() const {
    return pings_answered_.load(std::memory_order_acquire) ==
           pings_sent_.load(std::memory_order_acquire);
  }
  // Any thread: this worker's counters (written only by the worker).
  const Counters& counters() const { return counters_; }

 protected:
  // JS thread, from start(): register listeners etc. in epoll_.
  virtual int setup(SocketError* err) = 0;
  // The worker thread's loop.
  virtual void run() = 0;

  // Worker thread: empties the wake fd and the inbox. *deadline is -1 unless closing.
  void take_inbox(std::vector<Decision>* batch, int64_t* deadline);
  // Worker thread: add fd to epoll_ with the tag; false (errno set) on failure.
  bool watch(int fd, uint32_t events, EpollTag* tag);
  // Worker thread: hand a record to JavaScript. It is woken by flush_hand_offs(), which the loop
  // calls at the end of each round of events: one wake-up for the round's records.
  template <class Record>
  void hand_off(Record&& r) {
    if (engine_.outbox().push(std::forward<Record>(r))) notify_owed_ = true;
  }
  void flush_hand_offs() {
    if (!notify_owed_) return;
    notify_owed_ = false;
    engine_.outbox().notify();
  }

  Engine& engine_;
  const int index_;
  Counters counters_;
  UniqueFd epoll_;
  UniqueFd wake_fd_;
  EpollTag wake_tag_;

 private:
  std::thread thread_;
  // ping() counts up pings_sent_, then wakes the worker; take_inbox() reads the wake fd, then
  // copies pings_sent_ to pings_answered_. So a ping counted after that copy also woke the worker
  // again, and every ping is answered by the loop round that follows it.
  std::atomic<uint64_t> pings_sent_{0};
  std::atomic<uint64_t> pings_answered_{0};
  std::mutex inbox_mu_;
  std::vector<Decision> inbox_;
  int64_t close_deadline_ms_ = -1;  // -1: not closing
  bool notify_owed_ = false;        // records handed off since the last flush_hand_offs()
};

}  // namespace mmproxy
