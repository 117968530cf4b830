// TcpSession: one proxied TCP connection — its two sockets, its two pipes, and the splice()
// relay between them. Owned and driven by one Worker; worker thread only.
//
// Theory of operation
// -------------------
// A session moves through kHeader (reading the PROXY header with MSG_PEEK), kPending (header
// handed to JavaScript, waiting for its decision; the header timeout, counted from the accept,
// bounds both, and a client that leaves meanwhile ends it), kConnecting (upstream connect() in
// progress; client bytes may already fill the client→upstream pipe), kRelay, and kClosed.
//
// Each direction (client→upstream "up", upstream→client "down") is a pipe and three facts:
// how many bytes sit in the pipe, whether the source has reached EOF, and whether the FIN has
// been passed on (shutdown(SHUT_WR) of the destination). Each socket has two more bits: whether
// it may be readable and whether it may be writable, set by epoll events and cleared by EAGAIN,
// so that pump() tries only the splices that can make progress. Both sockets are registered
// once, edge-triggered, for input and output; an event sets its bits and runs pump() on both
// directions, which moves bytes until neither a read nor a write makes progress, or until the
// direction has read its budget for the round (kRoundBudget). A session that stops at its budget
// still has work that no new edge will announce: pump() says so (PumpResult::more) and the worker
// pumps it again after the rest of the round, so one busy stream cannot hold the worker. A
// direction holds a pipe from the worker's pool only while bytes sit in it, so an idle connection
// costs two descriptors, not six. Because a direction never
// reads from its source while its pipe is full, a slow reader on one side stops reading on the
// other side: the kernel's socket buffers fill and TCP flow control pushes back to the sender,
// and the proxy's memory stays flat. A FIN is forwarded only when every byte read before it has
// been written. An error on either socket ends both, and the other side gets a reset.
#pragma once

#include <cstddef>
#include <cstdint>

#include "counters.h"
#include "pipe_pool.h"
#include "sock_addr.h"
#include "unique_fd.h"
#include "worker_thread.h"

namespace mmproxy {

struct Direction {
  Pipe pipe;
  size_t in_pipe = 0;
  bool eof = false;   // the source sent FIN
  bool shut = false;  // FIN passed on to the destination
  bool done() const { return shut; }
};

enum class SessionState : uint8_t { kHeader, kPending, kConnecting, kRelay, kClosed };

// How much one direction reads from its source in one pump(): four pipe-fulls. Large enough that
// a bulk stream pays one more round of epoll (a few microseconds) per 256 KiB it moves, small
// enough that the worker gets back to its other sessions, accepts and decisions within a fraction
// of a millisecond.
constexpr size_t kRoundBudget = 256 * 1024;

// How pump() ended.
struct PumpResult {
  enum Kind { kContinue, kFinished, kFailed } kind = kContinue;
  int err = 0;                 // for kFailed: positive errno
  bool client_failed = false;  // which socket failed; the other one gets a reset
  bool more = false;           // kContinue: a direction stopped at its budget, not at EAGAIN
};

class TcpSession {
 public:
  TcpSession(uint64_t id, UniqueFd client, const SockAddr& peer, const SockAddr& local)
      : id_(id), client_(std::move(client)), peer_(peer), local_(local) {
    client_tag_.kind = EpollTag::kClient;
    client_tag_.object = this;
    upstream_tag_.kind = EpollTag::kUpstream;
    upstream_tag_.object = this;
  }

  uint64_t id() const { return id_; }
  SessionState state() const { return state_; }
  void set_state(SessionState s) { state_ = s; }
  int client_fd() const { return client_.get(); }
  int upstream_fd() const { return upstream_.get(); }
  const SockAddr& peer() const { return peer_; }
  const SockAddr& local() const { return local_; }
  const SockAddr& source() const { return source_; }
  const SockAddr& target() const { return target_; }
  int64_t asked_us() const { return asked_us_; }
  void set_asked_us(int64_t t) { asked_us_ = t; }
  EpollTag* client_tag() { return &client_tag_; }
  EpollTag* upstream_tag() { return &upstream_tag_; }
  // Whether the session is on its worker's list of sessions to pump again.
  bool queued() const { return queued_; }
  void set_queued(bool q) { queued_ = q; }

  // kPending → kConnecting: takes the upstream socket (connect() already started) and pipes.
  void attach_upstream(UniqueFd upstream, const SockAddr& source, const SockAddr& target);
  // Moves bytes both ways as far as they go without blocking, up to kRoundBudget each way.
  PumpResult pump(Counters& counters, PipePool& pool);
  // Records what an epoll event says about one socket.
  void on_event(bool upstream_side, uint32_t events);
  // kConnecting → kRelay: the upstream handshake is complete.
  void connected() {
    state_ = SessionState::kRelay;
    upstream_writable_ = true;
  }
  // Ends the session: from now on it is kClosed and does nothing. The sockets stay open until
  // release(), which closes them — with a reset (SO_LINGER 0) for the ones named here — and
  // returns empty pipes to the pool.
  void end(bool reset_client, bool reset_upstream);
  void release(PipePool& pool);

 private:
  int pump_direction(Direction& d, int src, int dst, bool& src_readable, bool& dst_writable,
                     bool dst_ready, PipePool& pool, std::atomic<uint64_t>& bytes, bool* src_failed,
                     bool* more);

  uint64_t id_;
  SessionState state_ = SessionState::kHeader;
  UniqueFd client_;
  UniqueFd upstream_;
  SockAddr peer_;    // the load balancer
  SockAddr local_;   // our listening address, as the client reached it
  SockAddr source_;  // what the upstream socket is bound to
  SockAddr target_;
  int64_t asked_us_ = 0;  // when the header went to JavaScript
  bool client_readable_ = true;
  bool client_writable_ = true;
  bool upstream_readable_ = true;
  bool upstream_writable_ = false;  // until the handshake completes
  bool reset_client_ = false;
  bool reset_upstream_ = false;
  bool queued_ = false;
  Direction up_;    // client → upstream
  Direction down_;  // upstream → client
  EpollTag client_tag_;
  EpollTag upstream_tag_;
};

}  // namespace mmproxy
