// Engine: listeners, workers and the hand-offs between them and JavaScript. Thread of each
// function as documented in engine.h.
#include "engine.h"

#include <time.h>

#include "tcp_worker.h"

namespace mmproxy {

int64_t monotonic_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void Outbox::push(HeaderRecord&& r) {
  bool first;
  {
    std::lock_guard<std::mutex> lock(mu_);
    first = batch_.empty();
    batch_.headers.push_back(std::move(r));
  }
  if (first && notify_) notify_();
}

void Outbox::push(ErrorRecord&& r) {
  bool first;
  {
    std::lock_guard<std::mutex> lock(mu_);
    first = batch_.empty();
    batch_.errors.push_back(std::move(r));
  }
  if (first && notify_) notify_();
}

Outbox::Batch Outbox::take() {
  Batch out;
  std::lock_guard<std::mutex> lock(mu_);
  std::swap(out, batch_);
  return out;
}

Engine::Engine(const EngineConfig& config) : config_(config) {}

Engine::~Engine() { close(0); }

int Engine::listen(SocketError* err) {
  SockAddr addr = config_.listen;
  for (int i = 0; i < config_.listeners; i++) {
    UniqueFd fd = open_listener(addr, SOCK_STREAM, config_.listeners > 1, config_.backlog, err);
    if (!fd) {
      listeners_.clear();
      return -err->err;
    }
    if (i == 0 && addr.port() == 0) {
      // Port 0: the other listeners share the port the kernel picked for the first.
      SockAddr bound;
      bound.len = sizeof bound.storage;
      getsockname(fd.get(), bound.sa(), &bound.len);
      addr.set_port(bound.port());
    }
    listeners_.push_back(std::move(fd));
  }
  for (int i = 0; i < config_.workers; i++) {
    std::unique_ptr<WorkerThread> w = std::make_unique<TcpWorker>(*this, i);
    if (w->start(err) != 0) {
      close(0);
      listeners_.clear();
      return -err->err;
    }
    workers_.push_back(std::move(w));
  }
  return 0;
}

SockAddr Engine::local_address() const {
  SockAddr a;
  if (listeners_.empty()) return a;
  a.len = sizeof a.storage;
  getsockname(listeners_[0].get(), a.sa(), &a.len);
  return a;
}

void Engine::decide(std::vector<Decision>&& decisions) {
  if (workers_.empty()) return;
  if (workers_.size() == 1) {
    workers_[0]->post(std::move(decisions));
    return;
  }
  std::vector<std::vector<Decision>> per_worker(workers_.size());
  for (Decision& d : decisions) {
    size_t w = size_t(d.id >> 40);
    if (w < per_worker.size()) per_worker[w].push_back(std::move(d));
  }
  for (size_t w = 0; w < per_worker.size(); w++)
    if (!per_worker[w].empty()) workers_[w]->post(std::move(per_worker[w]));
}

void Engine::set_allowlist(std::shared_ptr<const AllowTable> table) {
  std::atomic_store(&allow_, std::move(table));
}

std::shared_ptr<const AllowTable> Engine::allowlist() const { return std::atomic_load(&allow_); }

void Engine::stats(Counters* out) const {
  auto sum = [](std::atomic<uint64_t>& into, const std::atomic<uint64_t>& from) {
    into.store(into.load(std::memory_order_relaxed) + from.load(std::memory_order_relaxed),
               std::memory_order_relaxed);
  };
  for (const auto& w : workers_) {
    const Counters& c = w->counters();
    sum(out->accepted, c.accepted);
    out->active.store(out->active.load() + c.active.load(std::memory_order_relaxed));
    sum(out->admitted, c.admitted);
    for (int r = 0; r < kRejectReasonCount; r++) sum(out->rejected[r], c.rejected[r]);
    sum(out->upstream_failures, c.upstream_failures);
    sum(out->ephemeral_port_retries, c.ephemeral_port_retries);
    sum(out->bytes_from_clients, c.bytes_from_clients);
    sum(out->bytes_from_upstreams, c.bytes_from_upstreams);
    sum(out->accept_errors, c.accept_errors);
  }
}

void Engine::ack_stop_accepting() {
  {
    std::lock_guard<std::mutex> lock(acks_mu_);
    acks_++;
  }
  acks_cv_.notify_all();
}

void Engine::close(int64_t drain_deadline_ms) {
  std::lock_guard<std::mutex> lock(close_mu_);
  if (closed_) return;
  closed_ = true;
  for (auto& w : workers_) w->begin_close(drain_deadline_ms);
  {
    // The listeners may be closed only once no worker can touch them any more.
    std::unique_lock<std::mutex> acks(acks_mu_);
    acks_cv_.wait(acks, [&] { return acks_ >= int(workers_.size()); });
  }
  listeners_.clear();
  for (auto& w : workers_) w->join();
}

void Engine::hurry() {
  for (auto& w : workers_) w->begin_close(monotonic_ms());
}

}  // namespace mmproxy
