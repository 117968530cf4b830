// PipePool: empty pipes kept for reuse by one worker, since creating and closing a pipe pair
// costs more than a small connection's whole relay. Worker thread only.
#pragma once

#include <vector>

#include "unique_fd.h"

namespace mmproxy {

struct Pipe {
  UniqueFd read_end;
  UniqueFd write_end;
  explicit operator bool() const { return bool(read_end); }
};

class PipePool {
 public:
  explicit PipePool(size_t max_idle) : max_idle_(max_idle) {}
  // A pipe (non-blocking, close-on-exec, the kernel's default 64 KiB), or an empty Pipe with
  // errno set when pipe2() fails.
  Pipe get();
  // Takes back a pipe that holds no bytes; a pipe that still holds some is closed instead.
  void put(Pipe pipe, bool empty);
  void clear() { idle_.clear(); }

 private:
  size_t max_idle_;
  std::vector<Pipe> idle_;
};

}  // namespace mmproxy
