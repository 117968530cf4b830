// The `mmproxy` command line: go-mmproxy's flags (one dash or two, as Go's flag package takes
// them), our extra flags, MMPROXY_* environment variables, validation with usage errors that
// name the flag and show a valid example, and the --help text. Pure: no I/O, no process access.
import net from 'node:net';
import yargs from 'yargs';
import { DestinationAllowlist } from '../lib/destination-allow.js';
import {
  DURATION_RULES,
  ENDPOINT_RULES,
  HOST_NAME_EXAMPLE,
  parseEndpointText,
  type DurationOption,
  type ProxyOptions,
} from '../lib/options.js';

/** A command line the user must fix; `main` prints it and exits 2. */
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

type Kind =
  | 'listen'
  | 'target4'
  | 'target6'
  | 'protocol'
  | 'file'
  | 'uint32'
  | 'positive'
  | 'wholeSeconds'
  | 'seconds'
  | 'verbosity'
  | 'bool'
  | 'hostPort'
  | 'table'
  | 'destinations';

export interface FlagSpec {
  /** The name after the dashes: `l`, `4`, `allowed-subnets`. */
  name: string;
  /** A long spelling of a one-letter go-mmproxy flag (`--listen` for `-l`); also names the env var. */
  alias?: string;
  kind: Kind;
  /** For 'wholeSeconds' and 'seconds': the createProxy duration it sets, whose rule it checks. */
  duration?: DurationOption;
  /** Placeholder in --help: ADDR, FILE, N… Empty for boolean flags. */
  valueName: string;
  /** The default as --help shows it; '' when the flag is off by default. */
  defaultText: string;
  /** A valid value, shown in usage errors. */
  example: string;
  help: string;
}

/** Every flag the proxy takes. go-mmproxy's come first, with its names and defaults. */
export const FLAGS: readonly FlagSpec[] = [
  {
    name: 'l',
    alias: 'listen',
    kind: 'listen',
    valueName: 'ADDR',
    defaultText: '0.0.0.0:8443',
    example: '0.0.0.0:8443',
    help: 'Address (or host name) the proxy listens on',
  },
  {
    name: '4',
    alias: 'target4',
    kind: 'target4',
    valueName: 'ADDR',
    defaultText: '127.0.0.1:443',
    example: '127.0.0.1:443',
    help: 'Address (or host name) to which IPv4 traffic is forwarded',
  },
  {
    name: '6',
    alias: 'target6',
    kind: 'target6',
    valueName: 'ADDR',
    defaultText: '[::1]:443',
    example: '[::1]:443',
    help: 'Address (or host name) to which IPv6 traffic is forwarded',
  },
  {
    name: 'p',
    alias: 'protocol',
    kind: 'protocol',
    valueName: 'tcp|udp',
    defaultText: 'tcp',
    example: 'tcp',
    help: 'Protocol that is proxied',
  },
  {
    name: 'allowed-subnets',
    kind: 'file',
    valueName: 'FILE',
    defaultText: '',
    example: '/etc/mmproxy/allowed-subnets.txt',
    help: 'Subnets load balancers may connect from, one a line; SIGHUP reloads it',
  },
  {
    name: 'close-after',
    kind: 'wholeSeconds',
    duration: 'closeAfter',
    valueName: 'S',
    defaultText: '60',
    example: '60',
    help: 'Seconds after which an idle UDP flow is closed',
  },
  {
    name: 'listeners',
    kind: 'positive',
    valueName: 'N',
    defaultText: '1',
    example: '4',
    help: 'Listening sockets opened for the address (SO_REUSEPORT)',
  },
  {
    name: 'mark',
    kind: 'uint32',
    valueName: 'N',
    defaultText: '0',
    example: '123',
    help: 'Mark (SO_MARK) set on upstream packets, for policy routing',
  },
  {
    name: 'v',
    alias: 'verbose',
    kind: 'verbosity',
    valueName: '0|1|2',
    defaultText: '0',
    example: '1',
    help: '0: start, stop, drop summaries; 1: also connection errors; 2: also state changes',
  },
  {
    name: 'header-timeout',
    kind: 'seconds',
    duration: 'headerTimeout',
    valueName: 'S',
    defaultText: '10',
    example: '5',
    help: 'Seconds a load balancer has to send the whole PROXY header',
  },
  {
    name: 'workers',
    kind: 'positive',
    valueName: 'N',
    defaultText: 'CPUs',
    example: '4',
    help: 'Relay threads',
  },
  {
    name: 'dynamic-destination',
    kind: 'bool',
    valueName: '',
    defaultText: '',
    example: 'true',
    help: "Connect to the header's destination address and port instead of -4/-6",
  },
  {
    name: 'dynamic-destination-allow',
    kind: 'destinations',
    valueName: 'LIST',
    defaultText: '',
    example: '127.0.0.1/32:10000-20000,[::1]/128:443',
    help: 'Where --dynamic-destination may connect: CIDR[:PORT[-PORT]],… (IPv6: [::1]/128:443)',
  },
  {
    name: 'route',
    kind: 'file',
    valueName: 'FILE',
    defaultText: '',
    example: '/etc/mmproxy/route.mjs',
    help: 'An ES module exporting route(request): it picks or refuses each target, in every relay thread',
  },
  {
    name: 'max-connections',
    kind: 'positive',
    valueName: 'N',
    defaultText: 'unlimited',
    example: '10000',
    help: 'Live TCP connections at most; more are refused',
  },
  {
    name: 'max-flows',
    kind: 'positive',
    valueName: 'N',
    defaultText: '65536',
    example: '65536',
    help: 'Live UDP flows at most',
  },
  {
    name: 'drain-timeout',
    kind: 'seconds',
    duration: 'drainTimeout',
    valueName: 'S',
    defaultText: '30',
    example: '30',
    help: 'Seconds SIGTERM/SIGINT wait for live connections before ending them',
  },
  {
    name: 'reject-local',
    kind: 'bool',
    valueName: '',
    defaultText: '',
    example: 'true',
    help: "Refuse LOCAL/UNKNOWN headers (else: connect from the load balancer's address)",
  },
  {
    name: 'metrics',
    kind: 'hostPort',
    valueName: 'HOST:PORT',
    defaultText: '',
    example: '127.0.0.1:9100',
    help: 'Serve Prometheus metrics at http://HOST:PORT/metrics',
  },
  {
    name: 'setup-routes',
    kind: 'table',
    valueName: '[TABLE]',
    defaultText: '',
    example: '123',
    help: 'Add the ip rule/route entries replies need (table 123); remove them at exit',
  },
];

/** The routing table --setup-routes uses without a value, as in go-mmproxy's README. */
export const DEFAULT_ROUTE_TABLE = 123;

export interface HostPort {
  host: string;
  port: number;
}

/** What the command line asks for, in the library's units (milliseconds) where they differ. */
export interface CliFlags {
  listen: string;
  target4: string;
  target6: string;
  protocol: 'tcp' | 'udp';
  allowedSubnetsFile: string | undefined;
  closeAfter: number;
  listeners: number;
  mark: number;
  verbosity: 0 | 1 | 2;
  headerTimeout: number | undefined;
  workers: number | undefined;
  dynamicDestination: boolean;
  /** Entries as given (the library normalizes them); undefined: any destination. */
  dynamicDestinationAllow: string[] | undefined;
  routeModule: string | undefined;
  maxConnections: number | undefined;
  maxFlows: number | undefined;
  drainTimeout: number | undefined;
  rejectLocal: boolean;
  metrics: HostPort | undefined;
  setupRoutes: number | undefined;
}

export type Command =
  | { command: 'help' }
  | { command: 'version' }
  | { command: 'proxy'; flags: CliFlags }
  | { command: 'check'; flags: CliFlags }
  | { command: 'demo' };

/** The environment variable a flag is read from when the command line does not set it. */
export function envName(spec: FlagSpec): string {
  return 'MMPROXY_' + (spec.alias ?? spec.name).toUpperCase().replace(/-/g, '_');
}

/** How a flag is written in messages: `-l`, `--mark`. */
export function flagDisplay(spec: FlagSpec): string {
  return spec.name.length === 1 ? `-${spec.name}` : `--${spec.name}`;
}

const byName = new Map<string, FlagSpec>();
for (const spec of FLAGS) {
  byName.set(spec.name, spec);
  if (spec.alias) byName.set(spec.alias, spec);
}

/** Parses `mmproxy [check|demo] [flags]` with the environment as a fallback for unset flags. */
export function parseCommandLine(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Command {
  let args = argv;
  let command: 'proxy' | 'check' | 'demo' = 'proxy';
  if (args[0] === 'check' || args[0] === 'demo') {
    command = args[0];
    args = args.slice(1);
  }
  const tokens = normalizeArgv(args);
  if (tokens.help) return { command: 'help' };
  if (tokens.version) return { command: 'version' };
  if (command === 'demo') {
    if (tokens.given.length > 0) {
      throw new UsageError(
        `mmproxy demo takes no flags (got ${tokens.given[0]!.display}). Run: mmproxy demo`,
      );
    }
    return { command: 'demo' };
  }
  return { command, flags: resolveFlags(tokens.given, env) };
}

interface GivenFlag {
  spec: FlagSpec;
  /** As the user typed it, for messages. */
  display: string;
  /** undefined for a boolean flag or --setup-routes without a value. */
  value: string | undefined;
}

interface Tokens {
  given: GivenFlag[];
  help: boolean;
  version: boolean;
}

/**
 * Turns Go-style arguments (`-allowed-subnets x`, `-mark=1`, `--mark 1`) into `--name=value`
 * tokens and hands them to yargs. Go's flag package, not yargs, decides what a value is: a flag
 * that takes one consumes the next argument verbatim (`--mark -1` is a bad mark, not two flags),
 * and a boolean flag takes a value only after `=`.
 */
function normalizeArgv(args: readonly string[]): Tokens {
  const out: Tokens = { given: [], help: false, version: false };
  const normalized: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      if (i + 1 < args.length) throw unexpected(args[i + 1]!);
      break;
    }
    if (!arg.startsWith('-') || arg === '-') throw unexpected(arg);
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq === -1 ? body : body.slice(0, eq);
    const inline = eq === -1 ? undefined : body.slice(eq + 1);
    const display = arg.slice(0, arg.length - body.length) + name;
    if (name === 'h' || name === 'help') {
      out.help = true;
      continue;
    }
    if (name === 'version') {
      out.version = true;
      continue;
    }
    const spec = byName.get(name);
    if (!spec) {
      throw new UsageError(
        `mmproxy: unknown flag ${display}. Run "mmproxy --help" for the flags it takes.`,
      );
    }
    let value = inline;
    if (value === undefined && spec.kind !== 'bool') {
      const next = args[i + 1];
      if (spec.kind === 'table') {
        // The table number is optional; only a number following is taken as one.
        if (next !== undefined && /^(\d+|0x[0-9a-f]+)$/i.test(next)) {
          value = next;
          i++;
        }
      } else {
        if (next === undefined) {
          throw new UsageError(
            `mmproxy: flag ${display} needs a value, e.g. ${flagDisplay(spec)} ${spec.example}`,
          );
        }
        value = next;
        i++;
      }
    }
    out.given.push({ spec, display, value });
    normalized.push(value === undefined ? `--${spec.name}` : `--${spec.name}=${value}`);
  }
  // yargs checks the normalized line once more (every flag known, values where expected); the
  // values themselves are validated below, with messages that show an example.
  const parsed = yargs(normalized)
    .parserConfiguration({
      'camel-case-expansion': false,
      'short-option-groups': false,
      'parse-numbers': false,
      'parse-positional-numbers': false,
      'boolean-negation': false,
      'dot-notation': false,
      'duplicate-arguments-array': false,
    })
    .options(Object.fromEntries(FLAGS.map((spec) => [spec.name, { type: 'string' as const }])))
    .strict()
    .help(false)
    .version(false)
    .exitProcess(false)
    .fail((msg, err) => {
      throw new UsageError(`mmproxy: ${err?.message ?? msg}`);
    })
    .parseSync();
  if (parsed._.length > 0) throw unexpected(String(parsed._[0]));
  return out;
}

function unexpected(arg: string): UsageError {
  return new UsageError(
    `mmproxy: unexpected argument "${arg}"; flags only, e.g. mmproxy -l 0.0.0.0:8443 -4 127.0.0.1:443`,
  );
}

function resolveFlags(
  given: readonly GivenFlag[],
  env: Readonly<Record<string, string | undefined>>,
): CliFlags {
  // Later occurrences win, as in Go.
  const fromArgv = new Map<FlagSpec, GivenFlag>();
  for (const g of given) fromArgv.set(g.spec, g);
  const value = <T>(name: string, fallback: T): T | unknown => {
    const spec = byName.get(name)!;
    const g = fromArgv.get(spec);
    if (g) return convert(spec, g.value, { display: flagDisplay(spec), isEnv: false });
    const fromEnv = env[envName(spec)];
    if (fromEnv !== undefined && fromEnv !== '') {
      return convert(spec, fromEnv, { display: envName(spec), isEnv: true });
    }
    return fallback;
  };
  const flags: CliFlags = {
    listen: value('l', '0.0.0.0:8443') as string,
    target4: value('4', '127.0.0.1:443') as string,
    target6: value('6', '[::1]:443') as string,
    protocol: value('p', 'tcp') as 'tcp' | 'udp',
    allowedSubnetsFile: value('allowed-subnets', undefined) as string | undefined,
    closeAfter: value('close-after', 60) as number,
    listeners: value('listeners', 1) as number,
    mark: value('mark', 0) as number,
    verbosity: value('v', 0) as 0 | 1 | 2,
    headerTimeout: value('header-timeout', undefined) as number | undefined,
    workers: value('workers', undefined) as number | undefined,
    dynamicDestination: value('dynamic-destination', false) as boolean,
    dynamicDestinationAllow: value('dynamic-destination-allow', undefined) as string[] | undefined,
    routeModule: value('route', undefined) as string | undefined,
    maxConnections: value('max-connections', undefined) as number | undefined,
    maxFlows: value('max-flows', undefined) as number | undefined,
    drainTimeout: value('drain-timeout', undefined) as number | undefined,
    rejectLocal: value('reject-local', false) as boolean,
    metrics: value('metrics', undefined) as HostPort | undefined,
    setupRoutes: value('setup-routes', undefined) as number | undefined,
  };
  if (flags.dynamicDestinationAllow !== undefined && !flags.dynamicDestination) {
    throw new UsageError(
      'mmproxy: --dynamic-destination-allow limits where --dynamic-destination connects, which ' +
        'is off; give both, e.g. --dynamic-destination --dynamic-destination-allow ' +
        byName.get('dynamic-destination-allow')!.example,
    );
  }
  return flags;
}

interface Source {
  /** `--mark` or `MMPROXY_MARK`. */
  display: string;
  isEnv: boolean;
}

function convert(spec: FlagSpec, raw: string | undefined, src: Source): unknown {
  const bad = (what: string, another?: string): UsageError => {
    const example = src.isEnv
      ? `${src.display}=${spec.example}`
      : spec.kind === 'bool'
        ? flagDisplay(spec)
        : `${flagDisplay(spec)} ${spec.example}`;
    const examples = another === undefined ? example : `${example} or ${another}`;
    return new UsageError(`mmproxy: ${src.display} ${what}, e.g. ${examples} (got "${raw ?? ''}")`);
  };
  switch (spec.kind) {
    case 'bool': {
      if (raw === undefined) return true;
      const v = raw.toLowerCase();
      if (['1', 't', 'true', 'yes', 'on'].includes(v)) return true;
      if (['0', 'f', 'false', 'no', 'off'].includes(v)) return false;
      throw bad('must be true or false');
    }
    case 'table': {
      if (raw === undefined) return DEFAULT_ROUTE_TABLE;
      if (src.isEnv && /^(true|yes|on)$/i.test(raw)) return DEFAULT_ROUTE_TABLE;
      if (src.isEnv && /^(false|no|off)$/i.test(raw)) return undefined;
      const n = parseInteger(raw);
      // 0 is unspecified and 253-255 are the kernel's default, main and local tables.
      if (n === undefined || n < 1 || n > 0xffffffff || (n >= 253 && n <= 255)) {
        throw bad('must be a routing table number from 1 to 4294967295, not 253-255');
      }
      return n;
    }
    case 'listen':
    case 'target4':
    case 'target6': {
      // The library's rule for the option: an address, or a name resolved at start.
      const checked = parseEndpointText(spec.kind, raw ?? '');
      if (checked.problem !== undefined) {
        const rule = ENDPOINT_RULES[spec.kind];
        const port = rule.example.slice(rule.example.lastIndexOf(':'));
        const named = src.isEnv
          ? `${src.display}=${HOST_NAME_EXAMPLE}${port}`
          : `${flagDisplay(spec)} ${HOST_NAME_EXAMPLE}${port}`;
        throw bad(`must be ${rule.kind} and a port (IPv6 in brackets; ${checked.problem})`, named);
      }
      return raw;
    }
    case 'hostPort': {
      const hp = raw === undefined ? undefined : parseHostPort(raw);
      if (!hp || !(hp.host === '' || net.isIP(hp.host) !== 0 || /^[a-z0-9.-]+$/i.test(hp.host))) {
        throw bad('must be HOST:PORT (IPv6 in brackets)');
      }
      return hp;
    }
    case 'destinations': {
      const entries = (raw ?? '').split(',').map((e) => e.trim());
      try {
        DestinationAllowlist.from(entries);
      } catch (err) {
        throw bad(
          `must be a comma-separated list of subnets with optional ports or port ranges ` +
            `(${(err as Error).message})`,
        );
      }
      return entries;
    }
    case 'protocol':
      if (raw === 'tcp' || raw === 'udp') return raw;
      throw bad('must be tcp or udp');
    case 'file':
      if (!raw) throw bad('must be a file path');
      return raw;
    case 'uint32': {
      const n = parseInteger(raw);
      if (n === undefined || n > 0xffffffff) throw bad('must be an integer from 0 to 4294967295');
      return n;
    }
    case 'positive': {
      const n = parseInteger(raw);
      if (n === undefined || n < 1 || n > 0x7fffffff) throw bad('must be an integer of at least 1');
      return n;
    }
    case 'wholeSeconds':
    case 'seconds': {
      // The library's rule for the option, in seconds. Fractions are fine for 'seconds' (0.5 s),
      // unlike go-mmproxy's integer --close-after.
      const rule = DURATION_RULES[spec.duration!];
      const maxSeconds = rule.unit === 'seconds' ? rule.max : Math.floor(rule.max / 1000);
      const whole = spec.kind === 'wholeSeconds';
      const n = whole
        ? (parseInteger(raw) ?? NaN)
        : raw !== undefined && /^\d+(\.\d+)?$/.test(raw)
          ? Number(raw)
          : NaN;
      if (!(rule.zero ? n >= 0 : n > 0) || n > maxSeconds) {
        const bound = rule.zero ? '0 or more' : 'more than 0';
        throw bad(
          `must be ${whole ? 'a whole' : 'a'} number of seconds (${bound}, at most ${maxSeconds})`,
        );
      }
      // Milliseconds for the library, kept to the microsecond: 0.0004 s must not become 0.
      return rule.unit === 'seconds' ? n : Math.round(n * 1e6) / 1000;
    }
    case 'verbosity': {
      const n = parseInteger(raw);
      if (n === undefined) throw bad('must be 0, 1 or 2');
      // go-mmproxy takes any -v >= 0; above 2 it logs as much as 2 does, and so do we.
      return Math.min(n, 2);
    }
  }
}

/** Go's int flags take decimal and 0x-hex; so do we (marks are often written in hex). */
function parseInteger(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  if (/^\d+$/.test(raw)) return Number(raw);
  if (/^0x[0-9a-f]+$/i.test(raw)) return Number.parseInt(raw.slice(2), 16);
  return undefined;
}

/** "1.2.3.4:80", "[::1]:80", "host:80", ":80" (host '') → {host, port}; null when malformed. */
export function parseHostPort(s: string): HostPort | null {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(s);
  if (!m) return null;
  const port = Number(m[3]);
  if (port > 65535) return null;
  const host = m[1] ?? m[2] ?? '';
  if (m[1] !== undefined && net.isIPv6(host) === false) return null;
  return { host, port };
}

/** The --help text: every flag with its default and environment variable. */
export function helpText(version: string): string {
  const rows = FLAGS.map((spec) => {
    const names =
      flagDisplay(spec) +
      (spec.alias ? `, --${spec.alias}` : '') +
      (spec.valueName ? ` ${spec.valueName}` : '');
    const dflt = spec.defaultText ? `default ${spec.defaultText}, ` : '';
    return { names, help: spec.help, more: `${dflt}env ${envName(spec)}` };
  });
  const width = Math.max(...rows.map((r) => r.names.length)) + 2;
  return [
    `mmproxy ${version}: takes the PROXY protocol header off each connection or datagram and`,
    `connects to the application from the client's own address (IP_TRANSPARENT).`,
    '',
    'Usage:',
    '  mmproxy [flags]          run the proxy (go-mmproxy compatible flags)',
    '  mmproxy check [flags]    check permissions, routing and targets for these flags',
    '  mmproxy demo             see it work in a private namespace, no setup, no root',
    '',
    'Flags (one dash or two; a flag wins over its environment variable):',
    ...rows.flatMap((r) => [
      `  ${r.names.padEnd(width)}${r.help}`,
      `  ${''.padEnd(width)}(${r.more})`,
    ]),
    `  ${'-h, --help'.padEnd(width)}This text`,
    `  ${'--version'.padEnd(width)}The version`,
    '',
    'Signals: SIGTERM/SIGINT drain connections (a second one stops at once); SIGHUP reloads',
    '--allowed-subnets and resolves the -4/-6 host names again (for new connections).',
    'Host names (-l, -4, -6 NAME:PORT) are looked up with getaddrinfo, /etc/hosts included: -4',
    'takes an IPv4 address, -6 an IPv6 one, -l the first IPv4 one (else IPv6); localhost is',
    '127.0.0.1 or ::1 without a lookup. A name that does not resolve at start is a usage error.',
    'Exit status: 0 clean stop, 1 runtime failure, 2 usage error.',
    '',
    'systemd: with NOTIFY_SOCKET (Type=notify) it sends READY=1 once listening, RELOADING=1 and',
    'READY=1 around a SIGHUP reload, STOPPING=1 when a drain begins, STATUS= with the live count,',
    'and WATCHDOG=1 (WatchdogSec=) while every relay worker answers. With LISTEN_FDS and',
    'LISTEN_PID (socket activation) the sockets systemd passed are the listeners: -l and',
    '--listeners are not used, and each socket must suit -p (ListenStream= for tcp,',
    'ListenDatagram= for udp).',
    '',
  ].join('\n');
}

/** The createProxy options the flags ask for; unset extra flags leave the library's defaults. */
export function toProxyOptions(flags: CliFlags): ProxyOptions {
  const options: ProxyOptions = {
    listen: flags.listen,
    target4: flags.target4,
    target6: flags.target6,
    protocol: flags.protocol,
    closeAfter: flags.closeAfter,
    listeners: flags.listeners,
    mark: flags.mark,
    verbosity: flags.verbosity,
    dynamicDestination: flags.dynamicDestination,
    local: flags.rejectLocal ? 'reject' : 'load-balancer',
  };
  if (flags.allowedSubnetsFile !== undefined) options.allowedSubnetsFile = flags.allowedSubnetsFile;
  if (flags.dynamicDestinationAllow !== undefined) {
    options.dynamicDestinationAllow = flags.dynamicDestinationAllow;
  }
  if (flags.routeModule !== undefined) options.routeModule = flags.routeModule;
  if (flags.headerTimeout !== undefined) options.headerTimeout = flags.headerTimeout;
  if (flags.workers !== undefined) options.workers = flags.workers;
  if (flags.maxConnections !== undefined) options.maxConnections = flags.maxConnections;
  if (flags.maxFlows !== undefined) options.maxFlows = flags.maxFlows;
  if (flags.drainTimeout !== undefined) options.drainTimeout = flags.drainTimeout;
  return options;
}

const OPTION_FLAGS: Record<string, string> = {
  listen: '-l',
  target4: '-4',
  target6: '-6',
  protocol: '-p',
  allowedSubnets: '--allowed-subnets',
  allowedSubnetsFile: '--allowed-subnets',
  closeAfter: '--close-after',
  listeners: '--listeners',
  mark: '--mark',
  verbosity: '-v',
  headerTimeout: '--header-timeout',
  workers: '--workers',
  dynamicDestination: '--dynamic-destination',
  dynamicDestinationAllow: '--dynamic-destination-allow',
  routeModule: '--route',
  maxConnections: '--max-connections',
  maxFlows: '--max-flows',
  drainTimeout: '--drain-timeout',
  local: '--reject-local',
};

/** The flag that sets a createProxy option, for messages about a value the library refused. */
export function flagForOption(option: string): string {
  return OPTION_FLAGS[option] ?? `--${option.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())}`;
}
