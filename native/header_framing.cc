// Where a PROXY protocol header ends, from its first bytes. Any thread; pure.
#include "header_framing.h"

#include <netinet/in.h>

#include <cstring>

namespace mmproxy {

namespace {

const uint8_t kV1Prefix[] = {'P', 'R', 'O', 'X', 'Y', ' '};
const uint8_t kV2Signature[] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

// How many of the first n bytes agree with sig (up to its length).
bool prefix_matches(const uint8_t* data, size_t n, const uint8_t* sig, size_t sig_len) {
  size_t k = n < sig_len ? n : sig_len;
  return std::memcmp(data, sig, k) == 0;
}

}  // namespace

bool parse_dgram_header(const uint8_t* data, size_t n, DgramHeader* out) {
  if (n < kV2FixedLength || std::memcmp(data, kV2Signature, sizeof kV2Signature) != 0) return false;
  const uint8_t version_command = data[12], family = data[13];
  if ((version_command & 0xF0) != 0x20) return false;
  const int command = version_command & 0x0F;
  if (command > 1) return false;
  const size_t length = kV2FixedLength + ((size_t(data[14]) << 8) | data[15]);
  if (length > n) return false;
  out->length = length;
  // AF_UNIX names no client address either: like LOCAL and AF_UNSPEC, its flow is the load
  // balancer's own, and JavaScript decides whether it may be forwarded from that address.
  out->local = command == 0 || family == 0x00 || family == 0x32;
  out->source = SockAddr{};
  if (family == 0x32 && command == 1 && length < kV2FixedLength + kV2UnixAddressLength)
    return false;
  if (out->local) return family == 0x00 || family == 0x12 || family == 0x22 || family == 0x32;
  const uint8_t* a = data + kV2FixedLength;
  if (family == 0x12) {  // AF_INET, SOCK_DGRAM: src 4, dst 4, src port, dst port
    if (length < kV2FixedLength + 12) return false;
    auto* sin = reinterpret_cast<sockaddr_in*>(&out->source.storage);
    sin->sin_family = AF_INET;
    std::memcpy(&sin->sin_addr, a, 4);
    std::memcpy(&sin->sin_port, a + 8, 2);
    out->source.len = sizeof(sockaddr_in);
    return true;
  }
  if (family == 0x22) {  // AF_INET6, SOCK_DGRAM: src 16, dst 16, src port, dst port
    if (length < kV2FixedLength + 36) return false;
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out->source.storage);
    sin6->sin6_family = AF_INET6;
    std::memcpy(&sin6->sin6_addr, a, 16);
    std::memcpy(&sin6->sin6_port, a + 32, 2);
    out->source.len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

Framing frame_header(const uint8_t* data, size_t n, size_t* length) {
  *length = 0;
  if (n == 0) return Framing::kNeedMore;
  if (prefix_matches(data, n, kV2Signature, sizeof kV2Signature)) {
    if (n < kV2FixedLength) return Framing::kNeedMore;
    // Only version 2 exists; anything else cannot become a header. The decoder names the fault.
    if ((data[12] & 0xF0) != 0x20) {
      *length = 13;
      return Framing::kInvalid;
    }
    *length = kV2FixedLength + ((size_t(data[14]) << 8) | data[15]);
    return Framing::kComplete;
  }
  if (prefix_matches(data, n, kV1Prefix, sizeof kV1Prefix)) {
    size_t limit = n < kV1MaxLength ? n : kV1MaxLength;
    for (size_t i = 1; i < limit; i++) {
      if (data[i] == '\n' && data[i - 1] == '\r') {
        *length = i + 1;
        return Framing::kComplete;
      }
    }
    // No CRLF yet. Its CR is at offset 105 at the latest: a line that reached 106 bytes without
    // one there can no longer become a header, as lib/codec/v1.ts decides.
    const size_t last_cr = kV1MaxLength - 2;
    if (n > last_cr && data[last_cr] != '\r') {
      *length = last_cr + 1;
      return Framing::kInvalid;
    }
    if (n >= kV1MaxLength) {
      *length = kV1MaxLength;
      return Framing::kInvalid;
    }
    return Framing::kNeedMore;
  }
  // The first byte that agrees with neither signature ends it.
  size_t i = 0;
  while (i < n && (i < sizeof kV1Prefix && data[i] == kV1Prefix[i])) i++;
  size_t j = 0;
  while (j < n && (j < sizeof kV2Signature && data[j] == kV2Signature[j])) j++;
  *length = (i > j ? i : j) + 1;
  return Framing::kInvalid;
}

}  // namespace mmproxy
