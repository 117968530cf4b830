// TcpWorker: a relay worker for TCP. Attached thread unless tcp_worker.h says otherwise.
#include "tcp_worker.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "header_framing.h"

namespace mmproxy {

namespace {

constexpr int kMaxEvents = 256;
constexpr int kAcceptBatch = 64;
// How much of a stream to peek at first: a whole v1 header, or the usual v2 header with TLVs.
constexpr size_t kFirstPeek = 256;
// After EMFILE/ENFILE, how long to leave the backlog alone before trying again.
constexpr int64_t kAcceptPauseMs = 100;
constexpr uint32_t kSessionEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

// True once a non-blocking connect() has completed its handshake.
bool handshake_done(int fd) {
  tcp_info info{};
  socklen_t len = sizeof info;
  return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0 &&
         info.tcpi_state == TCP_ESTABLISHED;
}

int socket_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

// Whether a client whose decision is pending has gone, after an event that says it may have: a
// reset (EPOLLHUP, EPOLLERR), or a FIN with nothing behind the header. A FIN after a request is a
// half-close, and the client still waits for the reply: that one stays until its decision.
bool client_gone(int fd, uint32_t events) {
  // Only a reset. A FIN is a half-close, which is passed on: a client may send the header and
  // its FIN at once and wait for the application's banner. The decision deadline bounds it.
  (void)fd;
  return (events & (EPOLLHUP | EPOLLERR)) != 0;
}

}  // namespace

int TcpWorker::setup(SocketError* err) {
  const auto& listeners = engine_.listeners();
  listener_tags_.resize(listeners.size());
  for (size_t i = 0; i < listeners.size(); i++) {
    listener_tags_[i].kind = EpollTag::kListener;
    listener_tags_[i].index = int(i);
    // EPOLLEXCLUSIVE: one connection wakes one worker, not all of them.
    if (!watch(listeners[i].get(), EPOLLIN | EPOLLEXCLUSIVE, &listener_tags_[i])) {
      err->err = errno;
      err->syscall = "epoll_ctl(EPOLL_CTL_ADD, listener)";
      return -err->err;
    }
  }
  scratch_.resize(kV2MaxLength);
  return 0;
}

uint64_t TcpWorker::next_id() {
  return (uint64_t(index_) << 40) | (++seq_ & ((uint64_t(1) << 40) - 1));
}

bool TcpWorker::round() {
  if (ended_) return false;
  int64_t now = monotonic_ms();
  if (closing_) {
    if (sessions_.empty()) return end();
    if (now >= deadline_ms_) {
      for (auto& [id, s] : sessions_) finish(s.get(), true, true);
      return end();
    }
  }
  if (accepting_ && accept_paused_until_ms_ != 0 && now >= accept_paused_until_ms_) {
    accept_paused_until_ms_ = 0;
    const auto& listeners = engine_.listeners();
    for (size_t i = 0; i < listeners.size(); i++) {
      if (i < dead_listeners_.size() && dead_listeners_[i]) continue;
      watch(listeners[i].get(), EPOLLIN | EPOLLEXCLUSIVE, &listener_tags_[i]);
    }
  }
  epoll_event events[kMaxEvents];
  int n = epoll_wait(epoll_.get(), events, kMaxEvents, 0);
  for (int i = 0; i < n; i++) {
    auto* tag = static_cast<EpollTag*>(events[i].data.ptr);
    switch (tag->kind) {
      case EpollTag::kWake:
        handle_wake();
        break;
      case EpollTag::kFlow:
        break;
      case EpollTag::kListener:
        if (accepting_ && accept_paused_until_ms_ == 0) accept_from(tag->index);
        break;
      case EpollTag::kClient:
        on_session_event(static_cast<TcpSession*>(tag->object), false, events[i].events);
        break;
      case EpollTag::kUpstream:
        on_session_event(static_cast<TcpSession*>(tag->object), true, events[i].events);
        break;
    }
  }
  // After every event of the round: a busy stream waits behind the others, not before them.
  pump_ready();
  expire_headers(monotonic_ms());
  // Closed sessions are freed only now, after the whole batch: a later event of the same batch
  // may still point at them, and closing after the batch keeps close() off the request path.
  reap();
  return true;
}

bool TcpWorker::end() {
  reap();
  sessions_.clear();
  pipes_.clear();
  ended_ = true;
  return false;
}

int TcpWorker::next_wait_ms() const {
  if (ended_) return -1;
  if (!ready_.empty() || (closing_ && sessions_.empty())) return 0;
  return epoll_timeout(monotonic_ms());
}

void TcpWorker::apply(const std::vector<Decision>& decisions) {
  if (ended_) return;
  for (const Decision& d : decisions) {
    auto it = sessions_.find(d.id);
    if (it != sessions_.end()) admit(it->second.get(), d);
  }
  reap();
}

bool TcpWorker::pending(uint64_t id) const {
  auto it = sessions_.find(id);
  return it != sessions_.end() && it->second->state() == SessionState::kPending;
}

void TcpWorker::reap() {
  for (uint64_t id : finished_) {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) continue;
    it->second->release(pipes_);
    sessions_.erase(it);
  }
  finished_.clear();
}

int TcpWorker::epoll_timeout(int64_t now) const {
  int64_t next = -1;
  auto consider = [&](int64_t t) {
    if (t > 0 && (next < 0 || t < next)) next = t;
  };
  if (!header_deadlines_.empty()) consider(header_deadlines_.front().first);
  if (accept_paused_until_ms_ != 0) consider(accept_paused_until_ms_);
  if (closing_) consider(deadline_ms_ > 0 ? deadline_ms_ : 1);
  if (next < 0) return -1;
  int64_t wait = next - now;
  if (wait < 0) return 0;
  return wait > 60000 ? 60000 : int(wait) + 1;
}

void TcpWorker::handle_wake() {
  const int64_t deadline = take_wake();
  if (deadline < 0) return;
  if (!closing_) {
    closing_ = true;
    stop_accepting();
    deadline_ms_ = deadline;
  } else if (deadline < deadline_ms_) {
    deadline_ms_ = deadline;
  }
}

void TcpWorker::stop_accepting() {
  if (!accepting_) return;
  accepting_ = false;
  if (accept_paused_until_ms_ == 0) {
    for (const UniqueFd& l : engine_.listeners())
      epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, l.get(), nullptr);
  }
  accept_paused_until_ms_ = 0;
  engine_.ack_stop_accepting();
}

void TcpWorker::accept_from(int listener_index) {
  const int lfd = engine_.listeners()[size_t(listener_index)].get();
  const EngineConfig& cfg = engine_.config();
  for (int i = 0; i < kAcceptBatch; i++) {
    SockAddr peer;
    peer.len = sizeof peer.storage;
    int fd = accept4(lfd, peer.sa(), &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      Counters::add(counters_.accept_errors, 1);
      if (errno == EINVAL || errno == EBADF || errno == ENOTSOCK) {
        // The listening socket itself is gone (destroyed by `ss -K`, say): accept() now fails
        // at once and for ever. Stop watching it, so that this worker does not spin on it, and
        // tell JavaScript once, which makes the proxy emit 'error'.
        const int e = errno;
        epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, lfd, nullptr);
        if (dead_listeners_.size() <= size_t(listener_index))
          dead_listeners_.resize(size_t(listener_index) + 1, false);
        dead_listeners_[size_t(listener_index)] = true;
        if (engine_.claim_listener_failure(listener_index))
          hand_off(ErrorRecord{kListenerFailed, e, "accept", engine_.local_address(),
                               engine_.local_address()});
        return;
      }
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors or memory: the listener stays readable, so leave the backlog to
        // wait (connections queue in the kernel) and try again shortly, instead of spinning.
        for (const UniqueFd& l : engine_.listeners())
          epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, l.get(), nullptr);
        accept_paused_until_ms_ = monotonic_ms() + kAcceptPauseMs;
      }
      return;
    }
    UniqueFd client(fd);
    Counters::add(counters_.accepted, 1);
    std::shared_ptr<const AllowTable> allow = engine_.allowlist();
    if (allow && !allow->contains(peer)) {
      Counters::add(counters_.rejected[kNotAllowed], 1);
      continue;  // closed before a byte is read
    }
    if (cfg.max_connections > 0 &&
        engine_.live_connections().load(std::memory_order_relaxed) >= cfg.max_connections) {
      Counters::add(counters_.rejected[kMaxConnections], 1);
      continue;
    }
    SockAddr local;
    local.len = sizeof local.storage;
    getsockname(fd, local.sa(), &local.len);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int64_t deadline = monotonic_ms() + cfg.header_timeout_ms;
    uint64_t id = next_id();
    auto owned = std::make_unique<TcpSession>(id, std::move(client), peer, local);
    TcpSession* s = owned.get();
    if (!watch(s->client_fd(), kSessionEvents, s->client_tag())) continue;
    sessions_.emplace(id, std::move(owned));
    Counters::add(counters_.active, 1);
    engine_.live_connections().fetch_add(1, std::memory_order_relaxed);
    header_deadlines_.emplace_back(deadline, id);
    // The first segment often arrives with the handshake's last ACK: read it now.
    read_header(s);
  }
}

void TcpWorker::read_header(TcpSession* s, bool peer_closed) {
  if (s->state() != SessionState::kHeader) return;
  const int fd = s->client_fd();
  ssize_t n = recv(fd, scratch_.data(), kFirstPeek, MSG_PEEK);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    finish(s, false, false);
    return;
  }
  if (n == 0) {
    // Closed before a complete header: a health check, or a client that gave up.
    finish(s, false, false);
    return;
  }
  size_t length = 0;
  Framing f = frame_header(scratch_.data(), size_t(n), &length);
  if (f == Framing::kNeedMore) {
    // MSG_PEEK keeps returning the partial header after a FIN, never 0: end it now rather than
    // holding the descriptor until the header timeout.
    if (peer_closed) finish(s, false, false);
    return;
  }
  size_t take = size_t(n);
  if (f == Framing::kComplete) {
    if (length > size_t(n)) {
      // The rest has not arrived yet (and never will after a FIN).
      if (size_t(n) < kFirstPeek) {
        if (peer_closed) finish(s, false, false);
        return;
      }
      n = recv(fd, scratch_.data(), length, MSG_PEEK);
      if (n < 0 || size_t(n) < length) {
        if (peer_closed) finish(s, false, false);
        return;  // wait for more (errors show on the next read)
      }
    }
    // Consume exactly the header: the payload behind it stays in the kernel for splice().
    n = recv(fd, scratch_.data(), length, 0);
    if (n != ssize_t(length)) {
      finish(s, false, false);
      return;
    }
    take = length;
  }
  // Garbage goes to JavaScript too: its decoder names the fault for the 'reject' event.
  HeaderRecord r;
  r.id = double(s->id());
  r.peer = s->peer();
  r.bytes.assign(scratch_.data(), scratch_.data() + take);
  s->set_state(SessionState::kPending);
  s->set_asked_us(monotonic_us());
  hand_off(std::move(r));
}

void TcpWorker::admit(TcpSession* s, const Decision& d) {
  if (s->state() != SessionState::kPending) return;
  Counters::add(counters_.decision_wait_us, uint64_t(monotonic_us() - s->asked_us()));
  Counters::add(counters_.decisions, 1);
  if (!d.admit) {
    int reason = d.reason >= 0 && d.reason < kRejectReasonCount ? d.reason : kBadHeader;
    Counters::add(counters_.rejected[reason], 1);
    finish(s, false, false);
    return;
  }
  const SockAddr& target = d.target;
  SockAddr source = d.source;
  SocketOptions o;
  o.type = SOCK_STREAM;
  o.transparent = true;
  o.reuse_addr = true;
  o.nodelay = true;
  o.syn_count = 2;
  o.mark = d.mark;
  // The client's address and port may already be in use toward the target (a previous
  // connection in TIME_WAIT, say): then it goes out from the same address, another port.
  SocketError err;
  bool retried;
  UniqueFd up = open_upstream(o, &source, target, true, &retried, &err);
  if (retried) Counters::add(counters_.ephemeral_port_retries, 1);
  if (!up) {
    report_upstream_failure(s, err.err, err.syscall, source, target);
    finish(s, true, false);
    return;
  }
  s->attach_upstream(std::move(up), source, target);
  if (!watch(s->upstream_fd(), kSessionEvents, s->upstream_tag())) {
    report_upstream_failure(s, errno, "epoll_ctl(EPOLL_CTL_ADD, upstream)", source, target);
    finish(s, true, true);
    return;
  }
  Counters::add(counters_.admitted, 1);
  // On loopback the handshake has usually completed inside connect(): relay at once instead of
  // waiting a round of epoll for EPOLLOUT.
  if (handshake_done(s->upstream_fd())) s->connected();
  // Bytes that came with the header are already waiting; no new edge will announce them.
  pump(s);
}

void TcpWorker::on_session_event(TcpSession* s, bool upstream_side, uint32_t events) {
  s->on_event(upstream_side, events);
  switch (s->state()) {
    case SessionState::kClosed:
      return;
    case SessionState::kPending:
      // Its bytes wait for the decision; a client that has gone needs none.
      if (!upstream_side && client_gone(s->client_fd(), events)) abandon(s);
      return;
    case SessionState::kHeader:
      if (upstream_side) return;
      read_header(s, events & (EPOLLRDHUP | EPOLLHUP));
      // The FIN or reset may have come with the header: no later edge will tell.
      if (s->state() == SessionState::kPending && client_gone(s->client_fd(), events)) abandon(s);
      return;
    case SessionState::kConnecting:
      if (upstream_side) {
        int err = socket_error(s->upstream_fd());
        if (err == ECONNRESET || err == EPIPE) {
          // The handshake completed (a reset in SYN-SENT is ECONNREFUSED) and the upstream
          // reset before this worker looked: a relay that ended by a reset, not a failed
          // connect. The client gets the reset.
          finish(s, true, false);
          return;
        }
        if (err != 0) {
          report_upstream_failure(s, err, "connect(" + s->target().to_string() + ")", s->source(),
                                  s->target());
          finish(s, true, false);
          return;
        }
        if (events & EPOLLOUT) s->connected();
      }
      break;
    case SessionState::kRelay:
      if (events & EPOLLERR) {
        int err = socket_error(upstream_side ? s->upstream_fd() : s->client_fd());
        if (err != 0) {
          finish(s, upstream_side, !upstream_side);
          return;
        }
      }
      break;
  }
  pump(s);
}

void TcpWorker::pump(TcpSession* s) {
  PumpResult r = s->pump(counters_, pipes_);
  if (r.kind == PumpResult::kContinue) {
    // Edge-triggered: no new event will announce what the budget left in the sockets.
    if (r.more && !s->queued()) {
      s->set_queued(true);
      ready_.push_back(s->id());
    }
  } else if (r.kind == PumpResult::kFinished) {
    finish(s, false, false);
  } else if (r.kind == PumpResult::kFailed) {
    // A reset (or any error) on one side resets the other.
    finish(s, !r.client_failed, r.client_failed);
  }
}

void TcpWorker::pump_ready() {
  if (ready_.empty()) return;
  // Those that stop at their budget again go on a fresh list, for the next round.
  std::vector<uint64_t>& round = ready_round_;
  round.swap(ready_);
  for (uint64_t id : round) {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) continue;  // finished and reaped meanwhile
    TcpSession* s = it->second.get();
    s->set_queued(false);
    pump(s);
  }
  round.clear();
}

void TcpWorker::finish(TcpSession* s, bool reset_client, bool reset_upstream) {
  if (s->state() == SessionState::kClosed) return;
  // The sockets are closed with the rest of the batch's finished sessions (see run()), after
  // every ready connection has been served.
  s->end(reset_client, reset_upstream);
  Counters::add(counters_.active, -1);
  engine_.live_connections().fetch_sub(1, std::memory_order_relaxed);
  finished_.push_back(s->id());
}

void TcpWorker::report_upstream_failure(TcpSession* s, int err, const std::string& syscall,
                                        const SockAddr& source, const SockAddr& target) {
  Counters::add(counters_.upstream_failures, 1);
  ErrorRecord r;
  r.id = double(s->id());
  r.err = err;
  r.syscall = syscall;
  r.source = source;
  r.address = target;
  hand_off(std::move(r));
}

void TcpWorker::abandon(TcpSession* s) {
  // Its decision may still come: handle_inbox() no longer finds the id and drops it.
  Counters::add(counters_.rejected[kClientClosed], 1);
  finish(s, false, false);
}

void TcpWorker::expire_headers(int64_t now) {
  while (!header_deadlines_.empty() && header_deadlines_.front().first <= now) {
    uint64_t id = header_deadlines_.front().second;
    header_deadlines_.pop_front();
    auto it = sessions_.find(id);
    if (it == sessions_.end()) continue;
    // The header timeout covers the decision too: a route hook that never answers must not hold
    // a descriptor and a maxConnections slot for ever. A late answer finds the id gone.
    const SessionState state = it->second->state();
    if (state == SessionState::kHeader) {
      Counters::add(counters_.rejected[kHeaderTimeout], 1);
    } else if (state == SessionState::kPending) {
      Counters::add(counters_.rejected[kDecisionTimeout], 1);
    } else {
      continue;
    }
    finish(it->second.get(), false, false);
  }
}

}  // namespace mmproxy
