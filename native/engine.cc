// Engine: listeners, workers and the hand-offs between them and JavaScript. Thread of each
// function as documented in engine.h.
#include "engine.h"

#include <time.h>

#include "tcp_worker.h"
#include "udp_worker.h"

namespace mmproxy {

int64_t monotonic_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

int64_t monotonic_us() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

bool Outbox::push(HeaderRecord&& r) {
  std::lock_guard<std::mutex> lock(mu_);
  const bool first = batch_.empty();
  batch_.headers.push_back(std::move(r));
  return first;
}

bool Outbox::push(ErrorRecord&& r) {
  std::lock_guard<std::mutex> lock(mu_);
  const bool first = batch_.empty();
  batch_.errors.push_back(std::move(r));
  return first;
}

void Outbox::notify() {
  if (notify_) notify_();
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
  if (!config_.listen_fds.empty()) {
    if (adopt_listeners(err) != 0) return -err->err;
  } else {
    SockAddr addr = config_.listen;
    for (int i = 0; i < config_.listeners; i++) {
      UniqueFd fd = open_listener(addr, config_.type, config_.listeners > 1, config_.backlog, err);
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
  }
  local_address_.len = sizeof local_address_.storage;
  getsockname(listeners_[0].get(), local_address_.sa(), &local_address_.len);
  // UDP: the kernel keeps each load balancer socket on one listener, so a listener belongs to
  // one worker and a flow never spans two threads; more workers than listeners would idle.
  const bool udp = config_.type == SOCK_DGRAM;
  const int listeners = int(listeners_.size());
  const int workers = udp && config_.workers > listeners ? listeners : config_.workers;
  for (int i = 0; i < workers; i++) {
    std::unique_ptr<WorkerThread> w;
    if (udp) {
      w = std::make_unique<UdpWorker>(*this, i, workers);
    } else {
      w = std::make_unique<TcpWorker>(*this, i);
    }
    if (w->start(err) != 0) {
      // Passed sockets go back to their owner open, as they came.
      if (!config_.listen_fds.empty())
        for (UniqueFd& fd : listeners_) fd.release();
      close(0);
      listeners_.clear();
      return -err->err;
    }
    workers_.push_back(std::move(w));
  }
  return 0;
}

int Engine::adopt_listeners(SocketError* err) {
  // Every one is checked before any is changed: a wrong one leaves them all as they were.
  for (int fd : config_.listen_fds)
    if (check_listener_fd(fd, config_.type, err) != 0) return -err->err;
  for (int fd : config_.listen_fds)
    if (adopt_listener(fd, config_.type, err) != 0) return -err->err;
  for (int fd : config_.listen_fds) listeners_.emplace_back(fd);
  return 0;
}

bool Engine::ping() {
  std::lock_guard<std::mutex> lock(workers_mu_);
  if (workers_.empty()) return false;
  bool answered = true;
  for (auto& w : workers_) {
    if (!w->answered_ping()) answered = false;
    w->ping();
  }
  return answered;
}

void Engine::decide(std::vector<Decision>&& decisions) {
  std::lock_guard<std::mutex> lock(workers_mu_);
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

namespace {

void add_counters(Counters* out, const Counters& c) {
  auto sum = [](std::atomic<uint64_t>& into, const std::atomic<uint64_t>& from) {
    into.store(into.load(std::memory_order_relaxed) + from.load(std::memory_order_relaxed),
               std::memory_order_relaxed);
  };
  out->active.store(out->active.load() + c.active.load(std::memory_order_relaxed));
  sum(out->accepted, c.accepted);
  sum(out->admitted, c.admitted);
  for (int r = 0; r < kRejectReasonCount; r++) sum(out->rejected[r], c.rejected[r]);
  sum(out->upstream_failures, c.upstream_failures);
  sum(out->ephemeral_port_retries, c.ephemeral_port_retries);
  sum(out->bytes_from_clients, c.bytes_from_clients);
  sum(out->bytes_from_upstreams, c.bytes_from_upstreams);
  sum(out->accept_errors, c.accept_errors);
  sum(out->decision_wait_us, c.decision_wait_us);
  sum(out->decisions, c.decisions);
  sum(out->datagrams_from_clients, c.datagrams_from_clients);
  sum(out->datagrams_to_upstreams, c.datagrams_to_upstreams);
  sum(out->datagrams_from_upstreams, c.datagrams_from_upstreams);
  sum(out->datagrams_to_clients, c.datagrams_to_clients);
  sum(out->datagrams_dropped, c.datagrams_dropped);
  sum(out->flow_table_full, c.flow_table_full);
  sum(out->icmp_errors, c.icmp_errors);
  sum(out->flows_expired, c.flows_expired);
}

}  // namespace

void Engine::stats(Counters* out) const {
  std::lock_guard<std::mutex> lock(workers_mu_);
  add_counters(out, final_counters_);
  for (const auto& w : workers_) add_counters(out, w->counters());
}

bool Engine::claim_listener_failure(int index) {
  std::lock_guard<std::mutex> lock(failed_mu_);
  if (failed_listeners_.size() < listeners_.size()) failed_listeners_.resize(listeners_.size());
  if (index < 0 || size_t(index) >= failed_listeners_.size() || failed_listeners_[size_t(index)])
    return false;
  failed_listeners_[size_t(index)] = true;
  return true;
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
  // The workers are done: keep their counters and free their epoll sets and wake fds now,
  // so that a closed proxy holds no descriptor even before it is garbage collected.
  std::lock_guard<std::mutex> workers_lock(workers_mu_);
  for (auto& w : workers_) add_counters(&final_counters_, w->counters());
  workers_.clear();
}

void Engine::hurry() {
  std::lock_guard<std::mutex> lock(workers_mu_);
  for (auto& w : workers_) w->begin_close(monotonic_ms());
}

}  // namespace mmproxy
