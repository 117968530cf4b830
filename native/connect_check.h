// connect_from: one TCP connection to a target, from a spoofed source (transparent) or plainly,
// to check that the proxy's path works. Blocking, with a timeout: never on the JS thread.
#pragma once

#include <cstdint>

#include "sock_addr.h"
#include "transparent_socket.h"

namespace mmproxy {

// Returns 0 when the handshake completed (the connection is closed at once), or -errno with
// err naming the call that failed.
int connect_from(const SockAddr* source, const SockAddr& target, uint32_t mark, int timeout_ms,
                 SocketError* err);

}  // namespace mmproxy
