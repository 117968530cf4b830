// createProxy's options: their types, go-mmproxy's defaults, and the one validation that turns
// what a user passed into NormalizedOptions, or an InvalidOptionError that names the option,
// shows what it got and gives a valid example.
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Allowlist, formatV4, formatV6, parseIp } from './allowlist.js';
import { DESTINATION_EXAMPLE, DestinationAllowlist } from './destination-allow.js';
import { AllowlistError, InvalidOptionError } from './errors.js';

/** An address and port given as an object, e.g. what `server.address()` returns. */
export interface EndpointInput {
  /** An IP address, or a host name resolved by listen(). */
  address: string;
  port: number;
  family?: 'IPv4' | 'IPv6' | 4 | 6;
}

export interface Endpoint {
  /** Canonical text, as Node prints addresses ("::1", "127.0.0.1"). */
  address: string;
  port: number;
  family: 4 | 6;
}

/**
 * An endpoint given by host name. listen() resolves it (lib/resolve.ts); the proxy's
 * resolveTargets() resolves target names again.
 */
export interface HostEndpoint {
  /** The name as given. */
  host: string;
  port: number;
  /** The family to resolve: 4 or 6, or 0 for either (listen: IPv4 first). */
  family: 0 | 4 | 6;
}

import type { RouteHook } from './proxy-types.js';
export type { RouteHook };

/** What createProxy accepts. Every option is optional; DEFAULTS fills the gaps. */
export interface ProxyOptions {
  /**
   * Where to accept load balancer connections: "0.0.0.0:8443", "[::]:8443", "name:8443" or
   * {address, port}. Port 0 = ephemeral. A name is resolved by listen(), IPv4 first.
   */
  listen?: string | EndpointInput;
  /** Upstream for IPv4 clients: "127.0.0.1:443", or "name:443" resolved to an IPv4 address. */
  target4?: string | EndpointInput;
  /** Upstream for IPv6 clients: "[::1]:443", or "name:443" resolved to an IPv6 address. */
  target6?: string | EndpointInput;
  protocol?: 'tcp' | 'udp';
  /** Load balancer subnets allowed to connect, given in code. Excludes allowedSubnetsFile. */
  allowedSubnets?: readonly string[] | Allowlist;
  /** A file of load balancer subnets (go-mmproxy's --allowed-subnets). Excludes allowedSubnets. */
  allowedSubnetsFile?: string;
  /** SO_MARK for upstream sockets; 0 = none. */
  mark?: number;
  /** Listening sockets (SO_REUSEPORT). */
  listeners?: number;
  /**
   * Sockets already open to use as the listeners instead of opening `listeners` on `listen`
   * (systemd's socket activation: see `listenFdsFromEnv`). TCP ones must listen, UDP ones be
   * bound; `listen()` rejects with a ListenFdError otherwise. The proxy owns them once `listen()`
   * resolved (made non-blocking and close-on-exec; `close()` closes them); a failed `listen()`
   * leaves them open. Excludes `listen` and `listeners`.
   */
  listenFds?: readonly number[];
  /** Native worker threads. */
  workers?: number;
  /** UDP: seconds a flow may be idle before it closes. */
  closeAfter?: number;
  /** Milliseconds for a PROXY header to arrive complete. */
  headerTimeout?: number;
  /** Milliseconds close() waits for connections to finish before ending them. */
  drainTimeout?: number;
  /** Live TCP connections at most; 0 or Infinity = unlimited. */
  maxConnections?: number;
  /** UDP flows at most. */
  maxFlows?: number;
  /** Connect to the header's destination address and port instead of target4/target6. */
  dynamicDestination?: boolean;
  /**
   * With dynamicDestination: the destinations it may connect to, as subnets with an optional
   * port or port range ("127.0.0.1/32:10000-20000", "[::1]/128:443", "10.0.0.0/8" for any
   * port). A header naming another destination is refused (destinationRefused).
   */
  dynamicDestinationAllow?: readonly string[];
  /** LOCAL/UNKNOWN headers: connect from the load balancer's address, or reject them. */
  local?: 'load-balancer' | 'reject';
  /**
   * A function run for each connection (or new UDP flow) on the main thread: each decision
   * then waits for this thread. Prefer routeModule. Excludes routeModule.
   */
  route?: RouteHook;
  /**
   * A path or file URL of an ES module that exports `route` (same contract as the route
   * option). It is loaded into every relay worker thread and runs there, in the thread that
   * accepted the connection. Excludes route.
   */
  routeModule?: string | URL;
  /** 0, 1 or 2, as go-mmproxy's -v; only the CLI logs. */
  verbosity?: 0 | 1 | 2;
}

export interface NormalizedOptions {
  /** An address as given, or a name that listen() resolves; unused when listenFds is given. */
  listen: Endpoint | HostEndpoint;
  /** The passed sockets to listen on, or null: open `listeners` sockets on `listen`. */
  listenFds: readonly number[] | null;
  target4: Endpoint | HostEndpoint;
  target6: Endpoint | HostEndpoint;
  protocol: 'tcp' | 'udp';
  /** The inline allowlist (from allowedSubnets), or null. */
  allowlist: Allowlist | null;
  /** Absolute path of the allowlist file, or null. */
  allowedSubnetsFile: string | null;
  mark: number;
  listeners: number;
  workers: number;
  closeAfter: number;
  headerTimeout: number;
  drainTimeout: number;
  /** Infinity when unlimited. */
  maxConnections: number;
  maxFlows: number;
  dynamicDestination: boolean;
  /** The destinations dynamicDestination may connect to; null: any. */
  dynamicDestinationAllow: DestinationAllowlist | null;
  local: 'load-balancer' | 'reject';
  route: RouteHook | null;
  /** The route module as a file URL (href), or null. */
  routeModule: string | null;
  verbosity: 0 | 1 | 2;
}

const MAX_WORKERS = 256;
const MAX_LISTENERS = 1024;
const MAX_UINT32 = 0xffffffff;
// Timers in Node and in the engine hold milliseconds in a signed 32-bit number.
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The rule for each duration, in the option's unit: whether 0 is allowed and the largest value (a
 * Node timer's). The command's flags check the same rules, so a value passes both or neither.
 */
export const DURATION_RULES = {
  closeAfter: { unit: 'seconds', zero: false, max: Math.floor(MAX_TIMER_MS / 1000), example: 60 },
  headerTimeout: { unit: 'milliseconds', zero: false, max: MAX_TIMER_MS, example: 10000 },
  drainTimeout: { unit: 'milliseconds', zero: true, max: MAX_TIMER_MS, example: 30000 },
} as const;

export type DurationOption = keyof typeof DURATION_RULES;

/** go-mmproxy's defaults, plus ours for what it does not have. */
export const DEFAULTS = Object.freeze({
  listen: '0.0.0.0:8443',
  target4: '127.0.0.1:443',
  target6: '[::1]:443',
  protocol: 'tcp',
  mark: 0,
  listeners: 1,
  workers: Math.min(os.availableParallelism(), MAX_WORKERS),
  closeAfter: 60,
  headerTimeout: 10_000,
  drainTimeout: 30_000,
  maxConnections: Infinity,
  maxFlows: 65_536,
  dynamicDestination: false,
  local: 'load-balancer',
  verbosity: 0,
} as const);

const OPTION_NAMES = [
  'listen',
  'target4',
  'target6',
  'protocol',
  'allowedSubnets',
  'allowedSubnetsFile',
  'mark',
  'listeners',
  'listenFds',
  'workers',
  'closeAfter',
  'headerTimeout',
  'drainTimeout',
  'maxConnections',
  'maxFlows',
  'dynamicDestination',
  'dynamicDestinationAllow',
  'local',
  'route',
  'routeModule',
  'verbosity',
] as const satisfies readonly (keyof ProxyOptions)[];

/** A value as a message shows it: JSON where JSON works, shortened. */
function describe(value: unknown): string {
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'symbol' || value === undefined) return String(value);
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value);
  if (value instanceof Allowlist) return String(value);
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    // Cyclic or otherwise unserializable: the type is all we can show.
  }
  if (text === undefined) text = Object.prototype.toString.call(value);
  return text.length > 80 ? `${text.slice(0, 79)}…` : text;
}

function fail(option: string, expected: string, value: unknown, detail?: string): never {
  throw new InvalidOptionError(
    option,
    `option "${option}" must be ${expected}; got ${describe(value)}${detail ? ` (${detail})` : ''}`,
  );
}

const words = new Uint32Array(4);

/**
 * The rule for each address option: the family it needs (0: either), the lowest port (0 is an
 * ephemeral port for listen), and the examples messages show. The command's -l, -4 and -6 check
 * the same rule through parseEndpointText, so a value passes both or neither.
 */
export const ENDPOINT_RULES = {
  listen: {
    family: 0,
    minPort: 0,
    kind: 'an IP address or host name',
    example: '0.0.0.0:8443',
    stringExample: '"0.0.0.0:8443", "[::]:8443" or "proxy.internal:8443"',
    objectExample: '{ address: "0.0.0.0", port: 8443 }',
  },
  target4: {
    family: 4,
    minPort: 1,
    kind: 'an IPv4 address or host name',
    example: '127.0.0.1:443',
    stringExample: '"127.0.0.1:443" or "app.internal:443"',
    objectExample: '{ address: "127.0.0.1", port: 443 }',
  },
  target6: {
    family: 6,
    minPort: 1,
    kind: 'an IPv6 address or host name',
    example: '[::1]:443',
    stringExample: '"[::1]:443" or "app.internal:443"',
    objectExample: '{ address: "::1", port: 443 }',
  },
} as const;

export type EndpointOption = keyof typeof ENDPOINT_RULES;

/** An example host name, for messages about a name. */
export const HOST_NAME_EXAMPLE = 'app.internal';

// A DNS label as resolvers and hosts files take it: letters, digits, '-' and '_' (service names
// such as docker's), 1 to 63 characters, no '-' at either end.
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/i;

/**
 * Why `host` cannot be a host name, or null when it can be one: dot-separated labels, at most
 * 253 characters, one trailing dot allowed. A last label that is a number is refused, because
 * getaddrinfo would read "127.000.0.1" or "0x7f000001" as an address (inet_aton's forms).
 */
function hostNameProblem(host: string): string | null {
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  const labels = name.split('.');
  if (name.length === 0 || name.length > 253 || !labels.every((l) => LABEL.test(l))) {
    return `${JSON.stringify(host)} is not an IP address or host name`;
  }
  if (/^([0-9]+|0x[0-9a-f]*)$/i.test(labels.at(-1)!)) {
    return `${JSON.stringify(host)} is not an IP address, and a host name does not end in a number`;
  }
  return null;
}

/** What parseEndpointText found: the endpoint, or the problem in words. */
export type EndpointCheck =
  { endpoint: Endpoint | HostEndpoint; problem?: never } | { problem: string };

/** The address part and port, checked by the option's rule; the port is an integer already. */
function checkEndpoint(
  option: EndpointOption,
  address: string,
  port: number,
  bracketed: boolean,
  givenFamily?: unknown,
): EndpointCheck {
  const { family: want, minPort } = ENDPOINT_RULES[option];
  if (address.includes('%')) return { problem: 'zone indexes such as %eth0 are not supported' };
  const family = parseIp(address, words);
  let checked: EndpointCheck;
  if (family === 0) {
    if (bracketed) {
      return { problem: `only an IPv6 address goes in brackets, not ${JSON.stringify(address)}` };
    }
    const problem = hostNameProblem(address);
    if (problem !== null) return { problem };
    let lookFor: 0 | 4 | 6 = want;
    if (givenFamily !== undefined) {
      const f =
        givenFamily === 4 || givenFamily === 'IPv4'
          ? 4
          : givenFamily === 6 || givenFamily === 'IPv6'
            ? 6
            : -1;
      if (f === -1 || (want !== 0 && f !== want)) {
        return { problem: `family ${JSON.stringify(givenFamily)} is not one ${option} can use` };
      }
      lookFor = f;
    }
    checked = { endpoint: { host: address, port, family: lookFor } };
  } else {
    if (bracketed && family === 4) return { problem: 'only an IPv6 address goes in brackets' };
    if (want !== 0 && family !== want) {
      return { problem: `${JSON.stringify(address)} is IPv${family}` };
    }
    if (givenFamily !== undefined && givenFamily !== family && givenFamily !== `IPv${family}`) {
      return { problem: `family ${JSON.stringify(givenFamily)} does not match the address` };
    }
    checked = {
      endpoint: {
        address: family === 4 ? formatV4(words[3]!) : formatV6(words),
        port,
        family,
      },
    };
  }
  if (!Number.isInteger(port) || port < minPort || port > 65535) {
    return { problem: `the port must be a whole number from ${minPort} to 65535` };
  }
  return checked;
}

/**
 * "address:port", "[v6]:port" or "name:port" by the option's rule: an Endpoint for an address, a
 * HostEndpoint for a name (resolved later), or the problem in words.
 */
export function parseEndpointText(option: EndpointOption, text: string): EndpointCheck {
  let address: string;
  let portText: string;
  let bracketed = false;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') return { problem: 'write the port after "]:"' };
    address = text.slice(1, close);
    portText = text.slice(close + 2);
    bracketed = true;
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return { problem: 'the port is missing' };
    address = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (address.includes(':')) return { problem: 'put an IPv6 address in brackets: "[::1]:443"' };
  }
  if (!/^[0-9]{1,5}$/.test(portText)) {
    const { minPort } = ENDPOINT_RULES[option];
    return { problem: `the port must be a whole number from ${minPort} to 65535` };
  }
  return checkEndpoint(option, address, Number(portText), bracketed);
}

/** "host:port", "[v6]:port", "name:port" or {address, port} → Endpoint or HostEndpoint. */
function endpoint(option: EndpointOption, value: unknown): Endpoint | HostEndpoint {
  const rule = ENDPOINT_RULES[option];
  let checked: EndpointCheck;
  let expected = `${rule.kind} and port such as ${rule.stringExample}`;
  if (typeof value === 'string') {
    checked = parseEndpointText(option, value);
  } else if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    expected = `${rule.kind} and port such as ${rule.objectExample}`;
    const extra = Object.keys(value).filter((k) => !['address', 'port', 'family'].includes(k));
    if (extra.length > 0) fail(option, expected, value, `unknown key "${extra[0]}"`);
    const { address, port, family } = value as { address: unknown; port: unknown; family: unknown };
    if (typeof port !== 'number') fail(option, expected, value, 'port must be a number');
    if (typeof address !== 'string') fail(option, expected, value, 'address must be a string');
    checked = checkEndpoint(option, address as string, port as number, false, family);
  } else {
    return fail(option, expected, value);
  }
  if (checked.problem !== undefined) return fail(option, expected, value, checked.problem);
  return checked.endpoint;
}

function integer(
  option: string,
  value: unknown,
  min: number,
  max: number,
  example: number,
  also = '',
): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(option, `a whole number from ${min} to ${max}${also} such as ${example}`, value);
  }
  return value as number;
}

function duration(option: DurationOption, value: unknown): number {
  const { unit, zero, max, example } = DURATION_RULES[option];
  if (
    typeof value !== 'number' ||
    !Number.isFinite(value) ||
    (zero ? value < 0 : value <= 0) ||
    value > max
  ) {
    const bound = zero ? '0 or more' : 'more than 0';
    fail(option, `a number of ${unit}, ${bound} and at most ${max}, such as ${example}`, value);
  }
  return value as number;
}

function oneOf<T extends string | number | boolean>(
  option: string,
  value: unknown,
  choices: readonly T[],
): T {
  if (!choices.includes(value as T)) {
    fail(option, `one of ${choices.map((c) => JSON.stringify(c)).join(', ')}`, value);
  }
  return value as T;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1;
      current.push(Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/**
 * Validates and normalizes createProxy's options synchronously. The allowlist file is only
 * checked to be a path; `loadAllowlist` reads it.
 */
export function normalizeOptions(input: ProxyOptions = {}): NormalizedOptions {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    fail('options', 'an object such as { listen: "0.0.0.0:8443" }', input);
  }
  const unknown = Object.keys(input).filter(
    (k) => !(OPTION_NAMES as readonly string[]).includes(k),
  );
  if (unknown.length > 0) {
    const name = unknown[0]!;
    const close = OPTION_NAMES.find((valid) => editDistance(name, valid) <= 2);
    const names = unknown.map((k) => JSON.stringify(k)).join(', ');
    throw new InvalidOptionError(
      name,
      `unknown option${unknown.length > 1 ? 's' : ''} ${names}` +
        `${close && unknown.length === 1 ? ` (did you mean "${close}"?)` : ''}; ` +
        `valid options are ${OPTION_NAMES.join(', ')}`,
    );
  }
  const get = <K extends keyof ProxyOptions>(key: K): unknown => input[key];
  const given = (key: keyof ProxyOptions): boolean => input[key] !== undefined;

  let allowlist: Allowlist | null = null;
  let allowedSubnetsFile: string | null = null;
  if (given('allowedSubnets') && given('allowedSubnetsFile')) {
    throw new InvalidOptionError(
      'allowedSubnets',
      'options "allowedSubnets" and "allowedSubnetsFile" cannot both be given; use ' +
        'allowedSubnets for subnets in code such as ["192.0.2.0/24"], or allowedSubnetsFile ' +
        'for a file such as "/etc/mmproxy/allowed-subnets.txt"',
    );
  }
  if (given('allowedSubnets')) {
    const value = get('allowedSubnets');
    const expected =
      'an Allowlist or a non-empty array of subnets such as ["192.0.2.0/24", "2001:db8::/32"]';
    if (value instanceof Allowlist) {
      allowlist = value;
    } else if (Array.isArray(value)) {
      try {
        allowlist = Allowlist.from(value as string[]);
      } catch (err) {
        if (!(err instanceof AllowlistError)) throw err;
        fail('allowedSubnets', expected, value, err.message);
      }
    } else {
      fail('allowedSubnets', expected, value);
    }
  }
  if (given('allowedSubnetsFile')) {
    const value = get('allowedSubnetsFile');
    if (typeof value !== 'string' || value === '' || value.includes('\0')) {
      fail('allowedSubnetsFile', 'a file path such as "/etc/mmproxy/allowed-subnets.txt"', value);
    }
    allowedSubnetsFile = path.resolve(value as string);
  }

  const or = <K extends keyof ProxyOptions>(key: K, fallback: unknown): unknown =>
    given(key) ? get(key) : fallback;

  const maxConnections = or('maxConnections', DEFAULTS.maxConnections);
  const route = or('route', null);
  if (given('route') && typeof route !== 'function') {
    fail('route', 'a function such as (connection) => decision', route);
  }
  let routeModule: string | null = null;
  if (given('routeModule')) {
    const value = get('routeModule');
    const expected = 'a path or file URL of an ES module such as "./route.mjs"';
    if (given('route')) {
      throw new InvalidOptionError(
        'routeModule',
        'options "route" and "routeModule" cannot both be given; use routeModule ' +
          '("./route.mjs", which exports route) to decide in the relay workers, or route ' +
          '(a function) to decide on the main thread',
      );
    }
    if (value instanceof URL) {
      if (value.protocol !== 'file:') fail('routeModule', expected, value.href);
      routeModule = value.href;
    } else if (typeof value === 'string' && value !== '' && !value.includes('\0')) {
      routeModule = value.startsWith('file:')
        ? new URL(value).href
        : pathToFileURL(path.resolve(value)).href;
    } else {
      fail('routeModule', expected, value);
    }
  }

  const dynamicDestination = oneOf(
    'dynamicDestination',
    or('dynamicDestination', DEFAULTS.dynamicDestination),
    [false, true] as const,
  );
  let dynamicDestinationAllow: DestinationAllowlist | null = null;
  if (given('dynamicDestinationAllow')) {
    const value = get('dynamicDestinationAllow');
    const expected = `an array of subnets with optional ports such as ${JSON.stringify(DESTINATION_EXAMPLE)}`;
    if (!Array.isArray(value)) fail('dynamicDestinationAllow', expected, value);
    try {
      dynamicDestinationAllow = DestinationAllowlist.from(value as unknown[]);
    } catch (err) {
      fail('dynamicDestinationAllow', expected, value, (err as Error).message);
    }
    if (!dynamicDestination) {
      throw new InvalidOptionError(
        'dynamicDestinationAllow',
        'option "dynamicDestinationAllow" limits where dynamicDestination connects, and ' +
          'dynamicDestination is off; set both, such as { dynamicDestination: true, ' +
          `dynamicDestinationAllow: ${JSON.stringify(DESTINATION_EXAMPLE.slice(0, 1))} }`,
      );
    }
  }

  let listenFds: number[] | null = null;
  if (given('listenFds')) {
    const value = get('listenFds');
    const expected = 'a non-empty array of distinct file descriptor numbers such as [3, 4]';
    if (!Array.isArray(value) || value.length === 0) fail('listenFds', expected, value);
    const fds = value as unknown[];
    for (const fd of fds) {
      if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff)
        fail('listenFds', expected, value, `${describe(fd)} is not a file descriptor number`);
    }
    if (new Set(fds).size !== fds.length) fail('listenFds', expected, value, 'a fd is repeated');
    if (fds.length > MAX_LISTENERS) fail('listenFds', expected, value, `at most ${MAX_LISTENERS}`);
    for (const other of ['listen', 'listeners'] as const) {
      if (given(other)) {
        throw new InvalidOptionError(
          other,
          `options "listenFds" and "${other}" cannot both be given: the passed sockets are ` +
            'the listeners; use listenFds such as [3], or listen such as "0.0.0.0:8443"',
        );
      }
    }
    listenFds = fds as number[];
  }

  return {
    listen: endpoint('listen', or('listen', DEFAULTS.listen)),
    listenFds: listenFds === null ? null : Object.freeze([...listenFds]),
    target4: endpoint('target4', or('target4', DEFAULTS.target4)),
    target6: endpoint('target6', or('target6', DEFAULTS.target6)),
    protocol: oneOf('protocol', or('protocol', DEFAULTS.protocol), ['tcp', 'udp'] as const),
    allowlist,
    allowedSubnetsFile,
    mark: integer('mark', or('mark', DEFAULTS.mark), 0, MAX_UINT32, 1),
    listeners: integer('listeners', or('listeners', DEFAULTS.listeners), 1, MAX_LISTENERS, 4),
    workers: integer('workers', or('workers', DEFAULTS.workers), 1, MAX_WORKERS, 4),
    closeAfter: duration('closeAfter', or('closeAfter', DEFAULTS.closeAfter)),
    headerTimeout: duration('headerTimeout', or('headerTimeout', DEFAULTS.headerTimeout)),
    drainTimeout: duration('drainTimeout', or('drainTimeout', DEFAULTS.drainTimeout)),
    maxConnections:
      maxConnections === 0 || maxConnections === Infinity
        ? Infinity
        : integer(
            'maxConnections',
            maxConnections,
            1,
            MAX_UINT32,
            10000,
            ', or 0 or Infinity for no limit,',
          ),
    maxFlows: integer('maxFlows', or('maxFlows', DEFAULTS.maxFlows), 1, MAX_UINT32, 65536),
    dynamicDestination,
    dynamicDestinationAllow,
    local: oneOf('local', or('local', DEFAULTS.local), ['load-balancer', 'reject'] as const),
    route: route as RouteHook | null,
    routeModule,
    verbosity: oneOf('verbosity', or('verbosity', DEFAULTS.verbosity), [0, 1, 2] as const),
  };
}

/**
 * The allowlist the options configure: the inline one, the file read now (AllowlistError when it
 * cannot be used), or null when there is none, which allows every load balancer as go-mmproxy
 * does without --allowed-subnets.
 */
export async function loadAllowlist(options: NormalizedOptions): Promise<Allowlist | null> {
  if (options.allowlist) return options.allowlist;
  if (options.allowedSubnetsFile !== null) return Allowlist.fromFile(options.allowedSubnetsFile);
  return null;
}
