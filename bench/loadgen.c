/* The TCP benchmark's load generator and echo upstream: one single-threaded epoll program with four
 * modes, compiled by bench/tcp.ts (cc -O2) and run pinned to one core.
 *
 *   loadgen echo   PORT                          echo server on 127.0.0.1:PORT until SIGTERM
 *   loadgen stream PORT CONNS SECONDS HDR BASE   CONNS conns send "PING\r\n"... and read the echo
 *   loadgen cps    PORT CONC  SECONDS HDR BASE   CONC at once: connect, header + PING, echo, close
 *   loadgen idle   PORT N     SECONDS HDR BASE   open N connections (one PING each), hold them
 *
 * HDR=1 puts a PROXY v1 header before the first byte (HDR=0 for the direct, header-less case).
 * The header's source for connection number BASE+i is client_of(BASE+i) (bench_common.h), so no two
 * connections of one bench run name the same client 4-tuple toward the upstream.
 * stream and cps print "measuring" when their measured window starts and one line of JSON when
 * done; idle prints its JSON line once its connections are open, then holds them until SIGTERM,
 * stdin EOF or SECONDS. Only loopback (127.0.0.1) is ever connected to.
 */
#define _GNU_SOURCE
#define BENCH_PROG "loadgen"
#include <fcntl.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_common.h"

#define MAX_EVENTS 256
#define PING "PING\r\n"
#define PING_LEN 6

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec * 1e-6;
}

/* The PROXY v1 header for connection number idx; returns its length. */
static int make_header(char* out, size_t cap, uint64_t idx) {
  struct client c = client_of(idx);
  return snprintf(out, cap, "PROXY TCP4 %u.%u.%u.%u 127.0.0.1 %u 8443\r\n", c.net[0], c.net[1],
                  c.net[2], c.host, c.port);
}

static void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* A non-blocking connect to 127.0.0.1:port; the fd, or -1. */
static int start_connect(const struct sockaddr_in* to) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  set_nodelay(fd);
  if (connect(fd, (const struct sockaddr*)to, sizeof *to) < 0 && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  return fd;
}

static int cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static double percentile(double* v, size_t n, double p) {
  if (n == 0) return 0;
  size_t i = (size_t)(p * (double)(n - 1) + 0.5);
  return v[i < n ? i : n - 1];
}

/* ---- echo: what arrives goes back, through a pipe (splice) so the echo costs little CPU. ----
 * A connection holds a pipe only while bytes wait in it; empty pipes go back to a small pool, so
 * thousands of idle connections cost no pipes. Reading stops while the pipe is not empty
 * (backpressure: the echo never buffers more than one pipe per connection). */
struct echo_conn {
  int rd, wr; /* the pipe, -1 when none */
  size_t in_pipe;
  int eof;
};

static int pool[1024];
static int pool_n = 0;

static int take_pipe(struct echo_conn* c) {
  if (pool_n >= 2) {
    c->wr = pool[--pool_n];
    c->rd = pool[--pool_n];
    return 0;
  }
  int p[2];
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) return -1;
  c->rd = p[0];
  c->wr = p[1];
  return 0;
}

static void give_pipe(struct echo_conn* c) {
  if (c->rd < 0) return;
  if (c->in_pipe == 0 && pool_n + 2 <= (int)(sizeof pool / sizeof pool[0])) {
    pool[pool_n++] = c->rd;
    pool[pool_n++] = c->wr;
  } else {
    close(c->rd);
    close(c->wr);
  }
  c->rd = c->wr = -1;
  c->in_pipe = 0;
}

static int run_echo(int port) {
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (lfd < 0) die("socket");
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = loopback(port);
  if (bind(lfd, (struct sockaddr*)&a, sizeof a) < 0) die("bind");
  if (listen(lfd, 4096) < 0) die("listen");
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);

  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  size_t cap = rl.rlim_cur > 1 << 20 ? 1 << 20 : rl.rlim_cur;
  struct echo_conn* conns = calloc(cap, sizeof *conns);
  if (!conns) die("calloc");
  printf("ready\n");
  fflush(stdout);

  struct epoll_event evs[MAX_EVENTS];
  while (!stop_flag) {
    int n = epoll_wait(ep, evs, MAX_EVENTS, 200);
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          if ((size_t)c >= cap) {
            close(c);
            continue;
          }
          set_nodelay(c);
          conns[c] = (struct echo_conn){.rd = -1, .wr = -1};
          struct epoll_event cev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                    .data.fd = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
        }
        continue;
      }
      struct echo_conn* c = &conns[fd];
      int dead = (evs[i].events & EPOLLERR) != 0;
      while (!dead) {
        if (c->in_pipe > 0) { /* drain the pipe first */
          ssize_t w = splice(c->rd, NULL, fd, NULL, c->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
          if (w > 0) {
            c->in_pipe -= (size_t)w;
            continue;
          }
          if (w < 0 && errno == EAGAIN) break; /* wait for EPOLLOUT */
          dead = 1;
          break;
        }
        if (c->eof) {
          dead = 1;
          break;
        }
        if (c->rd < 0 && take_pipe(c) < 0) {
          dead = 1;
          break;
        }
        ssize_t r = splice(fd, NULL, c->wr, NULL, 1 << 16, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (r > 0) {
          c->in_pipe = (size_t)r;
          continue;
        }
        if (r == 0) {
          c->eof = 1;
          continue;
        }
        if (errno == EAGAIN) {
          give_pipe(c);
          break;
        }
        dead = 1;
      }
      if (dead) {
        give_pipe(c);
        close(fd);
      }
    }
  }
  return 0;
}

/* ---- stream: CONNS connections each write a buffer of PINGs as fast as they can and read
 * (and discard, MSG_TRUNC: no copy) the echo. Bytes are counted after a warm-up. ---- */
static int run_stream(int port, int conns, double secs, int hdr, uint64_t base) {
  static char wbuf[1 << 17];
  for (size_t i = 0; i + PING_LEN <= sizeof wbuf; i += PING_LEN) memcpy(wbuf + i, PING, PING_LEN);
  size_t wlen = (sizeof wbuf / PING_LEN) * PING_LEN;
  struct sockaddr_in to = loopback(port);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  int* fds = calloc((size_t)conns, sizeof *fds);
  size_t* woff = calloc((size_t)conns, sizeof *woff); /* offset in wbuf of the next write */
  int* state = calloc((size_t)conns, sizeof *state);  /* 0 connecting, 1 streaming, 2 dead */
  if (!fds || !woff || !state) die("calloc");
  int errors = 0;
  for (int i = 0; i < conns; i++) {
    fds[i] = start_connect(&to);
    if (fds[i] < 0) {
      errors++;
      state[i] = 2;
      continue;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u32 = (uint32_t)i};
    epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
  }
  const double warmup = 0.5;
  double t0 = now_s(), t_start = t0 + warmup, t_end = t_start + secs;
  uint64_t up = 0, down = 0;
  int counting = 0;
  double cpu0 = 0;
  struct epoll_event evs[MAX_EVENTS];
  char hbuf[128];
  while (!stop_flag) {
    double t = now_s();
    if (!counting && t >= t_start) {
      counting = 1;
      up = down = 0;
      cpu0 = cpu_seconds();
      t_start = t;
      t_end = t + secs;
      printf("measuring\n"); /* the bench samples the proxy's CPU time now */
      fflush(stdout);
    }
    if (counting && t >= t_end) break;
    int n = epoll_wait(ep, evs, MAX_EVENTS, 50);
    for (int k = 0; k < n; k++) {
      int i = (int)evs[k].data.u32;
      int fd = fds[i];
      if (state[i] == 2) continue;
      if (evs[k].events & (EPOLLERR | EPOLLHUP)) {
        state[i] = 2;
        errors++;
        close(fd);
        continue;
      }
      if (state[i] == 0 && (evs[k].events & EPOLLOUT)) {
        if (hdr) {
          int hl = make_header(hbuf, sizeof hbuf, base + (uint64_t)i);
          if (send(fd, hbuf, (size_t)hl, MSG_NOSIGNAL) != hl) {
            state[i] = 2;
            errors++;
            close(fd);
            continue;
          }
        }
        state[i] = 1;
      }
      if (state[i] != 1) continue;
      for (;;) { /* read everything there is */
        ssize_t r = recv(fd, NULL, 1 << 20, MSG_TRUNC | MSG_DONTWAIT);
        if (r > 0) {
          down += (uint64_t)r;
          continue;
        }
        if (r == 0 || errno != EAGAIN) {
          state[i] = 2;
          errors++;
          close(fd);
        }
        break;
      }
      if (state[i] != 1) continue;
      for (;;) { /* write until the socket is full */
        ssize_t w = send(fd, wbuf + woff[i], wlen - woff[i], MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
          up += (uint64_t)w;
          woff[i] = (woff[i] + (size_t)w) % wlen;
          continue;
        }
        if (w < 0 && errno != EAGAIN) {
          state[i] = 2;
          errors++;
          close(fd);
        }
        break;
      }
    }
  }
  double elapsed = now_s() - t_start;
  double cpu = cpu_seconds() - cpu0;
  printf(
      "{\"mode\":\"stream\",\"seconds\":%.4f,\"upBytes\":%llu,\"downBytes\":%llu,\"errors\":%d,"
      "\"connections\":%d,\"genCpu\":%.4f}\n",
      elapsed, (unsigned long long)up, (unsigned long long)down, errors, conns, cpu);
  return 0;
}

/* ---- cps: CONC slots, each runs connect → header + PING → echo → close, then starts over.
 * Latency is socket() to close(), per connection. ---- */
struct slot {
  int fd;
  int state; /* 0 connecting, 1 waiting for the echo */
  int got;
  uint64_t idx;
  double t0;
};

static int run_cps(int port, int conc, double secs, int hdr, uint64_t base) {
  struct sockaddr_in to = loopback(port);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct slot* slots = calloc((size_t)conc, sizeof *slots);
  size_t lat_cap = 1 << 16, lat_n = 0;
  double* lat = malloc(lat_cap * sizeof *lat);
  if (!slots || !lat) die("malloc");
  uint64_t next = base;
  int errors = 0;
  char buf[256];
  printf("measuring\n");
  fflush(stdout);
  double t_start = now_s(), t_end = t_start + secs, cpu0 = cpu_seconds();

#define START_SLOT(s, i)                                                             \
  do {                                                                               \
    (s)->t0 = now_s();                                                               \
    (s)->idx = next++;                                                               \
    (s)->state = 0;                                                                  \
    (s)->got = 0;                                                                    \
    (s)->fd = start_connect(&to);                                                    \
    if ((s)->fd >= 0) {                                                              \
      struct epoll_event ev_ = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, \
                                .data.u32 = (uint32_t)(i)};                          \
      epoll_ctl(ep, EPOLL_CTL_ADD, (s)->fd, &ev_);                                   \
    } else {                                                                         \
      errors++;                                                                      \
    }                                                                                \
  } while (0)

  for (int i = 0; i < conc; i++) START_SLOT(&slots[i], i);
  struct epoll_event evs[MAX_EVENTS];
  while (!stop_flag && now_s() < t_end) {
    int n = epoll_wait(ep, evs, MAX_EVENTS, 50);
    for (int k = 0; k < n; k++) {
      int i = (int)evs[k].data.u32;
      struct slot* s = &slots[i];
      if (s->fd < 0) continue;
      int failed = 0, done = 0;
      if (s->state == 0 && (evs[k].events & EPOLLOUT) && !(evs[k].events & EPOLLERR)) {
        int len = 0;
        if (hdr) len = make_header(buf, sizeof buf - PING_LEN, s->idx);
        memcpy(buf + len, PING, PING_LEN);
        len += PING_LEN;
        if (send(s->fd, buf, (size_t)len, MSG_NOSIGNAL) == len)
          s->state = 1;
        else
          failed = 1;
      }
      if (!failed && s->state == 1 && (evs[k].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))) {
        for (;;) {
          ssize_t r = recv(s->fd, buf, sizeof buf, MSG_DONTWAIT);
          if (r > 0) {
            s->got += (int)r;
            if (s->got >= PING_LEN) {
              done = 1;
              break;
            }
            continue;
          }
          if (r == 0 || errno != EAGAIN) failed = 1;
          break;
        }
      }
      if (!done && !failed && (evs[k].events & (EPOLLERR | EPOLLHUP))) failed = 1;
      if (done || failed) {
        close(s->fd);
        s->fd = -1;
        if (done) {
          if (lat_n == lat_cap) {
            lat_cap *= 2;
            lat = realloc(lat, lat_cap * sizeof *lat);
            if (!lat) die("realloc");
          }
          lat[lat_n++] = now_s() - s->t0;
        } else {
          errors++;
        }
        START_SLOT(s, i);
      }
    }
  }
  double elapsed = now_s() - t_start, cpu = cpu_seconds() - cpu0;
  for (int i = 0; i < conc; i++)
    if (slots[i].fd >= 0) close(slots[i].fd);
  qsort(lat, lat_n, sizeof *lat, cmp_double);
  printf(
      "{\"mode\":\"cps\",\"seconds\":%.4f,\"connections\":%zu,\"errors\":%d,\"p50Ms\":%.4f,"
      "\"p99Ms\":%.4f,\"concurrency\":%d,\"used\":%llu,\"genCpu\":%.4f}\n",
      elapsed, lat_n, errors, percentile(lat, lat_n, 0.5) * 1e3, percentile(lat, lat_n, 0.99) * 1e3,
      conc, (unsigned long long)(next - base), cpu);
  return 0;
}

/* ---- idle: N connections, each with one PING echoed (so the proxy has its upstream open), then
 * held until SIGTERM, stdin EOF or SECONDS. At most 256 are being set up at once. ---- */
static int run_idle(int port, int total, double secs, int hdr, uint64_t base) {
  struct sockaddr_in to = loopback(port);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  int* state = calloc((size_t)total, sizeof *state); /* 0 connecting, 1 sent, 2 open, 3 failed */
  int* fds = calloc((size_t)total, sizeof *fds);
  if (!state || !fds) die("calloc");
  int started = 0, open_n = 0, failed = 0, inflight = 0;
  char buf[256];
  double deadline = now_s() + secs;
  struct epoll_event evs[MAX_EVENTS];
  while (!stop_flag && open_n + failed < total && now_s() < deadline) {
    while (started < total && inflight < 256) {
      int i = started++;
      fds[i] = start_connect(&to);
      if (fds[i] < 0) {
        state[i] = 3;
        failed++;
        continue;
      }
      struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                               .data.u32 = (uint32_t)i};
      epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
      inflight++;
    }
    int n = epoll_wait(ep, evs, MAX_EVENTS, 100);
    for (int k = 0; k < n; k++) {
      int i = (int)evs[k].data.u32;
      if (state[i] >= 2) continue;
      int bad = (evs[k].events & EPOLLERR) != 0;
      if (!bad && state[i] == 0 && (evs[k].events & EPOLLOUT)) {
        int len = hdr ? make_header(buf, sizeof buf - PING_LEN, base + (uint64_t)i) : 0;
        memcpy(buf + len, PING, PING_LEN);
        len += PING_LEN;
        if (send(fds[i], buf, (size_t)len, MSG_NOSIGNAL) == len)
          state[i] = 1;
        else
          bad = 1;
      }
      if (!bad && state[i] == 1 && (evs[k].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))) {
        ssize_t r = recv(fds[i], buf, sizeof buf, MSG_DONTWAIT);
        if (r > 0) {
          state[i] = 2;
          open_n++;
          inflight--;
        } else if (r == 0 || errno != EAGAIN)
          bad = 1;
      }
      if (bad) {
        state[i] = 3;
        failed++;
        inflight--;
        close(fds[i]);
      }
    }
  }
  printf("{\"mode\":\"idle\",\"open\":%d,\"failed\":%d}\n", open_n, failed);
  fflush(stdout);
  /* Hold: wait for SIGTERM, stdin EOF or the deadline. */
  fcntl(0, F_SETFL, O_NONBLOCK);
  while (!stop_flag && now_s() < deadline) {
    ssize_t r = read(0, buf, sizeof buf);
    if (r == 0) break;
    usleep(20000);
  }
  return 0;
}

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  catch_stop_signals();
  raise_nofile();
  if (argc >= 3 && strcmp(argv[1], "echo") == 0) return run_echo(atoi(argv[2]));
  if (argc >= 7) {
    int port = atoi(argv[2]), n = atoi(argv[3]), hdr = atoi(argv[5]);
    double secs = atof(argv[4]);
    uint64_t base = strtoull(argv[6], NULL, 10);
    if (strcmp(argv[1], "stream") == 0) return run_stream(port, n, secs, hdr, base);
    if (strcmp(argv[1], "cps") == 0) return run_cps(port, n, secs, hdr, base);
    if (strcmp(argv[1], "idle") == 0) return run_idle(port, n, secs, hdr, base);
  }
  fprintf(stderr,
          "usage: loadgen echo PORT\n"
          "       loadgen stream|cps|idle PORT CONNS SECONDS HDR(0|1) BASE\n");
  return 2;
}
