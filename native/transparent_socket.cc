// Socket creation with the options the proxy needs: transparent upstream sockets and listeners.
// Any thread.
#include "transparent_socket.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cerrno>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

namespace mmproxy {

namespace {

bool set_int(int fd, int level, int name, int value, const char* level_name, const char* opt_name,
             SocketError* err) {
  if (setsockopt(fd, level, name, &value, sizeof value) == 0) return true;
  err->err = errno;
  err->syscall = std::string("setsockopt(") + level_name + ", " + opt_name + ", " +
                 std::to_string(value) + ")";
  return false;
}

}  // namespace

UniqueFd open_socket(const SocketOptions& o, SocketError* err) {
  UniqueFd fd(socket(o.family, o.type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    err->err = errno;
    err->syscall = std::string("socket(") + (o.family == AF_INET6 ? "AF_INET6" : "AF_INET") + ", " +
                   (o.type == SOCK_DGRAM ? "SOCK_DGRAM" : "SOCK_STREAM") + ")";
    return fd;
  }
  const int f = fd.get();
  const bool v6 = o.family == AF_INET6;
  if (v6 && !set_int(f, IPPROTO_IPV6, IPV6_V6ONLY, 0, "IPPROTO_IPV6", "IPV6_V6ONLY", err))
    return UniqueFd();
  if (o.transparent) {
    // An AF_INET6 socket may carry IPv4-mapped traffic, so it wants both options; the IPv4 one
    // is best effort there.
    if (v6) {
      if (!set_int(f, IPPROTO_IPV6, IPV6_TRANSPARENT, 1, "IPPROTO_IPV6", "IPV6_TRANSPARENT", err))
        return UniqueFd();
      int one = 1;
      setsockopt(f, IPPROTO_IP, IP_TRANSPARENT, &one, sizeof one);
    } else if (!set_int(f, IPPROTO_IP, IP_TRANSPARENT, 1, "IPPROTO_IP", "IP_TRANSPARENT", err)) {
      return UniqueFd();
    }
  }
  if (o.reuse_addr && !set_int(f, SOL_SOCKET, SO_REUSEADDR, 1, "SOL_SOCKET", "SO_REUSEADDR", err))
    return UniqueFd();
  if (o.reuse_port && !set_int(f, SOL_SOCKET, SO_REUSEPORT, 1, "SOL_SOCKET", "SO_REUSEPORT", err))
    return UniqueFd();
  if (o.bind_no_port && !set_int(f, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1, "IPPROTO_IP",
                                 "IP_BIND_ADDRESS_NO_PORT", err))
    return UniqueFd();
  if (o.mark != 0) {
    // SO_MARK takes an unsigned 32-bit value; print it as such.
    uint32_t mark = o.mark;
    if (setsockopt(f, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
      err->err = errno;
      err->syscall = "setsockopt(SOL_SOCKET, SO_MARK, " + std::to_string(mark) + ")";
      return UniqueFd();
    }
  }
  if (o.type == SOCK_STREAM) {
    if (o.nodelay && !set_int(f, IPPROTO_TCP, TCP_NODELAY, 1, "IPPROTO_TCP", "TCP_NODELAY", err))
      return UniqueFd();
    if (o.syn_count > 0 &&
        !set_int(f, IPPROTO_TCP, TCP_SYNCNT, o.syn_count, "IPPROTO_TCP", "TCP_SYNCNT", err))
      return UniqueFd();
  }
  return fd;
}

int bind_socket(int fd, const SockAddr& addr, SocketError* err) {
  if (bind(fd, addr.sa(), addr.len) == 0) return 0;
  err->err = errno;
  err->syscall = "bind(" + addr.to_string() + ")";
  return -err->err;
}

UniqueFd open_upstream(SocketOptions o, SockAddr* source, const SockAddr& target,
                       bool retry_ephemeral, bool* retried, SocketError* err) {
  *retried = false;
  auto call = [&] {
    return "connect(" + target.to_string() + ")" +
           (source != nullptr ? " from " + source->to_string() : "");
  };
  if (source != nullptr && source->family() != target.family()) {
    err->err = EAFNOSUPPORT;
    err->syscall = call();
    return UniqueFd();
  }
  o.family = target.family();
  for (int attempt = 0; attempt < 2; attempt++) {
    o.bind_no_port = source != nullptr && source->port() == 0;
    *err = SocketError{};
    UniqueFd fd = open_socket(o, err);
    if (!fd) return fd;
    if (source == nullptr || bind_socket(fd.get(), *source, err) == 0) {
      if (connect(fd.get(), target.sa(), target.len) == 0 || errno == EINPROGRESS) return fd;
      err->err = errno;
      err->syscall = call();
    }
    const bool in_use =
        err->err == EADDRINUSE || (o.type == SOCK_STREAM && err->err == EADDRNOTAVAIL);
    if (attempt > 0 || !retry_ephemeral || !in_use || source == nullptr || source->port() == 0)
      break;
    source->set_port(0);
    *retried = true;
  }
  return UniqueFd();
}

UniqueFd open_listener(const SockAddr& addr, int type, bool reuse_port, int backlog,
                       SocketError* err) {
  SocketOptions o;
  o.family = addr.family();
  o.type = type;
  o.reuse_addr = true;
  o.reuse_port = reuse_port;
  UniqueFd fd = open_socket(o, err);
  if (!fd) return fd;
  if (bind_socket(fd.get(), addr, err) != 0) return UniqueFd();
  if (type == SOCK_DGRAM) {
    // Bursts from many clients arrive between two reads of the worker: give them room. FORCE
    // goes past net.core.rmem_max with CAP_NET_ADMIN, which the proxy holds anyway.
    int size = 8 * 1024 * 1024;
    if (setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
      setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    if (setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) != 0)
      setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  }
  if (type == SOCK_STREAM && listen(fd.get(), backlog) != 0) {
    err->err = errno;
    err->syscall = "listen(" + addr.to_string() + ")";
    return UniqueFd();
  }
  return fd;
}

}  // namespace mmproxy
