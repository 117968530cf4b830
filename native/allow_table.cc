// AllowTable: the compiled allowlist. Any thread.
#include "allow_table.h"

#include <arpa/inet.h>

#include <cstring>

namespace mmproxy {

std::shared_ptr<const AllowTable> AllowTable::parse(const uint8_t* data, size_t len) {
  if (len % 18 != 0) return nullptr;
  auto table = std::make_shared<AllowTable>();
  for (size_t off = 0; off < len; off += 18) {
    const uint8_t* r = data + off;
    int family = r[0], prefix = r[1];
    if (family == 4 && prefix <= 32) {
      uint32_t net;
      std::memcpy(&net, r + 2, 4);
      uint32_t mask = prefix == 0 ? 0 : ~uint32_t(0) << (32 - prefix);
      table->v4_.push_back({ntohl(net) & mask, mask});
    } else if (family == 6 && prefix <= 128) {
      V6 v{};
      std::memcpy(v.addr, r + 2, 16);
      v.prefix = prefix;
      table->v6_.push_back(v);
    } else {
      return nullptr;
    }
  }
  return table;
}

bool AllowTable::contains_v4(uint32_t ip) const {
  for (const V4& e : v4_)
    if ((ip & e.mask) == e.net) return true;
  return false;
}

bool AllowTable::contains(const SockAddr& peer) const {
  if (peer.family() == AF_INET) {
    auto* sin = reinterpret_cast<const sockaddr_in*>(&peer.storage);
    return contains_v4(ntohl(sin->sin_addr.s_addr));
  }
  if (peer.family() != AF_INET6) return false;
  const uint8_t* a = reinterpret_cast<const sockaddr_in6*>(&peer.storage)->sin6_addr.s6_addr;
  if (peer.is_v4_mapped()) {
    uint32_t ip;
    std::memcpy(&ip, a + 12, 4);
    return contains_v4(ntohl(ip));
  }
  for (const V6& e : v6_) {
    int full = e.prefix / 8, rest = e.prefix % 8;
    if (std::memcmp(a, e.addr, full) != 0) continue;
    if (rest != 0) {
      uint8_t mask = uint8_t(0xFF << (8 - rest));
      if ((a[full] & mask) != e.addr[full]) continue;
    }
    return true;
  }
  return false;
}

}  // namespace mmproxy
