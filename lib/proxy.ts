// The Proxy: lifecycle (listen, close with a drain deadline), the per-connection decision that
// native workers ask for (decode the header, apply policy and the route hook), events and stats.
// It never touches relayed bytes: those stay in the native engine.
import { EventEmitter } from 'node:events';
import { isIPv4 } from 'node:net';
import { parseIp, type Allowlist } from './allowlist.js';
import { ListenFdError, systemError, type SystemError } from './errors.js';
import {
  loadNative,
  NATIVE_REJECT_REASONS,
  type NativeAddon,
  type NativeDecision,
  type NativeEngine,
  type NativeErrorRecord,
  type NativeDecisionList,
} from './native.js';
import {
  loadAllowlist,
  normalizeOptions,
  type NormalizedOptions,
  type ProxyOptions,
} from './options.js';
import { decodeHeader, type ProxyHeader } from './codec/index.js';
import type {
  BoundAddress,
  ConnectionInfo,
  Endpoint,
  ProxyStats,
  RejectInfo,
  RejectReason,
  RouteHook,
  RouteResult,
} from './proxy-types.js';
export type { RouteHook, RouteRequest, RouteResult } from './proxy-types.js';
import { HostAddresses } from './host-addresses.js';
import { Targets, type ResolvedTargets, type TargetResolution } from './targets.js';
import { spoofRefusal } from './source-policy.js';

const REASON_INDEX = new Map<RejectReason, number>(
  NATIVE_REJECT_REASONS.map((reason, index) => [reason, index]),
);

/** The id of an error record that reports a listener's failure (native kListenerFailed). */
const LISTENER_FAILED = -1;

const PERMISSION_HINT =
  'Connecting from client addresses needs CAP_NET_ADMIN or CAP_NET_RAW: run as root, or grant ' +
  'the capability (systemd: AmbientCapabilities=CAP_NET_ADMIN; or setcap cap_net_admin+ep on the ' +
  'node binary). `mmproxy check` tells what else is missing.';

/** `::ffff:192.0.2.1` → `192.0.2.1`; other addresses unchanged. */
function unmapped(address: string): string {
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

/** Converts an error thrown by the addon (errno, syscall, address, port) to a Node-shaped one. */
function fromNative(e: unknown, hint?: string): Error {
  const n = e as { errno?: unknown; syscall?: unknown; address?: unknown; port?: unknown };
  if (typeof n?.errno !== 'number' || typeof n.syscall !== 'string') return e as Error;
  return systemError({
    errno: n.errno,
    syscall: n.syscall,
    ...(typeof n.address === 'string' ? { address: n.address } : {}),
    ...(typeof n.port === 'number' ? { port: n.port } : {}),
    ...(hint === undefined ? {} : { hint }),
  });
}

export interface ProxyEvents {
  listening: [];
  connection: [info: ConnectionInfo];
  reject: [info: RejectInfo];
  connectionError: [error: SystemError, info: { id: number; source: Endpoint; target: Endpoint }];
  error: [error: Error];
  close: [];
}

export class Proxy extends EventEmitter<ProxyEvents> {
  readonly options: NormalizedOptions;
  #addon: NativeAddon;
  #engine: NativeEngine | null = null;
  #allowlist: Allowlist | null | undefined = undefined; // undefined: not loaded yet
  #allowlistVersion = 0; // setAllowlist() calls so far
  #state: 'new' | 'starting' | 'listening' | 'closing' | 'closed' = 'new';
  #address: BoundAddress | null = null;
  #closed: Promise<void> | null = null;
  #starting: Promise<void> | null = null; // listen()'s work, which close() lets finish first
  readonly #hostAddresses = new HostAddresses();
  #unref = false;
  /** The listen and target addresses, names resolved; #decide reads the targets from here. */
  readonly #targets: Targets;

  constructor(options: ProxyOptions = {}) {
    super();
    this.options = normalizeOptions(options);
    this.#targets = new Targets(this.options);
    this.#addon = loadNative();
  }

  /**
   * Resolves the names among listen/target4/target6, then opens the listeners. Resolves once they
   * accept; rejects with a ResolveError for a name, or a Node-shaped system error.
   */
  async listen(): Promise<void> {
    if (this.#state !== 'new') {
      throw Object.assign(new Error(`listen() was already called (the proxy is ${this.#state})`), {
        code: 'ERR_SERVER_ALREADY_LISTEN',
      });
    }
    this.#state = 'starting';
    this.#starting = this.#start();
    return this.#starting;
  }

  async #start(): Promise<void> {
    try {
      for (const family of [4, 6] as const) {
        const probe = this.#addon.probeTransparent(family);
        // EAFNOSUPPORT: the host has no IPv6; only a refusal of the option itself matters.
        if (!probe.ok && (probe.errno === 1 || probe.errno === 13)) {
          throw systemError({
            errno: probe.errno,
            syscall: probe.syscall ?? '',
            hint: PERMISSION_HINT,
          });
        }
      }
      if (this.#allowlist === undefined) {
        const version = this.#allowlistVersion;
        const loaded = await loadAllowlist(this.options);
        // setAllowlist() while the file was read wins: the last call is the list in force.
        if (this.#allowlistVersion === version) this.#allowlist = loaded;
      }
      // Names: the listen address, and the targets resolveTargets() has not resolved yet.
      const listen = await this.#targets.forListen();
      const o = this.options;
      const engine = new this.#addon.Engine(
        {
          listen: { address: listen.address, port: listen.port },
          listeners: o.listeners,
          workers: o.workers,
          // Whole milliseconds for the addon, rounded up: a timeout below 1 ms is not 0.
          headerTimeoutMs: Math.ceil(o.headerTimeout),
          maxConnections: Number.isFinite(o.maxConnections) ? o.maxConnections : 0,
          protocol: o.protocol,
          closeAfterMs: Math.ceil(o.closeAfter * 1000),
          maxFlows: o.maxFlows,
          ...(o.listenFds ? { listenFds: [...o.listenFds] } : {}),
        },
        (meta, addresses, bytes, errors) => this.#onBatch(meta, addresses, bytes, errors),
      );
      engine.setAllowlist(this.#allowlist ? this.#allowlist.compile() : null);
      let bound;
      try {
        bound = engine.listen();
      } catch (e) {
        const n = e as { errno?: number; listenFd?: number; found?: string; expected?: string };
        if (typeof n.listenFd === 'number')
          throw new ListenFdError(n.listenFd, n.found!, n.expected!);
        const code = n.errno;
        throw fromNative(
          e,
          code === 13
            ? `Ports below 1024 need CAP_NET_BIND_SERVICE; choose another port or grant it`
            : undefined,
        );
      }
      this.#engine = engine;
      if (this.#unref) engine.unref();
      this.#address = bound;
    } catch (e) {
      this.#state = 'closed';
      throw e;
    }
    // close() may have been called while the allowlist loaded; it waits for this promise.
    if (this.#state === 'starting') this.#state = 'listening';
    this.emit('listening');
  }

  /** The first listener's address, as `net.Server#address()` gives it; null before listen(). */
  address(): BoundAddress | null {
    return this.#address;
  }

  /**
   * A liveness check: true when every relay worker has come round its event loop since the
   * previous call (a worker stuck in a loop or a system call has not); each call asks them
   * again. False unless listening. Cheap (a wake-up per worker): the command calls it at half
   * the systemd watchdog interval and feeds the watchdog only when it is true.
   */
  heartbeat(): boolean {
    return this.#state === 'listening' && this.#engine !== null && this.#engine.ping();
  }

  /** Swaps the allowlist atomically: connections accepted from now on are checked against it. */
  setAllowlist(list: Allowlist | null): void {
    this.#allowlist = list;
    this.#allowlistVersion++;
    this.#engine?.setAllowlist(list ? list.compile() : null);
  }

  /**
   * Resolves the target4/target6 names again (SIGHUP in the command). Connections accepted from
   * then on go to the new addresses; live ones keep theirs. A name that does not resolve keeps
   * its previous address, and its entry says why. One entry per target given by name.
   */
  resolveTargets(): Promise<TargetResolution[]> {
    return this.#targets.refresh();
  }

  /** The target addresses in force; null for a name not resolved yet. */
  get targets(): Readonly<ResolvedTargets> {
    return this.#targets.current;
  }

  /** The allowlist in force (null: everyone is allowed). */
  get allowlist(): Allowlist | null {
    return this.#allowlist ?? null;
  }

  stats(): ProxyStats {
    const s = this.#engine?.stats();
    const rejected = Object.fromEntries(NATIVE_REJECT_REASONS.map((r) => [r, s?.rejected[r] ?? 0]));
    return {
      accepted: s?.accepted ?? 0,
      active: s?.active ?? 0,
      admitted: s?.admitted ?? 0,
      rejected: rejected as Record<RejectReason, number>,
      upstreamFailures: s?.upstreamFailures ?? 0,
      ephemeralPortRetries: s?.ephemeralPortRetries ?? 0,
      bytesFromClients: s?.bytesFromClients ?? 0,
      bytesFromUpstreams: s?.bytesFromUpstreams ?? 0,
      acceptErrors: s?.acceptErrors ?? 0,
      decisions: s?.decisions ?? 0,
      decisionWaitUs: s?.decisionWaitUs ?? 0,
      udp: {
        datagramsFromClients: s?.udp.datagramsFromClients ?? 0,
        datagramsToUpstreams: s?.udp.datagramsToUpstreams ?? 0,
        datagramsFromUpstreams: s?.udp.datagramsFromUpstreams ?? 0,
        datagramsToClients: s?.udp.datagramsToClients ?? 0,
        datagramsDropped: s?.udp.datagramsDropped ?? 0,
        flowTableFull: s?.udp.flowTableFull ?? 0,
        icmpErrors: s?.udp.icmpErrors ?? 0,
        flowsExpired: s?.udp.flowsExpired ?? 0,
      },
    };
  }

  /**
   * Stops accepting at once, lets live connections finish for `drainTimeout` ms (default: the
   * option), then ends the rest and stops every worker thread. Returns the same promise each
   * time; a call with `drainTimeout: 0` during a drain ends it now.
   */
  close(options: { drainTimeout?: number } = {}): Promise<void> {
    const drain = options.drainTimeout ?? this.options.drainTimeout;
    if (this.#closed) {
      if (drain === 0) this.#engine?.hurry();
      return this.#closed;
    }
    this.#state = 'closing';
    // A listen() still under way (loading the allowlist) finishes first, whether it succeeds.
    const started = this.#starting ? this.#starting.catch(() => {}) : Promise.resolve();
    this.#closed = started.then(async () => {
      if (this.#engine) await this.#engine.close(Math.ceil(drain));
      this.#hostAddresses.close();
      this.#state = 'closed';
      this.emit('close');
    });
    return this.#closed;
  }

  /** Like net.Server: an unref'ed proxy does not keep the event loop alive. */
  unref(): this {
    this.#unref = true;
    this.#engine?.unref();
    return this;
  }

  ref(): this {
    this.#unref = false;
    this.#engine?.ref();
    return this;
  }

  #onBatch(
    meta: Float64Array,
    addresses: string[],
    bytes: Buffer,
    errors: NativeErrorRecord[],
  ): void {
    const engine = this.#engine;
    if (!engine) return;
    const decisions: NativeDecisionList = [];
    const later = (late: NativeDecision): void => engine.decide(late);
    for (let i = 0; i < addresses.length; i++) {
      const offset = meta[4 * i + 2]!;
      const header = bytes.subarray(offset, offset + meta[4 * i + 3]!);
      const id = meta[4 * i]!;
      let decision: NativeDecision | null;
      try {
        decision = this.#decide(id, addresses[i]!, meta[4 * i + 1]!, header, later);
      } catch (e) {
        // A bug, or a resource failure (out of descriptors): this connection only is refused,
        // and the rest of the batch is still decided.
        const peer = { address: unmapped(addresses[i]!), port: meta[4 * i + 1]! };
        decision = this.#reject(id, 'decisionError', peer, undefined, e as Error);
      }
      if (decision) for (const field of decision) decisions.push(field);
    }
    if (decisions.length > 0) engine.decide(decisions);
    for (const [id, errno, syscall, sourceAddress, sourcePort, address, port] of errors) {
      if (id === LISTENER_FAILED) {
        // A listening socket failed for good (destroyed with `ss -K`, say). The others, if
        // any, keep serving; like net.Server, 'error' without a listener throws.
        const err = systemError({
          errno,
          syscall,
          address,
          port,
          hint: 'this listening socket was destroyed from outside and accepts nothing more',
        });
        process.nextTick(() => this.emit('error', err));
        continue;
      }
      if (this.listenerCount('connectionError') === 0) continue;
      const err = systemError({ errno, syscall, address, port });
      this.emit('connectionError', err, {
        id,
        source: { address: sourceAddress, port: sourcePort },
        target: { address, port },
      });
    }
  }

  #reject(
    id: number,
    reason: RejectReason,
    loadBalancer: Endpoint,
    header?: ProxyHeader,
    error?: Error,
  ): NativeDecision {
    if (this.listenerCount('reject') > 0) {
      const info: RejectInfo = { protocol: this.options.protocol, reason, loadBalancer };
      if (header) info.header = header;
      if (error) info.error = error;
      this.emit('reject', info);
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

  /** One connection's decision; null when an async route hook will answer through `later`. */
  #decide(
    id: number,
    peerAddress: string,
    peerPort: number,
    bytes: Uint8Array,
    later: (d: NativeDecision) => void,
  ): NativeDecision | null {
    const loadBalancer = { address: unmapped(peerAddress), port: peerPort };
    const udp = this.options.protocol === 'udp';
    let header: ProxyHeader;
    try {
      const decoded = decodeHeader(bytes, { transport: udp ? 'dgram' : 'stream' });
      if (decoded === null) throw new Error('incomplete PROXY header');
      header = decoded.header;
    } catch (e) {
      return this.#reject(id, 'badHeader', loadBalancer, undefined, e as Error);
    }
    const o = this.options;
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
      const allowed = o.dynamicDestinationAllow;
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
      const t = this.#targets.for(family);
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
      if (this.listenerCount('connection') > 0) {
        this.emit('connection', {
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
    const route = o.route ?? undefined;
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
      (result as Promise<RouteResult>).then(
        (r) => later(settleOrFail(r)),
        (e: unknown) => later(fail(e)),
      );
      return null;
    }
    return settleOrFail(result as RouteResult);
  }
}

/** Creates a proxy; call `listen()` to start it. Throws on a bad option or without the addon. */
export function createProxy(options: ProxyOptions = {}): Proxy {
  return new Proxy(options);
}
