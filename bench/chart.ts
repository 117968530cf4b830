// Charts of the last TCP and UDP benchmark runs, for the README: reads the raw samples that
// `npm run bench:tcp` and `npm run bench:udp` leave in build/bench/{tcp,udp}-results.json (whichever
// exist) and draws, for each, grouped horizontal bars — one panel per metric, the contenders side by
// side with their medians written next to the bars — under a title naming the machine and the method.
// It writes docs/bench/{tcp,udp}.svg and converts them to PNG with rsvg-convert (Debian's
// librsvg2-bin, installed here when missing and running as root; otherwise the SVG is kept and the
// command to make the PNG is printed). Text is set in DejaVu Sans.
//
//   node dist/bench/chart.js [--tcp build/bench/tcp-results.json] [--udp build/bench/udp-results.json]
//                            [--out docs/bench]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** The package root: the nearest directory above this file that holds package.json. */
function packageRoot(): string {
  for (let dir = HERE; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${HERE}`);
  }
}
const ROOT = packageRoot();

const { values: args } = parseArgs({
  options: {
    tcp: { type: 'string', default: path.join(ROOT, 'build', 'bench', 'tcp-results.json') },
    udp: { type: 'string', default: path.join(ROOT, 'build', 'bench', 'udp-results.json') },
    out: { type: 'string', default: path.join(ROOT, 'docs', 'bench') },
  },
});

// The pinning both bench scripts use (GEN_CPU / PROXY_CPU there); a results file may name its own.
const GEN_CPU = '0';
const PROXY_CPU = '1';

// ---------------------------------------------------------------------------------------------
// The results files.

type Samples = Record<string, Record<string, (number | null)[]>>;

interface Results {
  machine?: string;
  date?: string;
  rounds?: number;
  seconds?: number;
  window?: number;
  node?: string;
  genCpu?: string | number;
  proxyCpu?: string | number;
  contenders: { name: string; version?: string; skipped?: string }[];
  samples: Samples;
}

function load(file: string): Results | undefined {
  if (!existsSync(file)) return undefined;
  const raw: unknown = JSON.parse(readFileSync(file, 'utf8'));
  if (typeof raw !== 'object' || raw === null) throw new Error(`${file}: not a JSON object`);
  const r = raw as Partial<Results>;
  const samples: Samples = typeof r.samples === 'object' && r.samples !== null ? r.samples : {};
  const contenders = Array.isArray(r.contenders)
    ? r.contenders.filter((c) => typeof c?.name === 'string')
    : Object.keys(samples).map((name) => ({ name }));
  return { ...r, contenders, samples };
}

function median(xs: readonly (number | null)[]): number {
  const v = xs
    .filter((x): x is number => typeof x === 'number' && Number.isFinite(x))
    .sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

// ---------------------------------------------------------------------------------------------
// What each chart shows.

interface Group {
  label?: string; // shown above the group's bars when a panel has several groups
  metric: string;
}

interface Panel {
  title: string; // with the unit in parentheses
  note: string; // second line: which way is better, what is counted
  digits: number;
  groups: Group[];
}

function tcpPanels(): Panel[] {
  return [
    {
      title: 'Stream throughput, 50 connections (Gbps)',
      note: 'higher is better · both directions added',
      digits: 2,
      groups: [{ metric: 'streamGbps' }],
    },
    {
      title: 'Stream throughput per proxy CPU-second (Gbps/CPU-s)',
      note: 'higher is better · proxy process CPU time, all threads',
      digits: 2,
      groups: [{ metric: 'gbpsPerCpu' }],
    },
    {
      title: 'Connections per second, 50 at once (conn/s)',
      note: 'higher is better · connect, header, echo, close',
      digits: 0,
      groups: [{ metric: 'cps' }],
    },
    {
      title: 'Latency p99, 50 connections at once (ms)',
      note: 'lower is better · socket() to close()',
      digits: 2,
      groups: [{ metric: 'cpsP99' }],
    },
    {
      title: 'Latency p50, one connection at a time (ms)',
      note: 'lower is better · socket() to close()',
      digits: 3,
      groups: [{ metric: 'latP50' }],
    },
    {
      title: 'Proxy CPU per connection (µs)',
      note: 'lower is better · user + system time of the proxy process',
      digits: 1,
      groups: [{ metric: 'cpuUsPerConn' }],
    },
    {
      title: 'RSS holding idle connections (MiB)',
      note: 'lower is better · freshly started proxy, N idle connections (N in the bench output)',
      digits: 1,
      groups: [{ metric: 'rssIdleConns' }],
    },
  ];
}

function udpPanels(r: Results): Panel[] {
  // The client counts of the run (--clients, 64 and 10,000 by default), from the metric names.
  const counts = new Set<number>();
  for (const m of Object.values(r.samples))
    for (const key of Object.keys(m)) {
      const match = /^c(\d+):downPps$/.exec(key);
      if (match) counts.add(Number(match[1]));
    }
  const clients = [...(counts.size ? counts : new Set([64, 10000]))].sort((a, b) => a - b);
  const n = (c: number): string => c.toLocaleString('en-US');
  return [
    ...clients.map((c): Panel => ({
      title: `Datagrams per second, ${n(c)} clients (datagrams/s)`,
      note: 'higher is better · echoed back to the load balancer (↓)',
      digits: 0,
      groups: [{ metric: `c${c}:downPps` }],
    })),
    {
      title: 'Proxy CPU per datagram (µs)',
      note: 'lower is better · each direction’s datagram counts once',
      digits: 2,
      groups: clients.map((c) => ({ label: `${n(c)} clients`, metric: `c${c}:cpuUsPerDgram` })),
    },
    {
      title: 'New flows per second (flows/s)',
      note: 'higher is better · one datagram per new client',
      digits: 0,
      groups: [{ metric: 'new:flowsPerS' }],
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// SVG.

const FONT = "'DejaVu Sans', sans-serif";
const WIDTH = 1000;
const MARGIN = 20;
const GUTTER = 24;
const COLUMNS = 2;
const COL_W = (WIDTH - 2 * MARGIN - GUTTER * (COLUMNS - 1)) / COLUMNS;
const NAME_W = 118; // contender names, left of the bars
const BAR_H = 18;
const ROW_H = 24;
const PAD = 12; // inside a panel
const GROUP_LABEL_H = 24; // a group's label above its bars

const COLORS: Record<string, string> = {
  'mmproxy-native': '#2563eb',
  'go-mmproxy': '#0f9d8a',
  haproxy: '#d97706',
  direct: '#9ca3af',
};
const SPARE_COLORS = ['#7c3aed', '#db2777', '#65a30d', '#0891b2'];

function colorOf(name: string, index: number): string {
  return COLORS[name] ?? SPARE_COLORS[index % SPARE_COLORS.length]!;
}

const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/**
 * An estimate of a DejaVu Sans string's width: its digits are 0.64 em wide, its text averages a
 * little under 0.56 em (bold: 0.62).
 */
function textWidth(s: string, size: number, bold = false): number {
  let em = 0;
  for (const ch of s) em += /[0-9]/.test(ch) ? 0.64 : bold ? 0.62 : 0.56;
  return em * size;
}

/** Greedy word wrap to `max` pixels. */
function wrap(text: string, size: number, max: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    const next = line ? `${line} ${word}` : word;
    if (line && textWidth(next, size) > max) {
      lines.push(line);
      line = word;
    } else line = next;
  }
  if (line) lines.push(line);
  return lines;
}

function text(
  x: number,
  y: number,
  s: string,
  size: number,
  opts: { fill?: string; weight?: string; anchor?: string; style?: string } = {},
): string {
  return (
    `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" font-size="${size}"` +
    (opts.weight ? ` font-weight="${opts.weight}"` : '') +
    (opts.anchor ? ` text-anchor="${opts.anchor}"` : '') +
    (opts.style ? ` font-style="${opts.style}"` : '') +
    ` fill="${opts.fill ?? '#111827'}">${esc(s)}</text>`
  );
}

function format(x: number, digits: number): string {
  return x.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

interface Row {
  name: string;
  color: string;
  value: number; // NaN: not measured
  why?: string; // why there is no value
}

/** The panel's rows, group by group; `direct` is left out where it has nothing (no proxy process). */
function rowsOf(r: Results, group: Group): Row[] {
  const rows: Row[] = [];
  r.contenders.forEach((c, i) => {
    const value = median(r.samples[c.name]?.[group.metric] ?? []);
    if (c.name === 'direct' && !Number.isFinite(value)) return;
    rows.push({
      name: c.name,
      color: colorOf(c.name, i),
      value,
      ...(Number.isFinite(value) ? {} : { why: c.skipped ? 'skipped' : 'not measured' }),
    });
  });
  return rows;
}

function panelHeight(r: Results, p: Panel): number {
  let h = PAD + 18 + 16 + 8;
  for (const g of p.groups) h += (g.label ? GROUP_LABEL_H : 0) + rowsOf(r, g).length * ROW_H + 4;
  return h + PAD - 4;
}

function drawPanel(r: Results, p: Panel, x: number, y: number, h: number): string {
  const out: string[] = [];
  out.push(
    `<rect x="${x}" y="${y}" width="${COL_W}" height="${h}" rx="6" fill="#f9fafb" stroke="#e5e7eb"/>`,
  );
  let cy = y + PAD + 14;
  out.push(text(x + PAD, cy, p.title, 14, { weight: 'bold' }));
  cy += 16;
  out.push(text(x + PAD, cy, p.note, 11, { fill: '#6b7280' }));
  cy += 10;

  const groups = p.groups.map((g) => ({ g, rows: rowsOf(r, g) }));
  const all = groups.flatMap((x) => x.rows);
  const max = Math.max(0, ...all.map((row) => row.value).filter(Number.isFinite));
  const labelW = Math.max(
    40,
    ...all.map((row) => textWidth(format(row.value, p.digits), 12, true)),
  );
  const x0 = x + PAD + NAME_W;
  const barMax = COL_W - 2 * PAD - NAME_W - labelW - 8;

  for (const { g, rows } of groups) {
    if (g.label) {
      out.push(text(x + PAD, cy + 16, g.label, 12, { fill: '#374151', weight: 'bold' }));
      cy += GROUP_LABEL_H;
    }
    cy += 4;
    const top = cy;
    for (const row of rows) {
      const mid = cy + BAR_H / 2 + 4; // text baseline, centred on the bar
      out.push(
        text(x0 - 8, mid, row.name, 12, {
          anchor: 'end',
          weight: row.name === 'mmproxy-native' ? 'bold' : 'normal',
        }),
      );
      if (Number.isFinite(row.value)) {
        const w = max > 0 ? Math.max(1, (row.value / max) * barMax) : 1;
        out.push(
          `<rect x="${x0}" y="${cy}" width="${w.toFixed(1)}" height="${BAR_H}" rx="2" fill="${row.color}"/>`,
        );
        out.push(
          text(x0 + w + 6, mid, format(row.value, p.digits), 12, {
            weight: row.name === 'mmproxy-native' ? 'bold' : 'normal',
          }),
        );
      } else out.push(text(x0 + 6, mid, row.why ?? '', 12, { fill: '#9ca3af', style: 'italic' }));
      cy += ROW_H;
    }
    // The zero line.
    out.push(
      `<line x1="${x0}" y1="${top - 2}" x2="${x0}" y2="${cy - ROW_H + BAR_H + 2}" stroke="#6b7280" stroke-width="1"/>`,
    );
  }
  return out.join('\n');
}

/** "AMD EPYC, 2 CPUs, Linux 6.18.44, 24 GiB" as the bench scripts write it, with the Node version. */
function machineLine(r: Results): string {
  const node =
    r.node ??
    r.contenders.map((c) => /\bnode (v[\d.]+)/.exec(c.version ?? '')?.[1]).find(Boolean) ??
    'not recorded';
  const m = /^(.*), (\d+) CPUs?, Linux (\S+), (\d+) GiB$/.exec(r.machine ?? '');
  const machine = m
    ? `${m[1]} · ${m[2]} cores · Linux ${m[3]} · ${m[4]} GiB RAM`
    : (r.machine ?? 'machine not recorded');
  const date = r.date ? `${r.date.slice(0, 10)} ${r.date.slice(11, 16)} UTC` : 'date not recorded';
  return `Machine: ${machine} · Node ${node} · run ${date}`;
}

function methodLine(kind: 'tcp' | 'udp', r: Results): string {
  const gen = String(r.genCpu ?? GEN_CPU);
  const proxy = String(r.proxyCpu ?? PROXY_CPU);
  const rounds = r.rounds ?? NaN;
  const roundText = Number.isFinite(rounds)
    ? `${rounds} round${rounds === 1 ? '' : 's'}, contenders alternated, bars show the median of rounds`
    : 'bars show the median of rounds';
  const secs = r.seconds !== undefined ? `, ${r.seconds} s per run` : '';
  const proxyText =
    kind === 'tcp'
      ? `each proxy (all its threads) to CPU ${proxy}, one relay thread`
      : `each proxy (all its threads) to CPU ${proxy}, one worker, restarted for every run`;
  const window = kind === 'udp' && r.window !== undefined ? `; window ${r.window} per flow` : '';
  return (
    `Method: private network namespace, loopback; generator + echo pinned to CPU ${gen}, ${proxyText}; ` +
    `${roundText}${secs}${window}.`
  );
}

/** Peer versions, shortened: "go-mmproxy 2.1-1+b6 (Debian) · haproxy 2.6.12-1+deb12u4". */
function versionsLine(r: Results): string {
  const parts: string[] = [];
  for (const c of r.contenders) {
    if (c.name === 'direct') {
      parts.push('direct = no proxy');
      continue;
    }
    if (c.skipped) {
      parts.push(`${c.name} skipped`);
      continue;
    }
    const v = c.version ?? '';
    if (c.name === 'mmproxy-native') {
      const workers = /workers: (\d+)/.exec(v)?.[1];
      parts.push(
        `mmproxy-native${workers ? ` (${workers} worker${workers === '1' ? '' : 's'})` : ''}`,
      );
      continue;
    }
    const ver = /\d+\.\d+[\w.+~:-]*/.exec(v)?.[0];
    parts.push(`${c.name}${ver ? ` ${ver}` : ''}${/debian/i.test(v) ? ' (Debian)' : ''}`);
  }
  return `Contenders: ${parts.join(' · ')}`;
}

function render(kind: 'tcp' | 'udp', r: Results, source: string): string {
  const panels = kind === 'tcp' ? tcpPanels() : udpPanels(r);
  const body: string[] = [];
  const inner = WIDTH - 2 * MARGIN;
  let y = MARGIN + 22;
  const title =
    kind === 'tcp'
      ? 'mmproxy-native TCP benchmark: PROXY v1 in, transparent connection out'
      : 'mmproxy-native UDP benchmark: PROXY v2 datagrams in, transparent flows out';
  body.push(text(MARGIN, y, title, 20, { weight: 'bold' }));
  y += 8;
  for (const [line, size, fill] of [
    [machineLine(r), 13, '#111827'],
    [methodLine(kind, r), 13, '#111827'],
    [versionsLine(r), 12, '#4b5563'],
  ] as const)
    for (const l of wrap(line, size, inner)) {
      y += size + 6;
      body.push(text(MARGIN, y, l, size, { fill }));
    }
  y += 16;

  for (let i = 0; i < panels.length; i += COLUMNS) {
    const row = panels.slice(i, i + COLUMNS);
    const h = Math.max(...row.map((p) => panelHeight(r, p)));
    row.forEach((p, j) => body.push(drawPanel(r, p, MARGIN + j * (COL_W + GUTTER), y, h)));
    y += h + GUTTER / 2 + 4;
  }
  y += 6;
  body.push(
    text(MARGIN, y, `Raw samples: ${source}; drawn by bench/chart.ts.`, 11, { fill: '#6b7280' }),
  );
  const height = Math.ceil(y + MARGIN - 6);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="${FONT}">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// PNG.

function has(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

const isRoot = process.getuid?.() === 0;

function aptInstall(pkg: string): boolean {
  if (!isRoot || !has('apt-get')) return false;
  console.log(`installing ${pkg} (apt-get install -y ${pkg})`);
  const r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', pkg], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  return r.status === 0;
}

function dejavuInstalled(): boolean {
  if (existsSync('/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf')) return true;
  const r = spawnSync('fc-list', [':family=DejaVu Sans'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() !== '';
}

/** rsvg-convert, installed when missing and allowed; false when there is none. */
function converter(): boolean {
  if (!dejavuInstalled() && !aptInstall('fonts-dejavu-core'))
    console.log(
      'DejaVu Sans is not installed (fonts-dejavu-core): the PNG falls back to sans-serif',
    );
  if (has('rsvg-convert')) return true;
  return aptInstall('librsvg2-bin') && has('rsvg-convert');
}

function main(): number {
  const jobs = (['tcp', 'udp'] as const)
    .map((kind) => ({ kind, file: kind === 'tcp' ? args.tcp : args.udp }))
    .map((j) => ({ ...j, results: load(j.file) }));
  const found = jobs.filter((j) => j.results);
  if (found.length === 0) {
    console.error(
      `no results: neither ${args.tcp} nor ${args.udp} exists; run npm run bench:tcp or npm run bench:udp first`,
    );
    return 1;
  }
  for (const j of jobs) if (!j.results) console.log(`${j.file} not found: no ${j.kind} chart`);

  mkdirSync(args.out, { recursive: true });
  const svgs: string[] = [];
  for (const j of found) {
    const svg = path.join(args.out, `${j.kind}.svg`);
    const source = path.relative(ROOT, j.file).startsWith('..')
      ? j.file
      : path.relative(ROOT, j.file);
    writeFileSync(svg, render(j.kind, j.results!, source));
    console.log(`wrote ${path.relative(process.cwd(), svg)}`);
    svgs.push(svg);
  }

  if (!converter()) {
    console.log(
      'rsvg-convert not found (Debian/Ubuntu: apt-get install librsvg2-bin, as root): SVGs kept; for the PNGs run',
    );
    for (const svg of svgs)
      console.log(`  rsvg-convert --zoom 1.5 -o ${svg.replace(/\.svg$/, '.png')} ${svg}`);
    return 0;
  }
  for (const svg of svgs) {
    const png = svg.replace(/\.svg$/, '.png');
    // 1.5 times the SVG's size: sharp text on high-density screens, a PNG of a few hundred KiB.
    const r = spawnSync('rsvg-convert', ['--zoom', '1.5', '-o', png, svg], { encoding: 'utf8' });
    if (r.status !== 0) {
      console.error(`rsvg-convert failed on ${svg}: ${r.stderr.trim()}`);
      return 1;
    }
    console.log(`wrote ${path.relative(process.cwd(), png)}`);
  }
  return 0;
}

process.exitCode = main();
