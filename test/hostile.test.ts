// Hostile clients: each test attacks a running proxy (headers that never end, dribbled bytes,
// 64 KiB and many-TLV headers, random bytes, floods from outside the allowlist, UDP flows past
// maxFlows, connect-and-reset loops) while a well-behaved client keeps being served by it.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { createProxy, type Proxy } from '../lib/proxy.js';
import type { ProxyOptions } from '../lib/options.js';
import type { ConnectionInfo } from '../lib/proxy-types.js';
import { encodeHeader, TLV_TYPE, type Tlv } from '../lib/codec/index.js';
import {
  Upstream,
  connectAndSend,
  ending,
  openFds,
  requireNamespace,
  sleep,
  until,
} from './helpers/net.js';
import { v1, v2, v2Local } from './helpers/headers.js';

requireNamespace();

const HEADER_TIMEOUT = 500;

let upstream: Upstream;
before(async () => {
  upstream = await Upstream.start('127.0.0.1');
});
after(async () => {
  await upstream.close();
});

async function startProxy(options: ProxyOptions = {}): Promise<{ proxy: Proxy; port: number }> {
  const proxy = createProxy({
    listen: '127.0.0.1:0',
    target4: upstream.endpoint,
    workers: 2,
    headerTimeout: HEADER_TIMEOUT,
    ...options,
  });
  await proxy.listen();
  return { proxy, port: proxy.address()!.port };
}

// Each well-behaved connection comes from its own spoofed client, so the upstream tells them apart.
let nextGoodPort = 20000;

/** One well-behaved connection: header, payload, echo, and the upstream saw the client. */
async function goodRoundTrip(port: number, localAddress?: string): Promise<void> {
  const clientPort = nextGoodPort++;
  const payload = `good ${clientPort}`;
  const socket = net.connect({ port, host: '127.0.0.1', noDelay: true, localAddress });
  try {
    await once(socket, 'connect');
    socket.write(v1('192.0.2.250', clientPort));
    socket.write(payload);
    let got = '';
    for await (const d of socket) {
      got += (d as Buffer).toString();
      if (got.length >= payload.length) break;
    }
    assert.equal(got, payload);
    const seen = upstream.connections.find((c) => c.remotePort === clientPort);
    assert.equal(seen?.remoteAddress, '192.0.2.250', 'the upstream saw the good client');
  } finally {
    socket.destroy();
  }
}

/**
 * Runs well-behaved round trips back to back while an attack goes on; stop() fails if any of
 * them failed or took longer than maxMs, or if fewer than minCount completed.
 */
function serveAlongside(port: number, localAddress?: string, maxMs = 1500) {
  let running = true;
  const times: number[] = [];
  const loop = (async () => {
    while (running) {
      const started = Date.now();
      await Promise.race([
        goodRoundTrip(port, localAddress),
        sleep(maxMs).then(() => {
          throw new Error(`a well-behaved round trip took over ${maxMs} ms during the attack`);
        }),
      ]);
      times.push(Date.now() - started);
      await sleep(20);
    }
  })();
  loop.catch(() => {}); // surfaced by stop()
  return {
    async stop(minCount = 3): Promise<{ count: number; maxMs: number }> {
      running = false;
      await loop;
      assert.ok(times.length >= minCount, `only ${times.length} well-behaved round trips`);
      return { count: times.length, maxMs: Math.max(...times) };
    },
  };
}

function delta(after: number, before: number): number {
  return after - before;
}

describe('headers that never end', () => {
  let proxy: Proxy;
  let port: number;
  before(async () => ({ proxy, port } = await startProxy()));
  after(() => proxy.close());

  test('200 silent or half-sent headers are all closed at headerTimeout; the good client is served meanwhile', async () => {
    const before = proxy.stats();
    const guard = serveAlongside(port);
    const started = Date.now();
    const sockets = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        connectAndSend(port, i % 2 === 0 ? [] : ['PROXY TCP4 192.0.2.1 ']),
      ),
    );
    const endings = await Promise.all(sockets.map((s) => ending(s).then(() => Date.now())));
    const first = Math.min(...endings) - started;
    const last = Math.max(...endings) - started;
    assert.ok(first >= HEADER_TIMEOUT - 100, `one was closed after ${first} ms`);
    assert.ok(last < HEADER_TIMEOUT + 1500, `one was still open after ${last} ms`);
    await guard.stop();
    const s = proxy.stats();
    assert.equal(delta(s.rejected.headerTimeout, before.rejected.headerTimeout), 200);
    assert.equal(delta(s.admitted, before.admitted), delta(s.accepted, before.accepted) - 200);
    await until(() => proxy.stats().active === 0, 'no live connection');
  });

  test('headers dribbled one byte per 100 ms are cut off at headerTimeout', async () => {
    const before = proxy.stats();
    const guard = serveAlongside(port);
    const header = v1('192.0.2.2', 1000);
    const dribble = async (): Promise<{ sent: number; tookMs: number }> => {
      const socket = await connectAndSend(port, []);
      const ended = ending(socket);
      let open = true;
      void ended.then(() => (open = false));
      const started = Date.now();
      let sent = 0;
      while (open && sent < header.length) {
        socket.write(header[sent++]!);
        await sleep(100);
      }
      await ended;
      socket.destroy();
      return { sent, tookMs: Date.now() - started };
    };
    const results = await Promise.all(Array.from({ length: 20 }, dribble));
    await guard.stop();
    for (const { sent, tookMs } of results) {
      assert.ok(sent < header.length, `a dribbled header of ${header.length} bytes completed`);
      assert.ok(tookMs >= HEADER_TIMEOUT - 100 && tookMs < HEADER_TIMEOUT + 1000, `${tookMs} ms`);
    }
    assert.equal(delta(proxy.stats().rejected.headerTimeout, before.rejected.headerTimeout), 20);
    assert.ok(!upstream.connections.some((c) => c.remoteAddress === '192.0.2.2'));
  });
});

/** A v2 TCP4 header from client:port with the given TLVs. */
function v2WithTlvs(client: string, clientPort: number, tlvs: Tlv[]): Buffer {
  return encodeHeader(
    {
      version: 2,
      command: 'PROXY',
      protocol: 'TCP4',
      source: { address: client, port: clientPort },
      destination: { address: '127.0.0.1', port: 8443 },
      tlvs,
    },
    { version: 2 },
  );
}

describe('large headers', () => {
  let proxy: Proxy;
  let port: number;
  const seen: ConnectionInfo[] = [];
  before(async () => {
    ({ proxy, port } = await startProxy({ headerTimeout: 3000 }));
    proxy.on('connection', (info) => seen.push(info));
  });
  after(() => proxy.close());

  /** Sends header + payload (whole, or in pieces), expects the payload echoed and the client seen. */
  async function expectRelayed(header: Buffer, clientPort: number, pieces = 1): Promise<void> {
    const payload = randomBytes(100_000);
    const all = Buffer.concat([header, payload]);
    const size = Math.ceil(all.length / pieces);
    const chunks = Array.from({ length: pieces }, (_, i) => all.subarray(i * size, (i + 1) * size));
    const socket = await connectAndSend(port, chunks, '127.0.0.1', pieces > 1 ? 2 : 0);
    const parts: Buffer[] = [];
    let got = 0;
    socket.on('data', (d: Buffer) => {
      parts.push(d);
      got += d.length;
    });
    await until(() => got >= payload.length, `the echo of ${payload.length} bytes`, 5000);
    assert.ok(Buffer.concat(parts).equals(payload), 'the payload after the header arrived intact');
    const conn = upstream.connections.find((c) => c.remotePort === clientPort);
    assert.equal(conn?.remoteAddress, '192.0.2.3');
    socket.destroy();
  }

  test('a 64 KiB v2 header (one big TLV) is relayed, whole or in 1000 pieces', async () => {
    const guard = serveAlongside(port);
    const header = v2WithTlvs('192.0.2.3', 2000, [
      { type: TLV_TYPE.NOOP, value: Buffer.alloc(65535 - 12 - 3, 0x61) },
    ]);
    assert.equal(header.length, 16 + 65535);
    await expectRelayed(header, 2000);
    const split = v2WithTlvs('192.0.2.3', 2001, [
      { type: TLV_TYPE.NOOP, value: Buffer.alloc(65535 - 12 - 3, 0x62) },
    ]);
    await expectRelayed(split, 2001, 1000);
    await guard.stop();
    const info = seen.find((c) => c.client?.port === 2000);
    assert.equal(info?.header.tlvs[0]?.value.length, 65535 - 12 - 3);
  });

  test('21,840 empty TLVs (a full 64 KiB header of them) are relayed', async () => {
    const guard = serveAlongside(port);
    const count = Math.floor((65535 - 12) / 3);
    const tlvs = Array.from({ length: count }, () => ({
      type: TLV_TYPE.NOOP,
      value: new Uint8Array(0),
    }));
    await expectRelayed(v2WithTlvs('192.0.2.3', 2002, tlvs), 2002);
    await guard.stop(1);
    assert.equal(seen.find((c) => c.client?.port === 2002)?.header.tlvs.length, count);
  });

  test('a header announcing 64 KiB that sends 1 KiB is closed at headerTimeout', async () => {
    const before = proxy.stats().rejected.headerTimeout;
    const header = v2WithTlvs('192.0.2.3', 2003, [
      { type: TLV_TYPE.NOOP, value: Buffer.alloc(65535 - 12 - 3) },
    ]);
    const socket = await connectAndSend(port, [header.subarray(0, 1024)]);
    await ending(socket);
    assert.equal(proxy.stats().rejected.headerTimeout, before + 1);
  });
});

describe('random bytes', () => {
  test('300 connections of random bytes are all closed and none reaches the upstream', async () => {
    const { proxy, port } = await startProxy();
    try {
      const upstreamBefore = upstream.connections.length;
      const guard = serveAlongside(port);
      const started = Date.now();
      const sockets = await Promise.all(
        Array.from({ length: 300 }, () =>
          connectAndSend(port, [randomBytes(1 + Math.floor(Math.random() * 2048))]),
        ),
      );
      await Promise.all(sockets.map((s) => ending(s)));
      const took = Date.now() - started;
      const { count } = await guard.stop(1);
      assert.ok(took < HEADER_TIMEOUT + 2000, `closing them took ${took} ms`);
      const s = proxy.stats();
      assert.equal(s.rejected.badHeader + s.rejected.headerTimeout, 300);
      assert.equal(s.admitted, count, 'only the well-behaved connections were admitted');
      assert.equal(upstream.connections.length - upstreamBefore, count);
    } finally {
      await proxy.close();
    }
  });
});

describe('outside the allowlist', () => {
  // The well-behaved load balancer connects from 127.0.0.2; attackers from other 127/8 addresses.
  let proxy: Proxy;
  let port: number;
  before(async () => ({ proxy, port } = await startProxy({ allowedSubnets: ['127.0.0.2/32'] })));
  after(() => proxy.close());

  test('v2 LOCAL from outside the allowlist is closed, not forwarded from its address', async () => {
    const guard = serveAlongside(port, '127.0.0.2');
    const before = proxy.stats().rejected.notAllowed;
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.3' });
    await once(socket, 'connect');
    socket.write(v2Local());
    socket.write('let me in');
    await ending(socket);
    await guard.stop(1);
    assert.equal(proxy.stats().rejected.notAllowed, before + 1);
    assert.ok(!upstream.connections.some((c) => c.remoteAddress === '127.0.0.3'));
  });

  test('a flood of 2,000 connections from outside it is refused while the good client is served', async () => {
    const fdsBefore = openFds().length;
    const before = proxy.stats();
    const guard = serveAlongside(port, '127.0.0.2');
    const flood = async (i: number): Promise<void> => {
      const socket = net.connect({
        port,
        host: '127.0.0.1',
        localAddress: `127.0.1.${1 + (i % 250)}`,
      });
      socket.on('error', () => {});
      await once(socket, 'connect').catch(() => {});
      socket.write(v1('192.0.2.4', 3000 + i));
      await ending(socket);
      socket.destroy();
    };
    for (let i = 0; i < 2000; i += 200) {
      await Promise.all(Array.from({ length: 200 }, (_, k) => flood(i + k)));
    }
    const { count } = await guard.stop();
    const s = proxy.stats();
    assert.equal(delta(s.rejected.notAllowed, before.rejected.notAllowed), 2000);
    assert.equal(delta(s.admitted, before.admitted), count);
    assert.ok(!upstream.connections.some((c) => c.remoteAddress === '192.0.2.4'));
    await until(() => proxy.stats().active === 0, 'no live connection');
    await until(() => openFds().length <= fdsBefore + 2 * 256 * 2, 'descriptors released');
  });
});

describe('UDP flows past maxFlows', () => {
  test('5,000 new flows against maxFlows 50: refused and counted; an existing flow keeps its replies', async () => {
    const echo = dgram.createSocket('udp4');
    echo.on('message', (msg, r) => echo.send(msg, r.port, r.address));
    echo.bind(0, '127.0.0.1');
    await once(echo, 'listening');
    const proxy = createProxy({
      protocol: 'udp',
      listen: '127.0.0.1:0',
      target4: `127.0.0.1:${echo.address().port}`,
      maxFlows: 50,
      closeAfter: 60,
    });
    await proxy.listen();
    const lb = dgram.createSocket('udp4');
    const replies: string[] = [];
    lb.on('message', (m) => replies.push(m.toString()));
    lb.bind(0, '127.0.0.1');
    await once(lb, 'listening');
    const port = proxy.address()!.port;
    const send = (client: string, clientPort: number, payload: string) =>
      lb.send(
        Buffer.concat([
          Buffer.from(v2(client, clientPort, '127.0.0.1', 8443, 'UDP4')),
          Buffer.from(payload),
        ]),
        port,
        '127.0.0.1',
      );
    try {
      send('192.0.2.5', 4000, 'existing-0');
      await until(() => replies.includes('existing-0'), 'the existing flow');
      for (let batch = 0; batch < 50; batch++) {
        for (let k = 0; k < 100; k++) {
          const i = batch * 100 + k;
          send(`198.51.100.${1 + (i % 250)}`, 10000 + i, 'new');
        }
        send('192.0.2.5', 4000, `existing-${batch + 1}`);
        await sleep(5);
      }
      await until(() => replies.includes('existing-50'), 'the existing flow after the flood');
      for (let b = 0; b <= 50; b++) assert.ok(replies.includes(`existing-${b}`), `reply ${b}`);
      const s = proxy.stats();
      assert.ok(s.active <= 50, `${s.active} flows in a table bounded at 50`);
      assert.equal(s.active, 50, 'the table filled up to its bound');
      // Every datagram of a refused new flow is counted (some may be dropped by the kernel first).
      assert.ok(s.udp.flowTableFull >= 4000, `${s.udp.flowTableFull} refusals counted`);
      assert.equal(replies.filter((r) => r === 'new').length, 49);
    } finally {
      lb.close();
      await proxy.close();
      echo.close();
    }
  });
});

describe('connect and reset in a loop', () => {
  test('1,000 connections reset at every stage leave no connection or descriptor behind', async () => {
    const fdsBefore = openFds().length;
    const { proxy, port } = await startProxy();
    const guard = serveAlongside(port);
    const header = v1('192.0.2.6', 5000);
    const stages = [
      [] as Array<string | Uint8Array>, // right after the handshake
      [header.slice(0, 10)], // mid-header
      [header], // header sent, decision pending
      [v1('192.0.2.6', 5001), randomBytes(64 * 1024)], // header and data, relay starting
    ];
    for (let i = 0; i < 1000; i += 10) {
      await Promise.all(
        Array.from({ length: 10 }, async (_, k) => {
          const stage = stages[(i + k) % stages.length]!;
          const socket = await connectAndSend(port, stage);
          if ((i + k) % 3 === 0) await sleep(1);
          socket.resetAndDestroy();
        }),
      );
    }
    await guard.stop();
    await until(() => proxy.stats().active === 0, 'every connection ended', 5000);
    const s = proxy.stats();
    assert.ok(s.accepted >= 1000, `${s.accepted} accepted`);
    await proxy.close();
    // The proxy runs in this process: once closed, it holds no descriptor of its own.
    await until(() => openFds().length <= fdsBefore, `descriptors back to ${fdsBefore}`).catch(() =>
      assert.fail(`${openFds().length} descriptors open, ${fdsBefore} before`),
    );
  });
});
