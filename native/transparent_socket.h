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
  // check_listener_fd: the passed fd that is not what was asked for, and what it is instead.
  int fd = -1;
  std::string found;  // "an IPv4 UDP socket", "not a socket"
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
};

// socket() plus every option in opts. For AF_INET6, IPV6_V6ONLY is turned off so that
// IPv4-mapped addresses work on the same socket.
UniqueFd open_socket(const SocketOptions& opts, SocketError* err);

// bind(); on failure fills err with "bind(ADDRESS)".
int bind_socket(int fd, const SockAddr& addr, SocketError* err);

// A socket of opts.type (its family taken from target) bound to *source — when source is not
// null — with a non-blocking connect() to target started (EINPROGRESS counts as started).
// When the source address and port are already taken (EADDRINUSE at bind(); for TCP also
// EADDRNOTAVAIL at connect(), the 4-tuple being in use) and retry_ephemeral is set, it tries once
// more from the same address with a port the kernel picks: *retried is then true and *source
// holds port 0. Errors name the call as "connect(TARGET) from SOURCE".
UniqueFd open_upstream(SocketOptions opts, SockAddr* source, const SockAddr& target,
                       bool retry_ephemeral, bool* retried, SocketError* err);

// A listening (SOCK_STREAM) or bound (SOCK_DGRAM) socket on addr with SO_REUSEADDR and, when
// reuse_port, SO_REUSEPORT so that several can share the address.
UniqueFd open_listener(const SockAddr& addr, int type, bool reuse_port, int backlog,
                       SocketError* err);

// What a passed listener of `type` must be (socket activation): "a listening TCP socket".
const char* expected_listener(int type);

// Whether fd, passed in by its owner (systemd's socket activation), can serve as a listener of
// `type`: an AF_INET or AF_INET6 TCP socket that listens (SOCK_STREAM), or a bound UDP socket
// (SOCK_DGRAM). 0; or -EPROTOTYPE with err->fd and err->found saying what it is instead; or the
// -errno of a getsockopt() that failed otherwise. Changes nothing.
int check_listener_fd(int fd, int type, SocketError* err);

// Makes a checked fd a listener as open_listener would have made it: non-blocking, close-on-exec
// and, for UDP, receive and send buffers of at least open_listener's size (a larger size that the
// socket's owner chose stays). 0 or -errno with err filled.
int adopt_listener(int fd, int type, SocketError* err);

}  // namespace mmproxy
