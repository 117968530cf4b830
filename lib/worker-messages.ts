// What a relay worker's thread and the main thread say to each other (structured clone), and
// the shared flags by which the main thread says which events anyone listens for.
import type { DecisionConfig } from './decider.js';
import { ProxyProtocolError } from './errors.js';
import type { NativeErrorRecord } from './native.js';
import type {
  ConnectionInfo,
  Endpoint,
  RejectInfo,
  RouteRequest,
  RouteResult,
} from './proxy-types.js';

/** Indexes into the shared Int32Array of event interest: 1 while the event has listeners. */
export const INTEREST = { connection: 0, reject: 1, connectionError: 2 } as const;
export const INTEREST_SLOTS = 3;

export interface RelayWorkerData {
  engineId: number;
  index: number;
  config: DecisionConfig;
  /** A file URL of the route module, or null. */
  routeModule: string | null;
  /** Whether the route hook is a function on the main thread (asked per connection). */
  mainRoute: boolean;
  /** Int32Array(INTEREST_SLOTS) over it. */
  interest: SharedArrayBuffer;
}

/** An Error as it crosses threads: the fields the events show, kept as they were. */
export interface ErrorData {
  name: string;
  message: string;
  code?: string;
  stack?: string;
}

export type WorkerEvent =
  | { kind: 'connection'; info: ConnectionInfo }
  | { kind: 'reject'; info: Omit<RejectInfo, 'error'>; error?: ErrorData }
  | { kind: 'connectionError'; record: NativeErrorRecord };

export type FromWorker =
  | { type: 'ready' }
  | { type: 'failed'; error: ErrorData }
  | { type: 'events'; events: WorkerEvent[] }
  | { type: 'listenerFailed'; record: NativeErrorRecord }
  | { type: 'route'; id: number; request: RouteRequest }
  | { type: 'ended' };

export type ToWorker =
  | { type: 'targets'; target4: Endpoint; target6: Endpoint }
  | { type: 'routed'; id: number; result: RouteResult }
  | { type: 'routeFailed'; id: number; error: ErrorData };

export function errorData(e: unknown): ErrorData {
  if (e instanceof Error) {
    const out: ErrorData = { name: e.name, message: e.message };
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') out.code = code;
    if (typeof e.stack === 'string') out.stack = e.stack;
    return out;
  }
  return { name: 'Error', message: String(e) };
}

/** The Error again, with its name, code and stack. */
export function errorFromData(d: ErrorData): Error {
  const e =
    d.name === 'ProxyProtocolError' && d.code !== undefined
      ? new ProxyProtocolError(d.code, d.message)
      : new Error(d.message);
  if (d.name !== 'Error') e.name = d.name;
  if (d.code !== undefined) (e as Error & { code?: string }).code = d.code;
  if (d.stack !== undefined) e.stack = d.stack;
  return e;
}
