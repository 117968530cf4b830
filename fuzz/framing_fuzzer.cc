// libFuzzer target over the only native code that parses untrusted bytes: frame_header() (where a
// PROXY header ends in a stream) and parse_dgram_header() (a datagram's v2 header). Besides
// crashes and out-of-bounds reads (ASan, UBSan), it checks the properties the TCP worker relies on
// when it calls frame_header() again on every longer peek of the same stream.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "../native/header_framing.h"
#include "check.h"

using mmproxy::DgramHeader;
using mmproxy::Framing;

namespace {

const uint8_t kV1[] = {'P', 'R', 'O', 'X', 'Y', ' '};
const uint8_t kV2[] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

bool starts_with(const uint8_t* d, size_t n, const uint8_t* sig, size_t len) {
  return n >= len && std::memcmp(d, sig, len) == 0;
}

// A proper prefix of a signature (or all of it, for n == its length, since more must follow).
bool prefix_of(const uint8_t* d, size_t n, const uint8_t* sig, size_t len) {
  return std::memcmp(d, sig, n < len ? n : len) == 0;
}

bool has_crlf(const uint8_t* d, size_t n) {
  for (size_t i = 1; i < n; i++)
    if (d[i - 1] == '\r' && d[i] == '\n') return true;
  return false;
}

// The framing of data[0..n), with the invariants of each answer checked.
Framing frame_checked(const uint8_t* data, size_t n, size_t* length) {
  // A copy of exactly n bytes, so that ASan sees any read past n.
  uint8_t* copy = static_cast<uint8_t*>(std::malloc(n ? n : 1));
  if (n) std::memcpy(copy, data, n);
  Framing f = mmproxy::frame_header(copy, n, length);
  std::free(copy);
  switch (f) {
    case Framing::kNeedMore:
      CHECK(*length == 0);
      // Waiting is right only for a proper prefix of something that can still become a header.
      if (n > 0 && data[0] == kV2[0]) {
        CHECK(n < mmproxy::kV2FixedLength && prefix_of(data, n, kV2, sizeof kV2));
      } else if (n > 0) {
        CHECK(prefix_of(data, n, kV1, sizeof kV1));
        CHECK(n < mmproxy::kV1MaxLength && !has_crlf(data, n));
        // At 106 bytes only a CR as the last can still become the CRLF of a 107-byte line.
        CHECK(n < mmproxy::kV1MaxLength - 1 || data[mmproxy::kV1MaxLength - 2] == '\r');
      }
      break;
    case Framing::kComplete:
      if (starts_with(data, n, kV2, sizeof kV2)) {
        CHECK(n >= mmproxy::kV2FixedLength);
        CHECK((data[12] & 0xF0) == 0x20);
        CHECK(*length == mmproxy::kV2FixedLength + ((size_t(data[14]) << 8) | data[15]));
        CHECK(*length >= mmproxy::kV2FixedLength && *length <= mmproxy::kV2MaxLength);
      } else {
        CHECK(starts_with(data, n, kV1, sizeof kV1));
        CHECK(*length >= sizeof kV1 + 2 && *length <= mmproxy::kV1MaxLength && *length <= n);
        CHECK(data[*length - 2] == '\r' && data[*length - 1] == '\n');
        CHECK(!has_crlf(data, *length - 1));  // the first CRLF ends it
      }
      break;
    case Framing::kInvalid:
      // How many bytes showed it: at least one, never more than were looked at.
      CHECK(*length >= 1 && *length <= n);
      CHECK(*length <= mmproxy::kV1MaxLength);
      break;
  }
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  size_t full_length = 0;
  const Framing full = frame_checked(data, size, &full_length);

  // A stream arrives in pieces and is framed again on every longer peek: an answer other than
  // kNeedMore must never change as more bytes arrive (the worker acts on the first one).
  const size_t limit = size < 300 ? size : 300;
  for (size_t m = 0; m < limit; m++) {
    size_t len = 0;
    Framing f = frame_checked(data, m, &len);
    if (f == Framing::kNeedMore) continue;
    CHECK(f == full);
    CHECK(len == full_length);
  }

  // The datagram parser: what it accepts is a complete v2 header that frame_header agrees on.
  uint8_t* copy = static_cast<uint8_t*>(std::malloc(size ? size : 1));
  if (size) std::memcpy(copy, data, size);
  DgramHeader h;
  const bool ok = mmproxy::parse_dgram_header(copy, size, &h);
  std::free(copy);
  if (ok) {
    CHECK(full == Framing::kComplete && h.length == full_length);
    CHECK(h.length >= mmproxy::kV2FixedLength && h.length <= size);
    CHECK((data[12] & 0x0F) <= 1);
    if (h.local) {
      CHECK(h.source.len == 0);
      if (data[13] == 0x32 && (data[12] & 0x0F) == 1)
        CHECK(h.length >= mmproxy::kV2FixedLength + mmproxy::kV2UnixAddressLength);
    } else if (data[13] == 0x12) {
      CHECK(h.length >= mmproxy::kV2FixedLength + 12);
      CHECK(h.source.family() == AF_INET && h.source.len == sizeof(sockaddr_in));
      const auto* sin = reinterpret_cast<const sockaddr_in*>(&h.source.storage);
      CHECK(std::memcmp(&sin->sin_addr, data + 16, 4) == 0);
      CHECK(std::memcmp(&sin->sin_port, data + 24, 2) == 0);
    } else {
      CHECK(data[13] == 0x22);
      CHECK(h.length >= mmproxy::kV2FixedLength + 36);
      CHECK(h.source.family() == AF_INET6 && h.source.len == sizeof(sockaddr_in6));
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&h.source.storage);
      CHECK(std::memcmp(&sin6->sin6_addr, data + 16, 16) == 0);
      CHECK(std::memcmp(&sin6->sin6_port, data + 48, 2) == 0);
    }
  }
  return 0;
}
