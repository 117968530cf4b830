// Counters: one block per worker, written only by that worker (relaxed atomics, no sharing of
// cache lines between writers) and summed by the JavaScript thread when stats() is called.
#pragma once

#include <atomic>
#include <cstdint>

namespace mmproxy {

// The order is part of the JS interface: lib/proxy.ts passes reasons by index.
enum RejectReason : int {
  kNotAllowed = 0,
  kBadHeader,
  kHeaderTimeout,
  kSpoofRefused,
  kLocalRejected,
  kRouteRejected,
  kMaxConnections,
  kDecisionTimeout,     // no decision by the header timeout (a route hook that did not answer)
  kClientClosed,        // the client closed or reset the connection while its decision was pending
  kDecisionError,       // the decision code threw (a bug, or out of descriptors): that one refused
  kDestinationRefused,  // the header's destination is outside dynamicDestinationAllow
  kRejectReasonCount,
};

inline const char* const kRejectReasonNames[kRejectReasonCount] = {
    "notAllowed",    "badHeader",     "headerTimeout",      "spoofRefused",
    "localRejected", "routeRejected", "maxConnections",     "decisionTimeout",
    "clientClosed",  "decisionError", "destinationRefused",
};

struct alignas(64) Counters {
  std::atomic<uint64_t> accepted{0};
  std::atomic<int64_t> active{0};
  std::atomic<uint64_t> admitted{0};
  std::atomic<uint64_t> rejected[kRejectReasonCount] = {};
  std::atomic<uint64_t> upstream_failures{0};
  std::atomic<uint64_t> ephemeral_port_retries{0};
  std::atomic<uint64_t> bytes_from_clients{0};
  std::atomic<uint64_t> bytes_from_upstreams{0};
  std::atomic<uint64_t> accept_errors{0};
  // Time from handing a header to JavaScript to its decision reaching the worker.
  std::atomic<uint64_t> decision_wait_us{0};
  std::atomic<uint64_t> decisions{0};
  // UDP only.
  std::atomic<uint64_t> datagrams_from_clients{0};    // received from load balancers
  std::atomic<uint64_t> datagrams_to_upstreams{0};    // sent on to targets
  std::atomic<uint64_t> datagrams_from_upstreams{0};  // replies received from targets
  std::atomic<uint64_t> datagrams_to_clients{0};      // replies sent back to load balancers
  std::atomic<uint64_t> datagrams_dropped{0};         // refused flow, full queue, send failure
  std::atomic<uint64_t> flow_table_full{0};           // new flows refused at maxFlows
  std::atomic<uint64_t> icmp_errors{0};               // errors a target's ICMP reported on a flow
  std::atomic<uint64_t> flows_expired{0};             // idle for closeAfter

  static void add(std::atomic<uint64_t>& c, uint64_t n) {
    // Single writer: a load and a store are enough and cheaper than a locked add.
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  static void add(std::atomic<int64_t>& c, int64_t n) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

}  // namespace mmproxy
