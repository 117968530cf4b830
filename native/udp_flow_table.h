// FlowTable: the UDP flows of one worker, keyed by (load balancer address and port, client
// address and port), with a least-recently-active list so that idle flows expire in order.
// Worker thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "sock_addr.h"
#include "unique_fd.h"
#include "worker_thread.h"

namespace mmproxy {

struct FlowKey {
  SockAddr load_balancer;
  SockAddr client;  // the load balancer again for LOCAL: one flow per load balancer socket
};

struct FlowKeyHash {
  size_t operator()(const FlowKey& k) const;
};
struct FlowKeyEqual {
  bool operator()(const FlowKey& a, const FlowKey& b) const;
};

struct UdpFlow {
  enum class State : uint8_t { kPending, kAdmitted, kRefused };
  uint64_t id = 0;
  FlowKey key;
  State state = State::kPending;
  int listener_index = 0;  // the socket the flow arrived on; replies leave from it
  // The address the load balancer sent the flow's first datagram to, when the listener is bound
  // to a wildcard (replies must leave from it); len 0 otherwise.
  SockAddr local;
  UniqueFd socket;  // transparent, bound to the client, connected to the target
  std::vector<std::vector<uint8_t>> queue;  // payloads that arrived while pending
  int64_t last_active_ms = 0;
  // Replies: read one at a time until the flow is ready again in the very next round of events,
  // then in batches until a batch finds only one.
  bool bursty = false;
  uint64_t single_read_round = 0;
  int64_t linked_ms = 0;  // when it last moved to the newest end of the list
  UdpFlow* older = nullptr;
  UdpFlow* newer = nullptr;
  EpollTag tag;
};

class FlowTable {
 public:
  UdpFlow* find(const FlowKey& key) const;
  UdpFlow* find_id(uint64_t id) const;
  UdpFlow* insert(std::unique_ptr<UdpFlow> flow);  // the flow becomes the newest
  // Records activity. The flow moves to the newest end only if it last moved there more than
  // kRelinkMs ago: the list stays sorted by that time, a flow's activity lies within kRelinkMs
  // of it, and a busy flow costs a relink four times a second, not one per datagram.
  void touch(UdpFlow* flow, int64_t now_ms);
  static constexpr int64_t kRelinkMs = 250;
  void remove(UdpFlow* flow);  // closes its socket
  UdpFlow* oldest() const { return oldest_; }
  size_t size() const { return by_key_.size(); }
  void clear();

 private:
  void unlink(UdpFlow* f);
  void link_newest(UdpFlow* f);
  std::unordered_map<FlowKey, std::unique_ptr<UdpFlow>, FlowKeyHash, FlowKeyEqual> by_key_;
  std::unordered_map<uint64_t, UdpFlow*> by_id_;
  UdpFlow* oldest_ = nullptr;
  UdpFlow* newest_ = nullptr;
};

}  // namespace mmproxy
