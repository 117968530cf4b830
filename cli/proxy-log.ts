// Turns a running Proxy's events and stats into log lines at go-mmproxy's verbosity levels:
// -v 1 each connection error, -v 2 each state change, and at every level a periodic summary of
// what was dropped (from stats() deltas), so that drops are never invisible.
import type { EventEmitter } from 'node:events';
import type {
  ConnectionInfo,
  Endpoint,
  ProxyStats,
  RejectInfo,
  RejectReason,
} from '../lib/proxy-types.js';
import { formatEndpoint, type Logger } from './logger.js';

const REJECT_MESSAGES: Record<RejectReason, string> = {
  notAllowed: 'connection origin not in allowed subnets',
  badHeader: 'failed to parse PROXY header',
  headerTimeout: 'PROXY header did not arrive in time',
  spoofRefused: 'refused to connect from the address in the PROXY header',
  localRejected: 'LOCAL/UNKNOWN PROXY header rejected',
  routeRejected: 'route hook refused the connection',
  maxConnections: 'too many connections',
  decisionTimeout: 'no routing decision in time',
  clientClosed: 'client closed the connection while its routing decision was pending',
  decisionError: 'the decision failed',
  destinationRefused: 'destination in the PROXY header not in the allowed destinations',
};

/** The part of a Proxy this module listens to (an EventEmitter with these events). */
export type ProxyEventSource = Pick<EventEmitter, 'on' | 'off'>;

/**
 * Logs per-connection events. Per-connection lines are DEBUG, as go-mmproxy writes them, and go
 * through the logger's rate limit. Returns a function that detaches the listeners.
 */
export function logProxyEvents(
  proxy: ProxyEventSource,
  logger: Logger,
  verbosity: 0 | 1 | 2,
  localAddr: () => string,
): () => void {
  const onConnection = (info: ConnectionInfo): void => {
    logger.connection('DEBUG', 'new connection', {
      protocol: info.protocol,
      remoteAddr: formatEndpoint(info.loadBalancer),
      localAddr: localAddr(),
      clientAddr: formatEndpoint(info.client),
      targetAddr: formatEndpoint(info.target),
    });
  };
  const onReject = (info: RejectInfo): void => {
    const client = info.header?.source ?? null;
    logger.connection('DEBUG', REJECT_MESSAGES[info.reason] ?? `rejected: ${info.reason}`, {
      protocol: info.protocol,
      remoteAddr: formatEndpoint(info.loadBalancer),
      localAddr: localAddr(),
      clientAddr: info.header ? formatEndpoint(client) : undefined,
      reason: info.reason,
      error: info.error,
      dropConnection: true,
    });
  };
  const onConnectionError = (err: Error, info: { source: Endpoint; target: Endpoint }): void => {
    logger.connection('DEBUG', 'failed to establish upstream connection', {
      localAddr: localAddr(),
      clientAddr: formatEndpoint(info.source),
      targetAddr: formatEndpoint(info.target),
      error: err,
      dropConnection: true,
    });
  };
  if (verbosity >= 1) {
    proxy.on('reject', onReject);
    proxy.on('connectionError', onConnectionError);
  }
  if (verbosity >= 2) proxy.on('connection', onConnection);
  return () => {
    proxy.off('reject', onReject);
    proxy.off('connectionError', onConnectionError);
    proxy.off('connection', onConnection);
  };
}

/** Remembers the last stats and reports what was dropped since. */
export class DropSummary {
  private last: ProxyStats;
  private lastAt: number;

  constructor(
    private readonly stats: () => ProxyStats,
    private readonly now: () => number = Date.now,
  ) {
    this.last = stats();
    this.lastAt = now();
  }

  /** Logs one WARN line when anything was dropped since the last call; returns whether it did. */
  report(logger: Logger): boolean {
    const current = this.stats();
    const at = this.now();
    const rejected: Partial<Record<RejectReason, number>> = {};
    let dropped = 0;
    for (const [reason, count] of Object.entries(current.rejected) as [RejectReason, number][]) {
      const delta = count - (this.last.rejected[reason] ?? 0);
      if (delta > 0) {
        rejected[reason] = delta;
        dropped += delta;
      }
    }
    // Other losses, each reported only when it grew.
    const others: Record<string, number> = {};
    const more = (name: string, now: number, before: number): void => {
      if (now - before > 0) {
        others[name] = now - before;
        dropped += now - before;
      }
    };
    more('upstreamFailures', current.upstreamFailures, this.last.upstreamFailures);
    more('acceptErrors', current.acceptErrors, this.last.acceptErrors);
    more('udpDatagramsDropped', current.udp.datagramsDropped, this.last.udp.datagramsDropped);
    const seconds = Math.round((at - this.lastAt) / 100) / 10;
    const accepted = current.accepted - this.last.accepted;
    this.last = current;
    this.lastAt = at;
    if (dropped === 0) return false;
    logger.warn('connections dropped', { seconds, accepted, dropped, rejected, ...others });
    return true;
  }
}
