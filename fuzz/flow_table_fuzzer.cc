// libFuzzer target over the UDP flow table (native/udp_flow_table.cc): its open-addressing key
// index with backward-shift deletion and its least-recently-active list. The input is a sequence
// of operations on keys drawn from a small pool (IPv4, IPv6, v4-mapped, shared addresses with
// different ports, LOCAL keys); after each one the table must agree with a plain std::map.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>

#include "../native/udp_flow_table.h"
#include "check.h"

using mmproxy::FlowKey;
using mmproxy::FlowTable;
using mmproxy::SockAddr;
using mmproxy::UdpFlow;

namespace {

constexpr int kPool = 96;

SockAddr address(int n) {
  // A few addresses, many ports: keys that share bytes and collide in the index.
  static const char* const ips[] = {"192.0.2.1",        "192.0.2.2",    "2001:db8::1",
                                    "::ffff:192.0.2.1", "198.51.100.7", "2001:db8::2"};
  SockAddr a;
  SockAddr::parse(ips[n % 6], uint16_t(1000 + n / 6), &a);
  return a;
}

FlowKey key_of(int i) {
  // Every eighth key is LOCAL: the load balancer stands for the client. The others share three
  // load balancers. No two indexes make the same key.
  if (i % 8 == 7) return FlowKey{address(i), address(i)};
  return FlowKey{address(i % 3), address(i)};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FlowTable table;
  std::map<int, UdpFlow*> model;  // key index → its flow
  uint64_t next_id = 1;
  int64_t now = 0;
  for (size_t p = 0; p + 1 < size; p += 2) {
    const int op = data[p] & 3;
    const int k = data[p + 1] % kPool;
    const FlowKey key = key_of(k);
    now += data[p] >> 2;
    UdpFlow* found = table.find(key);
    auto it = model.find(k);
    CHECK(found == (it == model.end() ? nullptr : it->second));
    if (op <= 1 && !found) {
      auto flow = std::make_unique<UdpFlow>();
      flow->id = next_id++;
      flow->key = key;
      flow->last_active_ms = now;
      UdpFlow* f = table.insert(std::move(flow));
      CHECK(table.find(key) == f && table.find_id(f->id) == f);
      model[k] = f;
    } else if (op == 2 && found) {
      const uint64_t id = found->id;
      table.remove(found);
      CHECK(table.find(key) == nullptr && table.find_id(id) == nullptr);
      model.erase(it);
    } else if (op == 3 && found) {
      table.touch(found, now);
    }
    CHECK(table.size() == model.size());
  }
  // Every key still findable after all the moves deletions made; the list holds each flow once,
  // oldest first by the time it was last relinked.
  size_t listed = 0;
  int64_t previous = INT64_MIN;
  for (const UdpFlow* f = table.oldest(); f != nullptr; f = f->newer) {
    CHECK(f->linked_ms >= previous);
    previous = f->linked_ms;
    listed++;
  }
  CHECK(listed == model.size());
  for (int k = 0; k < kPool; k++) {
    auto it = model.find(k);
    CHECK(table.find(key_of(k)) == (it == model.end() ? nullptr : it->second));
  }
  // Emptying the table through its oldest end leaves nothing behind.
  while (UdpFlow* f = table.oldest()) table.remove(f);
  CHECK(table.size() == 0);
  for (int k = 0; k < kPool; k++) CHECK(table.find(key_of(k)) == nullptr);
  return 0;
}
