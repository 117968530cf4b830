// UdpWorker: a relay worker for UDP. It reads datagrams from the listening sockets it owns in
// batches (recvmmsg), keys each by (load balancer, client) from its v2 header, sends the payload
// of known flows on at once (sendmmsg per run of one flow), queues the first datagrams of a new
// flow while the decision code decides, and carries replies back to the load balancer. Idle flows
// expire after closeAfter. Attached thread.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine.h"
#include "udp_flow_table.h"
#include "worker_thread.h"

namespace mmproxy {

class UdpWorker : public WorkerThread {
 public:
  UdpWorker(Engine& engine, int index, int workers)
      : WorkerThread(engine, index), stride_(workers) {}
  bool round() override;
  int next_wait_ms() const override;
  void apply(const std::vector<Decision>& decisions) override;
  bool pending(uint64_t id) const override;

 private:
  int setup(SocketError* err) override;
  void handle_wake();
  // Stops reading the listeners and sends the replies held; then close() may close the listeners.
  void stop_reading();
  void read_listener(int listener_index);
  void read_flow(UdpFlow* flow);
  void queue_reply(UdpFlow* flow, int slot, size_t len);  // replies_[slot] goes to flow's LB
  // The destination address of a datagram read from a wildcard listener, from its IP_PKTINFO or
  // IPV6_PKTINFO; out unchanged when there is none.
  static void packet_destination(msghdr& m, SockAddr* out);
  // Writes at c the control message that makes a send leave from `from`; returns its space.
  static size_t put_source(cmsghdr* c, const SockAddr& from);
  void flush_replies();
  // Send replies [start, end) through lfd: grouped for UDP GSO where they can be (plainly from
  // the first group the kernel refuses GSO for, and from then on), or one message each. A group
  // too large for the route's MTU goes out one message each, and its size is not grouped on that
  // listener again. A reply the kernel refuses is dropped and counted, and the others go on.
  void send_replies_segmented(int lfd, int start, int end);
  void send_replies_plain(int lfd, int start, int end);
  void send_batch();
  void stage(int slot, iovec payload);         // out_[slot] carries payload
  void send_staged(UdpFlow* flow, int count);  // sends out_[0, count) on the flow's socket
  // Calls send() again when it failed only to report an ICMP error from the target that arrived
  // earlier on the flow's socket (the datagram was not sent); counts that error. send's result.
  template <class SendCall>
  ssize_t send_past_icmp(SendCall send);
  void admit(UdpFlow* flow, const Decision& d);
  void send_queued(UdpFlow* flow);
  void close_flow(UdpFlow* flow);
  void expire(int64_t now);
  int epoll_timeout(int64_t now) const;

  const int stride_;  // listener i belongs to worker i % stride_
  std::vector<EpollTag> listener_tags_;
  std::vector<int> owned_listeners_;
  bool reading_ = true;
  bool closing_ = false;
  bool ended_ = false;
  uint64_t seq_ = 0;
  size_t pending_bytes_ = 0;  // payload bytes queued in pending flows
  FlowTable flows_;
  // Batch buffers for recvmmsg/sendmmsg.
  std::vector<uint8_t> buffers_;
  std::vector<mmsghdr> in_;
  std::vector<iovec> in_iov_;
  std::vector<sockaddr_storage> in_addr_;
  std::vector<mmsghdr> out_;
  std::vector<iovec> out_iov_;
  struct Send {
    UdpFlow* flow;
    iovec payload;
  };
  std::vector<Send> sends_;  // this batch's payloads for admitted flows
  // Replies waiting for flush_replies(), with where each goes and through which listener.
  std::vector<uint8_t> reply_buffers_;
  std::vector<mmsghdr> replies_;
  std::vector<iovec> reply_iov_;
  std::vector<SockAddr> reply_to_;
  std::vector<int> reply_listener_;
  std::vector<SockAddr> reply_from_;  // len 0: the listener's own address
  int reply_count_ = 0;
  // UDP GSO for replies: one message per group of same-size replies to one load balancer.
  static constexpr int kMaxSegments = 64;
  static constexpr size_t kMaxSegmentedBytes = 65000;
  static constexpr size_t kSegmentControlSize = CMSG_SPACE(sizeof(uint16_t));
  // Destinations of datagrams read from, and sources of replies sent through, a wildcard listener.
  static constexpr size_t kPktinfoControlSize = CMSG_SPACE(sizeof(in6_pktinfo)) >
                                                        CMSG_SPACE(sizeof(in_pktinfo))
                                                    ? CMSG_SPACE(sizeof(in6_pktinfo))
                                                    : CMSG_SPACE(sizeof(in_pktinfo));
  static constexpr size_t kReplyControlSize = kSegmentControlSize + kPktinfoControlSize;
  bool pktinfo_ = false;  // some of its listeners are bound to a wildcard address
  std::vector<char> in_control_;
  std::vector<char> reply_control_;
  bool use_gso_ = true;
  bool gso_proven_ = false;  // a GSO send went through: a later failure is not for want of GSO
  std::vector<mmsghdr> gso_msgs_;
  std::vector<int> gso_counts_;  // datagrams in each group
  std::vector<int> gso_first_;   // each group's first reply
  std::vector<char> gso_control_;
  // Per listener: the smallest reply size whose UDP GSO send the kernel refused for the route's
  // MTU (to any load balancer); replies this large or larger are not grouped. SIZE_MAX: none.
  std::vector<size_t> reply_gso_too_large_;
  int64_t now_ms_ = 0;          // read once per round of events
  uint64_t event_round_ = 1;    // counts the rounds of events
  bool crowded_round_ = false;  // this round's epoll_wait filled its whole array
};

}  // namespace mmproxy
