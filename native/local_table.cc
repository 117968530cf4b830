// One netlink RTM_GETROUTE dump of the local table. The kernel's own test for "is this address
// mine" (inet_addr_type, ipv6_chk_addr) uses this table, so it includes what
// os.networkInterfaces() leaves out: addresses of interfaces that are up without carrier, and
// prefixes routed as local (127.0.0.0/8, `ip route add local ...` in table local).
#include "local_table.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cstring>

#ifndef NETLINK_GET_STRICT_CHK
#define NETLINK_GET_STRICT_CHK 12
#endif

namespace mmproxy {

namespace {

// Appends "address/prefix" for one route message of the local table; ignores other routes.
void add_route(const nlmsghdr* h, std::vector<std::string>* out) {
  if (h->nlmsg_len < NLMSG_LENGTH(sizeof(rtmsg))) return;
  const auto* rt = static_cast<const rtmsg*>(NLMSG_DATA(h));
  if (rt->rtm_family != AF_INET && rt->rtm_family != AF_INET6) return;
  if (rt->rtm_type != RTN_LOCAL && rt->rtm_type != RTN_BROADCAST && rt->rtm_type != RTN_ANYCAST)
    return;
  const size_t size = rt->rtm_family == AF_INET ? 4 : 16;
  uint32_t table = rt->rtm_table;
  unsigned char dst[16] = {};  // a /0 route has no RTA_DST: the zero address
  bool has_dst = false;
  int len = int(h->nlmsg_len) - int(NLMSG_LENGTH(sizeof(rtmsg)));
  for (const rtattr* a = RTM_RTA(rt); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if (a->rta_type == RTA_TABLE && RTA_PAYLOAD(a) >= sizeof(uint32_t)) {
      std::memcpy(&table, RTA_DATA(a), sizeof(uint32_t));
    } else if (a->rta_type == RTA_DST && RTA_PAYLOAD(a) >= size) {
      std::memcpy(dst, RTA_DATA(a), size);
      has_dst = true;
    }
  }
  if (table != RT_TABLE_LOCAL || (!has_dst && rt->rtm_dst_len != 0)) return;
  char text[INET6_ADDRSTRLEN];
  if (inet_ntop(rt->rtm_family, dst, text, sizeof(text)) == nullptr) return;
  out->push_back(std::string(text) + "/" + std::to_string(rt->rtm_dst_len));
}

}  // namespace

bool dump_local_table(LocalTable* out, int* err, const char** syscall) {
  UniqueFd s(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!s) {
    *err = errno;
    *syscall = "socket";
    return false;
  }
  // With strict checking (Linux 4.20+) the kernel honours rtm_table and sends the local table
  // only; without it, it sends every route it has (a full BGP table is a million) and the loop
  // below keeps the local ones. Not fatal where the option is unknown.
  const int one = 1;
  setsockopt(s.get(), SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof one);
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
  if (::sendto(s.get(), &req, sizeof(req), 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof(kernel)) < 0) {
    *err = errno;
    *syscall = "sendto";
    return false;
  }
  // A dump arrives as several datagrams of messages (each at most 32 KiB), ended by NLMSG_DONE.
  alignas(nlmsghdr) static thread_local char buf[32768];
  for (;;) {
    ssize_t n = ::recv(s.get(), buf, sizeof(buf), 0);
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
      if (h->nlmsg_type == RTM_NEWROUTE) {
        out->routes_read++;
        add_route(h, &out->prefixes);
      }
    }
  }
  return true;
}

bool LocalTableWatch::open(int* err, const char** syscall) {
  fd_.reset(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE));
  if (!fd_) {
    *err = errno;
    *syscall = "socket";
    return false;
  }
  // Addresses come and go with their local-table routes; AnyIP prefixes (`ip route add local`)
  // are routes only. Route changes of other tables wake us too: a dump then finds nothing new.
  sockaddr_nl groups{};
  groups.nl_family = AF_NETLINK;
  groups.nl_groups =
      RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
  if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&groups), sizeof(groups)) < 0) {
    *err = errno;
    *syscall = "bind(RTMGRP_*)";
    fd_.reset();
    return false;
  }
  return true;
}

bool LocalTableWatch::changed() {
  if (!fd_) return true;
  alignas(nlmsghdr) static thread_local char buf[8192];
  bool any = false;
  // Bounded: a router's route churn may keep this socket busy; what is left waits for the next
  // call, and an overflow in between (ENOBUFS) is itself a change.
  for (int i = 0; i < 256; i++) {
    ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      any = true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == ENOBUFS) {
      any = true;
      continue;
    }
    break;  // EAGAIN: drained
  }
  return any;
}

}  // namespace mmproxy
