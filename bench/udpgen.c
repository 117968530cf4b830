/* The UDP benchmark's load generator ("the load balancer") and echo upstream: one single-threaded
 * program, compiled by bench/udp.ts (cc -O2) and run pinned to one core.
 *
 *   udpgen echo  PORT                                    echo on 127.0.0.1:PORT until SIGTERM
 *   udpgen flows PORT ECHO FLOWS SECONDS HDR BASE WINDOW  FLOWS clients take turns, closed loop
 *   udpgen new   PORT ECHO COUNT SECONDS HDR BASE WINDOW  every datagram from a client never seen
 *   udpgen relay PORT ECHO                               a minimal reference proxy (see relay_main)
 *
 * The generator sends from one socket (connected to 127.0.0.1:PORT) with sendmmsg and reads the
 * replies on it with recvmmsg, keeping at most WINDOW datagrams in flight so that queues, not loss,
 * absorb the load. A datagram is a 64-byte payload naming its flow, its sequence number within the
 * flow and a global number; with HDR=1 a PROXY v2 header (PROXY, UDP4) before it names the flow's
 * client: client number BASE+i is client_of(BASE+i) (bench_common.h, as in bench/loadgen.c), so
 * disjoint BASE ranges never share a client 4-tuple.
 *
 * A datagram without a reply after LOST_MS counts as lost and frees its place in the window; a
 * reply that still comes later counts as late. A reply whose sequence number is not above the last
 * one seen in its flow counts as reordered (or duplicated). The echo counts what it receives; the
 * generator asks it ("STAT", answered with the count) at the start and end of the measured window,
 * so the upstream direction is measured where the datagrams arrive.
 *
 * flows: warms up (every flow has a reply, at least 0.5 s, at most 5 s), prints "measuring",
 * measures for SECONDS, waits LOST_MS for the last replies, prints one line of JSON.
 * new: prints "measuring", sends COUNT datagrams from COUNT new clients (bounded by SECONDS), waits
 * for the replies, prints one line of JSON. Only 127.0.0.1 is ever sent to.
 */
#define _GNU_SOURCE
#define BENCH_PROG "udpgen"
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_common.h"

#define BATCH 64
#define PAYLOAD 64
#define HDR_LEN 28
#define MAGIC 0x424d4d50u /* "PMMB" little-endian */
#define STAT_MAGIC "STAT"
#define RING (1u << 18) /* datagrams tracked since the oldest unanswered one */
#define LOST_MS 200.0
#define SOCKBUF (4 * 1024 * 1024)

/* A UDP socket with large buffers (up to net.core.[rw]mem_max); bound to 127.0.0.1:port if
 * bind_port > 0, connected to 127.0.0.1:connect_port if connect_port > 0. */
static int udp_socket(int bind_port, int connect_port) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int size = SOCKBUF;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  if (bind_port > 0) {
    struct sockaddr_in a = loopback(bind_port);
    if (bind(fd, (struct sockaddr*)&a, sizeof a) < 0) die("bind");
  }
  if (connect_port > 0) {
    struct sockaddr_in a = loopback(connect_port);
    if (connect(fd, (struct sockaddr*)&a, sizeof a) < 0) die("connect");
  }
  return fd;
}

/* Points msgs[0, n) at n buffers of `size` bytes from `bufs` for recvmmsg, with the senders'
 * addresses into from[0, n) unless it is NULL. */
static void recv_slots(struct mmsghdr* msgs, struct iovec* iov, void* bufs, size_t size,
                       struct sockaddr_in* from, int n) {
  for (int i = 0; i < n; i++) {
    iov[i].iov_base = (char*)bufs + (size_t)i * size;
    iov[i].iov_len = size;
    memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
    if (from) {
      msgs[i].msg_hdr.msg_name = &from[i];
      msgs[i].msg_hdr.msg_namelen = sizeof from[i];
    }
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
}

/* ---- echo: every datagram goes back to where it came from, in batches. ---- */

static int echo_main(int port) {
  int fd = udp_socket(port, 0);
  static char bufs[BATCH][2048];
  static struct sockaddr_in from[BATCH];
  static struct iovec iov[BATCH];
  static struct mmsghdr msgs[BATCH];
  uint64_t count = 0;
  while (!stop_flag) {
    recv_slots(msgs, iov, bufs, sizeof bufs[0], from, BATCH);
    /* Blocks for the first datagram, then takes what is queued; SIGTERM interrupts it. */
    int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("recvmmsg");
    }
    int out = 0;
    for (int i = 0; i < n; i++) {
      size_t len = msgs[i].msg_len;
      if (len >= 4 && memcmp(bufs[i], STAT_MAGIC, 4) == 0) {
        char reply[64];
        int rl = snprintf(reply, sizeof reply, "STAT %llu", (unsigned long long)count);
        sendto(fd, reply, (size_t)rl, MSG_DONTWAIT, (struct sockaddr*)&from[i],
               msgs[i].msg_hdr.msg_namelen);
        continue;
      }
      count++;
      iov[out].iov_base = bufs[i];
      iov[out].iov_len = len;
      memmove(&msgs[out].msg_hdr, &msgs[i].msg_hdr, sizeof msgs[i].msg_hdr);
      msgs[out].msg_hdr.msg_iov = &iov[out];
      out++;
    }
    /* Only the echo's own buffer limits a reply; one that cannot go is dropped, as a server would.
     */
    for (int done = 0; done < out;) {
      int s = sendmmsg(fd, msgs + done, (unsigned)(out - done), MSG_DONTWAIT);
      if (s <= 0) break;
      done += s;
    }
  }
  close(fd);
  return 0;
}

/* ---- relay: the least a PROXY-protocol UDP proxy can do, as a reference for the others. ----
 * One thread: it reads the listener in batches, takes the v2 UDP4 header's client address and
 * port as the flow's key (one flow per client), sends the payload on the flow's own socket
 * (connected to the echo, bound to 127.0.0.1 by the kernel: no spoofing, no policy, no checks
 * beyond the header's length), reads each reply with one recv() and sends the replies of a
 * round back through the listener with one sendmmsg. */

#define RELAY_SLOTS (1u << 16) /* flows at most RELAY_SLOTS / 2 */

struct relay_flow {
  uint64_t key; /* client address << 16 | port; 0: empty slot */
  int fd;
  struct sockaddr_in lb;
};

static int relay_main(int port, int echo_port) {
  int lfd = udp_socket(port, 0);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) die("epoll_ctl");
  static struct relay_flow flows[RELAY_SLOTS];
  unsigned live = 0;
  struct sockaddr_in echo = loopback(echo_port);
  static char in[BATCH][2048], out[BATCH][2048];
  static struct sockaddr_in from[BATCH];
  static struct iovec in_iov[BATCH], out_iov[BATCH];
  static struct mmsghdr in_msgs[BATCH], out_msgs[BATCH];
  static struct epoll_event events[256];
  while (!stop_flag) {
    int n = epoll_wait(ep, events, 256, 200);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    int replies = 0;
    for (int e = 0; e < n; e++) {
      if (events[e].data.u64 == UINT64_MAX) {
        recv_slots(in_msgs, in_iov, in, sizeof in[0], from, BATCH);
        int got = recvmmsg(lfd, in_msgs, BATCH, MSG_DONTWAIT, NULL);
        for (int i = 0; i < got; i++) {
          const uint8_t* d = (const uint8_t*)in[i];
          if (in_msgs[i].msg_len < HDR_LEN || d[13] != 0x12) continue;
          uint32_t ip;
          memcpy(&ip, d + 16, 4);
          uint64_t key = ((uint64_t)ntohl(ip) << 16 | (uint64_t)(d[24] << 8 | d[25])) + 1;
          uint32_t slot = (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 48) & (RELAY_SLOTS - 1);
          while (flows[slot].key != 0 && flows[slot].key != key)
            slot = (slot + 1) & (RELAY_SLOTS - 1);
          struct relay_flow* f = &flows[slot];
          if (f->key == 0) {
            if (live >= RELAY_SLOTS / 2) continue;
            int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) continue;
            if (connect(fd, (struct sockaddr*)&echo, sizeof echo) < 0) die("connect");
            struct epoll_event fev = {.events = EPOLLIN, .data.u64 = slot};
            if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &fev) < 0) die("epoll_ctl");
            f->key = key;
            f->fd = fd;
            f->lb = from[i];
            live++;
          }
          send(f->fd, d + HDR_LEN, in_msgs[i].msg_len - HDR_LEN, MSG_DONTWAIT);
        }
      } else if (replies < BATCH) {
        struct relay_flow* f = &flows[events[e].data.u64];
        ssize_t len = recv(f->fd, out[replies], sizeof out[replies], MSG_DONTWAIT);
        if (len < 0) continue;
        out_iov[replies].iov_base = out[replies];
        out_iov[replies].iov_len = (size_t)len;
        memset(&out_msgs[replies].msg_hdr, 0, sizeof out_msgs[replies].msg_hdr);
        out_msgs[replies].msg_hdr.msg_name = &f->lb;
        out_msgs[replies].msg_hdr.msg_namelen = sizeof f->lb;
        out_msgs[replies].msg_hdr.msg_iov = &out_iov[replies];
        out_msgs[replies].msg_hdr.msg_iovlen = 1;
        replies++;
      }
    }
    for (int done = 0; done < replies;) {
      int sent = sendmmsg(lfd, out_msgs + done, (unsigned)(replies - done), MSG_DONTWAIT);
      if (sent <= 0) break;
      done += sent;
    }
  }
  for (uint32_t i = 0; i < RELAY_SLOTS; i++)
    if (flows[i].key != 0) close(flows[i].fd);
  close(ep);
  close(lfd);
  return 0;
}

/* The echo's count of datagrams received so far, asked over a socket of our own. */
static uint64_t echo_count(int ctl) {
  if (send(ctl, STAT_MAGIC, 4, 0) < 0) die("send STAT");
  struct pollfd p = {ctl, POLLIN, 0};
  for (;;) {
    if (poll(&p, 1, 2000) <= 0) {
      fprintf(stderr, "udpgen: the echo did not answer STAT\n");
      exit(1);
    }
    char buf[64];
    ssize_t n = recv(ctl, buf, sizeof buf - 1, 0);
    if (n > 5 && memcmp(buf, "STAT ", 5) == 0) {
      buf[n] = 0;
      return strtoull(buf + 5, NULL, 10);
    }
  }
}

/* ---- the generator ---- */

struct payload {
  uint32_t magic;
  uint32_t flow;
  uint64_t seq; /* within the flow */
  uint64_t g;   /* global number: the window slot */
  char pad[PAYLOAD - 24];
};

/* The PROXY v2 header naming client number idx, from the load balancer to 127.0.0.1:8443. */
static void make_header(uint8_t* h, uint64_t idx) {
  static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
  struct client c = client_of(idx);
  memcpy(h, sig, 12);
  h[12] = 0x21; /* v2, PROXY */
  h[13] = 0x12; /* AF_INET, DGRAM */
  h[14] = 0;
  h[15] = 12;
  memcpy(h + 16, c.net, 3);
  h[19] = (uint8_t)c.host;
  h[20] = 127, h[21] = 0, h[22] = 0, h[23] = 1;
  h[24] = (uint8_t)(c.port >> 8), h[25] = (uint8_t)c.port;
  h[26] = 8443 >> 8, h[27] = 8443 & 0xff;
}

struct gen {
  int fd;
  int hdr;
  int fresh; /* every datagram from a new client */
  uint64_t flows, base, window;
  uint64_t* next_seq;
  int64_t* last_seq;
  uint64_t next_flow;
  /* The window: datagrams g in [tail, head) with their send time; waiting[g % RING] != 0 while
   * unanswered. */
  double* sent_at;
  uint8_t* waiting;
  uint64_t head, tail, inflight;
  uint64_t sent, received, lost, late, reordered, bad;
  uint64_t send_errors;
  uint64_t flows_answered; /* flows with at least one reply */
};

static void gen_send(struct gen* g, double now, uint64_t limit_total) {
  static uint8_t bufs[BATCH][HDR_LEN + PAYLOAD];
  static struct iovec iov[BATCH];
  static struct mmsghdr msgs[BATCH];
  uint64_t room = g->window - g->inflight;
  if (RING - (g->head - g->tail) < room) room = RING - (g->head - g->tail);
  if (limit_total && limit_total - g->sent < room) room = limit_total - g->sent;
  if (room > BATCH) room = BATCH;
  if (room == 0) return;
  int n = (int)room;
  for (int i = 0; i < n; i++) {
    uint64_t flow = g->fresh ? g->head + (uint64_t)i : g->next_flow;
    if (!g->fresh) g->next_flow = (g->next_flow + 1) % g->flows;
    uint8_t* b = bufs[i];
    size_t off = 0;
    if (g->hdr) {
      make_header(b, g->base + flow);
      off = HDR_LEN;
    }
    struct payload p;
    memset(&p, 0, sizeof p);
    p.magic = MAGIC;
    p.flow = (uint32_t)flow;
    p.seq = g->fresh ? 0 : g->next_seq[flow]++;
    p.g = g->head + (uint64_t)i;
    memcpy(b + off, &p, sizeof p);
    iov[i].iov_base = b;
    iov[i].iov_len = off + sizeof p;
    memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  int s = sendmmsg(g->fd, msgs, (unsigned)n, MSG_DONTWAIT);
  if (s < 0) {
    g->send_errors++;
    s = 0;
  }
  /* Unsent datagrams take their sequence numbers back, so that a gap always means a loss. */
  if (!g->fresh) {
    for (int i = n - 1; i >= s; i--) {
      g->next_flow = (g->next_flow + g->flows - 1) % g->flows;
      g->next_seq[g->next_flow]--;
    }
  }
  for (int i = 0; i < s; i++) {
    g->sent_at[(g->head + (uint64_t)i) % RING] = now;
    g->waiting[(g->head + (uint64_t)i) % RING] = 1;
  }
  g->head += (uint64_t)s;
  g->inflight += (uint64_t)s;
  g->sent += (uint64_t)s;
}

/* Reads what has arrived; returns how many replies. */
static int gen_receive(struct gen* g) {
  static uint8_t bufs[BATCH][256];
  static struct iovec iov[BATCH];
  static struct mmsghdr msgs[BATCH];
  recv_slots(msgs, iov, bufs, sizeof bufs[0], NULL, BATCH);
  int n = recvmmsg(g->fd, msgs, BATCH, MSG_DONTWAIT, NULL);
  if (n <= 0) return 0;
  for (int i = 0; i < n; i++) {
    struct payload p;
    if (msgs[i].msg_len != sizeof p) {
      g->bad++;
      continue;
    }
    memcpy(&p, bufs[i], sizeof p);
    if (p.magic != MAGIC || p.flow >= g->flows) {
      g->bad++;
      continue;
    }
    g->received++;
    if (g->last_seq[p.flow] < 0) g->flows_answered++;
    if ((int64_t)p.seq <= g->last_seq[p.flow])
      g->reordered++;
    else
      g->last_seq[p.flow] = (int64_t)p.seq;
    if (p.g >= g->tail && p.g < g->head && g->waiting[p.g % RING]) {
      g->waiting[p.g % RING] = 0;
      g->inflight--;
    } else {
      g->late++;
    }
  }
  return n;
}

/* Moves the window's tail past answered datagrams and gives up on those older than LOST_MS. */
static void gen_expire(struct gen* g, double now) {
  while (g->tail < g->head) {
    size_t slot = g->tail % RING;
    if (g->waiting[slot]) {
      if (now - g->sent_at[slot] < LOST_MS / 1000) break;
      g->waiting[slot] = 0;
      g->inflight--;
      g->lost++;
    }
    g->tail++;
  }
}

/* One turn of the loop: read, expire, send; waits up to 1 ms when nothing could be done. */
static void gen_turn(struct gen* g, int may_send, uint64_t limit_total) {
  int got = 0, r;
  while ((r = gen_receive(g)) > 0) got += r;
  double now = now_s();
  gen_expire(g, now);
  uint64_t before = g->sent;
  if (may_send) gen_send(g, now, limit_total);
  if (!got && g->sent == before) {
    struct pollfd p = {g->fd, POLLIN, 0};
    poll(&p, 1, 1);
  }
}

static int gen_main(int fresh, int argc, char** argv) {
  if (argc < 9) {
    fprintf(stderr, "usage: udpgen %s PORT ECHO N SECONDS HDR BASE WINDOW\n",
            fresh ? "new" : "flows");
    return 2;
  }
  int port = atoi(argv[2]);
  int echo_port = atoi(argv[3]);
  uint64_t n = strtoull(argv[4], NULL, 10);
  double seconds = atof(argv[5]);
  struct gen g;
  memset(&g, 0, sizeof g);
  g.hdr = atoi(argv[6]);
  g.base = strtoull(argv[7], NULL, 10);
  g.window = strtoull(argv[8], NULL, 10);
  g.fresh = fresh;
  g.flows = n;
  if (n == 0 || g.window == 0 || g.window > RING / 2) {
    fprintf(stderr, "udpgen: N and WINDOW must be positive, WINDOW at most %u\n", RING / 2);
    return 2;
  }
  g.next_seq = calloc(n, sizeof *g.next_seq);
  g.last_seq = malloc(n * sizeof *g.last_seq);
  g.sent_at = calloc(RING, sizeof *g.sent_at);
  g.waiting = calloc(RING, 1);
  if (!g.next_seq || !g.last_seq || !g.sent_at || !g.waiting) die("malloc");
  for (uint64_t i = 0; i < n; i++) g.last_seq[i] = -1;
  g.fd = udp_socket(0, port);
  int ctl = udp_socket(0, echo_port);

  double t0 = now_s();
  double hard_end = t0 + seconds + 10;
  if (!fresh) {
    /* Warm-up: every flow established (its first datagram answered), for 0.5 s at least. */
    while (!stop_flag) {
      double now = now_s();
      if (now >= t0 + 5 || (now >= t0 + 0.5 && g.flows_answered == n)) break;
      gen_turn(&g, 1, 0);
    }
  }
  uint64_t sent0 = g.sent, recv0 = g.received, lost0 = g.lost;
  uint64_t echo0 = echo_count(ctl);
  double m0 = now_s();
  printf("measuring\n");
  fflush(stdout);
  double m1 = m0;
  uint64_t recv1 = 0, echo1 = 0, sent1 = 0;
  if (!fresh) {
    while (!stop_flag && now_s() < m0 + seconds) gen_turn(&g, 1, 0);
    m1 = now_s();
    recv1 = g.received;
    sent1 = g.sent;
    echo1 = echo_count(ctl);
  } else {
    /* Until every datagram is answered or given up on, within SECONDS. */
    while (!stop_flag && now_s() < m0 + seconds && (g.sent < n || g.inflight > 0))
      gen_turn(&g, 1, n);
  }
  /* The last replies, then whatever is still missing is lost. */
  double drain_end = now_s() + LOST_MS / 1000 + 0.05;
  while (!stop_flag && g.inflight > 0 && now_s() < drain_end && now_s() < hard_end)
    gen_turn(&g, 0, 0);
  gen_expire(&g, now_s() + 2 * LOST_MS / 1000); /* still unanswered: lost */
  if (fresh) {
    m1 = now_s();
    recv1 = g.received;
    sent1 = g.sent;
    echo1 = echo_count(ctl);
  }
  double secs = m1 - m0;
  printf(
      "{\"seconds\":%.4f,\"flows\":%llu,\"window\":%llu,\"sent\":%llu,\"received\":%llu,"
      "\"upstream\":%llu,\"sentTotal\":%llu,\"receivedTotal\":%llu,\"lost\":%llu,\"late\":%llu,"
      "\"reordered\":%llu,\"bad\":%llu,\"sendErrors\":%llu,\"flowsAnswered\":%llu,"
      "\"warmupLost\":%llu,\"warmupSeconds\":%.3f}\n",
      secs, (unsigned long long)n, (unsigned long long)g.window,
      (unsigned long long)(sent1 - sent0), (unsigned long long)(recv1 - recv0),
      (unsigned long long)(echo1 - echo0), (unsigned long long)g.sent,
      (unsigned long long)g.received, (unsigned long long)(g.lost - lost0),
      (unsigned long long)g.late, (unsigned long long)g.reordered, (unsigned long long)g.bad,
      (unsigned long long)g.send_errors, (unsigned long long)g.flows_answered,
      (unsigned long long)lost0, m0 - t0);
  fflush(stdout);
  close(ctl);
  close(g.fd);
  return 0;
}

int main(int argc, char** argv) {
  catch_stop_signals(); /* no SA_RESTART: a blocked recvmmsg returns EINTR */
  if (argc >= 3 && strcmp(argv[1], "echo") == 0) return echo_main(atoi(argv[2]));
  if (argc >= 2 && strcmp(argv[1], "flows") == 0) return gen_main(0, argc, argv);
  if (argc >= 2 && strcmp(argv[1], "new") == 0) return gen_main(1, argc, argv);
  if (argc >= 4 && strcmp(argv[1], "relay") == 0) return relay_main(atoi(argv[2]), atoi(argv[3]));
  fprintf(stderr,
          "usage: udpgen echo PORT | udpgen flows|new PORT ECHO N SECONDS HDR BASE WINDOW | "
          "udpgen relay PORT ECHO\n");
  return 2;
}
