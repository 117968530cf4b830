// UDP GSO and the path MTU: the proxy groups same-size datagrams of a flow into one UDP_SEGMENT
// send, which the kernel refuses (EMSGSIZE) when a segment and its headers exceed the route's
// MTU, where plain sends of the same datagrams are fragmented and delivered. Run in a nested
// namespace whose lo has an Ethernet MTU, so that the suite's own lo keeps its 64 KiB one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inFreshNetns, moduleUrl, ROUTING_SETUP } from './cli-netns.js';
import { requireNamespace } from './helpers/net.js';

requireNamespace();

interface SizeResult {
  size: number;
  sent: number;
  upstreamIntact: number; // arrived at the upstream with the bytes sent
  repliesIntact: number; // echoed back to the load balancer with the bytes sent
  upstreamOther: number; // anything else that arrived (corrupt, or twice)
  repliesOther: number;
}

interface FamilyResult {
  family: string;
  sizes: SizeResult[];
  udp: { datagramsDropped: number; datagramsToUpstreams: number; datagramsToClients: number };
}

// One proxy per family; one flow each, whose bursts of 32 same-size datagrams go through sizes
// that fit the MTU and sizes that do not, in an order that lowers what the proxy may learn
// (2000, then just over, then just under). The upstream echoes each datagram, so the replies
// come back to the proxy in bursts of one size too.
const CHILD = `
import dgram from 'node:dgram';
import { once } from 'node:events';
const { createProxy } = await import(${JSON.stringify(moduleUrl('../lib/index.js'))});
const { v2 } = await import(${JSON.stringify(moduleUrl('./helpers/headers.js'))});
const BURST = 32, BURSTS = 4;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function payload(size, burst, i) {
  const b = Buffer.alloc(size);
  for (let k = 0; k < size; k++) b[k] = (k * 31 + burst * 7 + i * 13 + size) & 0xff;
  b.write(size + '/' + burst + '/' + i + '/');
  return b;
}
async function family(type, host, client, sizes) {
  const up = dgram.createSocket(type);
  const seen = [];
  up.on('message', (m, r) => { seen.push(m.toString('latin1')); up.send(m, r.port, r.address); });
  up.bind(0, host);
  await once(up, 'listening');
  const target = type === 'udp4' ? host + ':' + up.address().port : '[' + host + ']:' + up.address().port;
  const proxy = createProxy(type === 'udp4'
    ? { protocol: 'udp', listen: host + ':0', target4: target }
    : { protocol: 'udp', listen: '[' + host + ']:0', target6: target });
  await proxy.listen();
  const port = proxy.address().port;
  const lb = dgram.createSocket(type);
  const replies = [];
  lb.on('message', (m) => replies.push(m.toString('latin1')));
  lb.bind(0, host);
  await once(lb, 'listening');
  const header = Buffer.from(v2(client, 40000, host, 8443, type === 'udp4' ? 'UDP4' : 'UDP6'));
  const results = [];
  for (const size of sizes) {
    const sent = new Set();
    const upFrom = seen.length, repFrom = replies.length;
    for (let burst = 0; burst < BURSTS; burst++) {
      const target = seen.length + BURST;
      for (let i = 0; i < BURST; i++) {
        const p = payload(size, burst, i);
        sent.add(p.toString('latin1'));
        lb.send(Buffer.concat([header, p]), port, host);
      }
      // Paced so that no socket buffer overflows: the next burst once this one is echoed, or
      // once nothing has arrived for a while (the datagrams were lost).
      let last = -1, quiet = 0;
      while ((seen.length < target || replies.length < repFrom + (burst + 1) * BURST) && quiet < 300) {
        const now = seen.length + replies.length;
        quiet = now === last ? quiet + 10 : 0;
        last = now;
        await sleep(10);
      }
    }
    const count = (list) => {
      const left = new Set(sent);
      let other = 0;
      for (const s of list) if (!left.delete(s)) other++;
      return [sent.size - left.size, other];
    };
    const [upstreamIntact, upstreamOther] = count(seen.slice(upFrom));
    const [repliesIntact, repliesOther] = count(replies.slice(repFrom));
    results.push({ size, sent: sent.size, upstreamIntact, repliesIntact, upstreamOther, repliesOther });
  }
  const { datagramsDropped, datagramsToUpstreams, datagramsToClients } = proxy.stats().udp;
  lb.close();
  up.close();
  await proxy.close();
  return { family: type, sizes: results, udp: { datagramsDropped, datagramsToUpstreams, datagramsToClients } };
}
const out = [
  // IPv4: 1472 bytes + 28 of headers is the MTU; IPv6: 1452 + 48.
  await family('udp4', '127.0.0.1', '192.0.2.80', [1000, 2000, 1473, 1472, 1000]),
  await family('udp6', '::1', '2001:db8::80', [1000, 2000, 1453, 1452, 1000]),
];
console.log(JSON.stringify(out));
`;

test('at lo MTU 1500, bursts of datagrams larger than the MTU are delivered both ways, none dropped', async () => {
  const r = await inFreshNetns(CHILD, ['ip link set lo mtu 1500', ...ROUTING_SETUP], 120_000);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as FamilyResult[];
  for (const f of out) {
    for (const s of f.sizes) {
      const where = `${f.family} ${s.size} bytes: ${JSON.stringify(s)}; ${JSON.stringify(f.udp)}`;
      assert.equal(s.upstreamIntact, s.sent, `client -> upstream, ${where}`);
      assert.equal(s.repliesIntact, s.sent, `upstream -> load balancer, ${where}`);
      assert.equal(s.upstreamOther + s.repliesOther, 0, `nothing else arrives, ${where}`);
    }
    assert.equal(f.udp.datagramsDropped, 0, `${f.family}: ${JSON.stringify(f.udp)}`);
    const sent = f.sizes.reduce((n, s) => n + s.sent, 0);
    assert.equal(f.udp.datagramsToUpstreams, sent);
    assert.equal(f.udp.datagramsToClients, sent);
  }
});
