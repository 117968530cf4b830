// The sending half of systemd's notification protocol (sd_notify): one datagram to the AF_UNIX
// socket that NOTIFY_SOCKET names. Plain C++; the binding is in binding.cc. Any thread.
#pragma once

#include <string>

namespace mmproxy {

// Sends `message` ("READY=1\nSTATUS=…") as one datagram to the AF_UNIX SOCK_DGRAM socket at
// `path`: a file system path ("/run/systemd/notify") or, with a leading '@', an abstract socket
// name. Never blocks: a full queue on the receiving side is EAGAIN. 0, or -errno with *syscall
// naming the call and the socket.
int send_notification(const std::string& path, const std::string& message, std::string* syscall);

}  // namespace mmproxy
