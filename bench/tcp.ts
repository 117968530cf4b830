// The TCP benchmark of issue 4: direct (no proxy), mmproxy-native, go-mmproxy and HAProxy side by
// side in one run inside a private user + network namespace — stream throughput, connections per
// second, latency one at a time, the proxy's CPU time and memory — printed as one table of medians
// with ratios.
//
// The load generator and the echo upstream are bench/loadgen.c (compiled here with cc -O2), pinned to
// CPU 0; each proxy runs pinned to CPU 1 with one relay thread. Every run is bounded in time. Traffic
// goes only to 127.0.0.1 inside the namespace; the clients named in PROXY headers come from the
// documentation ranges, which only exist there.
//
//   node dist/bench/tcp.js [--rounds 3] [--seconds 3] [--latency-seconds 2] [--idle 10000]
//                          [--only direct,mmproxy-native,go-mmproxy,haproxy] [--tests stream,cps,latency,idle]
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  announce,
  clientBase,
  type Contender as BaseContender,
  contenders as pick,
  contextSwitches,
  cpuMeter,
  cpuSeconds,
  cpuTime,
  debVersion,
  GEN_CPU,
  generate,
  has,
  main,
  median,
  memory,
  NATIVE_VERSION,
  nofileLimit,
  printTargets,
  PROXY_CPU,
  ratio,
  record,
  roundOrder,
  type Samples as SamplesOf,
  SCRATCH,
  setUpNamespace,
  sleep,
  startEcho,
  type Started,
  startGoMmproxy,
  startNative,
  startServer,
  stopServer,
  table as markdownTable,
  targetChecks,
  versionOf,
  writeResults,
} from './harness.js';

const PORTS = { echo: 9000, 'mmproxy-native': 9001, 'go-mmproxy': 9002, haproxy: 9003 } as const;
const STREAM_CONNECTIONS = 50;
const CPS_CONCURRENCY = 50;
const NOFILE = 262144;
let idleCount = 0; // idle connections held open through each proxy (fits the fd limit)

type Name = 'direct' | 'mmproxy-native' | 'go-mmproxy' | 'haproxy';
const ALL: readonly Name[] = ['direct', 'mmproxy-native', 'go-mmproxy', 'haproxy'];

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '3' },
    'latency-seconds': { type: 'string', default: '2' },
    idle: { type: 'string', default: '10000' },
    only: { type: 'string', default: ALL.join(',') },
    tests: { type: 'string', default: 'stream,cps,latency,idle' },
  },
});
const ROUNDS = Math.max(1, Number(args.rounds));
const SECONDS = Number(args.seconds);
const LATENCY_SECONDS = Number(args['latency-seconds']);
const IDLE_CONNECTIONS = Number(args.idle);
const ONLY = new Set(args.only.split(',').map((s) => s.trim()));
const TESTS = new Set(args.tests.split(',').map((s) => s.trim()));

/** TCP segments sent in this namespace so far (all sockets, ACKs included), from /proc/net/snmp. */
function tcpOutSegments(): number {
  const lines = readFileSync('/proc/net/snmp', 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('Tcp:'));
  const names = lines[0]?.split(/\s+/) ?? [];
  const values = lines[1]?.split(/\s+/) ?? [];
  return Number(values[names.indexOf('OutSegs')]);
}

/** Samples a process's RSS every 200 ms until stopped; returns the largest, in MiB. */
function rssSampler(pid: number | undefined): () => number {
  if (pid === undefined) return () => NaN;
  let max = memory(pid).rss;
  const timer = setInterval(() => {
    try {
      max = Math.max(max, memory(pid).rss);
    } catch {
      // The process is gone; the run will say why.
    }
  }, 200);
  return () => {
    clearInterval(timer);
    return max;
  };
}

interface Contender extends BaseContender<Name> {
  server?: Started;
  died?: string;
}

type Metric =
  | 'streamGbps'
  | 'upGbps'
  | 'downGbps'
  | 'gbpsPerCpu'
  | 'streamCpuShare'
  | 'streamGenBusy'
  | 'streamSegKiB'
  | 'streamWakeupsPerMB'
  | 'cpuUserUsPerConn'
  | 'wakeupsPerConn'
  | 'cpsGenBusy'
  | 'cps'
  | 'cpsP50'
  | 'cpsP99'
  | 'cpuUsPerConn'
  | 'latP50'
  | 'latP99'
  | 'rssIdle'
  | 'rssLoad'
  | 'rssPeak'
  | 'rssIdleConns'
  | 'kibPerIdleConn'
  | 'errors';

type Samples = SamplesOf<Name, Metric>;

/** False (with a warning, once) when the contender's proxy process has died. */
function alive(c: Contender): boolean {
  const child = c.server?.child;
  if (!child || (child.exitCode === null && child.signalCode === null))
    return !c.skipped && !c.died;
  if (!c.died) {
    c.died = `exited (${child.exitCode ?? child.signalCode}) during the bench: ${c.server!.output().trim()}`;
    console.log(`WARNING ${c.name} ${c.died}`);
  }
  return false;
}

async function streamRun(c: Contender, samples: Samples): Promise<void> {
  const pid = c.server?.pid;
  let cpu0 = NaN;
  let wall0 = 0;
  let seg0 = 0;
  let cs0 = 0;
  const stopRss = rssSampler(pid);
  const gen = cpuMeter(GEN_CPU);
  const r = await generate(
    'loadgen',
    [
      'stream',
      String(c.port),
      String(STREAM_CONNECTIONS),
      String(SECONDS),
      c.header ? '1' : '0',
      clientBase(STREAM_CONNECTIONS),
    ],
    (SECONDS + 20) * 1000,
    {
      onMeasuring: () => {
        gen.start();
        wall0 = performance.now();
        seg0 = tcpOutSegments();
        if (pid !== undefined) {
          cpu0 = cpuSeconds(pid);
          cs0 = contextSwitches(pid);
        }
      },
    },
  );
  const cpu = pid === undefined ? NaN : cpuSeconds(pid) - cpu0;
  const wall = (performance.now() - wall0) / 1000;
  record(samples, c.name, 'streamGenBusy', gen.stop());
  // Each byte crosses loopback once without a proxy, twice through one; the window is approximate
  // (the generator's last writes land after its JSON line), good for comparing contenders.
  const bytes = Number(r.upBytes) + Number(r.downBytes);
  record(
    samples,
    c.name,
    'streamSegKiB',
    (bytes * (c.header ? 2 : 1)) / (tcpOutSegments() - seg0) / 1024,
  );
  if (pid !== undefined)
    record(samples, c.name, 'streamWakeupsPerMB', (contextSwitches(pid) - cs0) / (bytes / 2 ** 20));
  const secs = Number(r.seconds);
  const up = (Number(r.upBytes) * 8) / secs / 1e9;
  const down = (Number(r.downBytes) * 8) / secs / 1e9;
  record(samples, c.name, 'streamGbps', up + down);
  record(samples, c.name, 'upGbps', up);
  record(samples, c.name, 'downGbps', down);
  record(
    samples,
    c.name,
    'gbpsPerCpu',
    ((Number(r.upBytes) + Number(r.downBytes)) * 8) / 1e9 / cpu,
  );
  record(samples, c.name, 'streamCpuShare', cpu / wall);
  record(samples, c.name, 'rssLoad', stopRss());
  record(samples, c.name, 'errors', Number(r.errors));
}

async function cpsRun(
  c: Contender,
  samples: Samples,
  concurrency: number,
  secs: number,
): Promise<void> {
  const pid = c.server?.pid;
  let cpu0 = NaN;
  let user0 = NaN;
  let cs0 = 0;
  const stopRss = rssSampler(pid);
  const gen = cpuMeter(GEN_CPU);
  // Never more than ~40k connections a second here: reserve that many client 4-tuples.
  const r = await generate(
    'loadgen',
    [
      'cps',
      String(c.port),
      String(concurrency),
      String(secs),
      c.header ? '1' : '0',
      clientBase(Math.ceil(secs * 40_000)),
    ],
    (secs + 20) * 1000,
    {
      onMeasuring: () => {
        gen.start();
        if (pid !== undefined) {
          const t = cpuTime(pid);
          cpu0 = t.total;
          user0 = t.user;
          cs0 = contextSwitches(pid);
        }
      },
    },
  );
  const t = pid === undefined ? { total: NaN, user: NaN } : cpuTime(pid);
  const cpu = t.total - cpu0;
  const cs = pid === undefined ? NaN : contextSwitches(pid) - cs0;
  const genBusy = gen.stop();
  const n = Number(r.connections);
  if (Number(r.used) > secs * 40_000)
    throw new Error(`cps used ${r.used} client tuples, more than reserved`);
  if (concurrency > 1) {
    record(samples, c.name, 'cps', n / Number(r.seconds));
    record(samples, c.name, 'cpsP50', Number(r.p50Ms));
    record(samples, c.name, 'cpsP99', Number(r.p99Ms));
    record(samples, c.name, 'cpuUsPerConn', (cpu / n) * 1e6);
    record(samples, c.name, 'cpsGenBusy', genBusy);
    record(samples, c.name, 'cpuUserUsPerConn', ((t.user - user0) / n) * 1e6);
    record(samples, c.name, 'wakeupsPerConn', cs / n);
    record(samples, c.name, 'rssLoad', stopRss());
  } else {
    stopRss();
    record(samples, c.name, 'latP50', Number(r.p50Ms));
    record(samples, c.name, 'latP99', Number(r.p99Ms));
  }
  record(samples, c.name, 'errors', Number(r.errors));
}

/** Restarts the proxy (so load before does not count), opens `count` connections through it, reads its RSS. */
async function idleRun(c: Contender, samples: Samples, count: number): Promise<void> {
  if (!c.server) return;
  await stopServer(c.server);
  await startContender(c);
  const pid = c.server?.pid;
  if (pid === undefined || c.skipped) {
    c.died = `did not restart for the idle test: ${c.skipped}`;
    c.skipped = undefined;
    return void console.log(`  ${c.name} ${c.died}`);
  }
  await sleep(500);
  const fresh = memory(pid).rss;
  await generate(
    'loadgen',
    ['idle', String(c.port), String(count), '60', c.header ? '1' : '0', clientBase(count)],
    90_000,
    {
      onResult: async (r) => {
        await sleep(1000); // let the proxy settle (Go's GC, lazy allocations)
        if (Number(r.open) < count)
          console.log(
            `  ${c.name}: only ${r.open} of ${count} idle connections opened (${r.failed} failed)`,
          );
        const rss = Number(r.open) === count ? memory(pid).rss : NaN;
        record(samples, c.name, 'rssIdleConns', rss);
        record(samples, c.name, 'kibPerIdleConn', ((rss - fresh) * 1024) / count);
      },
    },
  );
  await sleep(1500); // the closes propagate through the proxy before the next one starts
}

function haproxyConfig(): string {
  const file = path.join(SCRATCH, 'haproxy.cfg');
  writeFileSync(
    file,
    [
      'global',
      `  maxconn ${idleCount + 500}`,
      '  maxpipes 500',
      '  nbthread 1',
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 60s',
      '  timeout server 60s',
      'frontend bench',
      `  bind 127.0.0.1:${PORTS.haproxy} accept-proxy`,
      '  default_backend echo',
      'backend echo',
      '  option splice-auto',
      `  server echo 127.0.0.1:${PORTS.echo} source 0.0.0.0 usesrc client`,
      '',
    ].join('\n'),
  );
  return file;
}

async function startContender(c: Contender): Promise<void> {
  try {
    if (c.name === 'mmproxy-native') {
      c.server = await startNative('tcp', c.port, PORTS.echo);
      c.version = NATIVE_VERSION;
    } else if (c.name === 'go-mmproxy') {
      c.server = await startGoMmproxy('tcp', c.port, PORTS.echo);
      c.version = `Debian go-mmproxy ${debVersion('go-mmproxy')}`;
    } else if (c.name === 'haproxy') {
      if (!has('haproxy')) throw new Error('HAProxy is not installed: apt-get install -y haproxy');
      c.server = await startServer(
        PROXY_CPU,
        'haproxy',
        ['-db', '-f', haproxyConfig()],
        c.port,
        'tcp',
      );
      c.version = `${versionOf('haproxy', ['-v']).replace(/ - https.*/, '')}, nbthread 1, splice-auto`;
    }
  } catch (e) {
    c.skipped = (e as Error).message;
  }
}

// ---------------------------------------------------------------------------------------------
// The table.

const ROWS: { metric: Metric; label: string; digits: number }[] = [
  { metric: 'streamGbps', label: `stream ⇅ Gbps (${STREAM_CONNECTIONS} conns)`, digits: 2 },
  { metric: 'upGbps', label: 'stream ↑ Gbps (to upstream)', digits: 2 },
  { metric: 'downGbps', label: 'stream ↓ Gbps (to client)', digits: 2 },
  { metric: 'gbpsPerCpu', label: 'stream Gbps per proxy CPU-second', digits: 2 },
  { metric: 'streamCpuShare', label: 'proxy CPU use during stream (cores)', digits: 2 },
  { metric: 'streamGenBusy', label: `generator CPU ${GEN_CPU} busy during stream`, digits: 2 },
  { metric: 'streamSegKiB', label: '  KiB per TCP segment sent (ACKs included)', digits: 1 },
  { metric: 'streamWakeupsPerMB', label: '  proxy context switches per MiB', digits: 2 },
  { metric: 'cps', label: `connections/s (${CPS_CONCURRENCY} at once)`, digits: 0 },
  { metric: 'cpsP50', label: `  latency p50 ms (${CPS_CONCURRENCY} at once)`, digits: 3 },
  { metric: 'cpsP99', label: `  latency p99 ms (${CPS_CONCURRENCY} at once)`, digits: 3 },
  { metric: 'cpuUsPerConn', label: '  proxy CPU µs per connection', digits: 1 },
  { metric: 'cpuUserUsPerConn', label: '  of which user space µs', digits: 1 },
  { metric: 'wakeupsPerConn', label: '  proxy context switches per connection', digits: 2 },
  { metric: 'cpsGenBusy', label: `  generator CPU ${GEN_CPU} busy`, digits: 2 },
  { metric: 'latP50', label: 'latency p50 ms (one at a time)', digits: 3 },
  { metric: 'latP99', label: 'latency p99 ms (one at a time)', digits: 3 },
  { metric: 'rssIdle', label: 'RSS MiB idle (fresh)', digits: 1 },
  { metric: 'rssLoad', label: 'RSS MiB under load (max sampled)', digits: 1 },
  { metric: 'rssPeak', label: 'RSS MiB peak (VmHWM, all rounds)', digits: 1 },
  {
    metric: 'rssIdleConns',
    label: 'RSS MiB with N idle conns (fresh process, N below)',
    digits: 1,
  },
  { metric: 'kibPerIdleConn', label: '  KiB per idle connection', digits: 2 },
  { metric: 'errors', label: 'generator errors (sum)', digits: 0 },
];

function table(contenders: Contender[], samples: Samples): string {
  const value = (name: Name, row: { metric: Metric }): number => {
    const list = samples.get(name)?.get(row.metric) ?? [];
    if (row.metric === 'errors') return list.length ? list.reduce((a, b) => a + b, 0) : NaN;
    if (row.metric === 'rssLoad' || row.metric === 'rssPeak')
      return list.length ? Math.max(...list) : NaN;
    return median(list);
  };
  return markdownTable(
    contenders,
    ['go-mmproxy', 'direct', 'haproxy'],
    ROWS,
    value,
    (row) => row.metric !== 'errors',
  );
}

function targets(samples: Samples): string[] {
  const v = (n: Name, m: Metric): number => median(samples.get(n)?.get(m) ?? []);
  const { check, lines } = targetChecks();
  const n = 'mmproxy-native';
  check(
    'stream ⇅ ≥ 0.95 × direct',
    v(n, 'streamGbps'),
    0.95 * v('direct', 'streamGbps'),
    true,
    ratio(v(n, 'streamGbps'), v('direct', 'streamGbps')),
  );
  check(
    'Gbps per CPU-s ≥ 1.25 × go-mmproxy',
    v(n, 'gbpsPerCpu'),
    1.25 * v('go-mmproxy', 'gbpsPerCpu'),
    true,
    ratio(v(n, 'gbpsPerCpu'), v('go-mmproxy', 'gbpsPerCpu')),
  );
  check(
    'conn/s ≥ HAProxy',
    v(n, 'cps'),
    v('haproxy', 'cps'),
    true,
    ratio(v(n, 'cps'), v('haproxy', 'cps')),
  );
  check(
    'conn/s p99 ≤ HAProxy',
    v(n, 'cpsP99'),
    v('haproxy', 'cpsP99'),
    false,
    ratio(v(n, 'cpsP99'), v('haproxy', 'cpsP99')),
  );
  check(
    'latency p50 one at a time ≤ HAProxy',
    v(n, 'latP50'),
    v('haproxy', 'latP50'),
    false,
    ratio(v(n, 'latP50'), v('haproxy', 'latP50')),
  );
  check(
    'RSS with idle conns ≤ go-mmproxy',
    v(n, 'rssIdleConns'),
    v('go-mmproxy', 'rssIdleConns'),
    false,
    ratio(v(n, 'rssIdleConns'), v('go-mmproxy', 'rssIdleConns')),
  );
  return lines;
}

async function inside(): Promise<number> {
  // Many short connections in a few seconds: a wide ephemeral range, TIME_WAIT reuse on loopback.
  setUpNamespace([
    ['net/ipv4/ip_local_port_range', '1024 65000'],
    ['net/ipv4/tcp_tw_reuse', '1'],
    ['net/core/somaxconn', '65535'],
    ['net/ipv4/tcp_max_syn_backlog', '65535'],
  ]);
  const fdLimit = nofileLimit();
  // A proxied idle connection costs the generator 1 fd, the echo 1 and the proxy 2 sockets and, for
  // go-mmproxy (a pipe per blocked splice), 2 pipes too: 6 fds. Keep the count a round number that
  // fits the fd limit (raised to 262144 where prlimit is allowed, i.e. as root outside a container).
  idleCount = Math.max(
    0,
    Math.min(IDLE_CONNECTIONS, Math.floor((fdLimit - 1000) / 6 / 1000) * 1000),
  );
  const machine = announce(
    `${ROUNDS} rounds, contenders alternated; stream ${SECONDS} s (+0.5 s warm-up), conn/s ${SECONDS} s, latency ${LATENCY_SECONDS} s`,
  );

  const echo = await startEcho('loadgen', PORTS.echo, 'tcp');
  const contenders: Contender[] = pick(ALL, ONLY, PORTS);
  const samples: Samples = new Map();
  try {
    for (const c of contenders) {
      await startContender(c);
      if (c.skipped) console.log(`SKIPPED ${c.name}: ${c.skipped}`);
      else if (c.server) {
        await sleep(500);
        record(samples, c.name, 'rssIdle', memory(c.server.pid).rss);
        console.log(`${c.name}: pid ${c.server.pid}, ${c.version}`);
      }
    }
    const live = contenders.filter((c) => !c.skipped);
    for (let round = 0; round < ROUNDS; round++) {
      const order = roundOrder(live, round, ROUNDS);
      if (TESTS.has('stream')) for (const c of order) if (alive(c)) await streamRun(c, samples);
      if (TESTS.has('cps'))
        for (const c of order) if (alive(c)) await cpsRun(c, samples, CPS_CONCURRENCY, SECONDS);
      if (TESTS.has('latency'))
        for (const c of order) if (alive(c)) await cpsRun(c, samples, 1, LATENCY_SECONDS);
    }
    for (const c of live)
      if (c.server && alive(c)) record(samples, c.name, 'rssPeak', memory(c.server.pid).peak);
    if (!TESTS.has('idle')) {
      // skipped on request
    } else if (idleCount > 0) {
      console.log(`idle: ${idleCount} connections held open through each proxy`);
      for (const c of live) if (c.server && alive(c)) await idleRun(c, samples, idleCount);
    } else console.log(`idle test skipped: the fd limit (${fdLimit}) is too low`);
    if (idleCount < IDLE_CONNECTIONS)
      console.log(
        `(the fd limit ${fdLimit} allows ${idleCount} idle connections, not ${IDLE_CONNECTIONS})`,
      );
    for (const c of live) alive(c);
  } finally {
    for (const c of contenders) if (c.server) await stopServer(c.server);
    await stopServer(echo);
  }

  console.log('');
  console.log(table(contenders, samples));
  console.log(`N idle connections = ${idleCount}`);
  console.log('');
  printTargets(4, targets(samples), contenders);
  for (const c of contenders)
    if (c.died) console.log(`(${c.name} ${c.died}; its figures are partial)`);

  writeResults(
    'tcp-results.json',
    machine,
    {
      rounds: ROUNDS,
      seconds: SECONDS,
      contenders: contenders.map((c) => ({ name: c.name, version: c.version, skipped: c.skipped })),
    },
    samples,
  );
  return 0;
}

process.exitCode = await main({
  generator: 'loadgen',
  goMmproxy: ONLY.has('go-mmproxy'),
  // The 10,000-idle-connection test needs more fds than most defaults.
  nofile: NOFILE,
  inside,
});
