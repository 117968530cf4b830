// Start-up probe: may this process create transparent sockets? Runs on any thread.
#include "probe.h"

#include <cerrno>

#include "transparent_socket.h"
#include "unique_fd.h"

namespace mmproxy {

ProbeResult probe_transparent(int family) {
  ProbeResult r;
  SocketOptions opts;
  opts.family = family == 6 ? AF_INET6 : AF_INET;
  opts.type = SOCK_STREAM;
  opts.transparent = true;
  SocketError err;
  UniqueFd fd = open_socket(opts, &err);
  if (!fd) {
    r.err = err.err;
    r.syscall = err.syscall;
  }
  return r;
}

}  // namespace mmproxy
