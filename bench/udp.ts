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
//                          [--new 45000] [--only direct,mmproxy-native,go-mmproxy,c-relay]
import { parseArgs } from 'node:util';
import {
  announce,
  clientBase,
  type Contender,
  contenders as pick,
  cpuMeter,
  cpuSeconds,
  debVersion,
  GEN_CPU,
  generate,
  generatorPath,
  type GenResult,
  main,
  median,
  NATIVE_VERSION,
  nofileLimit,
  printTargets,
  PROXY_CPU,
  ratio,
  record,
  roundOrder,
  type Samples as SamplesOf,
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
  writeResults,
} from './harness.js';

const PORTS = { echo: 9000, 'mmproxy-native': 9001, 'go-mmproxy': 9002, 'c-relay': 9003 } as const;
// Flows live longer than any run: neither proxy expires one mid-run, so their different idle
// semantics (go-mmproxy closes after closeAfter..2×closeAfter, mmproxy-native within a second of
// closeAfter) do not enter the figures.
const CLOSE_AFTER_S = 60;
const MAX_FLOWS = 1_000_000;

// c-relay: `udpgen relay`, the least a PROXY-protocol UDP proxy can do (one socket per client, no
// spoofing, no decisions, one thread), as a reference for what any proxy costs on this machine.
type Name = 'direct' | 'mmproxy-native' | 'go-mmproxy' | 'c-relay';
const ALL: readonly Name[] = ['direct', 'mmproxy-native', 'go-mmproxy', 'c-relay'];

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '3' },
    window: { type: 'string', default: '128' },
    clients: { type: 'string', default: '64,10000' },
    new: { type: 'string', default: '45000' },
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

// Niced time counts as idle here: a niced background job (a fuzzer) yields to us, so it neither
// counts as the proxy's core being busy nor delays a run.
const NICE_IS_IDLE = true;

/**
 * Waits (up to 60 s) until both CPUs are nearly idle for half a second: other work on this machine
 * (another bench, a build) would otherwise be measured with us. Returns false if it never was.
 */
async function waitQuiet(): Promise<boolean> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const meters = [cpuMeter(GEN_CPU, NICE_IS_IDLE), cpuMeter(PROXY_CPU, NICE_IS_IDLE)];
    await sleep(500);
    const busy = Math.max(...meters.map((m) => m.stop()));
    if (busy < 0.1) return true;
    if (Date.now() > deadline) return false;
    await sleep(1000);
  }
}

type Samples = SamplesOf<Name>;

let busyRuns = 0; // runs started while something else kept the CPUs busy

/** A fresh proxy process for one run (none for direct). */
async function startProxy(c: Contender<Name>): Promise<Started | undefined> {
  if (c.name === 'mmproxy-native')
    return startNative('udp', c.port, PORTS.echo, [
      '--max-flows',
      String(MAX_FLOWS),
      '--close-after',
      String(CLOSE_AFTER_S),
    ]);
  if (c.name === 'go-mmproxy')
    return startGoMmproxy('udp', c.port, PORTS.echo, ['-close-after', String(CLOSE_AFTER_S)]);
  if (c.name === 'c-relay')
    return startServer(
      PROXY_CPU,
      generatorPath('udpgen'),
      ['relay', String(c.port), String(PORTS.echo)],
      c.port,
      'udp',
    );
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
async function run(c: Contender<Name>, phase: Phase, samples: Samples): Promise<void> {
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
  const gen = cpuMeter(GEN_CPU, NICE_IS_IDLE);
  const proxyCore = cpuMeter(PROXY_CPU, NICE_IS_IDLE);
  let genBusy = NaN;
  let proxyBusy = NaN;
  const key = phaseKey(phase);
  const n = phase.kind === 'flows' ? phase.clients : phase.count;
  let r: GenResult;
  try {
    r = await generate(
      'udpgen',
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
    // What the generator's core spends per datagram: the same generator and echo cost more
    // behind a proxy (their datagrams go to and come from another core, and the echo answers
    // one socket per flow instead of one socket in all).
    record(
      samples,
      c.name,
      `${key}:genUsPerDgram`,
      ((genBusy * secs) / (r.upstream! + r.received!)) * 1e6,
    );
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
      {
        metric: `${k}:genUsPerDgram`,
        label: `  CPU ${GEN_CPU} µs per datagram (generator + echo, ↑ and ↓ each count)`,
        digits: 2,
      },
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

function table(contenders: Contender<Name>[], samples: Samples, newCount: number): string {
  return markdownTable(
    contenders,
    ['go-mmproxy', 'direct'],
    rows(newCount),
    (name, row) => value(samples, name, row),
    (row) => !row.sum,
  );
}

function targets(samples: Samples): string[] {
  const v = (n: Name, metric: string): number => median(samples.get(n)?.get(metric) ?? []);
  const total = (n: Name, metric: string): number =>
    (samples.get(n)?.get(metric) ?? []).reduce((a, b) => a + b, 0);
  const { check, lines } = targetChecks();
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
  return lines;
}

async function inside(): Promise<number> {
  setUpNamespace();
  // Each new flow holds a socket in the proxy until it expires: keep the new-flow phase within the
  // fd limit (a proxy out of fds would measure its error path).
  const fdLimit = nofileLimit();
  const newCount = Math.max(0, Math.min(NEW_FLOWS, Math.floor((fdLimit - 1500) / 1000) * 1000));
  for (const c of CLIENTS)
    if (c > fdLimit - 1500) throw new Error(`--clients ${c} does not fit the fd limit ${fdLimit}`);
  const machine = announce(
    `${ROUNDS} rounds, contenders alternated, a fresh proxy per run; ${SECONDS} s measured per run, ` +
      `window ${WINDOW} datagrams in flight, 64-byte payloads (+28-byte v2 header through a proxy)`,
  );

  const echo = await startEcho('udpgen', PORTS.echo, 'udp');
  const contenders = pick(ALL, ONLY, PORTS);
  for (const c of contenders) {
    if (c.name === 'mmproxy-native') c.version = NATIVE_VERSION;
    if (c.name === 'go-mmproxy') c.version = `Debian go-mmproxy ${debVersion('go-mmproxy')}`;
    if (c.name === 'c-relay')
      c.version = 'bench/udpgen.c relay (reference: no spoofing, no decisions)';
  }
  const phases: Phase[] = [
    ...CLIENTS.map((clients): Phase => ({ kind: 'flows', clients })),
    ...(newCount > 0 ? [{ kind: 'new', count: newCount } as Phase] : []),
  ];
  const samples: Samples = new Map();
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const live = contenders.filter((c) => !c.skipped);
      const order = roundOrder(live, round, ROUNDS);
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
  printTargets(5, targets(samples), contenders);
  if (busyRuns > 0) console.log(`(${busyRuns} runs started while other work kept the CPUs busy)`);
  if (newCount < NEW_FLOWS)
    console.log(`(the fd limit ${fdLimit} allows ${newCount} new flows per run, not ${NEW_FLOWS})`);

  writeResults(
    'udp-results.json',
    machine,
    {
      rounds: ROUNDS,
      seconds: SECONDS,
      window: WINDOW,
      contenders,
    },
    samples,
  );
  return 0;
}

process.exitCode = await main({
  generator: 'udpgen',
  goMmproxy: ONLY.has('go-mmproxy'),
  // Every new flow holds a socket until it expires: room for a new-flow phase long enough (a
  // few seconds) that start-up and a moment's noise on the machine do not decide its figure.
  nofile: 262144,
  inside,
});
