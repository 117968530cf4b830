// FlowTable: the UDP flows of one worker, keyed by (load balancer address and port, client
// address and port), with a least-recently-active list so that idle flows expire in order.
// Worker thread only.
#pragma once

#include <cstddef>
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

// A flow key's identifying bytes (families, ports, addresses), packed for the table's slots.
struct PackedFlowKey {
  uint64_t words[5] = {};
  explicit PackedFlowKey(const FlowKey& k);
  bool operator==(const PackedFlowKey& o) const;
  uint64_t hash(uint64_t seed) const;
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
  // The smallest payload size whose UDP GSO send to the target the kernel refused for the
  // route's MTU; payloads this large or larger are sent one by one (and fragmented) from then on.
  size_t gso_too_large = SIZE_MAX;
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
  FlowTable();
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
  size_t size() const { return count_; }
  void clear();

 private:
  void unlink(UdpFlow* f);
  void link_newest(UdpFlow* f);
  // The key index: open addressing with linear probing, at most half full, keys inline so that
  // a lookup usually touches one cache line of the index and then only the flow it finds.
  struct Slot {
    PackedFlowKey key{FlowKey{}};
    UdpFlow* flow = nullptr;  // null: empty
  };
  size_t slot_of(const PackedFlowKey& key) const;  // where key is, or the empty slot it would take
  void grow();
  void erase_slot(size_t i);
  std::vector<Slot> slots_ = std::vector<Slot>(64);
  size_t count_ = 0;
  uint64_t seed_ = 0;
  std::unordered_map<uint64_t, std::unique_ptr<UdpFlow>> by_id_;  // owns the flows
  UdpFlow* oldest_ = nullptr;
  UdpFlow* newest_ = nullptr;
};

}  // namespace mmproxy
