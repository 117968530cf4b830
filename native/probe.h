// Start-up probe: may this process create transparent sockets? Runs on any thread.
#pragma once

#include <string>

namespace mmproxy {

struct ProbeResult {
  int err = 0;          // 0 on success, else a positive errno
  std::string syscall;  // the call that failed, with its arguments
};

// Creates a TCP socket of the family (4 or 6) and sets IP_TRANSPARENT/IPV6_TRANSPARENT on it.
ProbeResult probe_transparent(int family);

}  // namespace mmproxy
