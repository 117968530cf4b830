// Leaks: after many proxied TCP connections and UDP flows, the process's open descriptors and
// threads are back where they started and RSS stays within a stated bound. The proxy runs in this
// process, so /proc/self tells what it holds. MMPROXY_LEAK_CONNECTIONS / MMPROXY_LEAK_FLOWS set the
// counts (the full run: 100000 each); npm test uses 5000.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createProxy, type Proxy } from '../lib/proxy.js';
import { Upstream, openFds, requireNamespace, sleep, threadCount, until } from './helpers/net.js';
import { v1, v2 } from './helpers/headers.js';

requireNamespace();

const CONNECTIONS = Number(process.env.MMPROXY_LEAK_CONNECTIONS ?? 5000);
const FLOWS = Number(process.env.MMPROXY_LEAK_FLOWS ?? 5000);
const CONCURRENCY = 100;
// Stated bound: RSS after the run, garbage collected, exceeds RSS before by less than this.
// MMPROXY_RSS_SLACK_MIB adds to it: scripts/asan.sh sets it, since ASan keeps freed memory in
// quarantine and grows its shadow memory.
const RSS_BOUND = (64 + Number(process.env.MMPROXY_RSS_SLACK_MIB ?? 0)) * 1024 * 1024;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function rss(): number {
  gc();
  gc();
  return process.memoryUsage().rss;
}

/** A distinct documentation-range client (address and port) for the i-th connection or flow. */
function client(i: number): { address: string; port: number } {
  const net3 = ['192.0.2', '198.51.100', '203.0.113'][i % 3]!;
  const k = Math.floor(i / 3);
  return { address: `${net3}.${1 + (k % 254)}`, port: 1024 + Math.floor(k / 254) };
}

/** One TCP connection: header, a random payload, its echo, then a clean close by both sides. */
async function tcpRoundTrip(port: number, i: number, payload: Buffer): Promise<void> {
  const c = client(i);
  // Spread the client side over 127/8 so that TIME_WAIT never exhausts one address's ports.
  const socket = net.connect({
    port,
    host: '127.0.0.1',
    localAddress: `127.1.${(i >> 8) & 255}.${1 + (i & 127)}`,
  });
  await once(socket, 'connect');
  socket.write(v1(c.address, c.port));
  socket.write(payload);
  let got = 0;
  for await (const d of socket) {
    got += (d as Buffer).length;
    if (got >= payload.length) break; // breaking out of the iterator destroys the socket
  }
  assert.equal(got, payload.length);
  if (!socket.destroyed) socket.destroy();
  if (!socket.closed) await once(socket, 'close');
}

async function runTcp(proxy: Proxy, count: number): Promise<void> {
  const port = proxy.address()!.port;
  const payloads = Array.from({ length: 16 }, (_, k) => randomBytes(1 + k * 1024));
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < count) {
        const i = next++;
        await tcpRoundTrip(port, i, payloads[i % payloads.length]!);
      }
    }),
  );
}

function settled(baselineFds: number, baselineThreads: number, what: string): Promise<void> {
  return until(
    () => openFds().length === baselineFds && threadCount() === baselineThreads,
    what,
    10_000,
  ).catch(() =>
    assert.fail(
      `${what}: ${openFds().length} descriptors (${baselineFds} before), ` +
        `${threadCount()} threads (${baselineThreads} before)`,
    ),
  );
}

test(`${CONNECTIONS} TCP connections leave no descriptor, thread or memory behind`, async () => {
  const upstream = await Upstream.start('127.0.0.1');
  // Warm-up: Node's lazily created threads and buffers exist before the baseline is taken.
  const warm = createProxy({ listen: '127.0.0.1:0', target4: upstream.endpoint, workers: 2 });
  await warm.listen();
  await runTcp(warm, 200);
  await warm.close();
  upstream.connections.length = 0;
  await sleep(100);
  const fds0 = openFds().length;
  const threads0 = threadCount();
  const rss0 = rss();

  const proxy = createProxy({ listen: '127.0.0.1:0', target4: upstream.endpoint, workers: 2 });
  await proxy.listen();
  const fdsRunning = openFds().length;
  const started = Date.now();
  await runTcp(proxy, CONNECTIONS);
  const took = Date.now() - started;
  await until(() => proxy.stats().active === 0, 'every session closed', 10_000);
  const s = proxy.stats();
  assert.equal(s.admitted, CONNECTIONS);
  assert.equal(s.upstreamFailures, 0);
  // While it runs, the proxy may keep empty pipes for reuse, two descriptors each, at most one
  // pipe per direction of the connections that were live at once.
  upstream.connections.length = 0;
  await until(
    () => openFds().length <= fdsRunning + 2 * 2 * CONCURRENCY,
    'descriptors of the running proxy within its pipe pool',
  );
  await proxy.close();
  await settled(fds0, threads0, `after ${CONNECTIONS} connections and close()`);
  await upstream.close();
  const growth = rss() - rss0;
  console.log(
    `# ${CONNECTIONS} TCP connections in ${took} ms; RSS growth ${(growth / 2 ** 20).toFixed(1)} MiB`,
  );
  assert.ok(growth < RSS_BOUND, `RSS grew by ${growth} bytes`);
});

test(`${FLOWS} UDP flows leave no descriptor, thread or memory behind`, async () => {
  const echo = dgram.createSocket('udp4');
  echo.on('message', (msg, r) => echo.send(msg, r.port, r.address));
  echo.bind(0, '127.0.0.1');
  await once(echo, 'listening');
  const lb = dgram.createSocket('udp4');
  let replies = 0;
  lb.on('message', () => replies++);
  lb.bind(0, '127.0.0.1');
  await once(lb, 'listening');
  const options = {
    protocol: 'udp' as const,
    listen: '127.0.0.1:0',
    target4: `127.0.0.1:${echo.address().port}`,
    closeAfter: 1,
    maxFlows: FLOWS + 1000,
  };
  const run = async (proxy: Proxy, count: number): Promise<void> => {
    const port = proxy.address()!.port;
    replies = 0;
    // Batches small enough for the default socket buffers of the echo and the load balancer.
    for (let i = 0; i < count; i += 100) {
      const n = Math.min(100, count - i);
      for (let k = 0; k < n; k++) {
        const c = client(i + k);
        const header = v2(c.address, c.port, '127.0.0.1', 8443, 'UDP4');
        lb.send(Buffer.concat([header, randomBytes(1 + ((i + k) % 512))]), port, '127.0.0.1');
      }
      await until(() => replies >= i + n, `replies to ${i + n} flows`, 5000);
    }
  };
  const proxies: Proxy[] = [];
  try {
    const warm = createProxy(options);
    proxies.push(warm);
    await warm.listen();
    await run(warm, 500);
    await warm.close();
    await sleep(100);
    const fds0 = openFds().length;
    const threads0 = threadCount();
    const rss0 = rss();

    const proxy = createProxy(options);
    proxies.push(proxy);
    await proxy.listen();
    const started = Date.now();
    await run(proxy, FLOWS);
    const took = Date.now() - started;
    assert.equal(proxy.stats().accepted, FLOWS);
    // Every flow expires after closeAfter and its socket is closed.
    await until(() => proxy.stats().active === 0, 'every flow expired', 10_000);
    assert.equal(proxy.stats().udp.flowsExpired, FLOWS);
    await proxy.close();
    await settled(fds0, threads0, `after ${FLOWS} flows and close()`);
    const growth = rss() - rss0;
    console.log(
      `# ${FLOWS} UDP flows in ${took} ms; RSS growth ${(growth / 2 ** 20).toFixed(1)} MiB`,
    );
    assert.ok(growth < RSS_BOUND, `RSS grew by ${growth} bytes`);
  } finally {
    for (const p of proxies) await p.close({ drainTimeout: 0 });
    lb.close();
    echo.close();
  }
});
