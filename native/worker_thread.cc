// WorkerThread: the parts of a relay thread common to TCP and UDP.
#include "worker_thread.h"

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <future>
#include <string>

namespace mmproxy {

WorkerThread::~WorkerThread() {
  // Engine joins every worker before destroying it; this is only a safety net.
  if (thread_.joinable()) {
    begin_close(0);
    thread_.join();
  }
}

int WorkerThread::start(SocketError* err) {
  epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) {
    err->err = errno;
    err->syscall = "epoll_create1(EPOLL_CLOEXEC)";
    return -err->err;
  }
  wake_fd_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_fd_) {
    err->err = errno;
    err->syscall = "eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)";
    return -err->err;
  }
  wake_tag_.kind = EpollTag::kWake;
  if (!watch(wake_fd_.get(), EPOLLIN, &wake_tag_)) {
    err->err = errno;
    err->syscall = "epoll_ctl(EPOLL_CTL_ADD, eventfd)";
    return -err->err;
  }
  if (int r = setup(err); r != 0) return r;
  std::promise<void> running;
  std::future<void> started = running.get_future();
  thread_ = std::thread([this, &running] {
    // Named for top -H and /proc/PID/task/*/comm: "mmproxy-relay0" (15 bytes at most).
    pthread_setname_np(pthread_self(),
                       ("mmproxy-relay" + std::to_string(index_)).substr(0, 15).c_str());
    running.set_value();
    run();
  });
  started.wait();
  return 0;
}

bool WorkerThread::watch(int fd, uint32_t events, EpollTag* tag) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = tag;
  return epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) == 0;
}

void WorkerThread::post(std::vector<Decision>&& decisions) {
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    if (inbox_.empty()) {
      inbox_ = std::move(decisions);
    } else {
      inbox_.insert(inbox_.end(), std::make_move_iterator(decisions.begin()),
                    std::make_move_iterator(decisions.end()));
    }
  }
  uint64_t one = 1;
  ssize_t r = write(wake_fd_.get(), &one, sizeof one);
  (void)r;  // EAGAIN means the counter is already non-zero: the worker wakes anyway
}

void WorkerThread::begin_close(int64_t deadline_ms) {
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    if (close_deadline_ms_ < 0 || deadline_ms < close_deadline_ms_)
      close_deadline_ms_ = deadline_ms;
  }
  uint64_t one = 1;
  ssize_t r = write(wake_fd_.get(), &one, sizeof one);
  (void)r;
}

void WorkerThread::ping() {
  pings_sent_.fetch_add(1, std::memory_order_acq_rel);
  uint64_t one = 1;
  ssize_t r = write(wake_fd_.get(), &one, sizeof one);
  (void)r;
}

void WorkerThread::join() {
  if (thread_.joinable()) thread_.join();
}

void WorkerThread::take_inbox(std::vector<Decision>* batch, int64_t* deadline) {
  uint64_t count;
  ssize_t r = read(wake_fd_.get(), &count, sizeof count);
  (void)r;
  pings_answered_.store(pings_sent_.load(std::memory_order_acquire), std::memory_order_release);
  std::lock_guard<std::mutex> lock(inbox_mu_);
  batch->swap(inbox_);
  *deadline = close_deadline_ms_;
}

}  // namespace mmproxy
