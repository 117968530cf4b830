// A relay worker's thread: it attaches one native engine worker, drives it from this thread's
// event loop, and decides that worker's connections and flows here, synchronously, with the
// route module loaded into this thread if there is one. Events go to the main thread in one
// message per round, and only those someone listens for.
import { parentPort, workerData } from 'node:worker_threads';
import { Decider, type DecisionSink } from './decider.js';
import { HostAddresses } from './host-addresses.js';
import { loadNative, type NativeDriver } from './native.js';
import type { RouteHook, RouteResult } from './proxy-types.js';
import {
  errorData,
  errorFromData,
  INTEREST,
  type FromWorker,
  type RelayWorkerData,
  type ToWorker,
  type WorkerEvent,
} from './worker-messages.js';

const port = parentPort!;
const data = workerData as RelayWorkerData;
const interest = new Int32Array(data.interest);
const send = (m: FromWorker): void => port.postMessage(m);

let events: WorkerEvent[] = [];
let flushQueued = false;
function flush(): void {
  flushQueued = false;
  if (events.length === 0) return;
  const batch = events;
  events = [];
  send({ type: 'events', events: batch });
}
/** For events of answers that came outside a round (async route hooks). */
function flushSoon(): void {
  if (flushQueued) return;
  flushQueued = true;
  queueMicrotask(flush);
}

const sink: DecisionSink = {
  wantsConnection: () => Atomics.load(interest, INTEREST.connection) === 1,
  wantsReject: () => Atomics.load(interest, INTEREST.reject) === 1,
  wantsConnectionError: () => Atomics.load(interest, INTEREST.connectionError) === 1,
  connection(info) {
    events.push({ kind: 'connection', info });
    flushSoon();
  },
  reject(info) {
    const { error, ...rest } = info;
    events.push(
      error === undefined
        ? { kind: 'reject', info: rest }
        : { kind: 'reject', info: rest, error: errorData(error) },
    );
    flushSoon();
  },
  connectionError(record) {
    events.push({ kind: 'connectionError', record });
    flushSoon();
  },
  listenerFailed(record) {
    send({ type: 'listenerFailed', record });
  },
};

/** The route hook that lives on the main thread: one message there and back per connection. */
function mainThreadRoute(): RouteHook {
  const waiting = new Map<
    number,
    { resolve: (r: RouteResult) => void; reject: (e: Error) => void }
  >();
  let next = 0;
  port.on('message', (m: ToWorker) => {
    if (m.type === 'targets') return;
    const w = waiting.get(m.id);
    if (!w) return;
    waiting.delete(m.id);
    if (m.type === 'routed') w.resolve(m.result);
    else w.reject(errorFromData(m.error));
  });
  return (request) =>
    new Promise<RouteResult>((resolve, reject) => {
      const id = next++;
      waiting.set(id, { resolve, reject });
      send({ type: 'route', id, request });
    });
}

async function loadRoute(): Promise<RouteHook | null> {
  if (data.routeModule !== null) {
    const m = (await import(data.routeModule)) as {
      route?: unknown;
      default?: { route?: unknown };
    };
    const route = m.route ?? m.default?.route;
    if (typeof route !== 'function') {
      throw new TypeError(
        `it exports no function "route" (it exports ${Object.keys(m).join(', ') || 'nothing'}); ` +
          'write export function route(request) { ... }',
      );
    }
    return route as RouteHook;
  }
  return data.mainRoute ? mainThreadRoute() : null;
}

async function main(): Promise<void> {
  let route: RouteHook | null;
  try {
    route = await loadRoute();
  } catch (e) {
    send({ type: 'failed', error: errorData(e) });
    port.close();
    return;
  }
  const hostAddresses = new HostAddresses();
  const decider = new Decider(data.config, route, sink, hostAddresses);
  let driver: NativeDriver;
  try {
    driver = new (loadNative().Driver)(
      data.engineId,
      data.index,
      (meta, addresses, bytes, errors) => {
        const decisions = decider.decideBatch(meta, addresses, bytes, errors);
        // Before the decisions take effect: a client that sees its connection closed finds the
        // reason already sent.
        flush();
        return decisions.length > 0 ? decisions : undefined;
      },
      () => {
        // The engine closed and this worker has ended: nothing more will come.
        flush();
        hostAddresses.close();
        send({ type: 'ended' });
        port.close();
      },
    );
  } catch (e) {
    hostAddresses.close();
    send({ type: 'failed', error: errorData(e) });
    port.close();
    return;
  }
  decider.attach(driver);
  // process.exit() in this thread (a route module's, say): no round may run while it is torn
  // down; the native teardown ends the worker's connections.
  process.once('exit', () => driver.halt());
  port.on('message', (m: ToWorker) => {
    if (m.type === 'targets') decider.setTargets(m.target4, m.target6);
  });
  send({ type: 'ready' });
}

void main();
