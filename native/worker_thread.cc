// WorkerThread: the parts of a relay worker common to TCP and UDP.
#include "worker_thread.h"

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

namespace mmproxy {

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
  return setup(err);
}

bool WorkerThread::watch(int fd, uint32_t events, EpollTag* tag) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = tag;
  return epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) == 0;
}

void WorkerThread::begin_close(int64_t deadline_ms) {
  std::lock_guard<std::mutex> lock(wake_mu_);
  if (released_) return;
  if (close_deadline_ms_ < 0 || deadline_ms < close_deadline_ms_) close_deadline_ms_ = deadline_ms;
  uint64_t one = 1;
  ssize_t r = write(wake_fd_.get(), &one, sizeof one);
  (void)r;  // EAGAIN means the counter is already non-zero: the worker wakes anyway
}

int64_t WorkerThread::take_wake() {
  uint64_t count;
  ssize_t r = read(wake_fd_.get(), &count, sizeof count);
  (void)r;
  pings_answered_.store(pings_sent_.load(std::memory_order_acquire), std::memory_order_release);
  std::lock_guard<std::mutex> lock(wake_mu_);
  return close_deadline_ms_;
}

void WorkerThread::ping() {
  std::lock_guard<std::mutex> lock(wake_mu_);
  if (released_) return;
  pings_sent_.fetch_add(1, std::memory_order_acq_rel);
  uint64_t one = 1;
  ssize_t r = write(wake_fd_.get(), &one, sizeof one);
  (void)r;
}

void WorkerThread::release() {
  std::lock_guard<std::mutex> lock(wake_mu_);
  released_ = true;
  epoll_.reset();
  wake_fd_.reset();
}

}  // namespace mmproxy
