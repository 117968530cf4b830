// Where a PROXY protocol header ends, from its first bytes: the only parsing native code does.
// Decoding (addresses, TLVs, validation) is lib/codec/'s job. Any thread; pure.
#pragma once

#include <cstddef>
#include <cstdint>

#include "sock_addr.h"

namespace mmproxy {

constexpr size_t kV1MaxLength = 107;          // "PROXY UNKNOWN ...\r\n", CRLF included
constexpr size_t kV2FixedLength = 16;         // signature, version/command, family, length
constexpr size_t kV2MaxLength = 16 + 65535;   // the length field is 16 bits
constexpr size_t kV2UnixAddressLength = 216;  // two 108-byte AF_UNIX paths

enum class Framing {
  kNeedMore,  // a proper prefix of something that can still become a header
  kComplete,  // *length is the header's size
  kInvalid,   // can no longer become a header; *length is how many bytes showed it
};

// A v2 header at the start of one datagram, read just far enough to key its flow.
struct DgramHeader {
  size_t length = 0;   // header size; the payload follows
  bool local = false;  // LOCAL, AF_UNSPEC or AF_UNIX: no client address
  SockAddr source;     // the client, when !local
};

// Parses the datagram's v2 header (UDP4, UDP6, UNIX_DGRAM, UNSPEC; PROXY or LOCAL). False for
// anything else: no header, v1, a stream family, a truncated header or address block.
bool parse_dgram_header(const uint8_t* data, size_t n, DgramHeader* out);

// Looks at the first n bytes of a stream (or one datagram). For kComplete, *length is the size
// of the header, which may be larger than n for v2 (the caller reads the rest).
Framing frame_header(const uint8_t* data, size_t n, size_t* length);

}  // namespace mmproxy
