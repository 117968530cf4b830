// The one place that loads the native addon, with the typed interface the rest of lib/ uses.
// Importing this module never throws: where the addon cannot load, `loadNative()` throws a clear
// error and everything that does not need the addon (the header codec) keeps working.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { UdpStats } from './proxy-types.js';

/** The version of the JS ↔ native interface this build of lib/ speaks. */
export const NATIVE_INTERFACE_VERSION = 4;

export interface ProbeResult {
  ok: boolean;
  errno?: number;
  syscall?: string;
}

export interface NativeEndpoint {
  address: string;
  port: number;
}

export interface NativeEngineConfig {
  listen: NativeEndpoint;
  listeners: number;
  workers: number;
  headerTimeoutMs: number;
  /** 0: unlimited. */
  maxConnections: number;
  protocol: 'tcp' | 'udp';
  /** UDP: idle flows end after this many ms. */
  closeAfterMs: number;
  /** UDP: the flow table's bound. */
  maxFlows: number;
  /** Passed sockets to adopt as the listeners, in place of `listeners` sockets on `listen`. */
  listenFds?: number[];
}

/** [id, errno (positive), syscall, sourceAddress, sourcePort, targetAddress, targetPort]:
 * an admitted connection's upstream could not be opened. */
export type NativeErrorRecord = [number, number, string, string, number, string, number];
/** Reject: [id, reasonIndex]. Admit: [id, -1, sourceAddress, sourcePort, targetAddress, targetPort, mark]. */
export type NativeDecision =
  [number, number] | [number, -1, string, number, string, number, number];
/** Decisions one after the other in one flat array, as `decide()` takes them. */
export type NativeDecisionList = (string | number)[];

/** The order of native/counters.h's RejectReason: decisions carry the index. */
export const NATIVE_REJECT_REASONS = [
  'notAllowed',
  'badHeader',
  'headerTimeout',
  'spoofRefused',
  'localRejected',
  'routeRejected',
  'maxConnections',
  'decisionTimeout',
  'clientClosed',
  'decisionError',
  'destinationRefused',
] as const;

export interface NativeStats {
  accepted: number;
  active: number;
  admitted: number;
  rejected: Record<(typeof NATIVE_REJECT_REASONS)[number], number>;
  upstreamFailures: number;
  ephemeralPortRetries: number;
  bytesFromClients: number;
  bytesFromUpstreams: number;
  acceptErrors: number;
  /** Sum over decided connections of the time from handing the header to JS to the decision. */
  decisionWaitUs: number;
  decisions: number;
  udp: NativeUdpStats;
}

/** The engine reports UDP counters under the names lib/ publishes. */
export type NativeUdpStats = UdpStats;

export interface NativeEngine {
  /**
   * Opens the listeners and prepares the workers, which Driver objects then attach, one per
   * thread: `id` finds this engine, `workers` is how many to attach. Throws an Error with
   * errno/syscall/address/port.
   */
  listen(): NativeEndpoint & { family: 'IPv4' | 'IPv6'; id: number; workers: number };
  setAllowlist(table: Uint8Array | null): void;
  stats(): NativeStats;
  /** Stops accepting now, drains up to drainMs, resolves once every worker has ended. */
  close(drainMs: number): Promise<void>;
  /** Ends a running close()'s drain now. */
  hurry(): void;
  /** Whether every worker answered the previous ping (came round its loop); sends the next. */
  ping(): boolean;
}

/**
 * Header records and upstream errors of one round of a worker's events. Header record i: its
 * id, peer port, and its header's offset and length in `bytes` are meta[4i..4i+3]; its peer
 * address is addresses[i]. Returns the decisions for the records it can decide now.
 */
export type NativeRecordsHandler = (
  meta: Float64Array,
  addresses: string[],
  bytes: Buffer,
  errors: NativeErrorRecord[],
) => NativeDecisionList | undefined;

/** One engine worker, driven from the event loop of the thread that created this. */
export interface NativeDriver {
  /** Decisions that came later (an async route hook). */
  decide(decisions: NativeDecisionList): void;
  /** Whether the connection or flow still waits for its decision. */
  pending(id: number): boolean;
  /** Stops driving the worker from this thread, which is going away (no JavaScript may run). */
  halt(): void;
  ref(): void;
  unref(): void;
}

export interface NativeLocalTableWatch {
  /** Whether any address or route change arrived since the last call (an overflow counts). */
  changed(): boolean;
  close(): void;
}

export interface NativeAddon {
  interfaceVersion: number;
  /** Whether this process may create a transparent socket of the family (IP_TRANSPARENT). */
  probeTransparent(family: 4 | 6): ProbeResult;
  /**
   * The kernel's local routing table as CIDR strings ("127.0.0.0/8", "::1/128", ...), and how
   * many route messages the dump read (of every table where the kernel lacks strict checking).
   */
  localTable(): { prefixes: string[]; routesRead: number };
  /** A netlink socket subscribed to address and route changes. */
  LocalTableWatch: new () => NativeLocalTableWatch;
  /** One TCP connection to target, from a spoofed source (transparent) or plainly when null. */
  connectFrom(
    source: NativeEndpoint | null,
    target: NativeEndpoint,
    mark: number,
    timeoutMs: number,
  ): Promise<ProbeResult>;
  /** One datagram to systemd's notification socket (a path, or "@name"); never blocks. */
  notify(socketPath: string, message: string): ProbeResult;
  Engine: new (config: NativeEngineConfig) => NativeEngine;
  /** Attaches worker `index` of the listening engine `engineId` to this thread. */
  Driver: new (
    engineId: number,
    index: number,
    onRecords: NativeRecordsHandler,
    onEnd: () => void,
  ) => NativeDriver;
}

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

let cached: { addon: NativeAddon } | { error: Error } | undefined;

/** Why the addon cannot be used here, or null when it can. */
export function nativeUnavailableReason(): Error | null {
  const state = load();
  return 'error' in state ? state.error : null;
}

/** The addon; throws an Error with code ERR_MMPROXY_NATIVE_UNAVAILABLE when it cannot load. */
export function loadNative(): NativeAddon {
  const state = load();
  if ('error' in state) throw state.error;
  return state.addon;
}

function unavailable(message: string, cause?: unknown): Error {
  const err = new Error(message, cause === undefined ? undefined : { cause });
  (err as NodeJS.ErrnoException).code = 'ERR_MMPROXY_NATIVE_UNAVAILABLE';
  return err;
}

function load(): { addon: NativeAddon } | { error: Error } {
  if (cached) return cached;
  if (process.platform !== 'linux' || process.env.MMPROXY_FORCE_NO_NATIVE === '1') {
    const platform = process.env.MMPROXY_FORCE_NO_NATIVE === '1' ? 'this test' : process.platform;
    cached = {
      error: unavailable(
        `mmproxy-native's proxy needs Linux (IP_TRANSPARENT and splice()); it cannot run on ` +
          `${platform}. The PROXY header codec (decodeHeader, encodeHeader) works everywhere.`,
      ),
    };
    return cached;
  }
  try {
    const require = createRequire(import.meta.url);
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    const addon = nodeGypBuild(packageRoot) as NativeAddon;
    if (addon.interfaceVersion !== NATIVE_INTERFACE_VERSION) {
      throw new Error(
        `the addon speaks interface ${String(addon.interfaceVersion)}, ` +
          `lib/ needs ${NATIVE_INTERFACE_VERSION}`,
      );
    }
    cached = { addon };
  } catch (cause) {
    cached = {
      error: unavailable(
        `mmproxy-native could not load its native addon (${(cause as Error).message}). ` +
          `Reinstall the package so that its prebuild or a source build is used ` +
          `(npm rebuild mmproxy-native; a source build needs python3, make and a C++17 compiler).`,
        cause,
      ),
    };
  }
  return cached;
}
