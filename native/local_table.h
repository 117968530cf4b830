// This host's local addresses as the kernel decides them: the prefixes of its local routing
// table (RT_TABLE_LOCAL), read with one netlink dump. Any thread.
#pragma once

#include <string>
#include <vector>

namespace mmproxy {

// "192.0.2.1/32", "127.0.0.0/8", "2001:db8::1/128", ... for every local, broadcast and anycast
// entry of the local table, IPv4 and IPv6. Returns false with errno-style `*err` and the failing
// call's name in `*syscall` when the dump could not be read.
bool dump_local_table(std::vector<std::string>* out, int* err, const char** syscall);

}  // namespace mmproxy
