// connect_from: one checked TCP connection. Any thread but the JS thread (it blocks).
#include "connect_check.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

namespace mmproxy {

int connect_from(const SockAddr* source, const SockAddr& target, uint32_t mark, int timeout_ms,
                 SocketError* err) {
  SocketOptions o;
  o.type = SOCK_STREAM;
  o.transparent = source != nullptr;
  o.reuse_addr = source != nullptr;
  o.mark = mark;
  o.syn_count = 2;
  SockAddr from = source != nullptr ? *source : SockAddr{};
  bool retried;
  UniqueFd fd = open_upstream(o, source != nullptr ? &from : nullptr, target, false, &retried, err);
  if (!fd) return -err->err;
  const std::string call = "connect(" + target.to_string() + ")" +
                           (source != nullptr ? " from " + source->to_string() : "");
  pollfd p{fd.get(), POLLOUT, 0};
  int r = poll(&p, 1, timeout_ms);
  if (r == 0) {
    err->err = ETIMEDOUT;
    err->syscall = call;
    return -err->err;
  }
  int so_error = 0;
  socklen_t len = sizeof so_error;
  getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &so_error, &len);
  if (r < 0 || so_error != 0) {
    err->err = r < 0 ? errno : so_error;
    err->syscall = call;
    return -err->err;
  }
  return 0;
}

}  // namespace mmproxy
