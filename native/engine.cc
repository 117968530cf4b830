// Engine: listeners, workers and the hand-offs between them and JavaScript. Thread of each
// function as documented in engine.h.
#include "engine.h"

#include <time.h>

#include <unordered_map>

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

namespace {

std::mutex registry_mu;
std::unordered_map<uint32_t, std::weak_ptr<Engine>> registry;
uint32_t registry_next = 1;

}  // namespace

uint32_t register_engine(std::shared_ptr<Engine> engine) {
  std::lock_guard<std::mutex> lock(registry_mu);
  const uint32_t id = registry_next++;
  registry.emplace(id, engine);
  return id;
}

std::shared_ptr<Engine> find_engine(uint32_t id) {
  std::lock_guard<std::mutex> lock(registry_mu);
  auto it = registry.find(id);
  return it == registry.end() ? nullptr : it->second.lock();
}

void unregister_engine(uint32_t id) {
  std::lock_guard<std::mutex> lock(registry_mu);
  registry.erase(id);
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
      workers_.clear();
      listeners_.clear();
      return -err->err;
    }
    workers_.push_back(std::move(w));
  }
  std::lock_guard<std::mutex> lock(states_mu_);
  states_.assign(workers_.size(), WorkerState::kWaiting);
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
  std::lock_guard<std::mutex> lock(states_mu_);
  if (closing_ || workers_.empty()) return false;
  bool answered = true;
  for (size_t i = 0; i < workers_.size(); i++) {
    // A worker no thread drives (yet, or any more) cannot answer.
    if (states_[i] != WorkerState::kAttached) {
      answered = false;
      continue;
    }
    if (!workers_[i]->answered_ping()) answered = false;
    workers_[i]->ping();
  }
  return answered;
}

WorkerThread* Engine::attach(int index) {
  std::lock_guard<std::mutex> lock(states_mu_);
  if (closing_ || index < 0 || size_t(index) >= states_.size() ||
      states_[size_t(index)] != WorkerState::kWaiting)
    return nullptr;
  states_[size_t(index)] = WorkerState::kAttached;
  return workers_[size_t(index)].get();
}

void Engine::ended(int index) {
  {
    std::lock_guard<std::mutex> lock(states_mu_);
    states_[size_t(index)] = WorkerState::kEnded;
  }
  states_cv_.notify_all();
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
  // workers_ does not change after listen(), and the counters are atomics.
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
  int waiting = 0;
  {
    // A worker nobody attached ends now: no thread will ever run its loop.
    std::lock_guard<std::mutex> states(states_mu_);
    closing_ = true;
    for (size_t i = 0; i < states_.size(); i++) {
      if (states_[i] == WorkerState::kWaiting) {
        states_[i] = WorkerState::kEnded;
        workers_[i]->release();
        waiting++;
      }
    }
  }
  {
    std::lock_guard<std::mutex> acks(acks_mu_);
    acks_ += waiting;
  }
  for (auto& w : workers_) w->begin_close(drain_deadline_ms);
  {
    // The listeners may be closed only once no worker can touch them any more.
    std::unique_lock<std::mutex> acks(acks_mu_);
    acks_cv_.wait(acks, [&] { return acks_ >= int(workers_.size()); });
  }
  listeners_.clear();
  std::unique_lock<std::mutex> states(states_mu_);
  states_cv_.wait(states, [&] {
    for (WorkerState s : states_)
      if (s != WorkerState::kEnded) return false;
    return true;
  });
}

void Engine::hurry() {
  for (auto& w : workers_) w->begin_close(monotonic_ms());
}

}  // namespace mmproxy
