// The per-connection decision, as each relay worker's thread runs it: decode the header, apply
// the spoofing policy, LOCAL/UNKNOWN handling, the target choice, dynamic destination and the
// route hook, and answer the native worker with a flat decision list. What the main thread is
// to hear of (connections, rejections, upstream errors) goes to a sink, and only what someone
// listens for is built at all.
import { isIPv4 } from 'node:net';
import { parseIp } from './allowlist.js';
import { decodeHeader, type ProxyHeader } from './codec/index.js';
import { DestinationAllowlist } from './destination-allow.js';
import type { HostAddresses } from './host-addresses.js';
import {
  NATIVE_REJECT_REASONS,
  type NativeDecision,
  type NativeDecisionList,
  type NativeErrorRecord,
} from './native.js';
import type {
  ConnectionInfo,
  Endpoint,
  RejectInfo,
  RejectReason,
  RouteHook,
  RouteResult,
} from './proxy-types.js';
import { spoofRefusal } from './source-policy.js';

const REASON_INDEX = new Map<RejectReason, number>(
  NATIVE_REJECT_REASONS.map((reason, index) => [reason, index]),
);

/** The id of an error record that reports a listener's failure (native kListenerFailed). */
export const LISTENER_FAILED = -1;

/** What a worker needs to decide: plain data, passed to the worker thread as it is. */
export interface DecisionConfig {
  protocol: 'tcp' | 'udp';
  target4: Endpoint;
  target6: Endpoint;
  mark: number;
  dynamicDestination: boolean;
  /** The dynamicDestinationAllow entries as given; null: any destination. */
  dynamicDestinationAllow: readonly string[] | null;
  local: 'load-balancer' | 'reject';
}

/** Where decisions report; each `wants` says whether anyone listens (read at each use). */
export interface DecisionSink {
  wantsConnection(): boolean;
  wantsReject(): boolean;
  wantsConnectionError(): boolean;
  connection(info: ConnectionInfo): void;
  reject(info: RejectInfo): void;
  /** An admitted connection's upstream could not be opened. */
  connectionError(record: NativeErrorRecord): void;
  /** A listening socket failed for good (destroyed with `ss -K`, say). */
  listenerFailed(record: NativeErrorRecord): void;
}

/** The native worker this decider answers: for answers that come later. */
export interface DecisionTarget {
  decide(decisions: NativeDecisionList): void;
  pending(id: number): boolean;
}

/** `::ffff:192.0.2.1` → `192.0.2.1`; other addresses unchanged. */
export function unmapped(address: string): string {
  if (address.length > 7 && address.slice(0, 7).toLowerCase() === '::ffff:') {
    const v4 = address.slice(7);
    if (isIPv4(v4)) return v4;
  }
  return address;
}

const ipWords = new Uint32Array(4);

/** 4 or 6 for an address the addon can use, 0 for anything else (a zoned IPv6 included). */
function ipKind(address: unknown): 0 | 4 | 6 {
  return typeof address === 'string' ? parseIp(address, ipWords) : 0;
}

/** `192.0.2.1:80`, `[2001:db8::1]:80`. */
function endpointText(e: Endpoint): string {
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

function familyOf(address: string): 4 | 6 {
  return isIPv4(address) ? 4 : 6;
}

export class Decider {
  readonly #config: { -readonly [K in keyof DecisionConfig]: DecisionConfig[K] };
  readonly #destinations: DestinationAllowlist | null;
  readonly #route: RouteHook | null;
  readonly #sink: DecisionSink;
  readonly #hostAddresses: HostAddresses;
  #target: DecisionTarget | null = null;

  constructor(
    config: DecisionConfig,
    route: RouteHook | null,
    sink: DecisionSink,
    hostAddresses: HostAddresses,
  ) {
    this.#config = { ...config };
    this.#destinations =
      config.dynamicDestinationAllow === null
        ? null
        : DestinationAllowlist.from([...config.dynamicDestinationAllow]);
    this.#route = route;
    this.#sink = sink;
    this.#hostAddresses = hostAddresses;
  }

  /** New targets (a host name resolved again): for the connections decided from now on. */
  setTargets(target4: Endpoint, target6: Endpoint): void {
    this.#config.target4 = target4;
    this.#config.target6 = target6;
  }

  /** The native worker that later answers (async route hooks) go to. */
  attach(target: DecisionTarget): void {
    this.#target = target;
  }

  /** One round's records: the decisions known now (async route hooks answer later). */
  decideBatch(
    meta: Float64Array,
    addresses: string[],
    bytes: Buffer,
    errors: NativeErrorRecord[],
  ): NativeDecisionList {
    const decisions: NativeDecisionList = [];
    for (let i = 0; i < addresses.length; i++) {
      const offset = meta[4 * i + 2]!;
      const header = bytes.subarray(offset, offset + meta[4 * i + 3]!);
      const id = meta[4 * i]!;
      let decision: NativeDecision | null;
      try {
        decision = this.#decide(id, addresses[i]!, meta[4 * i + 1]!, header);
      } catch (e) {
        // A bug, or a resource failure (out of descriptors): this connection only is refused,
        // and the rest of the batch is still decided.
        const peer = { address: unmapped(addresses[i]!), port: meta[4 * i + 1]! };
        decision = this.#reject(id, 'decisionError', peer, undefined, e as Error);
      }
      if (decision) for (const field of decision) decisions.push(field);
    }
    for (const record of errors) {
      if (record[0] === LISTENER_FAILED) this.#sink.listenerFailed(record);
      else if (this.#sink.wantsConnectionError()) this.#sink.connectionError(record);
    }
    return decisions;
  }

  #reject(
    id: number,
    reason: RejectReason,
    loadBalancer: Endpoint,
    header?: ProxyHeader,
    error?: Error,
  ): NativeDecision {
    if (this.#sink.wantsReject()) {
      const info: RejectInfo = { protocol: this.#config.protocol, reason, loadBalancer };
      if (header) info.header = header;
      if (error) info.error = error;
      this.#sink.reject(info);
    }
    return [id, REASON_INDEX.get(reason)!];
  }

  /** A spoofRefused decision; says so when this host's addresses could not be read. */
  #refuseSpoof(
    id: number,
    loadBalancer: Endpoint,
    header: ProxyHeader,
    message: string,
  ): NativeDecision {
    const e = this.#hostAddresses.unreadable();
    const note =
      e === null
        ? ''
        : `; this host's addresses could not be read (${e.message}), so every address counts as local`;
    return this.#reject(id, 'spoofRefused', loadBalancer, header, new Error(message + note));
  }

  /** One connection's decision; null when an async route hook will answer later. */
  #decide(
    id: number,
    peerAddress: string,
    peerPort: number,
    bytes: Uint8Array,
  ): NativeDecision | null {
    const loadBalancer = { address: unmapped(peerAddress), port: peerPort };
    const o = this.#config;
    const udp = o.protocol === 'udp';
    let header: ProxyHeader;
    try {
      const decoded = decodeHeader(bytes, { transport: udp ? 'dgram' : 'stream' });
      if (decoded === null) throw new Error('incomplete PROXY header');
      header = decoded.header;
    } catch (e) {
      return this.#reject(id, 'badHeader', loadBalancer, undefined, e as Error);
    }
    const hasClient =
      header.command === 'PROXY' &&
      (udp
        ? header.protocol === 'UDP4' || header.protocol === 'UDP6'
        : header.protocol === 'TCP4' || header.protocol === 'TCP6') &&
      header.source?.port != null;
    let client: Endpoint | null = null;
    let source: Endpoint;
    if (hasClient) {
      client = { address: unmapped(header.source!.address), port: header.source!.port! };
      const refusal = spoofRefusal(client.address, client.port, this.#hostAddresses);
      if (refusal !== null) {
        return this.#refuseSpoof(
          id,
          loadBalancer,
          header,
          `refusing to connect from ${client.address}:${client.port} (${refusal})`,
        );
      }
      source = client;
    } else {
      // LOCAL, UNKNOWN: no client to stand for. Connect from the load balancer's own address,
      // never from ours: the application must not mistake it for a local connection. So a load
      // balancer on this host (loopback or one of its addresses) is refused the same way a
      // header naming such a source is; v1 UNKNOWN may carry a real client's bytes.
      if (o.local === 'reject') return this.#reject(id, 'localRejected', loadBalancer, header);
      const refusal = spoofRefusal(loadBalancer.address, 1, this.#hostAddresses);
      if (refusal !== null) {
        return this.#refuseSpoof(
          id,
          loadBalancer,
          header,
          `refusing to connect from the load balancer's address ${loadBalancer.address} for a ` +
            `${header.command === 'LOCAL' ? 'LOCAL' : 'UNKNOWN'} header (${refusal}): the ` +
            'application would see a connection from this host',
        );
      }
      source = { address: loadBalancer.address, port: 0 };
    }
    const family = familyOf(source.address);
    let target: Endpoint;
    if (o.dynamicDestination && hasClient && header.destination?.port != null) {
      target = { address: unmapped(header.destination.address), port: header.destination.port };
      if (familyOf(target.address) !== family) {
        return this.#reject(
          id,
          'badHeader',
          loadBalancer,
          header,
          new Error(
            `source ${source.address} and destination ${target.address} are of different families`,
          ),
        );
      }
      const allowed = this.#destinations;
      if (allowed && !allowed.contains(target.address, target.port)) {
        return this.#reject(
          id,
          'destinationRefused',
          loadBalancer,
          header,
          new Error(
            `refusing to connect to ${endpointText(target)}: not in dynamicDestinationAllow`,
          ),
        );
      }
    } else {
      const t = family === 4 ? o.target4 : o.target6;
      target = { address: t.address, port: t.port };
    }
    const admit = (t: Endpoint): NativeDecision => {
      // A route hook's answer is checked here with the addon's own rules (inet_pton: no zone
      // index, no leading zeros), so that one bad answer refuses one connection with its reason.
      const kind = ipKind(t.address);
      const problem =
        kind === 0
          ? `${String(t.address)}, not an IP address`
          : kind !== family
            ? `${t.address}, not of the source's family`
            : !Number.isInteger(t.port) || t.port < 1 || t.port > 65535
              ? `port ${String(t.port)}, not an integer from 1 to 65535`
              : null;
      if (problem !== null) {
        return this.#reject(
          id,
          'routeRejected',
          loadBalancer,
          header,
          new Error(`route hook chose ${problem}`),
        );
      }
      if (this.#sink.wantsConnection()) {
        this.#sink.connection({
          id,
          protocol: o.protocol,
          loadBalancer,
          client,
          source,
          target: t,
          header,
        });
      }
      return [id, -1, source.address, source.port, t.address, t.port, o.mark];
    };
    const route = this.#route;
    if (!route) return admit(target);
    const settle = (r: RouteResult): NativeDecision => {
      if (r === false || r === null) return this.#reject(id, 'routeRejected', loadBalancer, header);
      if (r === undefined || r === true) return admit(target);
      const address = typeof r.address === 'string' ? unmapped(r.address) : r.address;
      return admit({ address, port: r.port });
    };
    const fail = (e: unknown): NativeDecision =>
      this.#reject(id, 'routeRejected', loadBalancer, header, e as Error);
    // An answer of the wrong shape (not an object with address and port) refuses the connection.
    const settleOrFail = (r: RouteResult): NativeDecision => {
      try {
        return settle(r);
      } catch (e) {
        return fail(e);
      }
    };
    let result: RouteResult | Promise<RouteResult>;
    try {
      result = route({ protocol: o.protocol, header, loadBalancer, client, source, target });
    } catch (e) {
      return fail(e);
    }
    if (result && typeof (result as Promise<RouteResult>).then === 'function') {
      // A late answer for a connection the worker has ended meanwhile (its client reset, or
      // the decision deadline passed, both already counted) is dropped: no event, no decision.
      const later = (decide: () => NativeDecision): void => {
        const worker = this.#target;
        if (worker === null || !worker.pending(id)) return;
        worker.decide(decide());
      };
      (result as Promise<RouteResult>).then(
        (r) => later(() => settleOrFail(r)),
        (e: unknown) => later(() => fail(e)),
      );
      return null;
    }
    return settleOrFail(result as RouteResult);
  }
}
