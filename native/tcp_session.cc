// TcpSession: the splice() relay of one connection. Worker thread only.
#include "tcp_session.h"

#include <fcntl.h>
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

void TcpSession::attach_upstream(UniqueFd upstream, const SockAddr& source, const SockAddr& target,
                                 Pipe up, Pipe down) {
  upstream_ = std::move(upstream);
  source_ = source;
  target_ = target;
  up_.pipe = std::move(up);
  down_.pipe = std::move(down);
  state_ = SessionState::kConnecting;
}

int TcpSession::pump_direction(Direction& d, int src, int dst, bool dst_ready,
                               std::atomic<uint64_t>& bytes, bool* src_failed) {
  for (;;) {
    bool progress = false;
    if (!d.eof && d.in_pipe < kPipeCapacity) {
      ssize_t n = splice(src, nullptr, d.pipe.write_end.get(), nullptr, kPipeCapacity - d.in_pipe,
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        d.in_pipe += size_t(n);
        progress = true;
      } else if (n == 0) {
        d.eof = true;
        progress = true;
      } else if (errno != EAGAIN && errno != EINTR) {
        *src_failed = true;
        return errno;
      }
    }
    if (dst_ready && d.in_pipe > 0) {
      ssize_t n = splice(d.pipe.read_end.get(), nullptr, dst, nullptr, d.in_pipe,
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        d.in_pipe -= size_t(n);
        Counters::add(bytes, uint64_t(n));
        progress = true;
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        *src_failed = false;
        return errno;
      }
    }
    if (dst_ready && d.eof && d.in_pipe == 0 && !d.shut) {
      // Every byte read before the FIN has been written: pass the FIN on.
      if (shutdown(dst, SHUT_WR) != 0 && errno != ENOTCONN) {
        *src_failed = false;
        return errno;
      }
      d.shut = true;
    }
    if (!progress) return 0;
  }
}

PumpResult TcpSession::pump(Counters& counters) {
  PumpResult r;
  if (state_ != SessionState::kConnecting && state_ != SessionState::kRelay) return r;
  const bool upstream_ready = state_ == SessionState::kRelay;
  bool src_failed = false;
  int err = pump_direction(up_, client_.get(), upstream_.get(), upstream_ready,
                           counters.bytes_from_clients, &src_failed);
  if (err != 0) {
    r.kind = PumpResult::kFailed;
    r.err = err;
    r.client_failed = src_failed;
    return r;
  }
  if (upstream_ready) {
    err = pump_direction(down_, upstream_.get(), client_.get(), true, counters.bytes_from_upstreams,
                         &src_failed);
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

void TcpSession::close(PipePool& pool, bool reset_client, bool reset_upstream) {
  if (state_ == SessionState::kClosed) return;
  state_ = SessionState::kClosed;
  if (client_ && reset_client) set_reset_on_close(client_.get());
  if (upstream_ && reset_upstream) set_reset_on_close(upstream_.get());
  client_.reset();
  upstream_.reset();
  pool.put(std::move(up_.pipe), up_.in_pipe == 0);
  pool.put(std::move(down_.pipe), down_.in_pipe == 0);
}

}  // namespace mmproxy
