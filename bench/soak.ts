// Soak test: mixed TCP and UDP load through a proxy in a child process for --minutes (default
// 10), in a private user + network namespace on loopback. TCP streams of random sizes, with
// half-closes from either side and resets from either side; every completed stream is SHA-256
// checked in both directions. UDP datagrams on many flows carry their own checksum. Prints a report
// (counts, the proxy's RSS over time) and exits 1 on any lost or corrupted byte, a crash of the
// proxy, or memory that keeps growing.
//   node dist/bench/soak.js [--minutes 10] [--concurrency 64] [--flows 2000]
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { v1 } from '../test/helpers/headers.js';
import { encodeHeader } from '../lib/codec/index.js';

const INSIDE = 'MMPROXY_SOAK_INSIDE';
const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '64' },
    flows: { type: 'string', default: '2000' },
  },
});
const MINUTES = Number(values.minutes);
const CONCURRENCY = Number(values.concurrency);
const FLOWS = Number(values.flows);

if (process.env[INSIDE] !== '1') {
  const r = spawnSync(
    'unshare',
    ['--user', '--map-root-user', '--net', '--', process.execPath, ...process.argv.slice(1)],
    { stdio: 'inherit', env: { ...process.env, [INSIDE]: '1' } },
  );
  process.exit(r.status ?? 1);
}

for (const cmd of [
  'ip link set lo up',
  'ip rule add from 127.0.0.1/8 iif lo table 123',
  'ip route add local 0.0.0.0/0 dev lo table 123',
]) {
  const [c, ...args] = cmd.split(' ');
  if (spawnSync(c!, args, { stdio: 'inherit' }).status !== 0) throw new Error(`${cmd} failed`);
}

// ---------------------------------------------------------------------------------------------
// The proxy: a child process with a TCP and a UDP proxy; answers 'stats' with one JSON line.

const CHILD = `
  import { readdirSync } from 'node:fs';
  import { createInterface } from 'node:readline';
  const { createProxy } = await import(process.env.PROXY_MODULE);
  const tcp = createProxy({ listen: '127.0.0.1:0', target4: process.env.TCP_TARGET, workers: 2 });
  const udp = createProxy({ protocol: 'udp', listen: '127.0.0.1:0', target4: process.env.UDP_TARGET,
    closeAfter: 5 });
  await tcp.listen();
  await udp.listen();
  const report = () => console.log(JSON.stringify({ tcpPort: tcp.address().port,
    udpPort: udp.address().port, rss: process.memoryUsage().rss,
    fds: readdirSync('/proc/self/fd').length, tcp: tcp.stats(), udp: udp.stats() }));
  report();
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'stats') report();
    if (line === 'close') {
      await Promise.all([tcp.close({ drainTimeout: 1000 }), udp.close({ drainTimeout: 0 })]);
      report();
      process.exit(0);
    }
  }
`;

interface ChildReport {
  tcpPort: number;
  udpPort: number;
  rss: number;
  fds: number;
  tcp: { accepted: number; active: number; admitted: number; upstreamFailures: number };
  udp: { udp: Record<string, number>; active: number };
}

// ---------------------------------------------------------------------------------------------
// Upstreams: TCP echo with per-stream hashes, or a scripted behaviour; UDP echo.

type Scenario = 'echo' | 'upstreamFirst' | 'clientReset' | 'upstreamReset';
interface Expect {
  scenario: Scenario;
  downBytes: number; // upstreamFirst: bytes the upstream sends before its FIN
  received: Promise<string>; // resolves with the hash of what the upstream received
  resolve: (hash: string) => void;
  sentDown?: string; // upstreamFirst: the hash of what the upstream sent
}
const expected = new Map<string, Expect>(); // by spoofed client "address:port"

function hashOf(chunks: Buffer[]): string {
  const h = createHash('sha256');
  for (const c of chunks) h.update(c);
  return h.digest('hex');
}

const tcpUpstream = net.createServer({ allowHalfOpen: true }, (socket) => {
  socket.on('error', () => {});
  const e = expected.get(`${socket.remoteAddress}:${socket.remotePort}`);
  if (!e) {
    socket.destroy();
    return;
  }
  const hash = createHash('sha256');
  socket.on('data', (d: Buffer) => hash.update(d));
  socket.on('end', () => e.resolve(hash.digest('hex')));
  if (e.scenario === 'echo') {
    socket.on('data', (d: Buffer) => {
      if (!socket.write(d)) socket.pause();
    });
    socket.on('drain', () => socket.resume());
    socket.on('end', () => socket.end());
  } else if (e.scenario === 'upstreamFirst') {
    const body = randomBytes(e.downBytes);
    e.sentDown = createHash('sha256').update(body).digest('hex');
    socket.end(body);
  } else if (e.scenario === 'upstreamReset') {
    socket.once('data', () => setTimeout(() => socket.resetAndDestroy(), randomInt(0, 20)));
  }
});
tcpUpstream.listen(0, '127.0.0.1');
await once(tcpUpstream, 'listening');

const udpUpstream = dgram.createSocket('udp4');
udpUpstream.on('message', (m, r) => udpUpstream.send(m, r.port, r.address));
udpUpstream.bind(0, '127.0.0.1');
await once(udpUpstream, 'listening');

const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
  env: {
    ...process.env,
    PROXY_MODULE: new URL('../lib/proxy.js', import.meta.url).href,
    TCP_TARGET: `127.0.0.1:${(tcpUpstream.address() as net.AddressInfo).port}`,
    UDP_TARGET: `127.0.0.1:${udpUpstream.address().port}`,
  },
  stdio: ['pipe', 'pipe', 'inherit'],
});
let childExit: string | null = null;
child.once('exit', (code, signal) => (childExit = `exit ${signal ?? code}`));
const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
const first = JSON.parse((await lines.next()).value as string) as ChildReport;
async function ask(command = 'stats'): Promise<ChildReport> {
  child.stdin!.write(`${command}\n`);
  const { value, done } = await lines.next();
  if (done) throw new Error(`the proxy process ended (${childExit})`);
  return JSON.parse(value as string) as ChildReport;
}

// ---------------------------------------------------------------------------------------------
// TCP load.

const counts = {
  streams: 0,
  echo: 0,
  upstreamFirst: 0,
  clientReset: 0,
  upstreamReset: 0,
  bytesUp: 0,
  bytesDown: 0,
  corrupted: 0,
  unexpectedEnd: 0,
};
const failures: string[] = [];
let seq = 0;

function nextClient(): { address: string; port: number } {
  const i = seq++;
  const nets = ['192.0.2', '198.51.100', '203.0.113'];
  const k = Math.floor(i / 3);
  return { address: `${nets[i % 3]}.${1 + (k % 254)}`, port: 1024 + (Math.floor(k / 254) % 64000) };
}

/** A size from 0 to 4 MiB, mostly small. */
function randomSize(): number {
  return Math.floor(2 ** (Math.random() * 22)) - 1;
}

async function writeAll(socket: net.Socket, total: number, hash: ReturnType<typeof createHash>) {
  for (let sent = 0; sent < total && !socket.destroyed;) {
    const chunk = randomBytes(Math.min(total - sent, 1 + randomInt(65536)));
    hash.update(chunk);
    sent += chunk.length;
    counts.bytesUp += chunk.length;
    if (!socket.write(chunk)) await once(socket, 'drain');
  }
}

async function oneStream(port: number): Promise<void> {
  const c = nextClient();
  const r = Math.random();
  const scenario: Scenario =
    r < 0.7 ? 'echo' : r < 0.85 ? 'upstreamFirst' : r < 0.93 ? 'clientReset' : 'upstreamReset';
  let resolve!: (h: string) => void;
  const received = new Promise<string>((res) => (resolve = res));
  const e: Expect = { scenario, downBytes: randomSize(), received, resolve };
  const key = `${c.address}:${c.port}`;
  expected.set(key, e);
  const socket = net.connect({
    port,
    host: '127.0.0.1',
    allowHalfOpen: true,
    localAddress: `127.2.${randomInt(256)}.${1 + randomInt(254)}`,
  });
  const down = createHash('sha256');
  let downBytes = 0;
  const ended = new Promise<'end' | 'error'>((res) => {
    socket.on('data', (d: Buffer) => {
      down.update(d);
      downBytes += d.length;
      counts.bytesDown += d.length;
    });
    socket.once('end', () => res('end'));
    socket.on('error', () => res('error'));
  });
  try {
    await once(socket, 'connect');
    socket.write(v1(c.address, c.port));
    counts.streams++;
    counts[scenario]++;
    const up = createHash('sha256');
    if (scenario === 'echo') {
      const size = randomSize();
      await writeAll(socket, size, up);
      socket.end();
      const upHash = up.digest('hex');
      if ((await ended) !== 'end') throw new Error(`echo stream of ${size} bytes ended by error`);
      const downHash = down.digest('hex');
      const atUpstream = await e.received;
      if (atUpstream !== upHash || downHash !== upHash) {
        counts.corrupted++;
        failures.push(`${key}: echo of ${size} bytes altered (received ${downBytes})`);
      }
    } else if (scenario === 'upstreamFirst') {
      if ((await ended) !== 'end') throw new Error('upstream-first stream ended by error');
      if (down.digest('hex') !== e.sentDown) {
        counts.corrupted++;
        failures.push(`${key}: ${e.downBytes} bytes from the upstream altered`);
      }
      await writeAll(socket, randomSize(), up); // after the upstream's FIN, still delivered
      socket.end();
      const upHash = up.digest('hex');
      if ((await e.received) !== upHash) {
        counts.corrupted++;
        failures.push(`${key}: bytes sent after the upstream's FIN altered`);
      }
    } else if (scenario === 'clientReset') {
      void writeAll(socket, randomSize(), up).catch(() => {});
      await new Promise((res) => setTimeout(res, randomInt(0, 30)));
      socket.resetAndDestroy();
    } else {
      void writeAll(socket, 1 + randomSize(), up).catch(() => {});
      await ended; // the upstream's reset reaches us as a reset (or, via libuv, an end)
    }
  } catch (err) {
    counts.unexpectedEnd++;
    failures.push(`${key} (${scenario}): ${(err as Error).message}`);
  } finally {
    socket.destroy();
    expected.delete(key);
  }
}

// ---------------------------------------------------------------------------------------------
// UDP load: datagrams of random sizes on FLOWS flows; each payload starts with its own checksum.

const udpCounts = { sent: 0, replies: 0, corrupted: 0 };
const lb = dgram.createSocket('udp4');
lb.on('message', (m) => {
  udpCounts.replies++;
  const sum = createHash('sha256').update(m.subarray(8)).digest().subarray(0, 8);
  if (!sum.equals(m.subarray(0, 8))) udpCounts.corrupted++;
});
lb.bind(0, '127.0.0.1');
await once(lb, 'listening');
const udpHeaders = Array.from({ length: FLOWS }, (_, i) =>
  encodeHeader(
    {
      version: 2,
      command: 'PROXY',
      protocol: 'UDP4',
      source: { address: `198.51.100.${1 + (i % 254)}`, port: 20000 + Math.floor(i / 254) },
      destination: { address: '127.0.0.1', port: 8443 },
      tlvs: [],
    },
    { version: 2 },
  ),
);

// ---------------------------------------------------------------------------------------------
// Run.

const started = Date.now();
const deadline = started + MINUTES * 60_000;
const samples: Array<{ s: number; rss: number; fds: number; tcpActive: number; flows: number }> =
  [];
let stopping = false;

const sampler = (async () => {
  while (!stopping) {
    const r = await ask();
    samples.push({
      s: Math.round((Date.now() - started) / 1000),
      rss: r.rss,
      fds: r.fds,
      tcpActive: r.tcp.active,
      flows: r.udp.active,
    });
    await new Promise((res) => setTimeout(res, Math.min(10_000, (MINUTES * 60_000) / 30)));
  }
})();

const udpLoad = (async () => {
  while (Date.now() < deadline) {
    for (let k = 0; k < 50; k++) {
      const body = randomBytes(randomInt(0, 1400));
      const sum = createHash('sha256').update(body).digest().subarray(0, 8);
      lb.send(
        Buffer.concat([udpHeaders[randomInt(FLOWS)]!, sum, body]),
        first.udpPort,
        '127.0.0.1',
      );
      udpCounts.sent++;
    }
    await new Promise((res) => setTimeout(res, 5));
  }
})();

await Promise.all(
  Array.from({ length: CONCURRENCY }, async () => {
    while (Date.now() < deadline && childExit === null) await oneStream(first.tcpPort);
  }),
);
await udpLoad;
await new Promise((res) => setTimeout(res, 500));
stopping = true;
await sampler;
const last = childExit === null ? await ask('close') : null;

// ---------------------------------------------------------------------------------------------
// Report.

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
console.log(`\nsoak: ${MINUTES} min, ${CONCURRENCY} concurrent TCP streams, ${FLOWS} UDP flows`);
console.log(
  `TCP streams ${counts.streams}: echo ${counts.echo}, upstream-first half-close ` +
    `${counts.upstreamFirst}, client resets ${counts.clientReset}, upstream resets ` +
    `${counts.upstreamReset}; ${mib(counts.bytesUp)} up, ${mib(counts.bytesDown)} down (SHA-256 checked)`,
);
console.log(
  `TCP corrupted or lost: ${counts.corrupted}; streams that ended wrongly: ${counts.unexpectedEnd}`,
);
console.log(
  `UDP datagrams sent ${udpCounts.sent}, echoed back ${udpCounts.replies} ` +
    `(${((100 * udpCounts.replies) / Math.max(1, udpCounts.sent)).toFixed(2)}%), corrupted ${udpCounts.corrupted}`,
);
console.log('proxy process over time:');
console.log('   t(s)        RSS   fds  tcp-active  udp-flows');
for (const x of samples) {
  console.log(
    `${String(x.s).padStart(7)} ${mib(x.rss).padStart(10)} ${String(x.fds).padStart(5)} ` +
      `${String(x.tcpActive).padStart(11)} ${String(x.flows).padStart(10)}`,
  );
}
if (last) {
  console.log(
    `at close: TCP accepted ${last.tcp.accepted}, admitted ${last.tcp.admitted}, upstream ` +
      `failures ${last.tcp.upstreamFailures}; UDP ${JSON.stringify(last.udp.udp)}`,
  );
}

// Memory is flat when the last third of the run peaks no more than 25% above the middle third.
const third = Math.floor(samples.length / 3);
const peak = (xs: typeof samples) => Math.max(...xs.map((x) => x.rss));
const middle = samples.slice(third, 2 * third);
const end = samples.slice(2 * third);
const flat = samples.length < 6 || peak(end) <= peak(middle) * 1.25;
const verdicts = [
  [childExit === null, `the proxy process stayed up${childExit ? ` (${childExit})` : ''}`],
  [counts.corrupted === 0, 'no TCP byte lost or corrupted'],
  [counts.unexpectedEnd === 0, 'every TCP stream ended the way it should'],
  [udpCounts.corrupted === 0, 'no UDP datagram corrupted'],
  [
    flat,
    `memory flat (peak ${mib(peak(end))} in the last third, ${mib(peak(middle) || 0)} before)`,
  ],
] as const;
for (const [ok, what] of verdicts) console.log(`${ok ? 'PASS' : 'FAIL'} ${what}`);
for (const f of failures.slice(0, 20)) console.log(`  ${f}`);
tcpUpstream.close();
udpUpstream.close();
lb.close();
process.exit(verdicts.every(([ok]) => ok) ? 0 : 1);
