// FlowTable: one worker's UDP flows. Worker thread only.
#include "udp_flow_table.h"

#include <sys/random.h>

#include <cstring>

namespace mmproxy {

namespace {

// Family, port and address of a into words[2], words[2] + 16 bytes (the address part).
void pack(const SockAddr& a, uint64_t* family_port, uint8_t* address) {
  *family_port = (uint64_t(a.family()) << 16) | a.port();
  if (a.family() == AF_INET)
    std::memcpy(address, &reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr, 4);
  else if (a.family() == AF_INET6)
    std::memcpy(address, &reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr, 16);
}

}  // namespace

PackedFlowKey::PackedFlowKey(const FlowKey& k) {
  uint8_t addresses[32] = {};
  uint64_t lb = 0, client = 0;
  pack(k.load_balancer, &lb, addresses);
  pack(k.client, &client, addresses + 16);
  std::memcpy(words, addresses, 32);
  words[4] = (lb << 32) | client;
}

bool PackedFlowKey::operator==(const PackedFlowKey& o) const {
  return ((words[0] ^ o.words[0]) | (words[1] ^ o.words[1]) | (words[2] ^ o.words[2]) |
          (words[3] ^ o.words[3]) | (words[4] ^ o.words[4])) == 0;
}

uint64_t PackedFlowKey::hash(uint64_t seed) const {
  // Multiply-xorshift over the five words. Clients choose their ports: the seed is random per
  // table so that nobody can precompute keys that pile into one probe run.
  uint64_t h = seed;
  for (uint64_t w : words) {
    h ^= w;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
  }
  return h;
}

FlowTable::FlowTable() {
  if (getrandom(&seed_, sizeof seed_, GRND_NONBLOCK) != sizeof seed_)
    seed_ = uint64_t(reinterpret_cast<uintptr_t>(this)) * 0x9e3779b97f4a7c15ull;
}

size_t FlowTable::slot_of(const PackedFlowKey& key) const {
  const size_t mask = slots_.size() - 1;
  size_t i = size_t(key.hash(seed_)) & mask;
  while (slots_[i].flow != nullptr && !(slots_[i].key == key)) i = (i + 1) & mask;
  return i;
}

UdpFlow* FlowTable::find(const FlowKey& key) const {
  return slots_[slot_of(PackedFlowKey(key))].flow;
}

UdpFlow* FlowTable::find_id(uint64_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second.get();
}

UdpFlow* FlowTable::insert(std::unique_ptr<UdpFlow> flow) {
  UdpFlow* f = flow.get();
  f->linked_ms = f->last_active_ms;
  if (2 * (count_ + 1) > slots_.size()) grow();
  const PackedFlowKey key(f->key);
  Slot& slot = slots_[slot_of(key)];
  slot.key = key;
  slot.flow = f;
  count_++;
  by_id_.emplace(f->id, std::move(flow));
  link_newest(f);
  return f;
}

void FlowTable::grow() {
  std::vector<Slot> old(slots_.size() * 2);
  old.swap(slots_);
  for (const Slot& s : old)
    if (s.flow != nullptr) slots_[slot_of(s.key)] = s;
}

void FlowTable::erase_slot(size_t i) {
  // Backward-shift deletion: later members of the probe run move up, so that no lookup stops
  // early at the hole and no tombstones accumulate.
  const size_t mask = slots_.size() - 1;
  size_t hole = i;
  for (size_t j = (i + 1) & mask; slots_[j].flow != nullptr; j = (j + 1) & mask) {
    const size_t home = size_t(slots_[j].key.hash(seed_)) & mask;
    // Move j into the hole unless its home lies cyclically in (hole, j].
    const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (stays) continue;
    slots_[hole] = slots_[j];
    hole = j;
  }
  slots_[hole] = Slot{};
}

void FlowTable::touch(UdpFlow* f, int64_t now_ms) {
  f->last_active_ms = now_ms;
  if (now_ms - f->linked_ms < kRelinkMs) return;
  f->linked_ms = now_ms;
  if (newest_ == f) return;
  unlink(f);
  link_newest(f);
}

void FlowTable::remove(UdpFlow* f) {
  unlink(f);
  erase_slot(slot_of(PackedFlowKey(f->key)));
  count_--;
  by_id_.erase(f->id);  // destroys f, closing its socket
}

void FlowTable::clear() {
  by_id_.clear();
  slots_.assign(64, Slot{});
  count_ = 0;
  oldest_ = newest_ = nullptr;
}

void FlowTable::unlink(UdpFlow* f) {
  if (f->older) f->older->newer = f->newer;
  if (f->newer) f->newer->older = f->older;
  if (oldest_ == f) oldest_ = f->newer;
  if (newest_ == f) newest_ = f->older;
  f->older = f->newer = nullptr;
}

void FlowTable::link_newest(UdpFlow* f) {
  f->older = newest_;
  f->newer = nullptr;
  if (newest_) newest_->newer = f;
  newest_ = f;
  if (!oldest_) oldest_ = f;
}

}  // namespace mmproxy
