// One netlink RTM_GETROUTE dump, filtered to the local table. The kernel's own test for "is this
// address mine" (inet_addr_type, ipv6_chk_addr) uses this table, so it includes what
// os.networkInterfaces() leaves out: addresses of interfaces that are up without carrier, and
// prefixes routed as local (127.0.0.0/8, `ip route add local ...` in table local).
#include "local_table.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace mmproxy {

namespace {

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Appends "address/prefix" for one route message of the local table; ignores other routes.
void add_route(const nlmsghdr* h, std::vector<std::string>* out) {
  const auto* rt = static_cast<const rtmsg*>(NLMSG_DATA(h));
  if (rt->rtm_family != AF_INET && rt->rtm_family != AF_INET6) return;
  if (rt->rtm_type != RTN_LOCAL && rt->rtm_type != RTN_BROADCAST && rt->rtm_type != RTN_ANYCAST)
    return;
  uint32_t table = rt->rtm_table;
  const void* dst = nullptr;
  int len = int(h->nlmsg_len) - int(NLMSG_LENGTH(sizeof(rtmsg)));
  for (const rtattr* a = RTM_RTA(rt); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if (a->rta_type == RTA_TABLE && RTA_PAYLOAD(a) >= sizeof(uint32_t))
      std::memcpy(&table, RTA_DATA(a), sizeof(uint32_t));
    else if (a->rta_type == RTA_DST)
      dst = RTA_DATA(a);
  }
  if (table != RT_TABLE_LOCAL || dst == nullptr) return;
  char text[INET6_ADDRSTRLEN];
  if (inet_ntop(rt->rtm_family, dst, text, sizeof(text)) == nullptr) return;
  out->push_back(std::string(text) + "/" + std::to_string(rt->rtm_dst_len));
}

}  // namespace

bool dump_local_table(std::vector<std::string>* out, int* err, const char** syscall) {
  Fd s{::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)};
  if (s.fd < 0) {
    *err = errno;
    *syscall = "socket";
    return false;
  }
  struct {
    nlmsghdr h;
    rtmsg rt;
  } req{};
  req.h.nlmsg_len = sizeof(req);
  req.h.nlmsg_type = RTM_GETROUTE;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.h.nlmsg_seq = 1;
  req.rt.rtm_family = AF_UNSPEC;
  req.rt.rtm_table = RT_TABLE_LOCAL;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(s.fd, &req, sizeof(req), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) <
      0) {
    *err = errno;
    *syscall = "sendto";
    return false;
  }
  // A dump arrives as several datagrams of messages, ended by NLMSG_DONE.
  alignas(nlmsghdr) static thread_local char buf[32768];
  for (;;) {
    ssize_t n = ::recv(s.fd, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      *syscall = "recv";
      return false;
    }
    if (n == 0) break;
    int left = int(n);
    for (const auto* h = reinterpret_cast<const nlmsghdr*>(buf); NLMSG_OK(h, left);
         h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE) return true;
      if (h->nlmsg_type == NLMSG_ERROR) {
        const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
        *err = e->error < 0 ? -e->error : EIO;
        *syscall = "RTM_GETROUTE";
        return false;
      }
      if (h->nlmsg_type == RTM_NEWROUTE) add_route(h, out);
    }
  }
  return true;
}

}  // namespace mmproxy
