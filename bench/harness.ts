// What bench/tcp.ts and bench/udp.ts share: re-running in a private user + network namespace, the
// pinning of generator and proxy, starting and stopping the contenders (mmproxy-native through
// bench/proxy-server.ts, go-mmproxy), reading /proc, and the table of medians with ratios.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
const INSIDE_ENV = 'MMPROXY_BENCH_INSIDE_NS';
/** The generator and the echo upstream run on this CPU, each proxy on the other. */
export const GEN_CPU = '0';
export const PROXY_CPU = '1';
export const NATIVE = 'mmproxy-native';
export const NATIVE_VERSION = `node ${process.version}, workers: 1`;

/** The package root: the nearest directory above this file that holds package.json. */
function packageRoot(): string {
  for (let dir = HERE; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${HERE}`);
  }
}
export const ROOT = packageRoot();
export const SCRATCH = path.join(ROOT, 'build', 'bench');

export function has(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

// ---------------------------------------------------------------------------------------------
// Outside the namespace: compile the generator, find or install go-mmproxy, re-run inside.

/**
 * Runs `inside` when this process is already in the bench's namespace; otherwise compiles
 * bench/<generator>.c into build/bench/<generator>, installs go-mmproxy if wanted (as root), and
 * re-runs this script inside a private user + network namespace (with the fd limit raised to
 * `nofile` through prlimit where allowed). Returns the exit code.
 */
export async function main(opts: {
  generator: string;
  goMmproxy: boolean;
  nofile?: number;
  inside: () => Promise<number>;
}): Promise<number> {
  if (process.env[INSIDE_ENV] === '1') return opts.inside();
  mkdirSync(SCRATCH, { recursive: true });
  const src = path.join(ROOT, 'bench', `${opts.generator}.c`);
  execFileSync('cc', ['-O2', '-Wall', '-o', generatorPath(opts.generator), src], {
    stdio: 'inherit',
  });

  if (opts.goMmproxy && !has('go-mmproxy')) {
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
  // Only root can raise the hard limit.
  const raise = opts.nofile ? ['prlimit', `--nofile=${opts.nofile}:${opts.nofile}`, '--'] : [];
  const wrap =
    raise.length > 0 &&
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
    ...process.argv.slice(1),
  ];
  const r = spawnSync(argv[0]!, argv.slice(1), {
    stdio: 'inherit',
    env: { ...process.env, [INSIDE_ENV]: '1' },
  });
  return r.status ?? 1;
}

export function generatorPath(generator: string): string {
  return path.join(SCRATCH, generator);
}

// ---------------------------------------------------------------------------------------------
// Inside the namespace.

function sh(command: string, argv: string[]): boolean {
  return spawnSync(command, argv, { stdio: ['ignore', 'inherit', 'inherit'] }).status === 0;
}

/** Brings lo up, adds the routing rules of DESIGN.md, and writes the given /proc/sys settings where allowed. */
export function setUpNamespace(sysctls: readonly (readonly [string, string])[] = []): void {
  if (!sh('ip', ['link', 'set', 'lo', 'up'])) throw new Error('ip link set lo up failed');
  sh('ip', ['rule', 'add', 'from', '127.0.0.1/8', 'iif', 'lo', 'table', '123']);
  sh('ip', ['route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '123']);
  for (const [key, value] of sysctls) {
    try {
      writeFileSync(`/proc/sys/${key}`, value);
    } catch {
      // Not writable here: the defaults only make the runs noisier.
    }
  }
}

/** The fd limit this process (and what it starts) has. */
export function nofileLimit(): number {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'));
  const hard = line?.trim().split(/\s+/)[4];
  return hard === 'unlimited' ? Infinity : Number(hard ?? 1024);
}

/** CPU model, CPU count, kernel and memory of this machine, for the report. */
export function describeMachine(): string {
  return `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.availableParallelism()} CPUs, Linux ${os.release()}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`;
}

/** Prints the machine and how the runs go (`runs`, then where generator and proxy run); returns the machine. */
export function announce(runs: string): string {
  const machine = describeMachine();
  console.log(`machine: ${machine}`);
  console.log(`runs: ${runs}; generator + echo on CPU ${GEN_CPU}, proxy on CPU ${PROXY_CPU}`);
  return machine;
}

// ---------------------------------------------------------------------------------------------
// /proc.

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** CPU time of a process, all its threads, in seconds: user, system, and their sum. */
export function cpuTime(pid: number): { user: number; sys: number; total: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const user = Number(fields[11]) / CLK_TCK;
  const sys = Number(fields[12]) / CLK_TCK;
  return { user, sys, total: user + sys };
}

/** CPU seconds (utime + stime) of a process, all its threads. */
export function cpuSeconds(pid: number): number {
  return cpuTime(pid).total;
}

/** Context switches (voluntary + not) of all of a process's threads: how often it slept and woke. */
export function contextSwitches(pid: number): number {
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

/** VmRSS and VmHWM (peak) of a process, in MiB. */
export function memory(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string): number =>
    Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 };
}

/**
 * Busy and total jiffies of one CPU, from /proc/stat (softirq work on that CPU included). Niced
 * time counts as busy unless `niceIsIdle`: then a niced background job (a fuzzer), which yields to
 * the bench, neither counts as the core being busy nor delays a run.
 */
function cpuTimes(cpu: string, niceIsIdle: boolean): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`cpu${cpu} `));
  const f = (line ?? '').trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0) + (niceIsIdle ? (f[1] ?? 0) : 0); // idle + iowait (+ nice)
  return { busy: total - idle, total };
}

/** How busy a CPU is between start() and stop() (0..1). */
export function cpuMeter(
  cpu: string,
  niceIsIdle = false,
): { start: () => void; stop: () => number } {
  let t0 = cpuTimes(cpu, niceIsIdle);
  return {
    start: () => void (t0 = cpuTimes(cpu, niceIsIdle)),
    stop: () => {
      const t1 = cpuTimes(cpu, niceIsIdle);
      return (t1.busy - t0.busy) / Math.max(1, t1.total - t0.total);
    },
  };
}

/** Whether something listens on TCP 127.0.0.1:port (read from /proc/net/tcp, without connecting). */
function tcpListening(port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .some((l) => {
      const f = l.trim().split(/\s+/);
      return f[1]?.endsWith(`:${hex}`) && f[3] === '0A';
    });
}

/** Whether a UDP socket is bound to 127.0.0.1:port (read from /proc/net/udp). */
function udpBound(port: number): boolean {
  const hex = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/udp', 'utf8')
    .split('\n')
    .some((l) => l.trim().split(/\s+/)[1] === hex);
}

// ---------------------------------------------------------------------------------------------
// Processes.

export type Protocol = 'tcp' | 'udp';

export interface Started {
  child: ChildProcess;
  pid: number;
  output: () => string;
}

/** Starts a long-running process pinned to `cpu`; resolves once TCP `port` listens (UDP: is bound). */
export async function startServer(
  cpu: string,
  command: string,
  argv: string[],
  port: number,
  protocol: Protocol,
): Promise<Started> {
  const child = spawn('taskset', ['-c', cpu, command, ...argv], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-8000)));
  child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-8000)));
  const ready = protocol === 'udp' ? udpBound : tcpListening;
  const deadline = Date.now() + 15_000;
  while (!ready(port)) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${command} exited (${child.exitCode ?? child.signalCode}): ${out.trim()}`);
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      const what = protocol === 'udp' ? `bind UDP ${port}` : `listen on ${port}`;
      throw new Error(`${command} did not ${what} within 15 s: ${out.trim()}`);
    }
    await sleep(50);
  }
  return { child, pid: child.pid!, output: () => out };
}

export async function stopServer(s: Started): Promise<void> {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  s.child.kill('SIGTERM');
  const timer = setTimeout(() => s.child.kill('SIGKILL'), 3000);
  await new Promise((resolve) => s.child.once('exit', resolve));
  clearTimeout(timer);
}

/** The generator's echo upstream on 127.0.0.1:port, pinned to the generator CPU. */
export function startEcho(generator: string, port: number, protocol: Protocol): Promise<Started> {
  return startServer(GEN_CPU, generatorPath(generator), ['echo', String(port)], port, protocol);
}

/**
 * mmproxy-native (bench/proxy-server.ts, one worker) pinned to the proxy CPU, listening on
 * 127.0.0.1:port in front of the echo on 127.0.0.1:echoPort ([::1] for IPv6); `extra` flags follow.
 */
export function startNative(
  protocol: Protocol,
  port: number,
  echoPort: number,
  extra: string[] = [],
): Promise<Started> {
  const script = path.join(HERE, 'proxy-server.js');
  if (!existsSync(script)) throw new Error(`${script} is missing: run npm run build`);
  return startServer(
    PROXY_CPU,
    process.execPath,
    [
      script,
      ...(protocol === 'udp' ? ['--protocol', 'udp'] : []),
      '--listen',
      `127.0.0.1:${port}`,
      '--target4',
      `127.0.0.1:${echoPort}`,
      '--target6',
      `[::1]:${echoPort}`,
      '--workers',
      '1',
      ...extra,
    ],
    port,
    protocol,
  );
}

/** go-mmproxy (the Debian package), as startNative; `extra` flags come before `-v 0`. */
export function startGoMmproxy(
  protocol: Protocol,
  port: number,
  echoPort: number,
  extra: string[] = [],
): Promise<Started> {
  if (!has('go-mmproxy'))
    throw new Error('go-mmproxy is not installed: apt-get install -y go-mmproxy');
  return startServer(
    PROXY_CPU,
    'go-mmproxy',
    [
      ...(protocol === 'udp' ? ['-p', 'udp'] : []),
      '-l',
      `127.0.0.1:${port}`,
      '-4',
      `127.0.0.1:${echoPort}`,
      '-6',
      `[::1]:${echoPort}`,
      ...extra,
      '-v',
      '0',
    ],
    port,
    protocol,
  );
}

export type GenResult = Record<string, number>;

/**
 * Runs build/bench/<generator> pinned to the generator CPU and returns its JSON line. `onMeasuring`
 * runs when the measured window starts; `onResult` when the JSON line arrives, before the generator
 * is told to stop (its stdin ends). Killed if it outlives `timeoutMs`.
 */
export async function generate(
  generator: string,
  argv: string[],
  timeoutMs: number,
  hooks: { onMeasuring?: () => void; onResult?: (r: GenResult) => void | Promise<void> } = {},
): Promise<GenResult> {
  const child = spawn('taskset', ['-c', GEN_CPU, generatorPath(generator), ...argv], {
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
  if (!result) throw new Error(`${generator} ${argv.join(' ')} failed (${code}): ${err.trim()}`);
  return result;
}

export function versionOf(command: string, argv: string[]): string {
  const r = spawnSync(command, argv, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0]?.trim() ?? '';
}

export function debVersion(pkg: string): string {
  const r = spawnSync('dpkg-query', ['-W', '-f', '${Version}', pkg], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : '';
}

// ---------------------------------------------------------------------------------------------
// Contenders, rounds and samples.

export interface Contender<N extends string> {
  name: N;
  port: number;
  header: boolean; // a PROXY header before the payload (all but direct)
  version?: string;
  skipped?: string;
}

/** The contenders of `all` named in `only`; direct talks to the echo itself, without a header. */
export function contenders<N extends string>(
  all: readonly N[],
  only: Set<string>,
  ports: Record<Exclude<N, 'direct'> | 'echo', number>,
): Contender<N>[] {
  return all
    .filter((n) => only.has(n))
    .map((name) => ({
      name,
      port: name === 'direct' ? ports.echo : ports[name as Exclude<N, 'direct'>],
      header: name !== 'direct',
    }));
}

/** This round's order (contenders alternated), announced. */
export function roundOrder<C extends { name: string }>(
  live: C[],
  round: number,
  rounds: number,
): C[] {
  const order = live.map((_, i) => live[(i + round) % live.length]!);
  console.log(`round ${round + 1}/${rounds}: ${order.map((c) => c.name).join(', ')}`);
  return order;
}

export type Samples<N extends string, M extends string = string> = Map<N, Map<M, number[]>>;

export function record<N extends string, M extends string>(
  samples: Samples<N, M>,
  name: N,
  metric: M,
  value: number,
): void {
  let m = samples.get(name);
  if (!m) samples.set(name, (m = new Map()));
  let list = m.get(metric);
  if (!list) m.set(metric, (list = []));
  list.push(value);
}

let nextClient = 0; // index of the next client a header names (never reused in one run)
/** The first of `count` client numbers (as the generator's BASE) that no run before has named. */
export function clientBase(count: number): string {
  const base = nextClient;
  nextClient += count + 1000;
  return String(base);
}

// ---------------------------------------------------------------------------------------------
// The report.

export const fmt = (x: number, digits: number): string =>
  Number.isFinite(x) ? x.toFixed(digits) : '—';
export const ratio = (a: number, b: number): string =>
  Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(2)}×` : '—';

/**
 * The markdown table: a row per `rows`, a column per live contender, then mmproxy-native ÷ each of
 * `others` that ran (left empty on rows where `ratioed` says no).
 */
export function table<N extends string, R extends { label: string; digits: number }>(
  contenders: Contender<N>[],
  others: readonly N[],
  rows: R[],
  value: (name: N, row: R) => number,
  ratioed: (row: R) => boolean,
): string {
  const live = contenders.filter((c) => !c.skipped);
  const native = live.some((c) => c.name === NATIVE);
  const shown = others.filter((n) => live.some((c) => c.name === n));
  const head = [
    'metric (median of rounds)',
    ...live.map((c) => c.name),
    ...(native ? shown.map((o) => `native ÷ ${o}`) : []),
  ];
  const lines = [
    `| ${head.join(' | ')} |`,
    `|${head.map((_, i) => (i ? '---:' : '---')).join('|')}|`,
  ];
  for (const row of rows) {
    const cells = live.map((c) => fmt(value(c.name, row), row.digits));
    const ratios = native
      ? shown.map((o) => (ratioed(row) ? ratio(value(NATIVE as N, row), value(o, row)) : ''))
      : [];
    lines.push(`| ${row.label} | ${[...cells, ...ratios].join(' | ')} |`);
  }
  return lines.join('\n');
}

/** Collects "MET"/"MISS" lines: `check` compares `got` with `want` and prints `text` with the verdict. */
export function targetChecks(): {
  check: (label: string, got: number, want: number, higherIsBetter: boolean, text: string) => void;
  lines: string[];
} {
  const lines: string[] = [];
  const check = (
    label: string,
    got: number,
    want: number,
    higherIsBetter: boolean,
    text: string,
  ): void => {
    if (!Number.isFinite(got) || !Number.isFinite(want))
      return void lines.push(`- ${label}: not measured`);
    const ok = higherIsBetter ? got >= want : got <= want;
    lines.push(`- ${ok ? 'MET ' : 'MISS'} ${label}: ${text}`);
  };
  return { check, lines };
}

/** Prints the verdicts on the issue's targets and which contenders were skipped. */
export function printTargets<N extends string>(
  issue: number,
  lines: string[],
  contenders: Contender<N>[],
): void {
  console.log(`Targets (issue ${issue}), mmproxy-native in this run:`);
  for (const line of lines) console.log(line);
  for (const c of contenders) if (c.skipped) console.log(`(${c.name} skipped: ${c.skipped})`);
}

/** Writes the raw samples (after the machine, the date and `meta`) to build/bench/<file>; says where. */
export function writeResults<N extends string, M extends string>(
  file: string,
  machine: string,
  meta: Record<string, unknown>,
  samples: Samples<N, M>,
): void {
  const json = path.join(SCRATCH, file);
  const all = Object.fromEntries([...samples].map(([n, m]) => [n, Object.fromEntries(m)]));
  const results = { machine, date: new Date().toISOString(), ...meta, samples: all };
  writeFileSync(json, JSON.stringify(results, null, 1));
  console.log(`\nraw samples: ${path.relative(process.cwd(), json)}`);
}
