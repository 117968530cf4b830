/* What bench/loadgen.c and bench/udpgen.c share: stopping on SIGTERM or SIGINT, a monotonic clock,
 * dying with errno, 127.0.0.1 addresses, and the clients their PROXY headers name. Define
 * BENCH_PROG (the program's name, for error messages) before including it.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t stop_flag = 0;
static void on_signal(int sig) {
  (void)sig;
  stop_flag = 1;
}

/* SIGTERM and SIGINT set stop_flag; no SA_RESTART, so a blocked call returns EINTR. */
static inline void catch_stop_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
}

static inline double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void die(const char* what) {
  fprintf(stderr, "%s: %s: %s\n", BENCH_PROG, what, strerror(errno));
  exit(1);
}

static inline struct sockaddr_in loopback(int port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

/* Client number idx: it rotates over 762 documentation addresses (hosts 1 to 254 of 192.0.2.0/24,
 * 198.51.100.0/24 and 203.0.113.0/24) and then ports from 1024 up, so disjoint ranges of client
 * numbers never share a client address and port. */
struct client {
  const uint8_t* net; /* the first three bytes of the address */
  unsigned host;      /* the last byte */
  unsigned port;
};

static inline struct client client_of(uint64_t idx) {
  static const uint8_t nets[3][3] = {{192, 0, 2}, {198, 51, 100}, {203, 0, 113}};
  struct client c;
  c.net = nets[idx % 3];
  c.host = 1 + (unsigned)((idx / 3) % 254);
  c.port = 1024 + (unsigned)((idx / 762) % 64512);
  return c;
}

#endif
