// Socket creation with the options the proxy needs: transparent upstream sockets and listeners.
// Any thread.
#include "transparent_socket.h"

#include <fcntl.h>
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

namespace {

// Bursts from many clients arrive between two reads of the worker: give them room.
constexpr int kUdpBufferSize = 8 * 1024 * 1024;

// Raises SO_RCVBUF / SO_SNDBUF to kUdpBufferSize unless already that large. FORCE goes past
// net.core.rmem_max with CAP_NET_ADMIN, which the proxy holds anyway. Best effort.
void size_udp_buffers(int fd) {
  const int size = kUdpBufferSize;
  const int names[2][2] = {{SO_RCVBUF, SO_RCVBUFFORCE}, {SO_SNDBUF, SO_SNDBUFFORCE}};
  for (const auto& name : names) {
    int current = 0;
    socklen_t len = sizeof current;
    // The kernel reports twice the size that was set (it counts its bookkeeping).
    if (getsockopt(fd, SOL_SOCKET, name[0], &current, &len) == 0 && current / 2 >= size) continue;
    if (setsockopt(fd, SOL_SOCKET, name[1], &size, sizeof size) != 0)
      setsockopt(fd, SOL_SOCKET, name[0], &size, sizeof size);
  }
}

}  // namespace

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
  if (type == SOCK_DGRAM) size_udp_buffers(fd.get());
  if (type == SOCK_STREAM && listen(fd.get(), backlog) != 0) {
    err->err = errno;
    err->syscall = "listen(" + addr.to_string() + ")";
    return UniqueFd();
  }
  return fd;
}

const char* expected_listener(int type) {
  return type == SOCK_DGRAM ? "a bound UDP socket" : "a listening TCP socket";
}

int check_listener_fd(int fd, int type, SocketError* err) {
  auto mismatch = [&](std::string found) {
    err->err = EPROTOTYPE;
    err->syscall = "listen fd " + std::to_string(fd);
    err->fd = fd;
    err->found = std::move(found);
    return -err->err;
  };
  auto get = [&](int name, const char* name_text, int* value) {
    socklen_t len = sizeof *value;
    if (getsockopt(fd, SOL_SOCKET, name, value, &len) == 0) return true;
    err->err = errno;
    err->syscall = "getsockopt(" + std::to_string(fd) + ", SOL_SOCKET, " + name_text + ")";
    return false;
  };
  int so_type = 0, domain = 0, protocol = 0, listening = 0;
  if (!get(SO_TYPE, "SO_TYPE", &so_type)) {
    if (err->err == ENOTSOCK) return mismatch("not a socket");
    if (err->err == EBADF) return mismatch("not an open file descriptor");
    return -err->err;
  }
  if (!get(SO_DOMAIN, "SO_DOMAIN", &domain) || !get(SO_PROTOCOL, "SO_PROTOCOL", &protocol) ||
      !get(SO_ACCEPTCONN, "SO_ACCEPTCONN", &listening))
    return -err->err;
  const bool inet = domain == AF_INET || domain == AF_INET6;
  const bool tcp = so_type == SOCK_STREAM && protocol == IPPROTO_TCP;
  const bool udp = so_type == SOCK_DGRAM && protocol == IPPROTO_UDP;
  std::string kind = so_type == SOCK_STREAM      ? "stream"
                     : so_type == SOCK_DGRAM     ? "datagram"
                     : so_type == SOCK_SEQPACKET ? "seqpacket"
                                                 : "type " + std::to_string(so_type);
  if (!inet) {
    const std::string family =
        domain == AF_UNIX ? "unix" : "address family " + std::to_string(domain);
    return mismatch("a " + family + " " + kind + " socket");
  }
  const std::string ip = domain == AF_INET ? "an IPv4" : "an IPv6";
  if (!tcp && !udp)
    return mismatch(ip + " " + kind + " socket of protocol " + std::to_string(protocol));
  if (tcp && type != SOCK_STREAM) return mismatch(ip + " TCP socket");
  if (udp && type != SOCK_DGRAM) return mismatch(ip + " UDP socket");
  if (tcp && !listening) return mismatch(ip + " TCP socket that is not listening");
  if (udp) {
    SockAddr local;
    local.len = sizeof local.storage;
    if (getsockname(fd, local.sa(), &local.len) == 0 && local.port() == 0)
      return mismatch(ip + " UDP socket that is not bound");
  }
  return 0;
}

int adopt_listener(int fd, int type, SocketError* err) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    err->err = errno;
    err->syscall = "fcntl(" + std::to_string(fd) + ", F_SETFL, O_NONBLOCK)";
    return -err->err;
  }
  const int fd_flags = fcntl(fd, F_GETFD);
  if (fd_flags < 0 || fcntl(fd, F_SETFD, fd_flags | FD_CLOEXEC) != 0) {
    err->err = errno;
    err->syscall = "fcntl(" + std::to_string(fd) + ", F_SETFD, FD_CLOEXEC)";
    return -err->err;
  }
  if (type == SOCK_DGRAM) size_udp_buffers(fd);
  return 0;
}

}  // namespace mmproxy
