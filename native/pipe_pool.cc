// PipePool: empty pipes kept for reuse by one worker. Worker thread only.
#include "pipe_pool.h"

#include <fcntl.h>
#include <unistd.h>

namespace mmproxy {

Pipe PipePool::get() {
  if (!idle_.empty()) {
    Pipe p = std::move(idle_.back());
    idle_.pop_back();
    return p;
  }
  int fds[2];
  Pipe p;
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return p;
  p.read_end.reset(fds[0]);
  p.write_end.reset(fds[1]);
  return p;
}

void PipePool::put(Pipe pipe, bool empty) {
  if (!pipe || !empty || idle_.size() >= max_idle_) return;  // closed by Pipe's destructor
  idle_.push_back(std::move(pipe));
}

}  // namespace mmproxy
