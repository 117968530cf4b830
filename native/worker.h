// Worker: one relay thread with its own epoll loop. It accepts from the shared listeners,
// frames headers, opens upstream sockets on JavaScript's decision and runs the splice relay of
// the sessions it owns. Other threads talk to it only through post() and the wake eventfd.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "counters.h"
#include "engine.h"
#include "pipe_pool.h"
#include "tcp_session.h"
#include "unique_fd.h"

namespace mmproxy {

class Worker {
 public:
  Worker(Engine& engine, int index);
  ~Worker();

  // JS thread: creates the epoll set and wake fd, registers the listeners, starts the thread.
  // Returns 0 or -errno with err filled.
  int start(SocketError* err);
  // Any thread: queue decisions for this worker's sessions.
  void post(std::vector<Decision>&& decisions);
  // Any thread: stop accepting now and finish by the deadline (CLOCK_MONOTONIC ms).
  void begin_close(int64_t deadline_ms);
  // Any thread: join the thread (after begin_close).
  void join();
  const Counters& counters() const { return counters_; }

 private:
  void run();  // the worker thread
  void wake();
  void handle_inbox();
  void stop_accepting();
  void accept_from(int listener_index);
  void read_header(TcpSession* s);
  void admit(TcpSession* s, const Decision& d);
  void on_session_event(TcpSession* s, bool upstream_side, uint32_t events);
  void pump(TcpSession* s);
  void finish(TcpSession* s, bool reset_client, bool reset_upstream);
  void report_upstream_failure(TcpSession* s, int err, const std::string& syscall,
                               const SockAddr& address);
  void expire_headers(int64_t now);
  int epoll_timeout(int64_t now) const;
  uint64_t next_id();

  Engine& engine_;
  const int index_;
  Counters counters_;
  UniqueFd epoll_;
  UniqueFd wake_fd_;
  EpollTag wake_tag_{EpollTag::kWake, nullptr, -1};
  std::vector<EpollTag> listener_tags_;
  std::thread thread_;

  // Shared with other threads, under inbox_mu_.
  std::mutex inbox_mu_;
  std::vector<Decision> inbox_;
  int64_t close_deadline_ms_ = -1;  // -1: not closing

  // Worker thread only.
  bool accepting_ = true;
  bool closing_ = false;
  int64_t deadline_ms_ = 0;
  int64_t accept_paused_until_ms_ = 0;
  uint64_t seq_ = 0;
  PipePool pipes_{256};
  std::unordered_map<uint64_t, std::unique_ptr<TcpSession>> sessions_;
  std::deque<std::pair<int64_t, uint64_t>> header_deadlines_;  // in accept order
  std::vector<uint64_t> finished_;  // freed after the current batch of events
  std::vector<uint8_t> scratch_;    // header bytes, up to the largest v2 header
};

}  // namespace mmproxy
