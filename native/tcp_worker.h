// TcpWorker: a relay worker for TCP. It accepts from the shared listeners, frames headers,
// opens upstream sockets on the decision code's answer and runs the splice relay of the
// sessions it owns. Other threads reach it only through begin_close(). Attached thread.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <unordered_map>
#include <vector>

#include "counters.h"
#include "engine.h"
#include "pipe_pool.h"
#include "tcp_session.h"
#include "unique_fd.h"
#include "worker_thread.h"

namespace mmproxy {

class TcpWorker : public WorkerThread {
 public:
  TcpWorker(Engine& engine, int index) : WorkerThread(engine, index) {}
  bool round() override;
  int next_wait_ms() const override;
  void apply(const std::vector<Decision>& decisions) override;
  bool pending(uint64_t id) const override;

 private:
  int setup(SocketError* err) override;
  bool end();  // frees what is left; round()'s false
  void handle_wake();
  void stop_accepting();
  void accept_from(int listener_index);
  // peer_closed: the client has sent its FIN, so an incomplete header will stay incomplete.
  void read_header(TcpSession* s, bool peer_closed = false);
  void admit(TcpSession* s, const Decision& d);
  void on_session_event(TcpSession* s, bool upstream_side, uint32_t events);
  void pump(TcpSession* s);
  void pump_ready();  // pumps again the sessions that stopped at their budget
  void finish(TcpSession* s, bool reset_client, bool reset_upstream);
  void abandon(TcpSession* s);  // a pending session whose client has gone
  void reap();                  // closes and frees the sessions finished in this batch
  void report_upstream_failure(TcpSession* s, int err, const std::string& syscall,
                               const SockAddr& source, const SockAddr& target);
  // Ends the sessions whose header, or decision, has not come within the header timeout.
  void expire_headers(int64_t now);
  int epoll_timeout(int64_t now) const;
  uint64_t next_id();

  std::vector<EpollTag> listener_tags_;
  std::vector<bool> dead_listeners_;  // listeners whose accept() failed for good
  bool accepting_ = true;
  bool closing_ = false;
  bool ended_ = false;
  int64_t deadline_ms_ = 0;
  int64_t accept_paused_until_ms_ = 0;
  uint64_t seq_ = 0;
  PipePool pipes_{256};
  std::unordered_map<uint64_t, std::unique_ptr<TcpSession>> sessions_;
  std::deque<std::pair<int64_t, uint64_t>> header_deadlines_;  // header and decision, by accept
  std::vector<uint64_t> finished_;     // freed after the current batch of events
  std::vector<uint64_t> ready_;        // sessions with work left after their budget, by id
  std::vector<uint64_t> ready_round_;  // the ones pump_ready() is going through
  std::vector<uint8_t> scratch_;       // header bytes, up to the largest v2 header
};

}  // namespace mmproxy
