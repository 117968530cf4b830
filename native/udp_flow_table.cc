// FlowTable: one worker's UDP flows. Worker thread only.
#include "udp_flow_table.h"

#include <cstring>

namespace mmproxy {

namespace {

// The bytes that identify an address: family, address and port (not sockaddr padding).
size_t hash_addr(const SockAddr& a, size_t h) {
  auto mix = [&](const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;  // FNV-1a
  };
  uint16_t port = a.port();
  mix(&port, sizeof port);
  if (a.family() == AF_INET) {
    mix(&reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr, 4);
  } else if (a.family() == AF_INET6) {
    mix(&reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr, 16);
  }
  return h;
}

bool same_addr(const SockAddr& a, const SockAddr& b) {
  return a.port() == b.port() && a.same_ip(b);
}

}  // namespace

size_t FlowKeyHash::operator()(const FlowKey& k) const {
  return hash_addr(k.client, hash_addr(k.load_balancer, 14695981039346656037ull));
}

bool FlowKeyEqual::operator()(const FlowKey& a, const FlowKey& b) const {
  return same_addr(a.load_balancer, b.load_balancer) && same_addr(a.client, b.client);
}

UdpFlow* FlowTable::find(const FlowKey& key) const {
  auto it = by_key_.find(key);
  return it == by_key_.end() ? nullptr : it->second.get();
}

UdpFlow* FlowTable::find_id(uint64_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

UdpFlow* FlowTable::insert(std::unique_ptr<UdpFlow> flow) {
  UdpFlow* f = flow.get();
  f->linked_ms = f->last_active_ms;
  by_id_[f->id] = f;
  by_key_.emplace(f->key, std::move(flow));
  link_newest(f);
  return f;
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
  by_id_.erase(f->id);
  by_key_.erase(f->key);  // destroys f, closing its socket
}

void FlowTable::clear() {
  by_id_.clear();
  by_key_.clear();
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
