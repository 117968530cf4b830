// The UDP benchmark of issue 5: direct (no proxy, no header), mmproxy-native and go-mmproxy side by
// side in one run inside a private user + network namespace — datagrams per second delivered each
// way with 64 and with 10,000 clients, the proxy's CPU time per datagram, loss and reordering within
// a flow, and new flows per second — printed as one table of medians with ratios.
//
// The generator ("the load balancer") and the UDP echo upstream are bench/udpgen.c (compiled here
// with cc -O2), pinned to CPU 0; each proxy runs pinned to CPU 1 with one worker, started afresh for
// every run so that flows from one run never weigh on the next. Every run is bounded in time. Traffic
// goes only to 127.0.0.1 inside the namespace; the clients named in PROXY v2 headers come from the
// documentation ranges, which only exist there.
//
//   node dist/bench/udp.js [--rounds 3] [--seconds 3] [--window 128] [--clients 64,10000]
//                          [--new 15000] [--only direct,mmproxy-native,go-mmproxy]
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const INSIDE_ENV = 'MMPROXY_BENCH_INSIDE_NS';
const PORTS = { echo: 9000, 'mmproxy-native': 9001, 'go-mmproxy': 9002 } as const;
const GEN_CPU = '0';
const PROXY_CPU = '1';
// Flows live longer than any run: neither proxy expires one mid-run, so their different idle
// semantics (go-mmproxy closes after closeAfter..2×closeAfter, mmproxy-native within a second of
// closeAfter) do not enter the figures.
const CLOSE_AFTER_S = 60;
const MAX_FLOWS = 1_000_000;

type Name = 'direct' | 'mmproxy-native' | 'go-mmproxy';
const ALL: readonly Name[] = ['direct', 'mmproxy-native', 'go-mmproxy'];

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '3' },
    window: { type: 'string', default: '128' },
    clients: { type: 'string', default: '64,10000' },
    new: { type: 'string', default: '15000' },
    only: { type: 'string', default: ALL.join(',') },
  },
});
const ROUNDS = Math.max(1, Number(args.rounds));
const SECONDS = Number(args.seconds);
const WINDOW = Number(args.window);
const CLIENTS = args.clients
  .split(',')
  .map((s) => Number(s.trim()))
  .filter((n) => n > 0);
const NEW_FLOWS = Number(args.new);
const ONLY = new Set(args.only.split(',').map((s) => s.trim()));

/** The package root: the nearest directory above this file that holds package.json. */
function packageRoot(): string {
  for (let dir = HERE; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${HERE}`);
  }
}
const ROOT = packageRoot();
const SCRATCH = path.join(ROOT, 'build', 'bench');
const UDPGEN = path.join(SCRATCH, 'udpgen');

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
// Outside the namespace: compile the generator, find or install go-mmproxy, re-run inside.

function outside(): number {
  mkdirSync(SCRATCH, { recursive: true });
  const src = path.join(ROOT, 'bench', 'udpgen.c');
  execFileSync('cc', ['-O2', '-Wall', '-o', UDPGEN, src], { stdio: 'inherit' });

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
  const argv = [
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

function sh(command: string, argv: string[]): boolean {
  return spawnSync(command, argv, { stdio: ['ignore', 'inherit', 'inherit'] }).status === 0;
}

function setUpNamespace(): void {
  if (!sh('ip', ['link', 'set', 'lo', 'up'])) throw new Error('ip link set lo up failed');
  sh('ip', ['rule', 'add', 'from', '127.0.0.1/8', 'iif', 'lo', 'table', '123']);
  sh('ip', ['route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '123']);
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

/** CPU seconds (utime + stime) of a process, all its threads. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** Busy and total jiffies of one CPU, from /proc/stat (softirq work on that CPU included, niced work not). */
function cpuTimes(cpu: string): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`cpu${cpu} `));
  const f = (line ?? '').trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  // Idle, iowait and niced time: a niced background job (a fuzzer) yields to us, so it neither
  // counts as the proxy's core being busy nor delays a run.
  const idle = (f[3] ?? 0) + (f[4] ?? 0) + (f[1] ?? 0);
  return { busy: total - idle, total };
}

/** How busy a CPU is between start() and stop() (0..1). */
function cpuMeter(cpu: string): { start: () => void; stop: () => number } {
  let t0 = cpuTimes(cpu);
  return {
    start: () => void (t0 = cpuTimes(cpu)),
    stop: () => {
      const t1 = cpuTimes(cpu);
      return (t1.busy - t0.busy) / Math.max(1, t1.total - t0.total);
    },
  };
}

/**
 * Waits (up to 60 s) until both CPUs are nearly idle for half a second: other work on this machine
 * (another bench, a build) would otherwise be measured with us. Returns false if it never was.
 */
async function waitQuiet(): Promise<boolean> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const meters = [cpuMeter(GEN_CPU), cpuMeter(PROXY_CPU)];
    await sleep(500);
    const busy = Math.max(...meters.map((m) => m.stop()));
    if (busy < 0.1) return true;
    if (Date.now() > deadline) return false;
    await sleep(1000);
  }
}

/** Whether a UDP socket is bound to 127.0.0.1:port (read from /proc/net/udp). */
function boundUdp(port: number): boolean {
  const hex = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/udp', 'utf8')
    .split('\n')
    .some((l) => l.trim().split(/\s+/)[1] === hex);
}

interface Started {
  child: ChildProcess;
  pid: number;
  output: () => string;
}

/** Starts a long-running process pinned to `cpu`; resolves once UDP `port` is bound. */
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
  child.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-8000)));
  child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-8000)));
  const deadline = Date.now() + 15_000;
  while (!boundUdp(port)) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${command} exited (${child.exitCode ?? child.signalCode}): ${out.trim()}`);
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${command} did not bind UDP ${port} within 15 s: ${out.trim()}`);
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

type GenResult = Record<string, number>;

/** Runs the generator pinned to CPU 0 and returns its JSON line; `onMeasuring` runs when its
 * measured window starts, `onResult` when the line arrives. Killed if it outlives `timeoutMs`. */
async function generate(
  argv: string[],
  timeoutMs: number,
  hooks: { onMeasuring: () => void; onResult: () => void },
): Promise<GenResult> {
  const child = spawn('taskset', ['-c', GEN_CPU, UDPGEN, ...argv], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  let result: GenResult | null = null;
  for await (const line of createInterface({ input: child.stdout })) {
    if (line === 'measuring') hooks.onMeasuring();
    else if (line.startsWith('{')) {
      hooks.onResult();
      result = JSON.parse(line) as GenResult;
    }
  }
  const code = await exited;
  clearTimeout(timer);
  if (!result) throw new Error(`udpgen ${argv.join(' ')} failed (${code}): ${err.trim()}`);
  return result;
}

interface Contender {
  name: Name;
  port: number;
  header: boolean;
  version?: string;
  skipped?: string;
}

type Samples = Map<Name, Map<string, number[]>>;

function record(samples: Samples, name: Name, metric: string, value: number): void {
  let m = samples.get(name);
  if (!m) samples.set(name, (m = new Map()));
  let list = m.get(metric);
  if (!list) m.set(metric, (list = []));
  list.push(value);
}

let busyRuns = 0; // runs started while something else kept the CPUs busy
let nextClient = 0; // index of the next client a header names (never reused in one run)
function clientBase(count: number): string {
  const base = nextClient;
  nextClient += count + 1000;
  return String(base);
}

function debVersion(pkg: string): string {
  const r = spawnSync('dpkg-query', ['-W', '-f', '${Version}', pkg], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : '';
}

/** A fresh proxy process for one run (none for direct). */
async function startProxy(c: Contender): Promise<Started | undefined> {
  const echo = `127.0.0.1:${PORTS.echo}`;
  if (c.name === 'mmproxy-native') {
    const script = path.join(HERE, 'udp-proxy-server.js');
    if (!existsSync(script)) throw new Error(`${script} is missing: run npm run build`);
    return startServer(
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
        '--max-flows',
        String(MAX_FLOWS),
        '--close-after',
        String(CLOSE_AFTER_S),
      ],
      c.port,
    );
  }
  if (c.name === 'go-mmproxy') {
    if (!has('go-mmproxy'))
      throw new Error('go-mmproxy is not installed: apt-get install -y go-mmproxy');
    return startServer(
      PROXY_CPU,
      'go-mmproxy',
      [
        '-p',
        'udp',
        '-l',
        `127.0.0.1:${c.port}`,
        '-4',
        echo,
        '-6',
        `[::1]:${PORTS.echo}`,
        '-close-after',
        String(CLOSE_AFTER_S),
        '-v',
        '0',
      ],
      c.port,
    );
  }
  return undefined;
}

/** The counters mmproxy-native printed when it stopped ("stats {...}"), or null. */
function nativeStats(s: Started): { udp: Record<string, number> } | null {
  const line = s
    .output()
    .split('\n')
    .find((l) => l.startsWith('stats {'));
  try {
    return line ? (JSON.parse(line.slice(6)) as { udp: Record<string, number> }) : null;
  } catch {
    return null;
  }
}

type Phase = { kind: 'flows'; clients: number } | { kind: 'new'; count: number };

function phaseKey(p: Phase): string {
  return p.kind === 'flows' ? `c${p.clients}` : 'new';
}

/** One run: a fresh proxy, the generator, the proxy's CPU time over the measured window. */
async function run(c: Contender, phase: Phase, samples: Samples): Promise<void> {
  if (!(await waitQuiet())) {
    busyRuns++;
    console.log(
      `  (the CPUs were busy with other work before this run for 60 s: its figures are suspect)`,
    );
  }
  let server: Started | undefined;
  try {
    server = await startProxy(c);
  } catch (e) {
    c.skipped = (e as Error).message;
    console.log(`SKIPPED ${c.name}: ${c.skipped}`);
    return;
  }
  const pid = server?.pid;
  if (server) await sleep(300);
  let cpu0 = NaN;
  let cpu = NaN;
  const gen = cpuMeter(GEN_CPU);
  const proxyCore = cpuMeter(PROXY_CPU);
  let genBusy = NaN;
  let proxyBusy = NaN;
  const key = phaseKey(phase);
  const n = phase.kind === 'flows' ? phase.clients : phase.count;
  let r: GenResult;
  try {
    r = await generate(
      [
        phase.kind,
        String(c.port),
        String(PORTS.echo),
        String(n),
        String(SECONDS),
        c.header ? '1' : '0',
        clientBase(n),
        String(WINDOW),
      ],
      (SECONDS + 30) * 1000,
      {
        onMeasuring: () => {
          gen.start();
          proxyCore.start();
          if (pid !== undefined) cpu0 = cpuSeconds(pid);
        },
        onResult: () => {
          genBusy = gen.stop();
          proxyBusy = proxyCore.stop();
          if (pid !== undefined) cpu = cpuSeconds(pid) - cpu0;
        },
      },
    );
  } finally {
    if (server) {
      const alive = server.child.exitCode === null && server.child.signalCode === null;
      await stopServer(server);
      if (!alive) console.log(`WARNING ${c.name} died during the run: ${server.output().trim()}`);
    }
  }
  const stats = server && c.name === 'mmproxy-native' ? nativeStats(server) : null;
  const secs = r.seconds!;
  const sent = phase.kind === 'flows' ? r.sent! : r.sentTotal!;
  record(samples, c.name, `${key}:lossPct`, (100 * r.lost!) / Math.max(1, sent));
  record(samples, c.name, `${key}:reordered`, r.reordered!);
  record(samples, c.name, `${key}:genBusy`, genBusy);
  if (pid !== undefined) {
    record(samples, c.name, `${key}:proxyCores`, cpu / secs);
    record(samples, c.name, `${key}:cpu1Busy`, proxyBusy);
  }
  if (stats) {
    const u = stats.udp;
    record(
      samples,
      c.name,
      `${key}:proxyDrops`,
      (u.datagramsDropped ?? 0) + (u.flowTableFull ?? 0),
    );
  }
  let line: string;
  if (phase.kind === 'flows') {
    const up = r.upstream! / secs;
    const down = r.received! / secs;
    record(samples, c.name, `${key}:upPps`, up);
    record(samples, c.name, `${key}:downPps`, down);
    // Each direction's datagram counts once: the proxy reads and writes each one.
    if (pid !== undefined)
      record(samples, c.name, `${key}:cpuUsPerDgram`, (cpu / (r.upstream! + r.received!)) * 1e6);
    if (r.flowsAnswered! < n)
      console.log(`  ${c.name}: only ${r.flowsAnswered} of ${n} flows answered in the warm-up`);
    line = `↑ ${Math.round(up)}/s ↓ ${Math.round(down)}/s`;
  } else {
    // Flows established per second: the first (and only) datagram of each came back.
    const rate = r.received! / secs;
    record(samples, c.name, `${key}:flowsPerS`, rate);
    if (pid !== undefined)
      record(samples, c.name, `${key}:cpuUsPerFlow`, (cpu / Math.max(1, r.received!)) * 1e6);
    line = `${Math.round(rate)} new flows/s (${r.received}/${r.sentTotal} in ${secs.toFixed(2)} s)`;
  }
  console.log(
    `  ${key} ${c.name}: ${line}, lost ${r.lost}, late ${r.late}, reordered ${r.reordered}` +
      (pid !== undefined ? `, proxy CPU ${(cpu / secs).toFixed(2)} cores` : '') +
      (stats ? `, proxy drops ${stats.udp.datagramsDropped}` : ''),
  );
}

// ---------------------------------------------------------------------------------------------
// The table.

const fmt = (x: number, digits: number): string => (Number.isFinite(x) ? x.toFixed(digits) : '—');
const ratio = (a: number, b: number): string =>
  Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(2)}×` : '—';

interface Row {
  metric: string;
  label: string;
  digits: number;
  sum?: boolean; // total over runs instead of the median
}

function rows(newCount: number): Row[] {
  const out: Row[] = [];
  for (const n of CLIENTS) {
    const k = `c${n}`;
    out.push(
      {
        metric: `${k}:upPps`,
        label: `${n} clients: datagrams/s ↑ delivered to upstream`,
        digits: 0,
      },
      { metric: `${k}:downPps`, label: `${n} clients: datagrams/s ↓ delivered to LB`, digits: 0 },
      {
        metric: `${k}:cpuUsPerDgram`,
        label: '  proxy CPU µs per datagram (↑ and ↓ each count)',
        digits: 2,
      },
      { metric: `${k}:proxyCores`, label: '  proxy CPU use (cores, its process)', digits: 2 },
      {
        metric: `${k}:cpu1Busy`,
        label: `  CPU ${PROXY_CPU} busy (proxy's core, softirq included)`,
        digits: 2,
      },
      { metric: `${k}:genBusy`, label: `  CPU ${GEN_CPU} busy (generator + echo)`, digits: 2 },
      { metric: `${k}:lossPct`, label: '  lost % of sent', digits: 3 },
      {
        metric: `${k}:proxyDrops`,
        label: '  drops counted by the proxy (sum)',
        digits: 0,
        sum: true,
      },
      { metric: `${k}:reordered`, label: '  reordered within a flow (sum)', digits: 0, sum: true },
    );
  }
  if (newCount > 0)
    out.push(
      {
        metric: 'new:flowsPerS',
        label: `new flows/s (${newCount} new clients, 1 datagram each)`,
        digits: 0,
      },
      { metric: 'new:cpuUsPerFlow', label: '  proxy CPU µs per new flow', digits: 1 },
      { metric: 'new:genBusy', label: `  CPU ${GEN_CPU} busy (generator + echo)`, digits: 2 },
      { metric: 'new:lossPct', label: '  lost % of sent', digits: 3 },
      {
        metric: 'new:proxyDrops',
        label: '  drops counted by the proxy (sum)',
        digits: 0,
        sum: true,
      },
    );
  return out;
}

function value(samples: Samples, name: Name, row: Row): number {
  const list = samples.get(name)?.get(row.metric) ?? [];
  if (row.sum) return list.length ? list.reduce((a, b) => a + b, 0) : NaN;
  return median(list);
}

function table(contenders: Contender[], samples: Samples, newCount: number): string {
  const live = contenders.filter((c) => !c.skipped);
  const native = live.some((c) => c.name === 'mmproxy-native');
  const others = (['go-mmproxy', 'direct'] as const).filter((n) => live.some((c) => c.name === n));
  const head = [
    'metric (median of rounds)',
    ...live.map((c) => c.name),
    ...(native ? others.map((o) => `native ÷ ${o}`) : []),
  ];
  const lines = [
    `| ${head.join(' | ')} |`,
    `|${head.map((_, i) => (i ? '---:' : '---')).join('|')}|`,
  ];
  for (const row of rows(newCount)) {
    const cells = live.map((c) => fmt(value(samples, c.name, row), row.digits));
    const ratios = native
      ? others.map((o) =>
          row.sum ? '' : ratio(value(samples, 'mmproxy-native', row), value(samples, o, row)),
        )
      : [];
    lines.push(`| ${row.label} | ${[...cells, ...ratios].join(' | ')} |`);
  }
  return lines.join('\n');
}

function targets(samples: Samples): string[] {
  const v = (n: Name, metric: string): number => median(samples.get(n)?.get(metric) ?? []);
  const total = (n: Name, metric: string): number =>
    (samples.get(n)?.get(metric) ?? []).reduce((a, b) => a + b, 0);
  const out: string[] = [];
  const check = (label: string, got: number, want: number, higher: boolean, text: string): void => {
    if (!Number.isFinite(got) || !Number.isFinite(want))
      return void out.push(`- ${label}: not measured`);
    const ok = higher ? got >= want : got <= want;
    out.push(`- ${ok ? 'MET ' : 'MISS'} ${label}: ${text}`);
  };
  const n = 'mmproxy-native';
  for (const c of CLIENTS) {
    const k = `c${c}`;
    for (const [dir, m] of [
      ['↑', 'upPps'],
      ['↓', 'downPps'],
    ] as const)
      check(
        `${c} clients: datagrams/s ${dir} ≥ 0.95 × direct`,
        v(n, `${k}:${m}`),
        0.95 * v('direct', `${k}:${m}`),
        true,
        ratio(v(n, `${k}:${m}`), v('direct', `${k}:${m}`)),
      );
    check(
      `${c} clients: proxy CPU per datagram ≤ 0.5 × go-mmproxy`,
      v(n, `${k}:cpuUsPerDgram`),
      0.5 * v('go-mmproxy', `${k}:cpuUsPerDgram`),
      false,
      ratio(v(n, `${k}:cpuUsPerDgram`), v('go-mmproxy', `${k}:cpuUsPerDgram`)),
    );
  }
  const reordered =
    CLIENTS.reduce((s, c) => s + total(n, `c${c}:reordered`), 0) + total(n, 'new:reordered');
  const runs = samples.get(n)?.size ? reordered : NaN;
  check('no datagram reordered within a flow', runs, 0, false, `${reordered} reordered`);
  check(
    'new flows/s ≥ 2 × go-mmproxy',
    v(n, 'new:flowsPerS'),
    2 * v('go-mmproxy', 'new:flowsPerS'),
    true,
    ratio(v(n, 'new:flowsPerS'), v('go-mmproxy', 'new:flowsPerS')),
  );
  return out;
}

async function inside(): Promise<number> {
  setUpNamespace();
  // Each new flow holds a socket in the proxy until it expires: keep the new-flow phase within the
  // fd limit (a proxy out of fds would measure its error path).
  const fdLimit = nofileLimit();
  const newCount = Math.max(0, Math.min(NEW_FLOWS, Math.floor((fdLimit - 1500) / 1000) * 1000));
  for (const c of CLIENTS)
    if (c > fdLimit - 1500) throw new Error(`--clients ${c} does not fit the fd limit ${fdLimit}`);
  const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.availableParallelism()} CPUs, Linux ${os.release()}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`;
  console.log(`machine: ${machine}`);
  console.log(
    `runs: ${ROUNDS} rounds, contenders alternated, a fresh proxy per run; ${SECONDS} s measured per run, ` +
      `window ${WINDOW} datagrams in flight, 64-byte payloads (+28-byte v2 header through a proxy); ` +
      `generator + echo on CPU ${GEN_CPU}, proxy on CPU ${PROXY_CPU}`,
  );

  const echo = await startServer(GEN_CPU, UDPGEN, ['echo', String(PORTS.echo)], PORTS.echo);
  const contenders: Contender[] = ALL.filter((n) => ONLY.has(n)).map((name) => ({
    name,
    port: name === 'direct' ? PORTS.echo : PORTS[name],
    header: name !== 'direct',
  }));
  for (const c of contenders) {
    if (c.name === 'mmproxy-native') c.version = `node ${process.version}, workers: 1`;
    if (c.name === 'go-mmproxy') c.version = `Debian go-mmproxy ${debVersion('go-mmproxy')}`;
  }
  const phases: Phase[] = [
    ...CLIENTS.map((clients): Phase => ({ kind: 'flows', clients })),
    ...(newCount > 0 ? [{ kind: 'new', count: newCount } as Phase] : []),
  ];
  const samples: Samples = new Map();
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const live = contenders.filter((c) => !c.skipped);
      const order = live.map((_, i) => live[(i + round) % live.length]!);
      console.log(`round ${round + 1}/${ROUNDS}: ${order.map((c) => c.name).join(', ')}`);
      for (const phase of phases)
        for (const c of order) {
          // Direct has no flows to establish: the new-flow phase is for proxies only.
          if (phase.kind === 'new' && !c.header) continue;
          if (!c.skipped) await run(c, phase, samples);
        }
    }
  } finally {
    await stopServer(echo);
  }

  console.log('');
  for (const c of contenders) if (c.version) console.log(`${c.name}: ${c.version}`);
  console.log('');
  console.log(table(contenders, samples, newCount));
  console.log('');
  console.log('Targets (issue 5), mmproxy-native in this run:');
  for (const line of targets(samples)) console.log(line);
  for (const c of contenders) if (c.skipped) console.log(`(${c.name} skipped: ${c.skipped})`);
  if (busyRuns > 0) console.log(`(${busyRuns} runs started while other work kept the CPUs busy)`);
  if (newCount < NEW_FLOWS)
    console.log(`(the fd limit ${fdLimit} allows ${newCount} new flows per run, not ${NEW_FLOWS})`);

  const json = path.join(SCRATCH, 'udp-results.json');
  writeFileSync(
    json,
    JSON.stringify(
      {
        machine,
        date: new Date().toISOString(),
        rounds: ROUNDS,
        seconds: SECONDS,
        window: WINDOW,
        contenders,
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
