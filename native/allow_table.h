// AllowTable: the compiled allowlist that lib/allowlist.ts hands over, checked against each
// accepted peer before a byte is read. Immutable once built; shared between workers. Any thread.
#pragma once

#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "sock_addr.h"

namespace mmproxy {

class AllowTable {
 public:
  // Parses consecutive 18-byte records [family 4|6][prefix length][16 address bytes, masked].
  // Returns null when the bytes are not such a table.
  static std::shared_ptr<const AllowTable> parse(const uint8_t* data, size_t len);

  // IPv4-mapped IPv6 peers are matched as IPv4.
  bool contains(const SockAddr& peer) const;
  size_t size() const { return v4_.size() + v6_.size(); }

 private:
  struct V4 {
    uint32_t net, mask;  // host byte order
  };
  struct V6 {
    uint8_t addr[16];
    int prefix;
  };
  bool contains_v4(uint32_t ip) const;
  std::vector<V4> v4_;
  std::vector<V6> v6_;
};

}  // namespace mmproxy
