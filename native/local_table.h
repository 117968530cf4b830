// This host's local addresses as the kernel decides them: the prefixes of its local routing
// table (RT_TABLE_LOCAL), read with one netlink dump, and a netlink socket that tells when they
// may have changed. Any thread.
#pragma once

#include <string>
#include <vector>

#include "unique_fd.h"

namespace mmproxy {

struct LocalTable {
  // "192.0.2.1/32", "127.0.0.0/8", "2001:db8::1/128", ... for every local, broadcast and anycast
  // entry of the local table, IPv4 and IPv6.
  std::vector<std::string> prefixes;
  // Route messages the dump read, of every table: with strict checking the kernel sends only
  // the local table's, and without it (kernels before 4.20) every route it has.
  int routes_read = 0;
};

// Returns false with errno-style `*err` and the failing call's name in `*syscall` when the dump
// could not be read.
bool dump_local_table(LocalTable* out, int* err, const char** syscall);

// A netlink socket subscribed to address and route changes, non-blocking. changed() drains what
// arrived and says whether anything did (an overflow counts as a change).
class LocalTableWatch {
 public:
  // Returns false with *err set when the socket could not be opened.
  bool open(int* err, const char** syscall);
  bool changed();
  void close() { fd_.reset(); }

 private:
  UniqueFd fd_;
};

}  // namespace mmproxy
