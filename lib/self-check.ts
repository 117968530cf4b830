// The start-up checks of `mmproxy check` (after cloudflare/mmproxy's): may this process create
// transparent sockets, do replies to client addresses come back to this host, does the target
// accept a connection plainly and from a spoofed documentation address. Each item says OK, FAIL
// (with the exact commands that fix it) or SKIP. It runs `ip` and makes test connections; it
// never changes the system and never logs: callers print the items.
import { execFile } from 'node:child_process';
import { isIPv4, isIPv6 } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { ResolveError } from './errors.js';
import { loadNative, type NativeAddon } from './native.js';
import { parseEndpointText } from './options.js';
import type { Endpoint } from './proxy-types.js';
import { resolveHost } from './resolve.js';

export type CheckStatus = 'ok' | 'fail' | 'skip';

export interface CheckItem {
  /** Stable id: `transparent-ipv4`, `routing-ipv6`, `target-ipv4`, `spoofed-ipv6`. */
  id: string;
  /** What was checked, for people. */
  title: string;
  status: CheckStatus;
  /** What was found. */
  detail: string;
  /** Commands (or settings) that fix a FAIL, one a line. */
  fix: string[];
}

export interface IpResult {
  /** Exit status; -1 when `ip` could not be run at all. */
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the `ip` command (iproute2). Injectable so tests can feed recorded output. */
export type IpRunner = (args: readonly string[]) => Promise<IpResult>;

export interface SelfCheckOptions {
  /** "127.0.0.1:443"-style strings or endpoints; an omitted family is not checked. */
  target4?: string | Endpoint;
  target6?: string | Endpoint;
  protocol?: 'tcp' | 'udp';
  /** SO_MARK for the test connections, as the proxy's upstream connections carry it. */
  mark?: number;
  /** The routing table the fix commands name (default 123). */
  table?: number;
  /** Per test connection (default 2000 ms). */
  timeoutMs?: number;
  /** Defaults to the real `ip`. */
  ip?: IpRunner;
  /** Defaults to the loaded addon. */
  native?: Pick<NativeAddon, 'probeTransparent' | 'connectFrom'>;
}

/** The made-up client addresses the checks connect from (RFC 5737 and RFC 3849). */
export const SPOOF_SOURCES = { 4: '192.0.2.1', 6: '2001:db8::1' } as const;

export interface RouteCommand {
  /** Arguments to `ip` that add the entry. */
  add: string[];
  /** Arguments to `ip` that delete exactly that entry. */
  del: string[];
  /** The add command as a person types it. */
  text: string;
}

/**
 * The policy-routing entries that bring replies from `target` to client addresses back to this
 * host's transparent sockets: DESIGN.md's rules for a loopback target, the same for the target's
 * own address otherwise.
 */
export function routingCommands(family: 4 | 6, table: number, target?: string): RouteCommand[] {
  const from =
    family === 4
      ? target === undefined || target.startsWith('127.')
        ? '127.0.0.1/8'
        : `${target}/32`
      : target === undefined || target === '::1'
        ? '::1/128'
        : `${target}/128`;
  const fam = family === 6 ? ['-6'] : [];
  const t = String(table);
  const rule = ['from', from, 'iif', 'lo', 'table', t];
  const route = ['local', family === 4 ? '0.0.0.0/0' : '::/0', 'dev', 'lo', 'table', t];
  return [
    {
      add: [...fam, 'rule', 'add', ...rule],
      del: [...fam, 'rule', 'del', ...rule],
      text: ['ip', ...fam, 'rule', 'add', ...rule].join(' '),
    },
    {
      add: [...fam, 'route', 'add', ...route],
      del: [...fam, 'route', 'del', ...route],
      text: ['ip', ...fam, 'route', 'add', ...route].join(' '),
    },
  ];
}

/** One line of `ip rule show`, split into its selectors. */
export interface RuleLine {
  priority: number;
  not: boolean;
  from: string;
  iif?: string;
  oif?: string;
  to?: string;
  fwmark?: string;
  /** The table looked up: "123", "main"… (undefined for actions like `blackhole`). */
  lookup?: string;
  /** Tokens this parser does not know, kept so that a rule with them is not mistaken for ours. */
  other: string[];
}

const VALUED = new Set([
  'from',
  'to',
  'iif',
  'oif',
  'fwmark',
  'lookup',
  'table',
  'tos',
  'dsfield',
  'pref',
  'priority',
  'realms',
  'goto',
  'uidrange',
  'ipproto',
  'sport',
  'dport',
  'suppress_prefixlength',
  'suppress_ifgroup',
  'protocol',
  'proto',
  'l3mdev',
]);

/** Parses `ip rule show` / `ip -6 rule show` text (every iproute2 version prints this format). */
export function parseRules(text: string): RuleLine[] {
  const rules: RuleLine[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(\d+):\s+(.*)$/.exec(line);
    if (!m) continue;
    const tokens = m[2]!.trim().split(/\s+/);
    const rule: RuleLine = { priority: Number(m[1]), not: false, from: 'all', other: [] };
    for (let i = 0; i < tokens.length; i++) {
      const tok = tokens[i]!;
      if (tok === 'not') rule.not = true;
      else if (tok === '[detached]' || tok === 'l3mdev') rule.other.push(tok);
      else if (VALUED.has(tok) && i + 1 < tokens.length) {
        const value = tokens[++i]!;
        if (tok === 'from') rule.from = value;
        else if (tok === 'to') rule.to = value;
        else if (tok === 'iif') rule.iif = value;
        else if (tok === 'oif') rule.oif = value;
        else if (tok === 'fwmark') rule.fwmark = value;
        else if (tok === 'lookup' || tok === 'table') rule.lookup = value;
        else rule.other.push(tok, value);
      } else rule.other.push(tok);
    }
    rules.push(rule);
  }
  return rules;
}

/** Whether `ip route show table N` output has a `local default dev lo` (any family) entry. */
export function hasLocalDefaultRoute(text: string): boolean {
  return text.split('\n').some((line) => {
    const t = line.trim().split(/\s+/);
    return (
      t[0] === 'local' &&
      (t[1] === 'default' || t[1] === '0.0.0.0/0' || t[1] === '::/0') &&
      t.includes('dev') &&
      t[t.indexOf('dev') + 1] === 'lo'
    );
  });
}

/** Whether a rule is exactly `from PREFIX iif lo lookup TABLE` (how routingCommands adds it). */
export function isOurRule(rule: RuleLine, from: string, table: number): boolean {
  return (
    !rule.not &&
    sameCidr(rule.from, from) &&
    rule.iif === 'lo' &&
    rule.lookup === String(table) &&
    rule.to === undefined &&
    rule.oif === undefined &&
    rule.fwmark === undefined &&
    rule.other.length === 0
  );
}

// `ip rule` prints a host prefix without its length: 127.0.0.1/32 as 127.0.0.1, ::1/128 as ::1.
function sameCidr(shown: string, cidr: string): boolean {
  const strip = (s: string): string => s.replace(/\/(32|128)$/, '');
  return strip(shown).toLowerCase() === strip(cidr).toLowerCase();
}

/** Runs the real `ip`, trying /usr/sbin and /sbin when PATH lacks them (common for non-root). */
export const runIp: IpRunner = async (args) => {
  for (const bin of ['ip', '/usr/sbin/ip', '/sbin/ip']) {
    const r = await new Promise<IpResult | null>((resolve) => {
      execFile(bin, args, { timeout: 5000, encoding: 'utf8' }, (err, stdout, stderr) => {
        if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') return resolve(null);
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr: stderr || (err && code === -1 ? err.message : '') });
      });
    });
    if (r) return r;
  }
  return { code: -1, stdout: '', stderr: 'the ip command (iproute2) is not installed' };
};

/**
 * A target as the proxy's options take it, a name resolved as the proxy resolves it; the item
 * that says what is wrong otherwise, and one that says what a name resolved to.
 */
async function targetOf(
  family: 4 | 6,
  t: string | Endpoint,
  timeoutMs: number,
): Promise<{ target: Endpoint | null; item: CheckItem | null }> {
  const name = `IPv${family}`;
  const flag = family === 4 ? '-4' : '-6';
  if (typeof t !== 'string') return { target: t, item: null };
  const checked = parseEndpointText(family === 4 ? 'target4' : 'target6', t);
  if (checked.problem !== undefined) {
    return {
      target: null,
      item: {
        id: `target-ipv${family}`,
        title: `${name} target`,
        status: 'fail',
        detail: `${JSON.stringify(t)} is not an ${name} address or host name and port: ${checked.problem}`,
        fix: [family === 4 ? '-4 127.0.0.1:443' : '-6 [::1]:443'],
      },
    };
  }
  const e = checked.endpoint;
  if (!('host' in e)) return { target: { address: e.address, port: e.port }, item: null };
  try {
    const r = await resolveHost(`target${family}`, e.host, family, { timeoutMs });
    return {
      target: { address: r.address, port: e.port },
      item: {
        id: `name-ipv${family}`,
        title: `${name} target name ${e.host}`,
        status: 'ok',
        detail: `resolves to ${r.addresses.join(', ')}; the proxy uses ${r.address}`,
        fix: [],
      },
    };
  } catch (err) {
    if (!(err instanceof ResolveError)) throw err;
    return {
      target: null,
      item: {
        id: `name-ipv${family}`,
        title: `${name} target name ${e.host}`,
        status: 'fail',
        detail: `cannot resolve ${JSON.stringify(e.host)} to an ${name} address: ${err.reason}`,
        fix: [
          `add the name to /etc/hosts or DNS, or give an address: ${flag} ${family === 4 ? '127.0.0.1:443' : '[::1]:443'}`,
        ],
      },
    };
  }
}

function errnoName(errno: number | undefined): string {
  if (errno === undefined) return 'an unknown error';
  try {
    return getSystemErrorName(-Math.abs(errno));
  } catch {
    return `errno ${errno}`;
  }
}

const CAPABILITY_FIX = [
  'run as root, or with CAP_NET_ADMIN (systemd: AmbientCapabilities=CAP_NET_ADMIN)',
  'setcap cap_net_admin+ep "$(readlink -f "$(command -v node)")"',
];

/** Runs every check for the families given; never throws for a failing check. */
export async function selfCheck(opts: SelfCheckOptions = {}): Promise<CheckItem[]> {
  const ip = opts.ip ?? runIp;
  const table = opts.table ?? 123;
  const timeoutMs = opts.timeoutMs ?? 2000;
  const mark = opts.mark ?? 0;
  const protocol = opts.protocol ?? 'tcp';
  let native: Pick<NativeAddon, 'probeTransparent' | 'connectFrom'> | null = null;
  let nativeError: Error | null = null;
  try {
    native = opts.native ?? loadNative();
  } catch (err) {
    nativeError = err as Error;
  }
  const items: CheckItem[] = [];
  for (const family of [4, 6] as const) {
    const raw = family === 4 ? opts.target4 : opts.target6;
    if (raw === undefined) continue;
    const name = `IPv${family}`;
    const { target, item } = await targetOf(family, raw, timeoutMs);
    if (item) items.push(item);
    if (!target) continue;
    if (!(family === 4 ? isIPv4(target.address) : isIPv6(target.address))) {
      items.push({
        id: `target-ipv${family}`,
        title: `${name} target`,
        status: 'fail',
        detail: `${JSON.stringify(raw)} is not an ${name} address and port`,
        fix: [family === 4 ? '-4 127.0.0.1:443' : '-6 [::1]:443'],
      });
      continue;
    }
    const where =
      family === 4 ? `${target.address}:${target.port}` : `[${target.address}]:${target.port}`;

    // 1. Permission: IP_TRANSPARENT needs CAP_NET_ADMIN or CAP_NET_RAW.
    let transparentOk = false;
    let familyDisabled = false;
    if (!native) {
      items.push({
        id: `transparent-ipv${family}`,
        title: `transparent ${name} sockets`,
        status: 'fail',
        detail: nativeError?.message ?? 'the native addon is unavailable',
        fix: ['npm rebuild mmproxy-native'],
      });
    } else {
      const probe = native.probeTransparent(family);
      transparentOk = probe.ok;
      familyDisabled = !probe.ok && errnoName(probe.errno) === 'EAFNOSUPPORT';
      items.push({
        id: `transparent-ipv${family}`,
        title: `transparent ${name} sockets`,
        status: probe.ok ? 'ok' : familyDisabled ? 'skip' : 'fail',
        detail: probe.ok
          ? 'this process may set IP_TRANSPARENT'
          : familyDisabled
            ? `${name} is disabled on this host`
            : `${probe.syscall ?? 'setsockopt(IP_TRANSPARENT)'} failed: ${errnoName(probe.errno)}`,
        fix: probe.ok || familyDisabled ? [] : CAPABILITY_FIX,
      });
    }
    if (familyDisabled) continue;

    // 2. Routing: a reply from the target to a client address must be delivered locally.
    const { item: routing, remoteVia } = await checkRouting(ip, family, target.address, table);
    items.push(routing);

    // 3 and 4. The target, plainly and from a spoofed client (TCP only: UDP has no handshake).
    if (protocol === 'udp') {
      items.push({
        id: `target-ipv${family}`,
        title: `${name} target ${where}`,
        status: 'skip',
        detail: 'UDP has no handshake to test; send a datagram through the proxy instead',
        fix: [],
      });
      continue;
    }
    if (!native) continue;
    const plain = await native.connectFrom(null, target, mark, timeoutMs);
    items.push({
      id: `target-ipv${family}`,
      title: `${name} target ${where} accepts connections`,
      status: plain.ok ? 'ok' : 'fail',
      detail: plain.ok
        ? 'connected'
        : `${plain.syscall ?? 'connect'} failed: ${errnoName(plain.errno)}`,
      fix: plain.ok
        ? []
        : [
            `start the application on ${where}, or point ${family === 4 ? '-4' : '-6'} at the address it listens on`,
          ],
    });
    const source = { address: SPOOF_SOURCES[family], port: 0 };
    const spoofed = await native.connectFrom(source, target, mark, timeoutMs);
    let fix: string[] = [];
    if (!spoofed.ok) {
      const code = errnoName(spoofed.errno);
      if (code === 'EPERM' || code === 'EACCES' || !transparentOk) fix = CAPABILITY_FIX;
      else if (code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') {
        fix =
          remoteVia !== null
            ? remoteBackendCommands(family, table, mark || 123, remoteVia).concat(
                mark === 0 ? ['and run mmproxy with --mark 123'] : [],
                ['on the backend, send replies to client addresses through this host'],
              )
            : routing.status === 'fail'
              ? routing.fix
              : routingCommands(family, table, target.address).map((c) => c.text);
      } else if (code === 'ECONNREFUSED') fix = items[items.length - 1]!.fix;
    }
    items.push({
      id: `spoofed-ipv${family}`,
      title: `${name} target ${where} accepts connections from ${SPOOF_SOURCES[family]} (spoofed)`,
      status: spoofed.ok ? 'ok' : 'fail',
      detail: spoofed.ok
        ? 'connected from the made-up client address and the reply came back'
        : `${spoofed.syscall ?? 'connect'} failed: ${errnoName(spoofed.errno)}` +
          (errnoName(spoofed.errno) === 'ETIMEDOUT'
            ? ' (the reply did not come back: routing)'
            : ''),
      fix: spoofed.ok ? [] : fix,
    });
  }
  return items;
}

/**
 * Asks the kernel where a reply from the target to a client address goes
 * (`ip route get CLIENT from TARGET`): it must be `local`. When it is not, the fix names the
 * table an existing rule already points at, or both DESIGN.md entries.
 */
async function checkRouting(
  ip: IpRunner,
  family: 4 | 6,
  target: string,
  table: number,
): Promise<{ item: CheckItem; remoteVia: string | null }> {
  const item = (i: CheckItem): { item: CheckItem; remoteVia: null } => ({
    item: i,
    remoteVia: null,
  });
  const name = `IPv${family}`;
  const fam = family === 6 ? ['-6'] : [];
  const client = SPOOF_SOURCES[family];
  const id = `routing-ipv${family}`;
  const title = `replies from the ${name} target reach this host`;
  const command = ['ip', ...fam, 'route', 'get', client, 'from', target].join(' ');

  const isLocal = await ip([...fam, 'route', 'get', target]);
  if (isLocal.code === -1) {
    return item({
      id,
      title,
      status: 'fail',
      detail: isLocal.stderr.trim(),
      fix: ["apt-get install iproute2 (or your distribution's iproute2 package)"],
    });
  }
  if (isLocal.code === 0 && !/^local\s/.test(isLocal.stdout.trim())) {
    const dev = / dev (\S+)/.exec(isLocal.stdout);
    return {
      item: {
        id,
        title,
        status: 'skip',
        detail: `${target} is not an address of this host: see the README's remote-backend recipe`,
        fix: [],
      },
      remoteVia: dev ? dev[1]! : 'eth0',
    };
  }
  const r = await ip([...fam, 'route', 'get', client, 'from', target]);
  const answer = (r.stdout.trim().split('\n')[0] ?? '').trim() || r.stderr.trim();
  if (r.code === 0 && /^local\s/.test(answer)) {
    const t = / table (\S+)/.exec(answer);
    return item({
      id,
      title,
      status: 'ok',
      detail: `${command}: local${t ? ` (table ${t[1]})` : ''}`,
      fix: [],
    });
  }
  // Not local: find a rule of ours that points at a table without the local route.
  const wanted = routingCommands(family, table, target);
  let fix = wanted.map((c) => c.text);
  const rules = await ip([...fam, 'rule', 'show']);
  const from = wanted[0]!.add[fam.length + 3]!;
  const existing = parseRules(rules.stdout).find(
    (rule) =>
      rule.lookup !== undefined &&
      /^\d+$/.test(rule.lookup) &&
      isOurRule(rule, from, Number(rule.lookup)),
  );
  if (existing) {
    const n = Number(existing.lookup);
    const shown = await ip([...fam, 'route', 'show', 'table', String(n)]);
    if (!hasLocalDefaultRoute(shown.stdout)) fix = [routingCommands(family, n, target)[1]!.text];
  }
  return item({
    id,
    title,
    status: 'fail',
    detail: `${command}: ${answer || `exit status ${r.code}`}`,
    fix,
  });
}

/**
 * The remote-backend recipe (the README's): the proxy's upstream packets carry `mark`; conntrack
 * remembers it, so that replies arriving from the backend on `iface` get it back and are
 * delivered to the proxy's transparent socket instead of being forwarded.
 */
export function remoteBackendCommands(
  family: 4 | 6,
  table: number,
  mark: number,
  iface: string,
): string[] {
  const tables = family === 4 ? 'iptables' : 'ip6tables';
  const fam = family === 6 ? ' -6' : '';
  return [
    `${tables} -t mangle -A OUTPUT -m mark --mark ${mark} -j CONNMARK --save-mark`,
    `${tables} -t mangle -A PREROUTING -i ${iface} -m connmark --mark ${mark} -j CONNMARK --restore-mark`,
    `ip${fam} rule add fwmark ${mark} iif ${iface} lookup ${table}`,
    `ip${fam} route add local ${family === 4 ? '0.0.0.0/0' : '::/0'} dev lo table ${table}`,
  ];
}
