// The Proxy: the lifecycle (listen, close with a drain deadline), the relay workers' threads,
// options, the allowlist, stats and events. Connections are decided in the worker thread that
// accepted them (lib/relay-worker.ts, lib/decider.ts); this thread hears of them through events.
// It never touches relayed bytes: those stay in the native engine.
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import type { Allowlist } from './allowlist.js';
import type { DecisionConfig } from './decider.js';
import { ListenFdError, systemError, type SystemError } from './errors.js';
import {
  loadNative,
  NATIVE_REJECT_REASONS,
  type NativeAddon,
  type NativeEngine,
} from './native.js';
import {
  loadAllowlist,
  normalizeOptions,
  type NormalizedOptions,
  type ProxyOptions,
} from './options.js';
import type {
  BoundAddress,
  ConnectionInfo,
  Endpoint,
  ProxyStats,
  RejectInfo,
  RejectReason,
  RouteRequest,
  RouteResult,
} from './proxy-types.js';
export type { RouteHook, RouteRequest, RouteResult } from './proxy-types.js';
import {
  errorData,
  errorFromData,
  INTEREST,
  INTEREST_SLOTS,
  type FromWorker,
  type RelayWorkerData,
  type ToWorker,
} from './worker-messages.js';
import { Targets, type ResolvedTargets, type TargetResolution } from './targets.js';

const PERMISSION_HINT =
  'Connecting from client addresses needs CAP_NET_ADMIN or CAP_NET_RAW: run as root, or grant ' +
  'the capability (systemd: AmbientCapabilities=CAP_NET_ADMIN; or setcap cap_net_admin+ep on the ' +
  'node binary). `mmproxy check` tells what else is missing.';

const WORKER_SCRIPT = new URL('./relay-worker.js', import.meta.url);
// A relay worker's thread has little to hold: its decisions' garbage. Small heaps keep each
// thread's memory small.
const WORKER_LIMITS = { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 64 };
/**
 * The parent's Node options for the worker threads (loaders, source maps…), without those that
 * only make sense for the main script: the code of `-e`/`-p` and `--input-type`.
 */
function workerExecArgv(): string[] {
  const out: string[] = [];
  const args = process.execArgv;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '-e' || a === '--eval' || a === '-p' || a === '--print' || a === '-pe') {
      i++;
      continue;
    }
    if (a.startsWith('--eval=') || a.startsWith('--print=') || a.startsWith('--input-type')) {
      continue;
    }
    out.push(a);
  }
  return out;
}

// After its engine worker ended, how long a thread may take to exit before it is terminated.
const WORKER_EXIT_GRACE_MS = 2000;

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
  #unref = false;
  #workers: Worker[] = [];
  #workerExits: Promise<void>[] = [];
  readonly #dynamicDestinationAllow: readonly string[] | null;
  // Which events have listeners, read by every worker thread before it builds an event.
  readonly #interest = new Int32Array(new SharedArrayBuffer(INTEREST_SLOTS * 4));
  /** The listen and target addresses, names resolved; #decide reads the targets from here. */
  readonly #targets: Targets;

  constructor(options: ProxyOptions = {}) {
    super();
    this.options = normalizeOptions(options);
    this.#dynamicDestinationAllow = options.dynamicDestinationAllow ?? null;
    this.#targets = new Targets(this.options);
    this.#addon = loadNative();
    const track = (event: string | symbol, adding: boolean): void => {
      if (event !== 'connection' && event !== 'reject' && event !== 'connectionError') return;
      const on = adding || this.listenerCount(event) > 0;
      Atomics.store(this.#interest, INTEREST[event], on ? 1 : 0);
    };
    const plain = this as EventEmitter;
    plain.on('newListener', (event: string | symbol) => track(event, true));
    plain.on('removeListener', (event: string | symbol) => track(event, false));
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
      const engine = new this.#addon.Engine({
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
      });
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
      try {
        await this.#startWorkers(bound.id, bound.workers);
      } catch (e) {
        await this.#stopWorkers(engine);
        this.#engine = null;
        throw e;
      }
      this.#address = { address: bound.address, port: bound.port, family: bound.family };
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
  async resolveTargets(): Promise<TargetResolution[]> {
    const results = await this.#targets.refresh();
    if (results.some((r) => r.changed)) {
      // Every worker thread decides with the new pair from its next connection on.
      const m: ToWorker = {
        type: 'targets',
        target4: this.#targets.for(4),
        target6: this.#targets.for(6),
      };
      for (const w of this.#workers) w.postMessage(m);
    }
    return results;
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
      if (this.#engine) await this.#stopWorkers(this.#engine, Math.ceil(drain));
      this.#state = 'closed';
      this.emit('close');
    });
    return this.#closed;
  }

  /** Like net.Server: an unref'ed proxy does not keep the event loop alive. */
  unref(): this {
    this.#unref = true;
    for (const w of this.#workers) w.unref();
    return this;
  }

  ref(): this {
    this.#unref = false;
    for (const w of this.#workers) w.ref();
    return this;
  }

  /** Starts one thread per engine worker; resolves once every one has attached its worker. */
  async #startWorkers(engineId: number, count: number): Promise<void> {
    const o = this.options;
    const config: DecisionConfig = {
      protocol: o.protocol,
      target4: this.#targets.for(4),
      target6: this.#targets.for(6),
      mark: o.mark,
      dynamicDestination: o.dynamicDestination,
      dynamicDestinationAllow: this.#dynamicDestinationAllow,
      local: o.local,
    };
    const ready: Promise<void>[] = [];
    for (let index = 0; index < count; index++) {
      const data: RelayWorkerData = {
        engineId,
        index,
        config,
        routeModule: o.routeModule,
        mainRoute: o.route !== null,
        interest: this.#interest.buffer as SharedArrayBuffer,
      };
      const worker = new Worker(WORKER_SCRIPT, {
        workerData: data,
        resourceLimits: WORKER_LIMITS,
        execArgv: workerExecArgv(),
        name: `mmproxy-native relay ${index}`,
      });
      this.#workers.push(worker);
      let started = false;
      ready.push(
        new Promise<void>((resolve, reject) => {
          let ended = false;
          let failed = false;
          worker.on('message', (m: FromWorker) => {
            if (m.type === 'ready') {
              started = true;
              resolve();
            } else if (m.type === 'failed') {
              failed = true;
              reject(this.#startFailure(errorFromData(m.error)));
            } else if (m.type === 'ended') {
              ended = true;
            } else {
              this.#onWorkerMessage(index, m);
            }
          });
          worker.on('error', (e) => {
            failed = true;
            const err = new Error(`relay worker ${index} stopped: ${e.message}`, { cause: e });
            if (!started) reject(err);
            else this.emit('error', err);
          });
          this.#workerExits.push(
            new Promise<void>((exited) =>
              worker.on('exit', (code) => {
                exited();
                if (ended || failed || this.#state === 'closing' || this.#state === 'closed') {
                  if (!started) reject(new Error(`relay worker ${index} exited while starting`));
                  return;
                }
                // A thread that went away while serving: never a proxy that silently stops
                // accepting on one of its listeners.
                const err = new Error(`relay worker ${index} exited (code ${code}) while serving`);
                if (!started) reject(err);
                else this.emit('error', err);
              }),
            ),
          );
        }),
      );
    }
    const results = await Promise.allSettled(ready);
    const failure = results.find((r) => r.status === 'rejected');
    if (failure) throw (failure as PromiseRejectedResult).reason;
    // Only now: starting threads keep the process alive until listen() has resolved, as a
    // net.Server's listen() completes even when unref() came first.
    if (this.#unref) for (const w of this.#workers) w.unref();
  }

  /** A worker thread could not start: the error names what failed (the route module). */
  #startFailure(e: Error): Error {
    const file = this.options.routeModule;
    if (file === null) return e;
    const err = new Error(`route module ${file} could not be loaded: ${e.message}`, { cause: e });
    (err as Error & { code?: string }).code = 'ERR_MMPROXY_ROUTE_MODULE';
    return err;
  }

  /** Closes the engine (draining until `drainMs`), then waits for every thread to exit. */
  async #stopWorkers(engine: NativeEngine, drainMs = 0): Promise<void> {
    // A relay thread whose JavaScript never returns (a route module in an endless loop) cannot
    // end its worker: past the drain deadline and a grace it is terminated, and the worker's
    // teardown ends its connections, so close() keeps its deadline.
    let stuck: NodeJS.Timeout | undefined;
    const closed = engine.close(drainMs);
    await Promise.race([
      closed,
      new Promise<void>((resolve) => {
        stuck = setTimeout(() => {
          for (const w of this.#workers) void w.terminate();
          resolve();
        }, drainMs + WORKER_EXIT_GRACE_MS);
      }),
    ]);
    clearTimeout(stuck);
    await closed;
    const exits = Promise.all(this.#workerExits);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        // A thread that lingers (a timer in a route module, say) after its worker ended.
        for (const w of this.#workers) void w.terminate();
        resolve();
      }, WORKER_EXIT_GRACE_MS);
    });
    await Promise.race([exits, late]);
    clearTimeout(timer);
    await exits;
    this.#workers = [];
    this.#workerExits = [];
  }

  #onWorkerMessage(index: number, m: FromWorker): void {
    switch (m.type) {
      case 'events':
        for (const e of m.events) {
          if (e.kind === 'connection') {
            this.emit('connection', e.info);
          } else if (e.kind === 'reject') {
            const info: RejectInfo = e.info;
            if (e.error) info.error = errorFromData(e.error);
            this.emit('reject', info);
          } else {
            const [id, errno, syscall, sourceAddress, sourcePort, address, port] = e.record;
            const err = systemError({ errno, syscall, address, port });
            this.emit('connectionError', err, {
              id,
              source: { address: sourceAddress, port: sourcePort },
              target: { address, port },
            });
          }
        }
        break;
      case 'listenerFailed': {
        // A listening socket failed for good (destroyed with `ss -K`, say). The others, if
        // any, keep serving; like net.Server, 'error' without a listener throws.
        const [, errno, syscall, , , address, port] = m.record;
        this.emit(
          'error',
          systemError({
            errno,
            syscall,
            address,
            port,
            hint: 'this listening socket was destroyed from outside and accepts nothing more',
          }),
        );
        break;
      }
      case 'route':
        this.#routeOnMain(index, m.id, m.request);
        break;
      default:
        break;
    }
  }

  /** The slower path: a route function given to createProxy runs here, asked by a worker. */
  #routeOnMain(index: number, id: number, request: RouteRequest): void {
    const worker = this.#workers[index];
    const route = this.options.route;
    if (!worker || !route) return;
    const reply = (m: ToWorker): void => {
      try {
        worker.postMessage(m);
      } catch (e) {
        // An answer that cannot be passed (a function in it, say) refuses the connection.
        worker.postMessage({ type: 'routeFailed', id, error: errorData(e) });
      }
    };
    new Promise<RouteResult>((resolve) => resolve(route(request))).then(
      (result) => reply({ type: 'routed', id, result }),
      (e: unknown) => reply({ type: 'routeFailed', id, error: errorData(e) }),
    );
  }
}

/** Creates a proxy; call `listen()` to start it. Throws on a bad option or without the addon. */
export function createProxy(options: ProxyOptions = {}): Proxy {
  return new Proxy(options);
}
