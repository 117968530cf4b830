// The sending half of systemd's notification protocol. Any thread.
#include "systemd_notify.h"

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "unique_fd.h"

namespace mmproxy {

int send_notification(const std::string& path, const std::string& message, std::string* syscall) {
  *syscall = "sendto(NOTIFY_SOCKET=" + path + ")";
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  // An abstract name may use every byte of sun_path; a path needs room for its terminating NUL.
  const bool abstract = !path.empty() && path[0] == '@';
  if ((!abstract && (path.empty() || path[0] != '/')) || path.find('\0') != std::string::npos ||
      path.size() > sizeof addr.sun_path - (abstract ? 0 : 1))
    return -EINVAL;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (abstract) addr.sun_path[0] = '\0';
  // An abstract name is exactly as long as given; a path ends at its NUL.
  const socklen_t len =
      socklen_t(offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));
  UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) {
    *syscall = "socket(AF_UNIX, SOCK_DGRAM)";
    return -errno;
  }
  const ssize_t sent = sendto(fd.get(), message.data(), message.size(), MSG_NOSIGNAL,
                              reinterpret_cast<const sockaddr*>(&addr), len);
  if (sent < 0) return -errno;
  return 0;
}

}  // namespace mmproxy
