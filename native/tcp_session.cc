// TcpSession: the splice() relay of one connection. Worker thread only.
#include "tcp_session.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>

namespace mmproxy {

namespace {

// The kernel's default pipe size; a full pipe is the signal to stop reading the source.
constexpr size_t kPipeCapacity = 64 * 1024;

void set_reset_on_close(int fd) {
  linger lg{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

}  // namespace

void TcpSession::attach_upstream(UniqueFd upstream, const SockAddr& source,
                                 const SockAddr& target) {
  upstream_ = std::move(upstream);
  source_ = source;
  target_ = target;
  state_ = SessionState::kConnecting;
}

void TcpSession::on_event(bool upstream_side, uint32_t events) {
  const bool readable = events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR);
  const bool writable = events & (EPOLLOUT | EPOLLHUP | EPOLLERR);
  if (upstream_side) {
    upstream_readable_ |= readable;
    // While connecting, EPOLLOUT means the handshake ended; the worker decides how.
    if (state_ == SessionState::kRelay) upstream_writable_ |= writable;
  } else {
    client_readable_ |= readable;
    client_writable_ |= writable;
  }
}

int TcpSession::pump_direction(Direction& d, int src, int dst, bool& src_readable,
                               bool& dst_writable, bool dst_ready, PipePool& pool,
                               std::atomic<uint64_t>& bytes, bool* src_failed, bool* more) {
  size_t read = 0;
  for (;;) {
    bool progress = false;
    if (!d.eof && src_readable && d.in_pipe < kPipeCapacity) {
      if (!d.pipe) {
        d.pipe = pool.get();
        if (!d.pipe) {
          *src_failed = true;
          return errno;
        }
      }
      ssize_t n = splice(src, nullptr, d.pipe.write_end.get(), nullptr, kPipeCapacity - d.in_pipe,
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        d.in_pipe += size_t(n);
        read += size_t(n);
        progress = true;
      } else if (n == 0) {
        d.eof = true;
        progress = true;
      } else if (errno == EAGAIN) {
        // With an empty pipe, EAGAIN can only mean an empty socket; with bytes in the pipe it
        // may mean a full pipe, so the socket is tried again once the pipe drains.
        if (d.in_pipe == 0) src_readable = false;
      } else if (errno != EINTR) {
        *src_failed = true;
        return errno;
      }
    }
    if (dst_ready && dst_writable && d.in_pipe > 0) {
      ssize_t n = splice(d.pipe.read_end.get(), nullptr, dst, nullptr, d.in_pipe,
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        d.in_pipe -= size_t(n);
        Counters::add(bytes, uint64_t(n));
        progress = true;
      } else if (n < 0 && errno == EAGAIN) {
        dst_writable = false;
      } else if (n < 0 && errno != EINTR) {
        *src_failed = false;
        return errno;
      }
    }
    if (d.in_pipe == 0 && d.pipe) pool.put(std::move(d.pipe), true);
    if (dst_ready && d.eof && d.in_pipe == 0 && !d.shut) {
      // Every byte read before the FIN has been written: pass the FIN on.
      if (shutdown(dst, SHUT_WR) != 0 && errno != ENOTCONN) {
        *src_failed = false;
        return errno;
      }
      d.shut = true;
    }
    if (!progress) return 0;
    if (read >= kRoundBudget) {
      // The source may well have more: the worker comes back after the rest of its round.
      *more = true;
      return 0;
    }
  }
}

PumpResult TcpSession::pump(Counters& counters, PipePool& pool) {
  PumpResult r;
  if (state_ != SessionState::kConnecting && state_ != SessionState::kRelay) return r;
  const bool upstream_ready = state_ == SessionState::kRelay;
  bool src_failed = false;
  int err =
      pump_direction(up_, client_.get(), upstream_.get(), client_readable_, upstream_writable_,
                     upstream_ready, pool, counters.bytes_from_clients, &src_failed, &r.more);
  if (err != 0) {
    r.kind = PumpResult::kFailed;
    r.err = err;
    r.client_failed = src_failed;
    return r;
  }
  if (upstream_ready) {
    err =
        pump_direction(down_, upstream_.get(), client_.get(), upstream_readable_, client_writable_,
                       true, pool, counters.bytes_from_upstreams, &src_failed, &r.more);
    if (err != 0) {
      r.kind = PumpResult::kFailed;
      r.err = err;
      r.client_failed = !src_failed;
      return r;
    }
  }
  if (up_.done() && down_.done()) r.kind = PumpResult::kFinished;
  return r;
}

void TcpSession::end(bool reset_client, bool reset_upstream) {
  state_ = SessionState::kClosed;
  reset_client_ = reset_client;
  reset_upstream_ = reset_upstream;
}

void TcpSession::release(PipePool& pool) {
  if (client_ && reset_client_) set_reset_on_close(client_.get());
  if (upstream_ && reset_upstream_) set_reset_on_close(upstream_.get());
  client_.reset();
  upstream_.reset();
  pool.put(std::move(up_.pipe), up_.in_pipe == 0);
  pool.put(std::move(down_.pipe), down_.in_pipe == 0);
}

}  // namespace mmproxy
