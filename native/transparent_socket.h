// Socket creation with the options the proxy needs: transparent upstream sockets and listeners.
// Every function returns an owned fd (non-blocking, close-on-exec) or fills SocketError naming the
// call that failed with its arguments. Any thread.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "sock_addr.h"
#include "unique_fd.h"

namespace mmproxy {

struct SocketError {
  int err = 0;          // positive errno
  std::string syscall;  // "setsockopt(IPPROTO_IP, IP_TRANSPARENT, 1)"
};

struct SocketOptions {
  int family = AF_INET;
  int type = SOCK_STREAM;
  bool transparent = false;   // IP_TRANSPARENT / IPV6_TRANSPARENT
  bool reuse_addr = false;    // SO_REUSEADDR
  bool reuse_port = false;    // SO_REUSEPORT
  bool bind_no_port = false;  // IP_BIND_ADDRESS_NO_PORT: pick the port at connect()
  bool nodelay = false;       // TCP_NODELAY
  uint32_t mark = 0;          // SO_MARK when non-zero
  int syn_count = 0;          // TCP_SYNCNT when non-zero
  bool recv_errors = false;   // IP_RECVERR / IPV6_RECVERR (UDP: ICMP errors reach recvmsg)
};

// socket() plus every option in opts. For AF_INET6, IPV6_V6ONLY is turned off so that
// IPv4-mapped addresses work on the same socket.
UniqueFd open_socket(const SocketOptions& opts, SocketError* err);
inline UniqueFd open_transparent_socket(SocketOptions opts, SocketError* err) {
  opts.transparent = true;
  return open_socket(opts, err);
}

// bind(); on failure fills err with "bind(ADDRESS)".
int bind_socket(int fd, const SockAddr& addr, SocketError* err);

// A listening (SOCK_STREAM) or bound (SOCK_DGRAM) socket on addr with SO_REUSEADDR and, when
// reuse_port, SO_REUSEPORT so that several can share the address.
UniqueFd open_listener(const SockAddr& addr, int type, bool reuse_port, int backlog,
                       SocketError* err);

}  // namespace mmproxy
