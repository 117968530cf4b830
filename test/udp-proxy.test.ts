// The UDP proxy end to end, in the private namespace: a "load balancer" socket sends datagrams
// with v2 headers; a real UDP upstream records where each came from and echoes it.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { createProxy, type Proxy, type RouteRequest } from '../lib/proxy.js';
import type { ProxyOptions } from '../lib/options.js';
import { requireNamespace, sleep, until } from './helpers/net.js';
import { v1, v2, v2Local } from './helpers/headers.js';
import { encodeHeader } from '../lib/codec/index.js';
import { foreignPeer } from './helpers/foreign-peer.js';

requireNamespace();

interface Seen {
  address: string;
  port: number;
  payload: string;
}

class UdpUpstream {
  readonly seen: Seen[] = [];
  constructor(readonly socket: dgram.Socket) {
    socket.on('message', (msg, rinfo) => {
      this.seen.push({ address: rinfo.address, port: rinfo.port, payload: msg.toString() });
      socket.send(msg, rinfo.port, rinfo.address);
    });
  }
  static async start(type: 'udp4' | 'udp6', host: string): Promise<UdpUpstream> {
    const socket = dgram.createSocket(type);
    socket.bind(0, host);
    await once(socket, 'listening');
    return new UdpUpstream(socket);
  }
  get endpoint(): string {
    const a = this.socket.address();
    return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  }
}

/** A load balancer's socket: sends header + payload, collects replies. */
class LoadBalancer {
  readonly replies: string[] = [];
  constructor(readonly socket: dgram.Socket) {
    socket.on('message', (msg) => this.replies.push(msg.toString()));
  }
  static async start(host = '127.0.0.1'): Promise<LoadBalancer> {
    const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    socket.bind(0, host);
    await once(socket, 'listening');
    return new LoadBalancer(socket);
  }
  send(port: number, header: Uint8Array | string, payload: string, to = '127.0.0.1'): void {
    this.socket.send(Buffer.concat([Buffer.from(header), Buffer.from(payload)]), port, to);
  }
  close(): void {
    this.socket.close();
  }
}

let up4: UdpUpstream;
let up6: UdpUpstream;
before(async () => {
  up4 = await UdpUpstream.start('udp4', '127.0.0.1');
  up6 = await UdpUpstream.start('udp6', '::1');
});
after(() => {
  up4.socket.close();
  up6.socket.close();
});

async function startProxy(options: ProxyOptions = {}): Promise<{ proxy: Proxy; port: number }> {
  const proxy = createProxy({
    protocol: 'udp',
    listen: '127.0.0.1:0',
    target4: up4.endpoint,
    target6: up6.endpoint,
    ...options,
  });
  await proxy.listen();
  return { proxy, port: proxy.address()!.port };
}

const udp4 = (address: string, port: number) => v2(address, port, '127.0.0.1', 8443, 'UDP4');
const udp6 = (address: string, port: number) => v2(address, port, '::1', 8443, 'UDP6');

describe('datagrams', () => {
  let proxy: Proxy;
  let port: number;
  let lb: LoadBalancer;
  before(async () => {
    ({ proxy, port } = await startProxy());
    lb = await LoadBalancer.start();
  });
  after(async () => {
    lb.close();
    await proxy.close();
  });

  test('UDP4: the upstream sees the client; the reply reaches the load balancer without a header', async () => {
    const before = up4.seen.length;
    lb.send(port, udp4('192.0.2.10', 5000), 'ping4');
    await until(() => lb.replies.includes('ping4'), 'the reply');
    assert.deepEqual(up4.seen[before], { address: '192.0.2.10', port: 5000, payload: 'ping4' });
  });

  test('UDP6 goes to target6 from the IPv6 client', async () => {
    const before = up6.seen.length;
    lb.send(port, udp6('2001:db8::10', 5001), 'ping6');
    await until(() => lb.replies.includes('ping6'), 'the reply');
    assert.deepEqual(up6.seen[before], { address: '2001:db8::10', port: 5001, payload: 'ping6' });
  });

  test('many clients through one load balancer socket keep distinct flows', async () => {
    const before = up4.seen.length;
    for (let i = 1; i <= 20; i++) lb.send(port, udp4(`198.51.100.${i}`, 6000 + i), `c${i}`);
    await until(() => up4.seen.length >= before + 20, '20 datagrams upstream');
    const sources = new Set(up4.seen.slice(before).map((s) => `${s.address}:${s.port}`));
    assert.equal(sources.size, 20);
    for (const s of up4.seen.slice(before)) {
      assert.equal(s.payload, `c${Number(s.address.split('.')[3])}`);
    }
  });

  test('a burst on a new flow arrives complete and in order', async () => {
    const before = up4.seen.length;
    // The first 100 arrive before JavaScript can decide, so they wait in the flow's queue; the
    // rest follow in small bursts (the upstream's own socket buffer is the kernel default).
    for (let i = 0; i < 300; i++) {
      lb.send(port, udp4('203.0.113.30', 7000), `seq-${i}`);
      if (i >= 100 && i % 20 === 0) await sleep(2);
    }
    await until(() => up4.seen.length >= before + 300, '300 datagrams').catch((e) => {
      throw new Error(
        `${(e as Error).message}: ${up4.seen.length - before} arrived; ${JSON.stringify(proxy.stats().udp)}`,
      );
    });
    const payloads = up4.seen.slice(before).map((s) => s.payload);
    assert.deepEqual(
      payloads,
      Array.from({ length: 300 }, (_, i) => `seq-${i}`),
    );
  });

  test('datagrams without a v2 datagram header are dropped and counted', async () => {
    const before = up4.seen.length;
    const bad = proxy.stats().rejected.badHeader;
    lb.send(port, '', 'no header at all');
    lb.send(port, v1('192.0.2.11', 5002), 'v1 header');
    lb.send(port, v2('192.0.2.12', 5003), 'TCP4 family');
    await until(() => proxy.stats().rejected.badHeader >= bad + 3, 'three rejections');
    await sleep(50);
    assert.equal(up4.seen.length, before);
  });

  test('bursts of replies and single replies on one flow all reach the load balancer in order', async () => {
    // An upstream that answers "burst N" with N datagrams sent back to back, and anything else
    // with one: the proxy reads a lone reply with one recv() and switches to batches (and back)
    // as the flow's replies come in bursts or alone.
    const bursty = dgram.createSocket('udp4');
    bursty.bind(0, '127.0.0.1');
    await once(bursty, 'listening');
    bursty.on('message', (msg, rinfo) => {
      const m = /^burst (\d+) (\w+)$/.exec(msg.toString());
      if (!m) return bursty.send(msg, rinfo.port, rinfo.address);
      for (let i = 0; i < Number(m[1]); i++) bursty.send(`${m[2]}-${i}`, rinfo.port, rinfo.address);
    });
    const own = await startProxy({ target4: `127.0.0.1:${bursty.address().port}` });
    const client = await LoadBalancer.start();
    try {
      const expected: string[] = [];
      const header = udp4('192.0.2.40', 7100);
      for (const [round, size] of [1, 200, 1, 1, 150, 1].entries()) {
        const name = `r${round}`;
        if (size === 1) {
          client.send(own.port, header, name);
          expected.push(name);
        } else {
          client.send(own.port, header, `burst ${size} ${name}`);
          for (let i = 0; i < size; i++) expected.push(`${name}-${i}`);
        }
        await until(() => client.replies.length >= expected.length, `the replies of ${name}`);
      }
      assert.deepEqual(client.replies, expected);
      assert.equal(own.proxy.stats().udp.datagramsDropped, 0);
    } finally {
      client.close();
      bursty.close();
      await own.proxy.close();
    }
  });

  test('a source that must never be spoofed is refused once; its later datagrams stay native', async () => {
    const before = proxy.stats();
    let rejects = 0;
    proxy.on('reject', () => rejects++);
    for (let i = 0; i < 5; i++) lb.send(port, udp4('127.0.0.1', 5004), 'x');
    await until(
      () => proxy.stats().udp.datagramsDropped >= before.udp.datagramsDropped + 4,
      'drops',
    );
    assert.equal(proxy.stats().rejected.spoofRefused, before.rejected.spoofRefused + 1);
    assert.equal(rejects, 1, 'one decision in JavaScript for the whole flow');
  });
});

describe('flow table', () => {
  test('LOCAL is forwarded from the load balancer’s own address', async () => {
    const { proxy, port } = await startProxy();
    try {
      const before = up4.seen.length;
      // The load balancer is on another host: 198.51.100.9, an address this one lacks.
      const datagram = Buffer.concat([Buffer.from(v2Local()), Buffer.from('local')]);
      const reply = await foreignPeer('udp', '198.51.100.9', port, datagram);
      assert.equal(reply.toString(), 'local');
      assert.equal(up4.seen[before]?.address, '198.51.100.9');
    } finally {
      await proxy.close();
    }
  });

  test('UNIX_DGRAM is forwarded from the load balancer’s own address, as LOCAL is', async () => {
    const { proxy, port } = await startProxy();
    try {
      const before = up4.seen.length;
      // A header naming AF_UNIX sockets has no client address to stand for; the load balancer
      // is on another host: 198.51.100.9, an address this one lacks.
      const header = encodeHeader(
        {
          version: 2,
          command: 'PROXY',
          protocol: 'UNIX_DGRAM',
          source: { address: '/run/client.sock', port: null },
          destination: { address: '/run/app.sock', port: null },
          tlvs: [],
        },
        { version: 2 },
      );
      const datagram = Buffer.concat([Buffer.from(header), Buffer.from('unix')]);
      const reply = await foreignPeer('udp', '198.51.100.9', port, datagram);
      assert.equal(reply.toString(), 'unix', JSON.stringify(proxy.stats().rejected));
      assert.equal(up4.seen[before]?.address, '198.51.100.9');
      assert.equal(up4.seen[before]?.payload, 'unix');
    } finally {
      await proxy.close();
    }
  });

  test('LOCAL from a load balancer on this host is refused as spoofing', async () => {
    const { proxy, port } = await startProxy();
    const lb = await LoadBalancer.start('127.0.0.9');
    const reasons: string[] = [];
    proxy.on('reject', (r) => reasons.push(`${r.reason}: ${r.error?.message ?? ''}`));
    try {
      const before = up4.seen.length;
      lb.send(port, v2Local(), 'local');
      await until(() => reasons.length === 1, 'the refusal');
      await sleep(50);
      assert.equal(up4.seen.length, before);
      assert.deepEqual(lb.replies, []);
      assert.match(
        reasons[0]!,
        /^spoofRefused: .*load balancer's address 127\.0\.0\.9 .*\(loopback\)/,
      );
    } finally {
      lb.close();
      await proxy.close();
    }
  });

  test('dynamicDestination with dynamicDestinationAllow: a destination outside it is refused as destinationRefused', async () => {
    const { proxy, port } = await startProxy({
      target4: '127.0.0.1:9', // never used: every header names its destination
      dynamicDestination: true,
      dynamicDestinationAllow: [`127.0.0.1/32:${up4.socket.address().port}`],
    });
    const lb = await LoadBalancer.start();
    const reasons: string[] = [];
    proxy.on('reject', (r) => reasons.push(`${r.reason}: ${r.error?.message ?? ''}`));
    try {
      const before = up4.seen.length;
      const upPort = up4.socket.address().port;
      lb.send(port, v2('192.0.2.95', 5600, '127.0.0.1', upPort, 'UDP4'), 'allowed');
      await until(() => lb.replies.includes('allowed'), 'the reply');
      assert.deepEqual(up4.seen[before], { address: '192.0.2.95', port: 5600, payload: 'allowed' });
      lb.send(port, v2('192.0.2.96', 5600, '127.0.0.1', upPort + 1, 'UDP4'), 'refused');
      await until(() => proxy.stats().rejected.destinationRefused === 1, 'the refusal');
      assert.deepEqual(reasons, [
        `destinationRefused: refusing to connect to 127.0.0.1:${upPort + 1}: not in dynamicDestinationAllow`,
      ]);
      assert.equal(up4.seen.length, before + 1);
    } finally {
      lb.close();
      await proxy.close();
    }
  });

  test('an idle flow closes within a second of closeAfter', async () => {
    const { proxy, port } = await startProxy({ closeAfter: 0.5 });
    const lb = await LoadBalancer.start();
    try {
      lb.send(port, udp4('192.0.2.20', 5100), 'a');
      await until(() => lb.replies.length === 1, 'the reply');
      assert.equal(proxy.stats().active, 1);
      const started = Date.now();
      await until(() => proxy.stats().active === 0, 'the flow to expire', 3000);
      const took = Date.now() - started;
      assert.ok(took >= 350 && took < 1500, `expired after ${took} ms`);
      assert.equal(proxy.stats().udp.flowsExpired, 1);
    } finally {
      lb.close();
      await proxy.close();
    }
  });

  test('at maxFlows new flows are refused and counted; existing ones keep working', async () => {
    const { proxy, port } = await startProxy({ maxFlows: 3 });
    const lb = await LoadBalancer.start();
    try {
      for (let i = 1; i <= 3; i++) lb.send(port, udp4(`192.0.2.${40 + i}`, 5200), `f${i}`);
      await until(() => lb.replies.length === 3, 'three replies');
      lb.send(port, udp4('192.0.2.44', 5200), 'f4');
      await until(() => proxy.stats().udp.flowTableFull === 1, 'the refusal');
      lb.send(port, udp4('192.0.2.41', 5200), 'again');
      await until(() => lb.replies.includes('again'), 'an existing flow');
      assert.ok(!lb.replies.includes('f4'));
    } finally {
      lb.close();
      await proxy.close();
    }
  });

  test('a load balancer outside the allowlist is dropped in native code', async () => {
    const { proxy, port } = await startProxy({ allowedSubnets: ['10.0.0.0/8'] });
    const lb = await LoadBalancer.start();
    let rejects = 0;
    proxy.on('reject', () => rejects++);
    try {
      for (let i = 0; i < 50; i++) lb.send(port, udp4('192.0.2.50', 5300 + i), 'x');
      await until(() => proxy.stats().rejected.notAllowed === 50, 'fifty drops');
      assert.equal(rejects, 0, 'no JavaScript call per datagram');
      assert.equal(proxy.stats().accepted, 0);
    } finally {
      lb.close();
      await proxy.close();
    }
  });

  test('an ICMP error from the target is counted and disturbs no other flow', async () => {
    const closed = dgram.createSocket('udp4');
    closed.bind(0, '127.0.0.1');
    await once(closed, 'listening');
    const deadPort = closed.address().port;
    closed.close();
    const { proxy, port } = await startProxy({
      route: ({ client }: RouteRequest) =>
        client?.address === '192.0.2.60' ? { address: '127.0.0.1', port: deadPort } : undefined,
    });
    const lb = await LoadBalancer.start();
    try {
      lb.send(port, udp4('192.0.2.60', 5400), 'to nowhere');
      await until(() => proxy.stats().udp.icmpErrors >= 1, 'the ICMP error');
      lb.send(port, udp4('192.0.2.61', 5400), 'elsewhere');
      await until(() => lb.replies.includes('elsewhere'), 'the other flow');
      assert.equal(proxy.stats().active, 2, 'the refused flow is kept until idle');
    } finally {
      lb.close();
      await proxy.close();
    }
  });

  test('on a wildcard listener, replies leave from the address the load balancer sent to', async () => {
    // A load balancer's connected socket takes replies only from the address it sent to. Routing
    // alone would answer 127.0.0.1 from 127.0.0.1 and ::1 from ::1, so each case below sends to
    // another local address of the namespace.
    execFileSync('ip', ['-6', 'addr', 'add', '2001:db8::53/128', 'dev', 'lo', 'nodad']);
    try {
      const cases = [
        { listen: '0.0.0.0:0', family: 'udp4', bind: '127.0.0.1', to: '127.0.0.7' },
        { listen: '[::]:0', family: 'udp4', bind: '127.0.0.1', to: '127.0.0.8' },
        { listen: '[::]:0', family: 'udp6', bind: '::1', to: '2001:db8::53' },
      ] as const;
      for (const [n, c] of cases.entries()) {
        const { proxy, port } = await startProxy({ listen: c.listen });
        const lb = dgram.createSocket(c.family);
        lb.bind(0, c.bind);
        await once(lb, 'listening');
        lb.connect(port, c.to);
        await once(lb, 'connect');
        const replies: string[] = [];
        lb.on('message', (msg) => replies.push(msg.toString()));
        try {
          const header =
            c.family === 'udp4' ? udp4('192.0.2.60', 7200 + n) : udp6('2001:db8::60', 7200 + n);
          // Two sizes in one burst: one reply alone, the rest grouped for UDP GSO.
          lb.send(Buffer.concat([Buffer.from(header), Buffer.from(`wild${n}`)]));
          for (let i = 0; i < 8; i++)
            lb.send(Buffer.concat([Buffer.from(header), Buffer.from(`same-${n}-${i}`)]));
          await until(() => replies.length >= 9, `the replies through ${c.listen} to ${c.to}`);
          assert.deepEqual(replies.sort(), [
            ...Array.from({ length: 8 }, (_, i) => `same-${n}-${i}`),
            `wild${n}`,
          ]);
        } finally {
          lb.close();
          await proxy.close();
        }
      }
    } finally {
      execFileSync('ip', ['-6', 'addr', 'del', '2001:db8::53/128', 'dev', 'lo']);
    }
  });

  test('a reply whose source address left the host goes out from another one, not lost', async () => {
    // A flow begun on a virtual address that then moves away: the kernel refuses it as a
    // source, and the reply leaves from the address routing picks instead.
    execFileSync('ip', ['-6', 'addr', 'add', '2001:db8::54/128', 'dev', 'lo', 'nodad']);
    let added = true;
    const { proxy, port } = await startProxy({ listen: '[::]:0' });
    const lb = await LoadBalancer.start('::1');
    try {
      const header = udp6('2001:db8::61', 7300);
      lb.send(port, header, 'before', '2001:db8::54');
      await until(() => lb.replies.includes('before'), 'the first reply');
      execFileSync('ip', ['-6', 'addr', 'del', '2001:db8::54/128', 'dev', 'lo']);
      added = false;
      for (let i = 0; i < 5; i++) lb.send(port, header, `after-${i}`, '::1');
      await until(() => lb.replies.length >= 6, 'the replies after the address left');
      assert.deepEqual(lb.replies.slice(1).sort(), [
        'after-0',
        'after-1',
        'after-2',
        'after-3',
        'after-4',
      ]);
      assert.equal(proxy.stats().udp.datagramsDropped, 0);
    } finally {
      lb.close();
      await proxy.close();
      if (added) execFileSync('ip', ['-6', 'addr', 'del', '2001:db8::54/128', 'dev', 'lo']);
    }
  });

  test('an IPv6 listener, and several SO_REUSEPORT listeners with a worker each', async () => {
    const { proxy, port } = await startProxy({ listen: '[::1]:0', listeners: 3, workers: 3 });
    const lbs = await Promise.all([1, 2, 3, 4, 5, 6].map(() => LoadBalancer.start('::1')));
    try {
      const before4 = up4.seen.length;
      lbs.forEach((lb, i) => lb.send(port, udp4(`203.0.113.${70 + i}`, 5500), `lb${i}`, '::1'));
      await until(() => lbs.every((lb, i) => lb.replies.includes(`lb${i}`)), 'every reply');
      const seen = up4.seen
        .slice(before4)
        .map((x) => x.address)
        .sort();
      assert.deepEqual(
        seen,
        [70, 71, 72, 73, 74, 75].map((n) => `203.0.113.${n}`),
      );
      assert.equal(proxy.stats().active, 6);
    } finally {
      for (const lb of lbs) lb.close();
      await proxy.close();
    }
  });
});

describe('a listener destroyed from outside', () => {
  test('on a port given, it keeps its port and keeps serving: no error, datagrams still relayed', async () => {
    // A free port, then given explicitly, as -l 0.0.0.0:8443 is.
    const probe = dgram.createSocket('udp4');
    probe.bind(0, '127.0.0.1');
    await once(probe, 'listening');
    const fixed = probe.address().port;
    probe.close();
    const { proxy, port } = await startProxy({ listen: `127.0.0.1:${fixed}`, workers: 1 });
    const errors: Error[] = [];
    proxy.on('error', (e) => errors.push(e));
    const lb = await LoadBalancer.start();
    try {
      assert.equal(port, fixed);
      execFileSync('ss', ['-K', '-uln', `sport = :${port}`]);
      await sleep(100);
      for (let i = 0; i < 5; i++) lb.send(port, udp4('203.0.113.70', 7000), `after ${i}`);
      await until(() => lb.replies.length === 5, 'five replies after the kill');
      assert.deepEqual(errors, []);
    } finally {
      lb.close();
      await proxy.close();
    }
  });
});
