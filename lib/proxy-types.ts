// The shapes a running Proxy reports: connection and rejection records, stats, events.
import type { ProxyHeader } from './codec/index.js';

export interface Endpoint {
  address: string;
  port: number;
}

export interface BoundAddress extends Endpoint {
  family: 'IPv4' | 'IPv6';
}

/** Why a connection or datagram was turned away. Stable strings, used as stats keys too. */
export type RejectReason =
  | 'notAllowed' // the load balancer's address is outside the allowlist (decided in native code)
  | 'badHeader' // the PROXY header is malformed
  | 'headerTimeout' // the header did not complete within headerTimeout
  | 'spoofRefused' // the header's source must never be spoofed (loopback, multicast, this host…)
  | 'localRejected' // LOCAL/UNKNOWN header while the `local` option is 'reject'
  | 'routeRejected' // the user's route hook refused it
  | 'maxConnections' // maxConnections live connections already
  | 'decisionTimeout' // no decision within headerTimeout: a route hook that did not answer in time
  | 'clientClosed' // the client reset the connection while its decision was pending
  | 'decisionError' // deciding threw (a bug, or out of descriptors): only that one is refused
  | 'destinationRefused'; // the header's destination is outside dynamicDestinationAllow

export interface ConnectionInfo {
  id: number;
  protocol: 'tcp' | 'udp';
  /** The peer of the accepted connection or datagram. */
  loadBalancer: Endpoint;
  /** The client named by the header; null for LOCAL and UNKNOWN. */
  client: Endpoint | null;
  /** The address the upstream connection is made from (client, or the load balancer's address). */
  source: Endpoint;
  target: Endpoint;
  header: ProxyHeader;
}

export interface RejectInfo {
  protocol: 'tcp' | 'udp';
  reason: RejectReason;
  loadBalancer: Endpoint;
  /** The decoded header, when there was one. */
  header?: ProxyHeader;
  /** Details: the ProxyProtocolError for badHeader, the route hook's error, … */
  error?: Error;
}

export interface ProxyStats {
  /** TCP connections accepted / UDP flows opened, ever. */
  accepted: number;
  /** Connections (TCP) or flows (UDP) alive now. */
  active: number;
  /** Admitted and handed to the relay, ever. */
  admitted: number;
  rejected: Record<RejectReason, number>;
  /** Upstream connect/socket failures (refused, unreachable, timed out, bind failed). */
  upstreamFailures: number;
  /** Client address:port already in use toward the target: retried from an ephemeral port. */
  ephemeralPortRetries: number;
  bytesFromClients: number;
  bytesFromUpstreams: number;
  /** Accepted connections the kernel handed over with an error, or accept() failures (EMFILE…). */
  acceptErrors: number;
  /**
   * TCP: decisions taken in JavaScript, and the total microseconds between a worker handing a
   * header over and the decision reaching it (divide for the mean hand-off latency).
   */
  decisions: number;
  decisionWaitUs: number;
  /** UDP only (zeros for TCP). */
  udp: UdpStats;
}

export interface UdpStats {
  /** Datagrams received from load balancers. */
  datagramsFromClients: number;
  /** Payloads sent on to targets. */
  datagramsToUpstreams: number;
  /** Replies received from targets. */
  datagramsFromUpstreams: number;
  /** Replies sent back to load balancers. */
  datagramsToClients: number;
  /** Dropped: refused flow, pending queue full, or a send the kernel refused. */
  datagramsDropped: number;
  /** New flows refused because maxFlows flows were open. */
  flowTableFull: number;
  /** ICMP errors (port unreachable…) a target's host reported on a flow; the flow stays. */
  icmpErrors: number;
  /** Flows closed after closeAfter seconds without a datagram either way. */
  flowsExpired: number;
}

/** What a `route` hook sees for each connection. */
export interface RouteRequest {
  protocol: 'tcp' | 'udp';
  header: ProxyHeader;
  loadBalancer: Endpoint;
  client: Endpoint | null;
  source: Endpoint;
  /** The target the options give (target4/target6, or the header's destination). */
  target: Endpoint;
}

/**
 * A route hook's answer: an Endpoint to connect to instead, `undefined` (or `true`) for the
 * default target, `false` or `null` to refuse. It may return a Promise of the same.
 */
export type RouteResult = Endpoint | boolean | null | undefined;
export type RouteHook = (request: RouteRequest) => RouteResult | Promise<RouteResult>;
