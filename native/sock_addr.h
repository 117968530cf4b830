// SockAddr: an IPv4 or IPv6 socket address with parsing and printing. Any thread.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace mmproxy {

struct SockAddr {
  sockaddr_storage storage{};
  socklen_t len = 0;

  int family() const { return storage.ss_family; }
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
  sockaddr* sa() { return reinterpret_cast<sockaddr*>(&storage); }
  uint16_t port() const;
  void set_port(uint16_t port);
  // Address without the port, as inet_ntop prints it ("192.0.2.1", "2001:db8::1").
  std::string ip_string() const;
  // Address with the port, as "192.0.2.1:80" or "[2001:db8::1]:80".
  std::string to_string() const;
  // True for ::ffff:a.b.c.d.
  bool is_v4_mapped() const;
  // 0.0.0.0, :: or ::ffff:0.0.0.0: the wildcards a socket binds to for every local address.
  bool is_unspecified() const;
  // Same family and address; the port and the sockaddr padding are not compared.
  bool same_ip(const SockAddr& other) const;

  // Parses a literal IPv4 or IPv6 address (no brackets) and a port. Returns false if malformed.
  static bool parse(const char* ip, uint16_t port, SockAddr* out);
};

}  // namespace mmproxy
