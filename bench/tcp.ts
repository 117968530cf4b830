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
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const INSIDE_ENV = 'MMPROXY_BENCH_INSIDE_NS';
const PORTS = { echo: 9000, 'mmproxy-native': 9001, 'go-mmproxy': 9002, haproxy: 9003 } as const;
const GEN_CPU = '0';
const PROXY_CPU = '1';
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

/** The package root: the nearest directory above this file that holds package.json. */
function packageRoot(): string {
  for (let dir = HERE; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${HERE}`);
  }
}
const ROOT = packageRoot();
const SCRATCH = path.join(ROOT, 'build', 'bench');
const LOADGEN = path.join(SCRATCH, 'loadgen');

function has(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

// ---------------------------------------------------------------------------------------------
// Outside the namespace: compile the generator, find or install the peers, re-run inside.

function outside(): number {
  mkdirSync(SCRATCH, { recursive: true });
  const src = path.join(ROOT, 'bench', 'loadgen.c');
  execFileSync('cc', ['-O2', '-Wall', '-o', LOADGEN, src], { stdio: 'inherit' });

  if (ONLY.has('go-mmproxy') && !has('go-mmproxy')) {
    if (process.getuid?.() === 0 && has('apt-get')) {
      console.log('go-mmproxy is missing: installing it (apt-get install -y go-mmproxy)…');
      spawnSync('apt-get', ['install', '-y', '-qq', 'go-mmproxy'], {
        stdio: 'inherit',
        timeout: 300_000,
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      });
    }
  }
  for (const cmd of ['unshare', 'ip', 'taskset']) {
    if (!has(cmd)) {
      console.error(`${cmd} is missing (util-linux / iproute2); the bench needs it`);
      return 1;
    }
  }
  if (os.availableParallelism() < 2) {
    console.error('the bench pins the generator and the proxy to two different CPUs: it needs 2');
    return 1;
  }
  // The 10,000-idle-connection test needs more fds than most defaults; only root can raise the hard limit.
  const raise = ['prlimit', `--nofile=${NOFILE}:${NOFILE}`, '--'];
  const wrap =
    spawnSync(raise[0]!, [...raise.slice(1), 'true'], { stdio: 'ignore' }).status === 0
      ? raise
      : [];
  const argv = [
    ...wrap,
    'unshare',
    '--user',
    '--map-root-user',
    '--net',
    '--',
    process.execPath,
    fileURLToPath(import.meta.url),
    ...process.argv.slice(2),
  ];
  const r = spawnSync(argv[0]!, argv.slice(1), {
    stdio: 'inherit',
    env: { ...process.env, [INSIDE_ENV]: '1' },
  });
  return r.status ?? 1;
}

// ---------------------------------------------------------------------------------------------
// Inside the namespace.

function sh(command: string, args: string[], quiet = false): boolean {
  const r = spawnSync(command, args, {
    stdio: quiet ? 'ignore' : ['ignore', 'inherit', 'inherit'],
  });
  return r.status === 0;
}

function setUpNamespace(): void {
  if (!sh('ip', ['link', 'set', 'lo', 'up'])) throw new Error('ip link set lo up failed');
  sh('ip', ['rule', 'add', 'from', '127.0.0.1/8', 'iif', 'lo', 'table', '123']);
  sh('ip', ['route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '123']);
  // Many short connections in a few seconds: a wide ephemeral range, TIME_WAIT reuse on loopback.
  for (const [key, value] of [
    ['net/ipv4/ip_local_port_range', '1024 65000'],
    ['net/ipv4/tcp_tw_reuse', '1'],
    ['net/core/somaxconn', '65535'],
    ['net/ipv4/tcp_max_syn_backlog', '65535'],
  ] as const) {
    try {
      writeFileSync(`/proc/sys/${key}`, value);
    } catch {
      // Not writable here: the defaults only make the connection tests noisier.
    }
  }
}

/** The fd limit this process (and what it starts) has. */
function nofileLimit(): number {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'));
  const hard = line?.trim().split(/\s+/)[4];
  return hard === 'unlimited' ? Infinity : Number(hard ?? 1024);
}

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** CPU time of a process, all its threads, in seconds: user, system, and their sum. */
function cpuTime(pid: number): { user: number; sys: number; total: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const user = Number(fields[11]) / CLK_TCK;
  const sys = Number(fields[12]) / CLK_TCK;
  return { user, sys, total: user + sys };
}

function cpuSeconds(pid: number): number {
  return cpuTime(pid).total;
}

/** Context switches (voluntary + not) of all of a process's threads: how often it slept and woke. */
function contextSwitches(pid: number): number {
  let sum = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      for (const m of status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)/gm))
        sum += Number(m[1]);
    } catch {
      // The thread ended meanwhile.
    }
  }
  return sum;
}

/** TCP segments sent in this namespace so far (all sockets, ACKs included), from /proc/net/snmp. */
function tcpOutSegments(): number {
  const lines = readFileSync('/proc/net/snmp', 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('Tcp:'));
  const names = lines[0]?.split(/\s+/) ?? [];
  const values = lines[1]?.split(/\s+/) ?? [];
  return Number(values[names.indexOf('OutSegs')]);
}

/** Busy and total jiffies of one CPU, from /proc/stat. */
function cpuTimes(cpu: string): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`cpu${cpu} `));
  const f = (line ?? '').trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0); // idle + iowait
  return { busy: total - idle, total };
}

/** How busy the generator's CPU is between start() and the returned function's call (0..1). */
function genCpuMeter(): { start: () => void; stop: () => number } {
  let t0 = cpuTimes(GEN_CPU);
  return {
    start: () => void (t0 = cpuTimes(GEN_CPU)),
    stop: () => {
      const t1 = cpuTimes(GEN_CPU);
      return (t1.busy - t0.busy) / Math.max(1, t1.total - t0.total);
    },
  };
}

/** VmRSS and VmHWM (peak) of a process, in MiB. */
function memory(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string): number =>
    Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 };
}

/** Whether something listens on 127.0.0.1:port (read from /proc/net/tcp, without connecting). */
function listening(port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .some((l) => {
      const f = l.trim().split(/\s+/);
      return f[1]?.endsWith(`:${hex}`) && f[3] === '0A';
    });
}

interface Started {
  child: ChildProcess;
  pid: number;
  output: () => string;
}

/** Starts a long-running process pinned to `cpu`; resolves once `port` is listening. */
async function startServer(
  cpu: string,
  command: string,
  argv: string[],
  port: number,
): Promise<Started> {
  const child = spawn('taskset', ['-c', cpu, command, ...argv], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
  child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
  const deadline = Date.now() + 15_000;
  while (!listening(port)) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${command} exited (${child.exitCode ?? child.signalCode}): ${out.trim()}`);
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${command} did not listen on ${port} within 15 s: ${out.trim()}`);
    }
    await sleep(50);
  }
  return { child, pid: child.pid!, output: () => out };
}

async function stopServer(s: Started): Promise<void> {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  s.child.kill('SIGTERM');
  const timer = setTimeout(() => s.child.kill('SIGKILL'), 3000);
  await new Promise((resolve) => s.child.once('exit', resolve));
  clearTimeout(timer);
}

interface GenResult {
  [key: string]: number | string;
}

/**
 * Runs the load generator pinned to CPU 0 and returns its JSON line. `onMeasuring` runs when the
 * measured window starts; `onLine` when the JSON line arrives (before the generator is told to stop).
 * Killed if it outlives `timeoutMs`.
 */
async function generate(
  argv: string[],
  timeoutMs: number,
  hooks: { onMeasuring?: () => void; onResult?: (r: GenResult) => Promise<void> } = {},
): Promise<GenResult> {
  const child = spawn('taskset', ['-c', GEN_CPU, LOADGEN, ...argv], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  let result: GenResult | null = null;
  for await (const line of createInterface({ input: child.stdout })) {
    if (line === 'measuring') hooks.onMeasuring?.();
    else if (line.startsWith('{')) {
      result = JSON.parse(line) as GenResult;
      await hooks.onResult?.(result);
      child.stdin.end();
    }
  }
  child.stdin.destroy();
  const code = await exited;
  clearTimeout(timer);
  if (!result) throw new Error(`loadgen ${argv.join(' ')} failed (${code}): ${err.trim()}`);
  return result;
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

interface Contender {
  name: Name;
  port: number;
  header: boolean;
  server?: Started;
  version?: string;
  skipped?: string;
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

type Samples = Map<Name, Map<Metric, number[]>>;

function record(samples: Samples, name: Name, metric: Metric, value: number): void {
  let m = samples.get(name);
  if (!m) samples.set(name, (m = new Map()));
  let list = m.get(metric);
  if (!list) m.set(metric, (list = []));
  list.push(value);
}

let nextClient = 0; // index of the next client 4-tuple a header names (never reused in one run)
function clientBase(count: number): string {
  const base = nextClient;
  nextClient += count + 1000;
  return String(base);
}

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
  const gen = genCpuMeter();
  const r = await generate(
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
  const gen = genCpuMeter();
  // Never more than ~40k connections a second here: reserve that many client 4-tuples.
  const r = await generate(
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

function versionOf(command: string, argv: string[]): string {
  const r = spawnSync(command, argv, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0]?.trim() ?? '';
}

function debVersion(pkg: string): string {
  const r = spawnSync('dpkg-query', ['-W', '-f', '${Version}', pkg], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : '';
}

async function startContender(c: Contender): Promise<void> {
  const echo = `127.0.0.1:${PORTS.echo}`;
  try {
    if (c.name === 'mmproxy-native') {
      const script = path.join(HERE, 'proxy-server.js');
      if (!existsSync(script)) throw new Error(`${script} is missing: run npm run build`);
      c.server = await startServer(
        PROXY_CPU,
        process.execPath,
        [
          script,
          '--listen',
          `127.0.0.1:${c.port}`,
          '--target4',
          echo,
          '--target6',
          `[::1]:${PORTS.echo}`,
          '--workers',
          '1',
        ],
        c.port,
      );
      c.version = `node ${process.version}, workers: 1`;
    } else if (c.name === 'go-mmproxy') {
      if (!has('go-mmproxy'))
        throw new Error('go-mmproxy is not installed: apt-get install -y go-mmproxy');
      c.server = await startServer(
        PROXY_CPU,
        'go-mmproxy',
        ['-l', `127.0.0.1:${c.port}`, '-4', echo, '-6', `[::1]:${PORTS.echo}`, '-v', '0'],
        c.port,
      );
      c.version = `Debian go-mmproxy ${debVersion('go-mmproxy')}`;
    } else if (c.name === 'haproxy') {
      if (!has('haproxy')) throw new Error('HAProxy is not installed: apt-get install -y haproxy');
      c.server = await startServer(PROXY_CPU, 'haproxy', ['-db', '-f', haproxyConfig()], c.port);
      c.version = `${versionOf('haproxy', ['-v']).replace(/ - https.*/, '')}, nbthread 1, splice-auto`;
    }
  } catch (e) {
    c.skipped = (e as Error).message;
  }
}

// ---------------------------------------------------------------------------------------------
// The table.

const fmt = (x: number, digits: number): string => (Number.isFinite(x) ? x.toFixed(digits) : '—');
const ratio = (a: number, b: number): string =>
  Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(2)}×` : '—';

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
  const live = contenders.filter((c) => !c.skipped);
  const value = (name: Name, metric: Metric): number => {
    const list = samples.get(name)?.get(metric) ?? [];
    if (metric === 'errors') return list.length ? list.reduce((a, b) => a + b, 0) : NaN;
    if (metric === 'rssLoad' || metric === 'rssPeak') return list.length ? Math.max(...list) : NaN;
    return median(list);
  };
  const native = live.some((c) => c.name === 'mmproxy-native');
  const others: Name[] = (['go-mmproxy', 'direct', 'haproxy'] as const).filter((n) =>
    live.some((c) => c.name === n),
  );
  const head = [
    'metric (median of rounds)',
    ...live.map((c) => c.name),
    ...(native ? others.map((o) => `native ÷ ${o}`) : []),
  ];
  const lines = [
    `| ${head.join(' | ')} |`,
    `|${head.map((_, i) => (i ? '---:' : '---')).join('|')}|`,
  ];
  for (const row of ROWS) {
    const cells = live.map((c) => fmt(value(c.name, row.metric), row.digits));
    const ratios = native
      ? others.map((o) =>
          row.metric === 'errors'
            ? ''
            : ratio(value('mmproxy-native', row.metric), value(o, row.metric)),
        )
      : [];
    lines.push(`| ${row.label} | ${[...cells, ...ratios].join(' | ')} |`);
  }
  return lines.join('\n');
}

function targets(samples: Samples): string[] {
  const v = (n: Name, m: Metric): number => median(samples.get(n)?.get(m) ?? []);
  const out: string[] = [];
  const check = (
    label: string,
    got: number,
    want: number,
    higherIsBetter: boolean,
    ratioText: string,
  ): void => {
    if (!Number.isFinite(got) || !Number.isFinite(want))
      return void out.push(`- ${label}: not measured`);
    const ok = higherIsBetter ? got >= want : got <= want;
    out.push(`- ${ok ? 'MET ' : 'MISS'} ${label}: ${ratioText}`);
  };
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
  return out;
}

async function inside(): Promise<number> {
  setUpNamespace();
  const fdLimit = nofileLimit();
  // A proxied idle connection costs the generator 1 fd, the echo 1 and the proxy 2 sockets and, for
  // go-mmproxy (a pipe per blocked splice), 2 pipes too: 6 fds. Keep the count a round number that
  // fits the fd limit (raised to 262144 where prlimit is allowed, i.e. as root outside a container).
  idleCount = Math.max(
    0,
    Math.min(IDLE_CONNECTIONS, Math.floor((fdLimit - 1000) / 6 / 1000) * 1000),
  );
  const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.availableParallelism()} CPUs, Linux ${os.release()}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`;
  console.log(`machine: ${machine}`);
  console.log(
    `runs: ${ROUNDS} rounds, contenders alternated; stream ${SECONDS} s (+0.5 s warm-up), conn/s ${SECONDS} s, latency ${LATENCY_SECONDS} s; ` +
      `generator + echo on CPU ${GEN_CPU}, proxy on CPU ${PROXY_CPU}`,
  );

  const echo = await startServer(GEN_CPU, LOADGEN, ['echo', String(PORTS.echo)], PORTS.echo);
  const contenders: Contender[] = ALL.filter((n) => ONLY.has(n)).map((name) => ({
    name,
    port: name === 'direct' ? PORTS.echo : PORTS[name],
    header: name !== 'direct',
  }));
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
      const order = live.map((_, i) => live[(i + round) % live.length]!);
      console.log(`round ${round + 1}/${ROUNDS}: ${order.map((c) => c.name).join(', ')}`);
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
  console.log('Targets (issue 4), mmproxy-native in this run:');
  for (const line of targets(samples)) console.log(line);
  for (const c of contenders) if (c.skipped) console.log(`(${c.name} skipped: ${c.skipped})`);
  for (const c of contenders)
    if (c.died) console.log(`(${c.name} ${c.died}; its figures are partial)`);

  const json = path.join(SCRATCH, 'tcp-results.json');
  writeFileSync(
    json,
    JSON.stringify(
      {
        machine,
        date: new Date().toISOString(),
        rounds: ROUNDS,
        seconds: SECONDS,
        contenders: contenders.map((c) => ({
          name: c.name,
          version: c.version,
          skipped: c.skipped,
        })),
        samples: Object.fromEntries([...samples].map(([n, m]) => [n, Object.fromEntries(m)])),
      },
      null,
      1,
    ),
  );
  console.log(`\nraw samples: ${path.relative(process.cwd(), json)}`);
  return 0;
}

process.exitCode = process.env[INSIDE_ENV] === '1' ? await inside() : outside();
