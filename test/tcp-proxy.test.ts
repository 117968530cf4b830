// The TCP proxy end to end, in the private namespace: real clients send PROXY headers to a real
// proxy, which connects to a real upstream from the client's address; each test checks what the
// upstream saw.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createProxy, type Proxy } from '../lib/proxy.js';
import type { ProxyOptions } from '../lib/options.js';
import type { RejectInfo, ConnectionInfo } from '../lib/proxy-types.js';
import {
  Upstream,
  connectAndSend,
  ending,
  readAll,
  requireNamespace,
  sleep,
  until,
} from './helpers/net.js';
import { v1, v2, v2Local } from './helpers/headers.js';
import { foreignPeer } from './helpers/foreign-peer.js';

/** A header and a payload as one buffer. */
function frame(header: Uint8Array | string, payload: string): Buffer {
  return Buffer.concat([Buffer.from(header), Buffer.from(payload)]);
}

requireNamespace();

let up4: Upstream;
let up6: Upstream;

before(async () => {
  up4 = await Upstream.start('127.0.0.1');
  up6 = await Upstream.start('::1');
});

after(async () => {
  await up4.close();
  await up6.close();
});

async function startProxy(options: ProxyOptions = {}): Promise<{ proxy: Proxy; port: number }> {
  const proxy = createProxy({
    listen: '127.0.0.1:0',
    target4: up4.endpoint,
    target6: up6.endpoint,
    workers: 2,
    ...options,
  });
  await proxy.listen();
  return { proxy, port: proxy.address()!.port };
}

/** Sends header + payload, waits for the echo of payload, returns what the upstream saw. */
async function roundTrip(
  port: number,
  header: Uint8Array | string,
  upstream: Upstream,
  payload = 'hello upstream',
): Promise<{ remoteAddress: string; remotePort: number }> {
  const before = upstream.connections.length;
  const socket = await connectAndSend(port, [header, payload]);
  const [data] = (await once(socket, 'data')) as [Buffer];
  assert.equal(data.toString(), payload);
  const seen = (await upstream.waitFor(before + 1))[before]!;
  socket.destroy();
  return seen;
}

describe('spoofing: the upstream sees the client of the header', () => {
  let proxy: Proxy;
  let port: number;
  before(async () => ({ proxy, port } = await startProxy()));
  after(() => proxy.close());

  test('v1 TCP4', async () => {
    const seen = await roundTrip(port, v1('192.0.2.7', 51000), up4);
    assert.equal(seen.remoteAddress, '192.0.2.7');
    assert.equal(seen.remotePort, 51000);
  });

  test('v1 TCP6', async () => {
    const seen = await roundTrip(port, v1('2001:db8::7', 51001, '::1'), up6);
    assert.equal(seen.remoteAddress, '2001:db8::7');
    assert.equal(seen.remotePort, 51001);
  });

  test('v2 INET', async () => {
    const seen = await roundTrip(port, v2('198.51.100.20', 40000), up4);
    assert.deepEqual([seen.remoteAddress, seen.remotePort], ['198.51.100.20', 40000]);
  });

  test('v2 INET6 arriving over an IPv4 listener goes to target6', async () => {
    const seen = await roundTrip(port, v2('2001:db8:1::20', 40001), up6);
    assert.deepEqual([seen.remoteAddress, seen.remotePort], ['2001:db8:1::20', 40001]);
  });

  test('an IPv4-mapped IPv6 source counts as IPv4 and goes to target4', async () => {
    const seen = await roundTrip(port, v2('::ffff:203.0.113.9', 40002), up4);
    assert.deepEqual([seen.remoteAddress, seen.remotePort], ['203.0.113.9', 40002]);
  });

  test("'connection' carries client, target and the decoded header", async () => {
    const events: ConnectionInfo[] = [];
    const listener = (info: ConnectionInfo) => events.push(info);
    proxy.on('connection', listener);
    await roundTrip(port, v2('203.0.113.44', 40100), up4);
    proxy.off('connection', listener);
    assert.equal(events.length, 1);
    const info = events[0]!;
    assert.deepEqual(info.client, { address: '203.0.113.44', port: 40100 });
    assert.deepEqual(info.target, { address: '127.0.0.1', port: up4.port });
    assert.equal(info.loadBalancer.address, '127.0.0.1');
    assert.equal(info.header.version, 2);
    assert.equal(info.header.protocol, 'TCP4');
  });
});

describe('headers without a client', () => {
  test('LOCAL and UNKNOWN connect from the load balancer, not from the proxy', async () => {
    const { proxy, port } = await startProxy({ listen: '0.0.0.0:0' });
    try {
      for (const header of [v2Local(), 'PROXY UNKNOWN\r\n']) {
        const before = up4.connections.length;
        // The "load balancer" is on another host: 198.51.100.9, an address this one lacks.
        const reply = await foreignPeer('tcp', '198.51.100.9', port, frame(header, 'ping'), 500);
        assert.equal(reply.toString(), 'ping');
        const seen = (await up4.waitFor(before + 1))[before]!;
        assert.equal(seen.remoteAddress, '198.51.100.9');
      }
    } finally {
      await proxy.close();
    }
  });

  test('LOCAL and UNKNOWN from a load balancer on this host are refused as spoofing', async () => {
    const { proxy, port } = await startProxy({ listen: '0.0.0.0:0' });
    const rejects: RejectInfo[] = [];
    proxy.on('reject', (r) => rejects.push(r));
    try {
      for (const header of [v2Local(), 'PROXY UNKNOWN\r\n']) {
        const before = up4.connections.length;
        // 127.0.0.9: the application would see a loopback peer and may trust it as local.
        const socket = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.9' });
        await once(socket, 'connect');
        socket.write(header);
        socket.write('ping');
        const echoed = once(socket, 'data').then(() => 'echoed');
        assert.notEqual(await Promise.race([ending(socket), echoed]), 'echoed');
        socket.destroy();
        await sleep(20);
        assert.equal(up4.connections.length, before);
      }
      assert.equal(proxy.stats().rejected.spoofRefused, 2);
      assert.deepEqual(
        rejects.map((r) => r.reason),
        ['spoofRefused', 'spoofRefused'],
      );
      assert.match(
        rejects[0]!.error!.message,
        /load balancer's address 127\.0\.0\.9 .*LOCAL.*loopback/,
      );
      assert.match(rejects[1]!.error!.message, /UNKNOWN header \(loopback\)/);
    } finally {
      await proxy.close();
    }
  });

  test("local: 'reject' refuses them and counts it", async () => {
    const { proxy, port } = await startProxy({ local: 'reject' });
    try {
      const rejects: RejectInfo[] = [];
      proxy.on('reject', (r) => rejects.push(r));
      const socket = await connectAndSend(port, [v2Local(), 'x']);
      await ending(socket);
      assert.equal(proxy.stats().rejected.localRejected, 1);
      assert.equal(rejects[0]?.reason, 'localRejected');
    } finally {
      await proxy.close();
    }
  });
});

describe('sources that are never spoofed', () => {
  let proxy: Proxy;
  let port: number;
  before(async () => ({ proxy, port } = await startProxy()));
  after(() => proxy.close());

  const cases: Array<[string, string | Uint8Array]> = [
    ['loopback', v1('127.0.0.1', 5000)],
    ['loopback elsewhere in 127/8', v1('127.1.2.3', 5000)],
    ['IPv6 loopback', v1('::1', 5000, '::1')],
    ['unspecified', v1('0.0.0.0', 5000)],
    ['IPv6 unspecified', v2('::', 5000)],
    ['multicast', v1('224.0.0.1', 5000)],
    ['IPv6 multicast', v2('ff02::1', 5000)],
    ['broadcast', v1('255.255.255.255', 5000)],
    ['mapped loopback', v2('::ffff:127.0.0.1', 5000)],
    ['source port 0', v1('192.0.2.1', 0)],
  ];
  for (const [name, header] of cases) {
    test(name, async () => {
      const before = up4.connections.length + up6.connections.length;
      const refusedBefore = proxy.stats().rejected.spoofRefused;
      const socket = await connectAndSend(port, [header, 'data']);
      assert.notEqual(await ending(socket), 'data');
      assert.equal(proxy.stats().rejected.spoofRefused, refusedBefore + 1);
      await sleep(20);
      assert.equal(up4.connections.length + up6.connections.length, before);
    });
  }
});

describe('framing', () => {
  let proxy: Proxy;
  let port: number;
  before(async () => ({ proxy, port } = await startProxy({ headerTimeout: 400 })));
  after(() => proxy.close());

  test('a header sent one byte at a time, then payload in later segments', async () => {
    const header = Buffer.from(v2('192.0.2.50', 1234));
    const chunks = [...header].map((b) => Uint8Array.of(b));
    const before = up4.connections.length;
    const socket = await connectAndSend(port, [...chunks, 'first ', 'second'], '127.0.0.1', 2);
    const received: Buffer[] = [];
    socket.on('data', (d: Buffer) => received.push(d));
    await until(() => Buffer.concat(received).toString() === 'first second', 'the echo');
    assert.equal((await up4.waitFor(before + 1))[before]!.remoteAddress, '192.0.2.50');
    socket.destroy();
  });

  test('a v1 header split at every point, with payload in the same segment', async () => {
    const header = v1('192.0.2.51', 2000);
    for (let cut = 1; cut < header.length; cut += 7) {
      const socket = await connectAndSend(
        port,
        [header.slice(0, cut), header.slice(cut) + 'payload'],
        '127.0.0.1',
        3,
      );
      const [data] = (await once(socket, 'data')) as [Buffer];
      assert.equal(data.toString(), 'payload');
      socket.destroy();
    }
  });

  test('a header that does not complete in time is closed and counted', async () => {
    const timeoutsBefore = proxy.stats().rejected.headerTimeout;
    const socket = await connectAndSend(port, ['PROXY TCP4 192.0.2.1']);
    const started = Date.now();
    await ending(socket);
    const took = Date.now() - started;
    assert.ok(took >= 300, `closed after ${took} ms, before headerTimeout`);
    assert.equal(proxy.stats().rejected.headerTimeout, timeoutsBefore + 1);
  });

  test('a client that sends part of a header and then its FIN is closed at once', async () => {
    const socket = await connectAndSend(port, ['PROXY TCP4 192.0.2.1']);
    const started = Date.now();
    socket.end();
    await ending(socket);
    const took = Date.now() - started;
    assert.ok(took < 200, `closed after ${took} ms, not at once`);
  });

  test('garbage is refused as soon as it cannot be a header', async () => {
    const rejects: RejectInfo[] = [];
    const listener = (r: RejectInfo) => rejects.push(r);
    proxy.on('reject', listener);
    const socket = await connectAndSend(port, ['GET / HTTP/1.1\r\n']);
    const started = Date.now();
    await ending(socket);
    assert.ok(Date.now() - started < 300, 'closed before the header timeout');
    // Events come from the worker threads asynchronously.
    await until(() => rejects.length > 0, 'the reject event');
    proxy.off('reject', listener);
    assert.equal(rejects[0]?.reason, 'badHeader');
    assert.equal((rejects[0]?.error as { code?: string }).code, 'ERR_PROXY_BAD_SIGNATURE');
  });

  test('a malformed v1 header is refused with the decoder’s reason', async () => {
    const rejects: RejectInfo[] = [];
    const listener = (r: RejectInfo) => rejects.push(r);
    proxy.on('reject', listener);
    const socket = await connectAndSend(port, ['PROXY TCP4 192.0.2.1 127.0.0.1 99999 443\r\n']);
    await ending(socket);
    await until(() => rejects.length > 0, 'the reject event');
    proxy.off('reject', listener);
    assert.equal(rejects[0]?.reason, 'badHeader');
    assert.match(String((rejects[0]?.error as { code?: string }).code), /^ERR_PROXY_V1_/);
  });
});

describe('a decision that does not come', () => {
  /** How the socket ends, or 'open' if it is still open after `ms`. */
  function endsWithin(socket: net.Socket, ms: number): Promise<string> {
    return Promise.race([ending(socket), sleep(ms).then(() => 'open')]);
  }

  test('a hook that never answers: refused at headerTimeout as decisionTimeout, slot released', async () => {
    const { proxy, port } = await startProxy({
      workers: 1,
      headerTimeout: 400,
      maxConnections: 1,
      route: () => new Promise(() => {}),
    });
    try {
      const socket = await connectAndSend(port, [v1('192.0.2.70', 37000), 'waiting']);
      const started = Date.now();
      const outcome = await endsWithin(socket, 3000);
      const took = Date.now() - started;
      assert.notEqual(outcome, 'open', 'still open 3 s after headerTimeout');
      assert.ok(took >= 300, `closed after ${took} ms, before headerTimeout`);
      const s = proxy.stats();
      assert.equal(s.rejected.decisionTimeout, 1);
      assert.equal(s.rejected.headerTimeout, 0);
      assert.equal(s.active, 0);
      socket.destroy();
    } finally {
      await proxy.close({ drainTimeout: 0 });
    }
  });

  test('an answer that comes after the deadline is ignored; the worker goes on serving', async () => {
    let calls = 0;
    const { proxy, port } = await startProxy({
      workers: 1,
      headerTimeout: 300,
      maxConnections: 1,
      // The first answer (admit) comes 500 ms after the deadline, the others at once.
      route: () => (calls++ === 0 ? sleep(800).then(() => true) : true),
    });
    try {
      const before = up4.connections.length;
      const late = await connectAndSend(port, [v1('192.0.2.71', 37001), 'late']);
      assert.notEqual(await endsWithin(late, 3000), 'open');
      late.destroy();
      await sleep(700); // the late admit reaches the worker
      assert.equal(calls, 1);
      const s = proxy.stats();
      assert.equal(s.rejected.decisionTimeout, 1);
      assert.equal(s.admitted, 0);
      assert.equal(s.active, 0);
      assert.equal(up4.connections.length, before, 'the late admit opened an upstream connection');
      const seen = await roundTrip(port, v1('192.0.2.72', 37002), up4);
      assert.equal(seen.remoteAddress, '192.0.2.72');
    } finally {
      await proxy.close({ drainTimeout: 0 });
    }
  });

  test('a client that sends its header and its FIN at once still gets the banner of a server that speaks first', async () => {
    // SMTP, FTP: the application speaks first; the client's half-close is passed on, not taken
    // for a client that left.
    const banner = await Upstream.start('127.0.0.1', (socket) => {
      socket.on('error', () => {});
      socket.end('220 ready\r\n');
    });
    for (const delay of [0, 50]) {
      const { proxy, port } = await startProxy({
        workers: 1,
        target4: banner.endpoint,
        ...(delay > 0 ? { route: () => sleep(delay).then(() => true) } : {}),
      });
      try {
        const replies = await Promise.all(
          Array.from({ length: 5 }, async (_, i) => {
            const socket = net.connect(port, '127.0.0.1');
            await once(socket, 'connect');
            const reply = readAll(socket);
            socket.end(v1('192.0.2.76', 37010 + i));
            return (await reply).toString();
          }),
        );
        assert.deepEqual(replies, Array(5).fill('220 ready\r\n'), `route delay ${delay} ms`);
        assert.equal(proxy.stats().rejected.clientClosed, 0);
      } finally {
        await proxy.close({ drainTimeout: 0 });
      }
    }
    await banner.close();
  });

  for (const how of ['reset'] as const) {
    test(`a client that leaves (${how}) while its decision is pending frees its slot at once`, async () => {
      let calls = 0;
      const { proxy, port } = await startProxy({
        workers: 1,
        headerTimeout: 10_000,
        maxConnections: 1,
        route: () => (calls++ === 0 ? new Promise(() => {}) : true),
      });
      try {
        const gone = await connectAndSend(port, [v1('192.0.2.73', 37003)]);
        gone.on('error', () => {});
        await until(() => calls === 1, 'the hook to be asked');
        gone.resetAndDestroy();
        await until(() => proxy.stats().active === 0, 'the slot to be released', 1000);
        assert.equal(proxy.stats().rejected.clientClosed, 1);
        // With maxConnections 1 the next connection is served only if the slot came back.
        const seen = await roundTrip(port, v1('192.0.2.74', 37004), up4);
        assert.equal(seen.remoteAddress, '192.0.2.74');
        assert.equal(proxy.stats().rejected.maxConnections, 0);
        gone.destroy();
      } finally {
        await proxy.close({ drainTimeout: 0 });
      }
    });
  }

  test('a client that sends its request and its FIN while the decision is pending gets the reply', async () => {
    const { proxy, port } = await startProxy({
      workers: 1,
      route: () => sleep(200).then(() => true),
    });
    try {
      const socket = await connectAndSend(port, [v1('192.0.2.75', 37005), 'request']);
      const reply = readAll(socket);
      socket.end();
      assert.equal((await reply).toString(), 'request');
      assert.equal(proxy.stats().rejected.clientClosed, 0);
    } finally {
      await proxy.close({ drainTimeout: 0 });
    }
  });
});

describe('framing at the v1 limit', () => {
  test('a v1 line of 106 bytes without a CR is refused at once, not at the header timeout', async () => {
    // The CRLF of a v1 line must end within 107 bytes: after 106 without a CR, it cannot.
    const { proxy, port } = await startProxy({ headerTimeout: 20_000 });
    const rejects: RejectInfo[] = [];
    proxy.on('reject', (r) => rejects.push(r));
    try {
      const line = 'PROXY UNKNOWN ' + 'x'.repeat(92);
      assert.equal(line.length, 106);
      const socket = await connectAndSend(port, [line]);
      const started = Date.now();
      await ending(socket);
      const took = Date.now() - started;
      assert.ok(took < 10_000, `closed after ${took} ms: it waited for the header timeout`);
      assert.equal(rejects[0]?.reason, 'badHeader');
      assert.equal((rejects[0]?.error as { code?: string }).code, 'ERR_PROXY_V1_TOO_LONG');
      assert.equal(proxy.stats().rejected.headerTimeout, 0);
    } finally {
      await proxy.close();
    }
  });
});

describe('allowlist', () => {
  test('a peer outside it is closed before a byte is read; nothing reaches the upstream', async () => {
    const { proxy, port } = await startProxy({ allowedSubnets: ['192.0.2.0/24'] });
    try {
      const before = up4.connections.length;
      const socket = await connectAndSend(port, [v1('203.0.113.1', 1000), 'secret']);
      await ending(socket);
      assert.equal(proxy.stats().rejected.notAllowed, 1);
      assert.equal(proxy.stats().admitted, 0);
      await sleep(20);
      assert.equal(up4.connections.length, before);
    } finally {
      await proxy.close();
    }
  });

  test('a peer inside it passes, and the list can be swapped while running', async () => {
    const { proxy, port } = await startProxy({ allowedSubnets: ['127.0.0.0/8'] });
    try {
      await roundTrip(port, v1('203.0.113.2', 1001), up4);
      const { Allowlist } = await import('../lib/allowlist.js');
      proxy.setAllowlist(Allowlist.from(['10.0.0.0/8']));
      const socket = await connectAndSend(port, [v1('203.0.113.3', 1002), 'x']);
      await ending(socket);
      assert.equal(proxy.stats().rejected.notAllowed, 1);
    } finally {
      await proxy.close();
    }
  });

  test('a list set while listen() still reads the file wins over the file', async () => {
    const { Allowlist } = await import('../lib/allowlist.js');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'mmproxy-allow-'));
    const file = path.join(dir, 'allowed.txt');
    await writeFile(file, '0.0.0.0/0\n::/0\n');
    const proxy = createProxy({
      listen: '127.0.0.1:0',
      target4: up4.endpoint,
      target6: up6.endpoint,
      allowedSubnetsFile: file,
    });
    try {
      const listening = proxy.listen();
      proxy.setAllowlist(Allowlist.from(['192.0.2.0/24']));
      await listening;
      assert.deepEqual(proxy.allowlist?.entries, ['192.0.2.0/24']);
      const socket = await connectAndSend(proxy.address()!.port, [v1('203.0.113.4', 1003), 'x']);
      await ending(socket);
      assert.equal(proxy.stats().rejected.notAllowed, 1);
    } finally {
      await proxy.close();
      await rm(dir, { recursive: true });
    }
  });
});

describe('dynamic destination', () => {
  test('connects where the header says; dynamicDestinationAllow refuses the rest as destinationRefused', async (t) => {
    const other = await Upstream.start('127.0.0.1');
    t.after(() => other.close());
    const { proxy, port } = await startProxy({
      // target4 points elsewhere: only the header's destination can bring a connection to `other`.
      dynamicDestination: true,
      dynamicDestinationAllow: [`127.0.0.1/32:${other.port}`, `[::1]:${up6.port}`],
    });
    const reasons: string[] = [];
    proxy.on('reject', (r) => reasons.push(`${r.reason}: ${r.error?.message ?? ''}`));
    try {
      const a = await roundTrip(port, v2('192.0.2.91', 4101, '127.0.0.1', other.port), other);
      assert.deepEqual([a.remoteAddress, a.remotePort], ['192.0.2.91', 4101]);
      const b = await roundTrip(port, v1('2001:db8::91', 4102, '::1', up6.port), up6);
      assert.deepEqual([b.remoteAddress, b.remotePort], ['2001:db8::91', 4102]);
      const before = [up4.connections.length, up6.connections.length, other.connections.length];
      const refused = [
        v2('192.0.2.92', 4103, '127.0.0.1', up4.port), // a port outside the list
        v2('192.0.2.93', 4104, '127.0.0.2', other.port), // an address outside it
        v1('2001:db8::94', 4105, '::1', other.port),
      ];
      for (const header of refused) await ending(await connectAndSend(port, [header, 'x']));
      await sleep(50);
      assert.deepEqual(
        [up4.connections.length, up6.connections.length, other.connections.length],
        before,
      );
      assert.equal(proxy.stats().rejected.destinationRefused, 3);
      assert.deepEqual(reasons, [
        `destinationRefused: refusing to connect to 127.0.0.1:${up4.port}: not in dynamicDestinationAllow`,
        `destinationRefused: refusing to connect to 127.0.0.2:${other.port}: not in dynamicDestinationAllow`,
        `destinationRefused: refusing to connect to [::1]:${other.port}: not in dynamicDestinationAllow`,
      ]);
    } finally {
      await proxy.close();
    }
  });
});

describe('route hook', () => {
  test('a sync or async answer picks the target; false refuses; the hook sees the client', async () => {
    const other = await Upstream.start('127.0.0.1');
    const seenClients: string[] = [];
    const { proxy, port } = await startProxy({
      route: ({ client }) => {
        seenClients.push(`${client?.address}:${client?.port}`);
        const last = Number(client!.address.split('.')[3]);
        if (last === 1) return { address: '127.0.0.1', port: Number(other.endpoint.split(':')[1]) };
        if (last === 2) return Promise.resolve(undefined); // the default target
        return false;
      },
    });
    try {
      const a = await roundTrip(port, v2('192.0.2.1', 4001), other);
      assert.deepEqual([a.remoteAddress, a.remotePort], ['192.0.2.1', 4001]);
      const b = await roundTrip(port, v2('192.0.2.2', 4002), up4);
      assert.deepEqual([b.remoteAddress, b.remotePort], ['192.0.2.2', 4002]);
      const refused = await connectAndSend(port, [v2('192.0.2.3', 4003), 'x']);
      await ending(refused);
      assert.equal(proxy.stats().rejected.routeRejected, 1);
      assert.deepEqual(seenClients, ['192.0.2.1:4001', '192.0.2.2:4002', '192.0.2.3:4003']);
    } finally {
      await proxy.close();
      await other.close();
    }
  });

  test('a malformed answer refuses only its own connection, also amid a batch', async () => {
    // Answers the addon could not use: each must end as routeRejected with a reason, while the
    // connections decided in the same batch are served.
    const bad: Record<number, () => unknown> = {
      11: () => ({ address: '127.0.0.1', port: 70000 }),
      12: () => ({ address: 'localhost', port: 80 }),
      13: () => ({ address: '::1', port: 80 }), // an IPv6 target for an IPv4 client
      14: () => ({ address: '127.0.0.1', port: 1.5 }),
      15: () => 42,
      16: () => Promise.resolve({ address: '127.0.0.1', port: 0 }),
      17: () => Promise.reject(new Error('no route today')),
    };
    const { proxy, port } = await startProxy({
      workers: 1,
      route: ({ client }) => {
        const last = Number(client!.address.split('.')[3]);
        return bad[last]?.() as undefined;
      },
    });
    const reasons: string[] = [];
    proxy.on('reject', (r) => reasons.push(`${r.reason}: ${r.error?.message ?? ''}`));
    try {
      // Good and bad connections at once, so that they share batches.
      const sockets = await Promise.all(
        [10, 11, 12, 13, 14, 15, 16, 17, 18].map((n) =>
          connectAndSend(port, [v2(`192.0.2.${n}`, 5000 + n), `from ${n}`]),
        ),
      );
      const outcomes = await Promise.all(
        sockets.map(
          (s) =>
            new Promise<string>((resolve) => {
              s.once('data', (d: Buffer) => resolve(d.toString()));
              s.on('error', () => resolve('closed')); // a refused connection may be reset
              s.once('close', () => resolve('closed'));
            }),
        ),
      );
      assert.deepEqual(outcomes, [
        'from 10',
        'closed',
        'closed',
        'closed',
        'closed',
        'closed',
        'closed',
        'closed',
        'from 18',
      ]);
      for (const s of sockets) s.destroy();
      assert.equal(proxy.stats().rejected.routeRejected, 7);
      assert.equal(reasons.length, 7);
      for (const r of reasons) assert.match(r, /^routeRejected: /);
      assert.ok(reasons.some((r) => r.includes('port 70000, not an integer from 1 to 65535')));
      assert.ok(reasons.some((r) => r.includes('localhost, not an IP address')));
      assert.ok(reasons.some((r) => r.includes("::1, not of the source's family")));
      assert.ok(reasons.some((r) => r.includes('no route today')));
    } finally {
      await proxy.close();
    }
  });

  test('an address Node accepts but the addon cannot use (a zoned IPv6) refuses only its own connection', async () => {
    // isIP('fe80::1%lo') is 6; the addon's parser (inet_pton) has no zones.
    const answers: Record<string, () => unknown> = {
      '2001:db8::11': () => ({ address: 'fe80::1%lo', port: up6.port }),
      '2001:db8::12': () => Promise.resolve({ address: 'fe80::1%lo', port: up6.port }),
      '2001:db8::13': () => ({ address: '::1%1', port: up6.port }),
    };
    const { proxy, port } = await startProxy({
      workers: 1,
      route: ({ client }) => answers[client!.address]?.() as undefined,
    });
    const reasons: string[] = [];
    proxy.on('reject', (r) => reasons.push(`${r.reason}: ${r.error?.message ?? ''}`));
    try {
      const clients = [
        '2001:db8::10',
        '2001:db8::11',
        '2001:db8::12',
        '2001:db8::13',
        '2001:db8::14',
      ];
      const sockets = await Promise.all(
        clients.map((c, i) => connectAndSend(port, [v2(c, 6000 + i), `from ${c}`])),
      );
      const outcomes = await Promise.all(
        sockets.map(
          (s) =>
            new Promise<string>((resolve) => {
              s.once('data', (d: Buffer) => resolve(d.toString()));
              s.on('error', () => resolve('closed'));
              s.once('close', () => resolve('closed'));
            }),
        ),
      );
      for (const s of sockets) s.destroy();
      assert.deepEqual(outcomes, [
        'from 2001:db8::10',
        'closed',
        'closed',
        'closed',
        'from 2001:db8::14',
      ]);
      assert.equal(proxy.stats().rejected.routeRejected, 3);
      assert.equal(reasons.length, 3);
      for (const r of reasons)
        assert.match(r, /^routeRejected: route hook chose .*, not an IP address/);
    } finally {
      await proxy.close();
    }
  });
});

describe('timeouts below a millisecond', () => {
  test('reach the addon as 1 ms, not 0 (which would expire every header and flow at once)', async () => {
    const { loadNative } = await import('../lib/native.js');
    const addon = loadNative();
    const Engine = addon.Engine;
    const seen: Array<{ headerTimeoutMs: number; closeAfterMs: number }> = [];
    // The real engine, with the configuration it was given recorded.
    addon.Engine = class extends Engine {
      constructor(...args: ConstructorParameters<typeof Engine>) {
        super(...args);
        seen.push({ headerTimeoutMs: args[0].headerTimeoutMs, closeAfterMs: args[0].closeAfterMs });
      }
    };
    try {
      const { proxy } = await startProxy({ headerTimeout: 0.4, closeAfter: 0.0004 });
      await proxy.close();
    } finally {
      addon.Engine = Engine;
    }
    assert.deepEqual(seen, [{ headerTimeoutMs: 1, closeAfterMs: 1 }]);
  });
});
