// UdpWorker: a relay worker for UDP. Attached thread unless udp_worker.h says otherwise.
#include "udp_worker.h"

#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "header_framing.h"

namespace mmproxy {

namespace {

constexpr int kBatch = 32;
constexpr size_t kDatagramMax = 65536;
// Datagrams kept per flow while JavaScript decides, and bytes kept for all pending flows of a
// worker; more are dropped and counted. A decision takes well under a millisecond, so these are
// only reached by a burst or a flood of new flows.
constexpr size_t kPendingQueueLimit = 1024;
constexpr size_t kPendingBytesLimit = 32 * 1024 * 1024;
constexpr int kMaxEvents = 256;

// The socket's buffer is full: the datagram is dropped, as UDP does, and so is the rest of the
// batch.
bool buffer_full(int e) { return e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS; }

// An error a connected flow socket reports in place of a send: an ICMP error from the target
// (port unreachable…) that arrived earlier. The datagram was not sent and may be sent again.
bool icmp_error(int e) {
  return e == ECONNREFUSED || e == EHOSTUNREACH || e == ENETUNREACH || e == EHOSTDOWN ||
         e == ENONET || e == EPROTO;
}

// What a kernel without UDP GSO for this socket (too old, or a device that will not segment)
// answers a UDP_SEGMENT send.
bool gso_refusal(int e) { return e == EIO || e == EINVAL || e == EOPNOTSUPP || e == ENOPROTOOPT; }

// What the kernel answers a UDP_SEGMENT send whose segment and headers exceed the route's MTU:
// it never fragments GSO segments, but it does fragment the same datagrams sent one by one.
bool mtu_refusal(int e) { return e == EMSGSIZE; }

// Removes the source address (IP_PKTINFO / IPV6_PKTINFO) from a reply's control messages, keeping
// a UDP_SEGMENT one; false if there was none to remove.
bool drop_source(msghdr* m) {
  if (m->msg_control == nullptr) return false;
  size_t keep = 0;
  bool removed = false;
  for (cmsghdr* c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_SEGMENT && keep == 0)
      keep = CMSG_SPACE(sizeof(uint16_t));  // always first where present
    else
      removed = true;
  }
  m->msg_controllen = keep;
  if (keep == 0) m->msg_control = nullptr;
  return removed;
}

}  // namespace

template <class SendCall>
ssize_t UdpWorker::send_past_icmp(SendCall send) {
  ssize_t r = send();
  if (r < 0 && icmp_error(errno)) {
    Counters::add(counters_.icmp_errors, 1);
    r = send();
  }
  return r;
}

int UdpWorker::setup(SocketError* err) {
  const auto& listeners = engine_.listeners();
  listener_tags_.resize(listeners.size());
  for (size_t i = 0; i < listeners.size(); i++) {
    if (int(i) % stride_ != index_) continue;
    listener_tags_[i].kind = EpollTag::kListener;
    listener_tags_[i].index = int(i);
    if (!watch(listeners[i].get(), EPOLLIN, &listener_tags_[i])) {
      err->err = errno;
      err->syscall = "epoll_ctl(EPOLL_CTL_ADD, udp listener)";
      return -err->err;
    }
    owned_listeners_.push_back(int(i));
  }
  // A listener bound to 0.0.0.0 or :: learns each datagram's destination (IP_PKTINFO), so that
  // replies leave from the address the load balancer sent to and not from one routing picks: on
  // a host with several addresses the load balancer would drop a reply from another one. Each
  // listener's own address decides: sockets passed in (socket activation) differ from one another.
  for (int i : owned_listeners_) {
    const int fd = listeners[size_t(i)].get();
    SockAddr local;
    local.len = sizeof local.storage;
    if (getsockname(fd, local.sa(), &local.len) != 0 || !local.is_unspecified()) continue;
    pktinfo_ = true;
    const int one = 1;
    // An IPv6 socket reports IPv4 datagrams' destinations as IPV6_PKTINFO too (::ffff:a.b.c.d).
    const bool v6 = local.family() == AF_INET6;
    const bool ok = v6 ? setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one) == 0
                       : setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) == 0;
    if (!ok) {
      err->err = errno;
      err->syscall = v6 ? "setsockopt(IPPROTO_IPV6, IPV6_RECVPKTINFO, udp listener)"
                        : "setsockopt(IPPROTO_IP, IP_PKTINFO, udp listener)";
      return -err->err;
    }
  }
  if (pktinfo_) {
    in_control_.resize(size_t(kBatch) * kPktinfoControlSize);
    reply_control_.resize(size_t(kBatch) * kPktinfoControlSize);
  }
  buffers_.resize(size_t(kBatch) * kDatagramMax);
  in_.resize(kBatch);
  in_iov_.resize(kBatch);
  in_addr_.resize(kBatch);
  out_.resize(kBatch);
  out_iov_.resize(kBatch);
  reply_buffers_.resize(size_t(kBatch) * kDatagramMax);
  replies_.resize(kBatch);
  reply_iov_.resize(kBatch);
  reply_to_.resize(kBatch);
  reply_listener_.resize(kBatch);
  gso_msgs_.resize(kBatch);
  gso_counts_.resize(kBatch);
  gso_first_.resize(kBatch);
  gso_control_.resize(size_t(kBatch) * kReplyControlSize);
  reply_gso_too_large_.assign(listeners.size(), SIZE_MAX);
  reply_from_.resize(kBatch);
  return 0;
}

bool UdpWorker::round() {
  if (ended_) return false;
  if (closing_) {
    // A datagram proxy has nothing to drain: flows end with the proxy.
    while (UdpFlow* f = flows_.oldest()) close_flow(f);
    ended_ = true;
    return false;
  }
  epoll_event events[kMaxEvents];
  int n = epoll_wait(epoll_.get(), events, kMaxEvents, 0);
  now_ms_ = monotonic_ms();
  event_round_++;
  // With more sockets ready than one epoll_wait returns, epoll takes turns and a busy flow is
  // not reported in consecutive rounds: read every flow in batches then.
  crowded_round_ = n == kMaxEvents;
  for (int i = 0; i < n && !closing_; i++) {
    auto* tag = static_cast<EpollTag*>(events[i].data.ptr);
    switch (tag->kind) {
      case EpollTag::kWake:
        handle_wake();
        break;
      case EpollTag::kListener:
        if (reading_) read_listener(tag->index);
        break;
      case EpollTag::kFlow:
        read_flow(static_cast<UdpFlow*>(tag->object));
        break;
      default:
        break;
    }
  }
  flush_replies();
  expire(now_ms_);
  return true;
}

int UdpWorker::next_wait_ms() const {
  if (ended_) return -1;
  if (closing_) return 0;
  return epoll_timeout(monotonic_ms());
}

void UdpWorker::apply(const std::vector<Decision>& decisions) {
  if (ended_) return;
  for (const Decision& d : decisions) {
    if (UdpFlow* f = flows_.find_id(d.id)) admit(f, d);
  }
}

bool UdpWorker::pending(uint64_t id) const {
  const UdpFlow* f = flows_.find_id(id);
  return f != nullptr && f->state == UdpFlow::State::kPending;
}

int UdpWorker::epoll_timeout(int64_t now) const {
  const UdpFlow* oldest = flows_.oldest();
  if (!oldest) return -1;
  int64_t wait = oldest->last_active_ms + engine_.config().close_after_ms - now;
  if (wait <= 0) return 0;
  return wait > 60000 ? 60000 : int(wait) + 1;
}

void UdpWorker::handle_wake() {
  if (take_wake() >= 0) {
    stop_reading();
    closing_ = true;
  }
}

void UdpWorker::stop_reading() {
  if (!reading_) return;
  reading_ = false;
  for (int i : owned_listeners_)
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, engine_.listeners()[size_t(i)].get(), nullptr);
  // The acknowledgement lets close() close the listeners, which replies leave from: the replies
  // this round has read go out first, and nothing touches a listener afterwards (reading_ is
  // false, and with no replies held flush_replies() does not look at them).
  flush_replies();
  engine_.ack_stop_accepting();
}

namespace {

// Whether a listening UDP socket still has its port (a destroyed socket that had an automatic
// port is unhashed and reports port 0).
bool still_bound(int fd) {
  SockAddr local;
  local.len = sizeof local.storage;
  return getsockname(fd, local.sa(), &local.len) == 0 && local.port() != 0;
}

}  // namespace

void UdpWorker::read_listener(int li) {
  const int lfd = engine_.listeners()[size_t(li)].get();
  const EngineConfig& cfg = engine_.config();
  std::shared_ptr<const AllowTable> allow = engine_.allowlist();
  for (int round = 0; round < 8; round++) {
    for (int i = 0; i < kBatch; i++) {
      in_iov_[i] = {buffers_.data() + size_t(i) * kDatagramMax, kDatagramMax};
      in_[i].msg_hdr = msghdr{};
      in_[i].msg_hdr.msg_name = &in_addr_[i];
      in_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
      in_[i].msg_hdr.msg_iov = &in_iov_[i];
      in_[i].msg_hdr.msg_iovlen = 1;
      if (pktinfo_) {
        in_[i].msg_hdr.msg_control = in_control_.data() + size_t(i) * kPktinfoControlSize;
        in_[i].msg_hdr.msg_controllen = kPktinfoControlSize;
      }
    }
    int n = recvmmsg(lfd, in_.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (n < 0 && errno == ECONNABORTED && !still_bound(lfd)) {
      // A UDP socket reports ECONNABORTED once it was destroyed (`ss -K`). Bound to a port of
      // its own choosing it also loses that port and will never receive again: tell JavaScript
      // once, which makes the proxy emit 'error'. Bound to a port given (-l 0.0.0.0:8443) it
      // keeps it and keeps receiving, so it is read on as before.
      epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, lfd, nullptr);
      if (engine_.claim_listener_failure(li))
        hand_off(ErrorRecord{kListenerFailed, ECONNABORTED, "recvmmsg", engine_.local_address(),
                             engine_.local_address()});
      return;
    }
    if (n <= 0) return;
    const int64_t now = monotonic_ms();
    Counters::add(counters_.datagrams_from_clients, uint64_t(n));
    // Payloads of admitted flows, sent after the batch with one sendmmsg per flow: grouped by
    // flow, in arrival order within each flow (the order between flows carries no meaning).
    sends_.clear();
    for (int i = 0; i < n; i++) {
      SockAddr peer;
      std::memcpy(&peer.storage, &in_addr_[i], sizeof(sockaddr_storage));
      peer.len = in_[i].msg_hdr.msg_namelen;
      const uint8_t* data = static_cast<const uint8_t*>(in_iov_[i].iov_base);
      const size_t len = in_[i].msg_len;
      if (allow && !allow->contains(peer)) {
        Counters::add(counters_.rejected[kNotAllowed], 1);
        continue;
      }
      DgramHeader h;
      if ((in_[i].msg_hdr.msg_flags & MSG_TRUNC) || !parse_dgram_header(data, len, &h)) {
        Counters::add(counters_.rejected[kBadHeader], 1);
        continue;
      }
      FlowKey key{peer, h.local ? peer : h.source};
      UdpFlow* f = flows_.find(key);
      if (!f) {
        if (engine_.live_connections().load(std::memory_order_relaxed) >= cfg.max_flows) {
          Counters::add(counters_.flow_table_full, 1);
          continue;
        }
        auto flow = std::make_unique<UdpFlow>();
        flow->id = (uint64_t(index_) << 40) | (++seq_ & ((uint64_t(1) << 40) - 1));
        flow->key = key;
        flow->listener_index = li;
        if (pktinfo_) packet_destination(in_[i].msg_hdr, &flow->local);
        flow->last_active_ms = now;
        flow->tag.kind = EpollTag::kFlow;
        flow->tag.object = flow.get();
        if (pending_bytes_ + (len - h.length) <= kPendingBytesLimit) {
          flow->queue.emplace_back(data + h.length, data + len);
          pending_bytes_ += len - h.length;
        } else {
          Counters::add(counters_.datagrams_dropped, 1);
        }
        f = flows_.insert(std::move(flow));
        Counters::add(counters_.accepted, 1);
        Counters::add(counters_.active, 1);
        engine_.live_connections().fetch_add(1, std::memory_order_relaxed);
        HeaderRecord r;
        r.id = double(f->id);
        r.peer = peer;
        r.bytes.assign(data, data + h.length);
        hand_off(std::move(r));
        continue;
      }
      flows_.touch(f, now);
      if (f->state == UdpFlow::State::kAdmitted) {
        sends_.push_back({f, {const_cast<uint8_t*>(data) + h.length, len - h.length}});
      } else if (f->state == UdpFlow::State::kPending && f->queue.size() < kPendingQueueLimit &&
                 pending_bytes_ + (len - h.length) <= kPendingBytesLimit) {
        f->queue.emplace_back(data + h.length, data + len);
        pending_bytes_ += len - h.length;
      } else {
        Counters::add(counters_.datagrams_dropped, 1);
      }
    }
    send_batch();
    if (n < kBatch) return;
  }
}

void UdpWorker::stage(int slot, iovec payload) {
  out_iov_[slot] = payload;
  out_[slot].msg_hdr = msghdr{};
  out_[slot].msg_hdr.msg_iov = &out_iov_[slot];
  out_[slot].msg_hdr.msg_iovlen = 1;
}

void UdpWorker::send_staged(UdpFlow* f, int count) {
  const int fd = f->socket.get();
  if (use_gso_ && count > 1 && count <= kMaxSegments) {
    // Same-size payloads (the last may be shorter) go out as one UDP GSO send.
    const size_t size = out_iov_[0].iov_len;
    size_t total = 0;
    bool uniform = size > 0;
    for (int i = 0; i < count && uniform; i++) {
      const size_t len = out_iov_[i].iov_len;
      uniform = i + 1 < count ? len == size : len > 0 && len <= size;
      total += len;
    }
    if (uniform && total <= kMaxSegmentedBytes && size < f->gso_too_large) {
      alignas(cmsghdr) char control[kSegmentControlSize] = {};
      msghdr m{};
      m.msg_iov = out_iov_.data();
      m.msg_iovlen = size_t(count);
      m.msg_control = control;
      m.msg_controllen = sizeof control;
      cmsghdr* c = CMSG_FIRSTHDR(&m);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t segment = uint16_t(size);
      std::memcpy(CMSG_DATA(c), &segment, sizeof segment);
      const ssize_t r = send_past_icmp([&] { return sendmsg(fd, &m, MSG_DONTWAIT); });
      if (r >= 0) {
        gso_proven_ = true;
        Counters::add(counters_.datagrams_to_upstreams, uint64_t(count));
        return;
      }
      const int e = errno;
      if (mtu_refusal(e)) {
        // Too large for the route: these go out plainly below, and so do this flow's later
        // payloads of this size or larger.
        f->gso_too_large = size;
      } else if (gso_proven_ || !gso_refusal(e)) {
        Counters::add(counters_.datagrams_dropped, uint64_t(count));
        return;
      } else {
        use_gso_ = false;  // refused: plain sends from now on
      }
    }
  }
  if (count == 1) {
    // The usual case with many flows: send() copies no message header or iovec array in.
    const ssize_t r = send_past_icmp(
        [&] { return send(fd, out_iov_[0].iov_base, out_iov_[0].iov_len, MSG_DONTWAIT); });
    Counters::add(r >= 0 ? counters_.datagrams_to_upstreams : counters_.datagrams_dropped, 1);
    return;
  }
  int i = 0;
  while (i < count) {
    const ssize_t sent = send_past_icmp(
        [&] { return sendmmsg(fd, &out_[size_t(i)], unsigned(count - i), MSG_DONTWAIT); });
    if (sent <= 0) break;
    Counters::add(counters_.datagrams_to_upstreams, uint64_t(sent));
    i += int(sent);
  }
  Counters::add(counters_.datagrams_dropped, uint64_t(count - i));
}

void UdpWorker::send_batch() {
  if (sends_.empty()) return;
  std::stable_sort(sends_.begin(), sends_.end(),
                   [](const Send& a, const Send& b) { return a.flow < b.flow; });
  size_t start = 0;
  while (start < sends_.size()) {
    UdpFlow* f = sends_[start].flow;
    int count = 0;
    for (size_t i = start; i < sends_.size() && sends_[i].flow == f; i++, count++)
      stage(count, sends_[i].payload);
    send_staged(f, count);
    start += size_t(count);
  }
  sends_.clear();
}

void UdpWorker::admit(UdpFlow* f, const Decision& d) {
  if (f->state != UdpFlow::State::kPending) return;
  for (const auto& payload : f->queue) pending_bytes_ -= payload.size();
  if (!d.admit) {
    // Kept as refused until idle, so that the flow's later datagrams are dropped here without
    // asking JavaScript again.
    int reason = d.reason >= 0 && d.reason < kRejectReasonCount ? d.reason : kBadHeader;
    Counters::add(counters_.rejected[reason], 1);
    Counters::add(counters_.datagrams_dropped, f->queue.size());
    f->queue.clear();
    f->state = UdpFlow::State::kRefused;
    return;
  }
  SockAddr source = d.source;
  SocketOptions o;
  o.type = SOCK_DGRAM;
  o.transparent = true;
  o.mark = d.mark;
  // Two load balancers may carry the same client address and port: the second flow cannot bind
  // it, so it goes out from the same address and another port.
  SocketError err;
  bool retried;
  UniqueFd sock = open_upstream(o, &source, d.target, true, &retried, &err);
  if (retried) Counters::add(counters_.ephemeral_port_retries, 1);
  if (!sock || !watch(sock.get(), EPOLLIN, &f->tag)) {
    if (sock) {
      err.err = errno;
      err.syscall = "epoll_ctl(EPOLL_CTL_ADD, flow)";
    }
    Counters::add(counters_.upstream_failures, 1);
    Counters::add(counters_.datagrams_dropped, f->queue.size());
    f->queue.clear();
    f->state = UdpFlow::State::kRefused;
    ErrorRecord r;
    r.id = double(f->id);
    r.err = err.err;
    r.syscall = err.syscall;
    r.source = source;
    r.address = d.target;
    hand_off(std::move(r));
    return;
  }
  f->socket = std::move(sock);
  f->state = UdpFlow::State::kAdmitted;
  Counters::add(counters_.admitted, 1);
  send_queued(f);
}

void UdpWorker::send_queued(UdpFlow* f) {
  size_t done = 0;
  while (done < f->queue.size()) {
    int count = 0;
    for (size_t i = done; i < f->queue.size() && count < kBatch; i++, count++)
      stage(count, {f->queue[i].data(), f->queue[i].size()});
    send_staged(f, count);
    done += size_t(count);
  }
  f->queue.clear();
  f->queue.shrink_to_fit();
}

void UdpWorker::read_flow(UdpFlow* f) {
  // Replies are read straight into the reply batch, which flush_replies() sends once per round of
  // events: one sendmmsg for the replies of many flows, instead of one per flow.
  if (reply_count_ == kBatch) flush_replies();
  if (!f->bursty && !crowded_round_) {
    // Most flows have one reply waiting (a request, its answer). One recv() takes it; recvmmsg()
    // would copy message headers in and then try again for a second datagram. Should more be
    // waiting, the flow is ready again at the next epoll_wait (level-triggered) and is read in
    // batches from then on.
    if (f->single_read_round == event_round_ - 1) {
      f->bursty = true;
    } else {
      const int i = reply_count_;
      ssize_t len = recv(f->socket.get(), reply_buffers_.data() + size_t(i) * kDatagramMax,
                         kDatagramMax, MSG_DONTWAIT);
      if (len < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
          Counters::add(counters_.icmp_errors, 1);  // as below
        return;
      }
      f->single_read_round = event_round_;
      Counters::add(counters_.datagrams_from_upstreams, 1);
      queue_reply(f, i, size_t(len));
      reply_count_++;
      flows_.touch(f, now_ms_);
      return;
    }
  }
  for (int round = 0; round < 8; round++) {
    if (reply_count_ == kBatch) flush_replies();
    const int room = kBatch - reply_count_;
    for (int i = reply_count_; i < kBatch; i++) {
      reply_iov_[i] = {reply_buffers_.data() + size_t(i) * kDatagramMax, kDatagramMax};
      replies_[i].msg_hdr = msghdr{};
      replies_[i].msg_hdr.msg_iov = &reply_iov_[i];
      replies_[i].msg_hdr.msg_iovlen = 1;
    }
    int n = recvmmsg(f->socket.get(), &replies_[size_t(reply_count_)], unsigned(room), MSG_DONTWAIT,
                     nullptr);
    if (round == 0 && n == 1 && room > 1) f->bursty = false;  // back to one recv() per event
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      // ECONNREFUSED, EHOSTUNREACH…: an ICMP error from the target. The error is consumed by
      // this call; the flow stays (the target may come back) and ends when idle, as any other.
      Counters::add(counters_.icmp_errors, 1);
      continue;
    }
    if (n == 0) return;
    Counters::add(counters_.datagrams_from_upstreams, uint64_t(n));
    for (int i = reply_count_; i < reply_count_ + n; i++) queue_reply(f, i, replies_[i].msg_len);
    reply_count_ += n;
    flows_.touch(f, now_ms_);
    if (n < room) return;
  }
}

void UdpWorker::queue_reply(UdpFlow* f, int i, size_t len) {
  reply_iov_[i] = {reply_buffers_.data() + size_t(i) * kDatagramMax, len};
  replies_[i].msg_hdr = msghdr{};
  replies_[i].msg_hdr.msg_iov = &reply_iov_[i];
  replies_[i].msg_hdr.msg_iovlen = 1;
  reply_to_[i] = f->key.load_balancer;
  replies_[i].msg_hdr.msg_name = &reply_to_[i].storage;
  replies_[i].msg_hdr.msg_namelen = f->key.load_balancer.len;
  reply_listener_[i] = f->listener_index;
  reply_from_[i] = f->local;
  if (f->local.len > 0) {
    msghdr& m = replies_[i].msg_hdr;
    m.msg_control = reply_control_.data() + size_t(i) * kPktinfoControlSize;
    m.msg_controllen = kPktinfoControlSize;
    m.msg_controllen = put_source(CMSG_FIRSTHDR(&m), f->local);
  }
}

void UdpWorker::packet_destination(msghdr& m, SockAddr* out) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      // ipi_spec_dst: the destination itself for a unicast datagram, and for one sent to a
      // broadcast address the local address a reply may come from.
      in_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof info);
      *out = SockAddr{};
      auto* a = reinterpret_cast<sockaddr_in*>(&out->storage);
      a->sin_family = AF_INET;
      a->sin_addr = info.ipi_spec_dst;
      out->len = sizeof(sockaddr_in);
      return;
    }
    if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      in6_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof info);
      *out = SockAddr{};
      auto* a = reinterpret_cast<sockaddr_in6*>(&out->storage);
      a->sin6_family = AF_INET6;
      a->sin6_addr = info.ipi6_addr;
      // A link-local address is only meaningful with its interface.
      if (IN6_IS_ADDR_LINKLOCAL(&info.ipi6_addr)) a->sin6_scope_id = info.ipi6_ifindex;
      out->len = sizeof(sockaddr_in6);
      return;
    }
  }
}

size_t UdpWorker::put_source(cmsghdr* c, const SockAddr& from) {
  if (from.family() == AF_INET) {
    in_pktinfo info{};
    info.ipi_spec_dst = reinterpret_cast<const sockaddr_in*>(&from.storage)->sin_addr;
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof info);
    std::memcpy(CMSG_DATA(c), &info, sizeof info);
    return CMSG_SPACE(sizeof info);
  }
  in6_pktinfo info{};
  info.ipi6_addr = reinterpret_cast<const sockaddr_in6*>(&from.storage)->sin6_addr;
  info.ipi6_ifindex = reinterpret_cast<const sockaddr_in6*>(&from.storage)->sin6_scope_id;
  c->cmsg_level = IPPROTO_IPV6;
  c->cmsg_type = IPV6_PKTINFO;
  c->cmsg_len = CMSG_LEN(sizeof info);
  std::memcpy(CMSG_DATA(c), &info, sizeof info);
  return CMSG_SPACE(sizeof info);
}

void UdpWorker::flush_replies() {
  int start = 0;
  while (start < reply_count_) {
    // A run of replies that leave through the same listening socket.
    int end = start + 1;
    while (end < reply_count_ && reply_listener_[end] == reply_listener_[start]) end++;
    const int lfd = engine_.listeners()[size_t(reply_listener_[start])].get();
    if (use_gso_)
      send_replies_segmented(lfd, start, end);
    else
      send_replies_plain(lfd, start, end);
    start = end;
  }
  reply_count_ = 0;
}

void UdpWorker::send_replies_plain(int lfd, int start, int end) {
  int i = start;
  while (i < end) {
    int sent = sendmmsg(lfd, &replies_[size_t(i)], unsigned(end - i), MSG_DONTWAIT);
    if (sent > 0) {
      Counters::add(counters_.datagrams_to_clients, uint64_t(sent));
      i += sent;
      continue;
    }
    if (buffer_full(errno)) break;
    // EINVAL for a source that is no longer one of this host's addresses (a virtual IP moved
    // away): that reply goes out from the address routing picks. Any other refusal drops this
    // reply only.
    if (errno == EINVAL && drop_source(&replies_[size_t(i)].msg_hdr)) continue;
    Counters::add(counters_.datagrams_dropped, 1);
    i++;
  }
  Counters::add(counters_.datagrams_dropped, uint64_t(end - i));
}

void UdpWorker::send_replies_segmented(int lfd, int start, int end) {
  // Consecutive replies to one load balancer with one size (and one source) go out as a single
  // UDP GSO send (UDP_SEGMENT): the stack is crossed once for the group, and the kernel cuts it
  // into the same datagrams. Groups of one are sent as they are.
  size_t& too_large = reply_gso_too_large_[size_t(reply_listener_[start])];
  int groups = 0;
  for (int i = start; i < end;) {
    const size_t size = reply_iov_[i].iov_len;
    const SockAddr& to = reply_to_[i];
    const SockAddr& from = reply_from_[i];
    int j = i + 1;
    size_t total = size;
    while (j < end && j - i < kMaxSegments && reply_iov_[j].iov_len == size && size > 0 &&
           size < too_large && total + size <= kMaxSegmentedBytes && reply_to_[j].len == to.len &&
           std::memcmp(&reply_to_[j].storage, &to.storage, to.len) == 0 &&
           reply_from_[j].len == from.len && (from.len == 0 || reply_from_[j].same_ip(from))) {
      total += size;
      j++;
    }
    mmsghdr& m = gso_msgs_[size_t(groups)];
    m = mmsghdr{};
    m.msg_hdr.msg_name = const_cast<sockaddr_storage*>(&to.storage);
    m.msg_hdr.msg_namelen = to.len;
    m.msg_hdr.msg_iov = &reply_iov_[i];
    m.msg_hdr.msg_iovlen = size_t(j - i);
    if (j - i > 1 || from.len > 0) {
      char* control = gso_control_.data() + size_t(groups) * kReplyControlSize;
      std::memset(control, 0, kReplyControlSize);
      m.msg_hdr.msg_control = control;
      m.msg_hdr.msg_controllen = kReplyControlSize;
      cmsghdr* c = CMSG_FIRSTHDR(&m.msg_hdr);
      size_t used = 0;
      if (j - i > 1) {
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t segment = uint16_t(size);
        std::memcpy(CMSG_DATA(c), &segment, sizeof segment);
        used = CMSG_SPACE(sizeof(uint16_t));
        c = CMSG_NXTHDR(&m.msg_hdr, c);
      }
      if (from.len > 0) used += put_source(c, from);
      m.msg_hdr.msg_controllen = used;
    }
    gso_counts_[size_t(groups)] = j - i;
    gso_first_[size_t(groups)] = i;
    groups++;
    i = j;
  }
  int g = 0;
  while (g < groups) {
    int sent = sendmmsg(lfd, &gso_msgs_[size_t(g)], unsigned(groups - g), MSG_DONTWAIT);
    if (sent > 0) {
      for (int k = g; k < g + sent; k++) {
        Counters::add(counters_.datagrams_to_clients, uint64_t(gso_counts_[size_t(k)]));
        if (gso_counts_[size_t(k)] > 1) gso_proven_ = true;
      }
      g += sent;
      continue;
    }
    const int e = errno;
    if (buffer_full(e)) break;
    if (e == EINVAL && drop_source(&gso_msgs_[size_t(g)].msg_hdr)) continue;  // as in plain sends
    if (gso_counts_[size_t(g)] > 1 && mtu_refusal(e)) {
      // Too large for the route to this load balancer: the group's replies go out one by one
      // (fragmented), and replies this large or larger through this listener are not grouped.
      const int first = gso_first_[size_t(g)];
      too_large = std::min(too_large, reply_iov_[first].iov_len);
      send_replies_plain(lfd, first, first + gso_counts_[size_t(g)]);
      g++;
      continue;
    }
    if (gso_counts_[size_t(g)] > 1 && !gso_proven_ && gso_refusal(e)) {
      // No UDP GSO here (an old kernel, or a device that refuses it): plain sends from now on.
      use_gso_ = false;
      send_replies_plain(lfd, gso_first_[size_t(g)], end);
      return;
    }
    Counters::add(counters_.datagrams_dropped, uint64_t(gso_counts_[size_t(g)]));
    g++;
  }
  for (; g < groups; g++)
    Counters::add(counters_.datagrams_dropped, uint64_t(gso_counts_[size_t(g)]));
}

void UdpWorker::close_flow(UdpFlow* f) {
  if (f->state == UdpFlow::State::kPending)
    for (const auto& payload : f->queue) pending_bytes_ -= payload.size();
  Counters::add(counters_.active, -1);
  engine_.live_connections().fetch_sub(1, std::memory_order_relaxed);
  flows_.remove(f);
}

void UdpWorker::expire(int64_t now) {
  const int64_t idle = engine_.config().close_after_ms;
  while (UdpFlow* f = flows_.oldest()) {
    if (now - f->last_active_ms < idle) break;
    Counters::add(counters_.flows_expired, 1);
    close_flow(f);
  }
}

}  // namespace mmproxy
