// The `mmproxy` command line through main(): go-mmproxy's flags and defaults, one dash or two,
// environment variables, and a usage error (exit 2, the flag named, an example shown) for every
// bad flag.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { main, packageVersion } from '../cli/main.js';
import {
  FLAGS,
  envName,
  helpText,
  parseCommandLine,
  toProxyOptions,
  type CliFlags,
} from '../cli/flags.js';
import { DEFAULTS } from '../lib/options.js';

function capture(): { text: () => string; write: (s: string) => void } {
  let buf = '';
  return { text: () => buf, write: (s: string) => void (buf += s) };
}

async function run(argv: string[], env: Record<string, string> = {}) {
  const stdout = capture();
  const stderr = capture();
  const code = await main(argv, { stdout, stderr, env });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}

function flags(argv: string[], env: Record<string, string> = {}): CliFlags {
  const c = parseCommandLine(argv, env);
  assert.equal(c.command, 'proxy');
  return (c as { flags: CliFlags }).flags;
}

test("defaults are go-mmproxy's", () => {
  const f = flags([]);
  assert.equal(f.listen, '0.0.0.0:8443');
  assert.equal(f.target4, '127.0.0.1:443');
  assert.equal(f.target6, '[::1]:443');
  assert.equal(f.protocol, 'tcp');
  assert.equal(f.allowedSubnetsFile, undefined);
  assert.equal(f.closeAfter, 60);
  assert.equal(f.listeners, 1);
  assert.equal(f.mark, 0);
  assert.equal(f.verbosity, 0);
  assert.equal(f.dynamicDestination, false);
  assert.equal(f.dynamicDestinationAllow, undefined);
  assert.equal(f.rejectLocal, false);
  assert.equal(f.metrics, undefined);
  assert.equal(f.setupRoutes, undefined);
  // The extra flags leave the library's defaults in force.
  const o = toProxyOptions(f);
  assert.equal(o.headerTimeout, undefined);
  assert.equal(o.drainTimeout, undefined);
  assert.equal(o.workers, undefined);
  assert.equal(o.local, 'load-balancer');
});

test("the defaults --help shows are the library's", () => {
  const shown = (name: string): string => FLAGS.find((f) => f.name === name)!.defaultText;
  assert.equal(shown('l'), DEFAULTS.listen);
  assert.equal(shown('4'), DEFAULTS.target4);
  assert.equal(shown('6'), DEFAULTS.target6);
  assert.equal(shown('p'), DEFAULTS.protocol);
  assert.equal(shown('close-after'), String(DEFAULTS.closeAfter));
  assert.equal(shown('listeners'), String(DEFAULTS.listeners));
  assert.equal(shown('mark'), String(DEFAULTS.mark));
  assert.equal(shown('v'), String(DEFAULTS.verbosity));
  assert.equal(shown('header-timeout'), String(DEFAULTS.headerTimeout / 1000));
  assert.equal(shown('drain-timeout'), String(DEFAULTS.drainTimeout / 1000));
  assert.equal(shown('max-flows'), String(DEFAULTS.maxFlows));
  assert.equal(DEFAULTS.maxConnections, Infinity);
  assert.equal(shown('max-connections'), 'unlimited');
});

test("go-mmproxy's example invocation and systemd unit parse unchanged", () => {
  const a = flags(
    '-l 0.0.0.0:25577 -4 127.0.0.1:25578 -6 [::1]:25578 --allowed-subnets ./path-prefixes.txt'.split(
      ' ',
    ),
  );
  assert.equal(a.listen, '0.0.0.0:25577');
  assert.equal(a.target4, '127.0.0.1:25578');
  assert.equal(a.target6, '[::1]:25578');
  assert.equal(a.allowedSubnetsFile, './path-prefixes.txt');
  const b = flags(
    '-4 127.0.0.1:1000 -6 [::1]:1000 -allowed-subnets /usr/share/path-prefixes.txt -l 0.0.0.0:1234'.split(
      ' ',
    ),
  );
  assert.equal(b.allowedSubnetsFile, '/usr/share/path-prefixes.txt');
  assert.equal(b.listen, '0.0.0.0:1234');
});

test('one dash or two, a space or =, for every flag', () => {
  const values: Record<string, string> = {
    l: '127.0.0.1:9000',
    '4': '127.0.0.2:80',
    '6': '[::1]:81',
    p: 'udp',
    'allowed-subnets': '/tmp/x',
    'close-after': '5',
    listeners: '3',
    mark: '0x7b',
    v: '2',
    'header-timeout': '2.5',
    workers: '2',
    'max-connections': '10',
    'max-flows': '20',
    'drain-timeout': '1',
    'dynamic-destination-allow': '10.0.0.0/8:80',
    route: '/tmp/route.mjs',
    metrics: '127.0.0.1:9100',
    'setup-routes': '200',
  };
  for (const spec of FLAGS) {
    if (spec.kind === 'bool') {
      for (const arg of [
        `-${spec.name}`,
        `--${spec.name}`,
        `-${spec.name}=true`,
        `--${spec.name}=1`,
      ]) {
        assert.deepEqual(flags([arg]), flags([`--${spec.name}`]), arg);
      }
      assert.deepEqual(flags([`--${spec.name}=false`]), flags([]));
      continue;
    }
    const v = values[spec.name];
    assert.ok(v, `a test value for ${spec.name}`);
    // A flag that only means something with another one gets that one too.
    const needs = spec.name === 'dynamic-destination-allow' ? ['--dynamic-destination'] : [];
    const expected = flags([...needs, `--${spec.name}`, v]);
    assert.notDeepEqual(expected, flags(needs), spec.name);
    for (const argv of [
      [`-${spec.name}`, v],
      [`-${spec.name}=${v}`],
      [`--${spec.name}=${v}`],
      ...(spec.alias ? [[`--${spec.alias}`, v], [`-${spec.alias}=${v}`]] : []),
    ]) {
      assert.deepEqual(flags([...needs, ...argv]), expected, argv.join(' '));
    }
  }
});

test('values convert to the units the library takes', () => {
  const f = flags([
    '--mark=0x7b',
    '--header-timeout',
    '2.5',
    '--drain-timeout',
    '0',
    '-v',
    '3',
    '--metrics',
    '[::1]:9100',
    '--setup-routes',
  ]);
  assert.equal(f.mark, 123);
  assert.equal(f.headerTimeout, 2500);
  assert.equal(f.drainTimeout, 0);
  // go-mmproxy takes any -v >= 0; above 2 is 2.
  assert.equal(f.verbosity, 2);
  assert.deepEqual(f.metrics, { host: '::1', port: 9100 });
  assert.equal(f.setupRoutes, 123);
  // Below a millisecond stays above 0, as the library requires.
  assert.equal(flags(['--header-timeout', '0.0004']).headerTimeout, 0.4);
  assert.equal(flags(['--close-after', '0x3c']).closeAfter, 60);
  assert.equal(flags(['--setup-routes', '-v', '1']).setupRoutes, 123);
  assert.equal(flags(['--setup-routes', '77']).setupRoutes, 77);
  assert.equal(flags(['--mark', '4294967295']).mark, 4294967295);
  assert.equal(flags(['-l', '[::]:0']).listen, '[::]:0');
  // The last occurrence wins, as in Go.
  assert.equal(flags(['--mark', '1', '--mark', '2']).mark, 2);
  assert.equal(flags(['--reject-local']).rejectLocal, true);
  assert.equal(toProxyOptions(flags(['--reject-local'])).local, 'reject');
  const dynamic = flags([
    '--dynamic-destination',
    '--dynamic-destination-allow',
    '127.0.0.1/32:10000-20000, [::1]/128:443,10.0.0.0/8',
  ]);
  assert.deepEqual(dynamic.dynamicDestinationAllow, [
    '127.0.0.1/32:10000-20000',
    '[::1]/128:443',
    '10.0.0.0/8',
  ]);
  assert.deepEqual(toProxyOptions(dynamic).dynamicDestinationAllow, [
    '127.0.0.1/32:10000-20000',
    '[::1]/128:443',
    '10.0.0.0/8',
  ]);
  assert.equal('dynamicDestinationAllow' in toProxyOptions(flags([])), false);
});

test('-l, -4 and -6 take host names, from the command line or the environment', () => {
  const f = flags(['-l', 'proxy.internal:0', '-4', 'app.internal:443', '-6', 'localhost:8443']);
  assert.equal(f.listen, 'proxy.internal:0');
  assert.equal(f.target4, 'app.internal:443');
  assert.equal(f.target6, 'localhost:8443');
  const o = toProxyOptions(f);
  assert.equal(o.target4, 'app.internal:443');
  const e = flags([], {
    MMPROXY_TARGET4: 'app.internal:443',
    MMPROXY_TARGET6: 'app6.internal:443',
  });
  assert.equal(e.target4, 'app.internal:443');
  assert.equal(e.target6, 'app6.internal:443');
  assert.throws(
    () => flags([], { MMPROXY_TARGET4: 'app internal:443' }),
    /MMPROXY_TARGET4 must be an IPv4 address or host name .*e\.g\. MMPROXY_TARGET4=127\.0\.0\.1:443 or MMPROXY_TARGET4=app\.internal:443/,
  );
});

test('every flag is read from MMPROXY_* when the command line does not set it', () => {
  const env: Record<string, string> = {
    MMPROXY_LISTEN: '127.0.0.1:7000',
    MMPROXY_TARGET4: '127.0.0.3:443',
    MMPROXY_TARGET6: '[::1]:444',
    MMPROXY_PROTOCOL: 'udp',
    MMPROXY_ALLOWED_SUBNETS: '/etc/subnets',
    MMPROXY_CLOSE_AFTER: '9',
    MMPROXY_LISTENERS: '2',
    MMPROXY_MARK: '7',
    MMPROXY_VERBOSE: '1',
    MMPROXY_HEADER_TIMEOUT: '3',
    MMPROXY_WORKERS: '5',
    MMPROXY_DYNAMIC_DESTINATION: 'true',
    MMPROXY_DYNAMIC_DESTINATION_ALLOW: '10.0.0.0/8,[::1]:443',
    MMPROXY_ROUTE: '/etc/mmproxy/route.mjs',
    MMPROXY_MAX_CONNECTIONS: '11',
    MMPROXY_MAX_FLOWS: '12',
    MMPROXY_DRAIN_TIMEOUT: '4',
    MMPROXY_REJECT_LOCAL: '1',
    MMPROXY_METRICS: ':9100',
    MMPROXY_SETUP_ROUTES: '321',
  };
  assert.deepEqual(Object.keys(env).sort(), FLAGS.map(envName).sort(), 'one variable per flag');
  const f = flags([], env);
  assert.deepEqual(f, {
    listen: '127.0.0.1:7000',
    target4: '127.0.0.3:443',
    target6: '[::1]:444',
    protocol: 'udp',
    allowedSubnetsFile: '/etc/subnets',
    closeAfter: 9,
    listeners: 2,
    mark: 7,
    verbosity: 1,
    headerTimeout: 3000,
    workers: 5,
    dynamicDestination: true,
    dynamicDestinationAllow: ['10.0.0.0/8', '[::1]:443'],
    routeModule: '/etc/mmproxy/route.mjs',
    maxConnections: 11,
    maxFlows: 12,
    drainTimeout: 4000,
    rejectLocal: true,
    metrics: { host: '', port: 9100 },
    setupRoutes: 321,
  });
  // Flags win over the environment.
  const { MMPROXY_DYNAMIC_DESTINATION_ALLOW: _, ...withoutAllow } = env;
  const g = flags(['--mark', '9', '-l', '0.0.0.0:1', '--dynamic-destination=false'], withoutAllow);
  assert.equal(g.mark, 9);
  assert.equal(g.listen, '0.0.0.0:1');
  assert.equal(g.dynamicDestination, false);
  // An empty variable is unset, as compose files write them.
  assert.equal(flags([], { MMPROXY_MARK: '' }).mark, 0);
  assert.equal(flags([], { MMPROXY_SETUP_ROUTES: 'true' }).setupRoutes, 123);
  assert.equal(flags([], { MMPROXY_SETUP_ROUTES: 'false' }).setupRoutes, undefined);
});

test('a bad environment variable is a usage error naming the variable', async () => {
  const r = await run([], { MMPROXY_MARK: 'lots' });
  assert.equal(r.code, 2);
  assert.equal(r.stdout, '');
  assert.match(
    r.stderr,
    /MMPROXY_MARK must be an integer from 0 to 4294967295, e\.g\. MMPROXY_MARK=123 \(got "lots"\)/,
  );
});

// [argv, the message's pattern]: every flag with a bad value, and the malformed lines.
const BAD: Array<[string[], RegExp]> = [
  [['--bogus'], /unknown flag --bogus\. Run "mmproxy --help"/],
  [['-x', '1'], /unknown flag -x\b/],
  [['--no-dynamic-destination'], /unknown flag --no-dynamic-destination/],
  [['stray'], /unexpected argument "stray"/],
  [['-l', '1.2.3.4:5', 'extra'], /unexpected argument "extra"/],
  [['--dynamic-destination', 'false'], /unexpected argument "false"/],
  [['-l'], /flag -l needs a value, e\.g\. -l 0\.0\.0\.0:8443/],
  [['--allowed-subnets'], /flag --allowed-subnets needs a value, e\.g\. --allowed-subnets \//],
  [['--route'], /flag --route needs a value, e\.g\. --route \/etc\/mmproxy\/route\.mjs/],
  [
    ['-l', 'local host:8443'],
    /-l must be an IP address or host name and a port \(IPv6 in brackets; "local host" is not an IP address or host name\), e\.g\. -l 0\.0\.0\.0:8443 or -l app\.internal:8443 \(got "local host:8443"\)/,
  ],
  [['-l', '0.0.0.0'], /-l must be an IP address or host name and a port .*the port is missing/],
  [
    ['-l', '::1:80'],
    /-l must be an IP address or host name and a port .*in brackets: "\[::1\]:443"/,
  ],
  [['-l', '0.0.0.0:65536'], /-l must be .*from 0 to 65535/],
  [['-l', ':8443'], /-l must be .*"" is not an IP address or host name/],
  [
    ['-4', '[::1]:443'],
    /-4 must be an IPv4 address or host name and a port \(IPv6 in brackets; "::1" is IPv6\), e\.g\. -4 127\.0\.0\.1:443 or -4 app\.internal:443/,
  ],
  [['-4', '127.0.0.1:0'], /-4 must be an IPv4 address or host name and a port .*from 1 to 65535/],
  [['-4', 'app.internal:0'], /-4 must be .*from 1 to 65535/],
  // A number where a name's last label would be is what inet_aton reads as an address.
  [['-4', '127.000.0.1:443'], /-4 must be .*a host name does not end in a number/],
  [['-4', '0x7f000001:443'], /-4 must be .*a host name does not end in a number/],
  [['-4', 'app_internal-:443'], /-4 must be .*"app_internal-" is not an IP address or host name/],
  [
    ['-6', '127.0.0.1:443'],
    /-6 must be an IPv6 address or host name and a port.*"127\.0\.0\.1" is IPv4.*e\.g\. -6 \[::1\]:443 or -6 app\.internal:443/,
  ],
  [['-6', '::1:443'], /-6 must be an IPv6 address or host name/],
  [['-6', '[app.internal]:443'], /-6 must be .*only an IPv6 address goes in brackets/],
  // Refused by the flag itself now, with the library's rule, not later by createProxy.
  [['-6', '[fe80::1%eth0]:443'], /-6 must be .*zone indexes such as %eth0 are not supported/],
  [['-p', 'sctp'], /-p must be tcp or udp, e\.g\. -p tcp \(got "sctp"\)/],
  [['--allowed-subnets='], /--allowed-subnets must be a file path/],
  [
    ['--close-after', '-1'],
    /--close-after must be a whole number of seconds \(more than 0, at most 2147483\), e\.g\. --close-after 60 \(got "-1"\)/,
  ],
  // The library refuses 0 for both; so does the parser, with the library's rule.
  [['--close-after', '0'], /--close-after must be a whole number of seconds \(more than 0/],
  [['--header-timeout', '0'], /--header-timeout must be a number of seconds \(more than 0/],
  [['--header-timeout', '2147484'], /--header-timeout must be .*at most 2147483\)/],
  [['--close-after', '1.5'], /--close-after must be a whole number/],
  [['--listeners', '0'], /--listeners must be an integer of at least 1, e\.g\. --listeners 4/],
  [['--listeners', 'many'], /--listeners must be an integer of at least 1/],
  [
    ['--mark', '-1'],
    /--mark must be an integer from 0 to 4294967295, e\.g\. --mark 123 \(got "-1"\)/,
  ],
  [['--mark', '4294967296'], /--mark must be an integer from 0 to 4294967295/],
  [['-mark=0xzz'], /--mark must be an integer/],
  [['-v', 'x'], /-v must be 0, 1 or 2, e\.g\. -v 1 \(got "x"\)/],
  [['-v', '-1'], /-v must be 0, 1 or 2/],
  [
    ['--header-timeout', '1s'],
    /--header-timeout must be a number of seconds \(more than 0, at most 2147483\), e\.g\. --header-timeout 5/,
  ],
  [['--workers', '0'], /--workers must be an integer of at least 1/],
  [
    ['--dynamic-destination=maybe'],
    /--dynamic-destination must be true or false, e\.g\. --dynamic-destination \(got "maybe"\)/,
  ],
  [
    ['--dynamic-destination', '--dynamic-destination-allow', '10.0.0.0/8,10.0.0.0/8:0'],
    /--dynamic-destination-allow must be a comma-separated list of subnets with optional ports or port ranges \(entry 1 "10\.0\.0\.0\/8:0": after ":" comes a port from 1 to 65535 or a range such as 10000-20000, not "0"\), e\.g\. --dynamic-destination-allow 127\.0\.0\.1\/32:10000-20000,\[::1\]\/128:443 \(got "10\.0\.0\.0\/8,10\.0\.0\.0\/8:0"\)/,
  ],
  [['--dynamic-destination', '--dynamic-destination-allow', '::1:443'], /goes in brackets/],
  [['--dynamic-destination', '--dynamic-destination-allow='], /entry 0 "": an empty entry/],
  [
    ['--dynamic-destination-allow', '10.0.0.0/8'],
    /--dynamic-destination-allow limits where --dynamic-destination connects, which is off; give both, e\.g\. --dynamic-destination --dynamic-destination-allow 127\.0\.0\.1\/32:10000-20000/,
  ],
  [['--max-connections', '0'], /--max-connections must be an integer of at least 1/],
  [['--max-flows', '-5'], /--max-flows must be an integer of at least 1/],
  [['--drain-timeout', 'forever'], /--drain-timeout must be a number of seconds/],
  [['--reject-local=2'], /--reject-local must be true or false/],
  [
    ['--metrics', '9100'],
    /--metrics must be HOST:PORT \(IPv6 in brackets\), e\.g\. --metrics 127\.0\.0\.1:9100/,
  ],
  [['--metrics', 'a b:1'], /--metrics must be HOST:PORT/],
  [
    ['--setup-routes=254'],
    /--setup-routes must be a routing table number from 1 to 4294967295, not 253-255, e\.g\. --setup-routes 123/,
  ],
  [['--setup-routes=0'], /--setup-routes must be a routing table number/],
  [['--setup-routes=main'], /--setup-routes must be a routing table number/],
  [['check', '--bogus'], /unknown flag --bogus/],
  [['demo', '-v', '1'], /mmproxy demo takes no flags \(got -v\)/],
];

for (const [argv, pattern] of BAD) {
  test(`usage error, exit 2: mmproxy ${argv.join(' ')}`, async () => {
    const r = await run(argv);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '', 'nothing on stdout: that is for logs');
    assert.match(r.stderr, pattern);
    assert.match(r.stderr, /^mmproxy/);
  });
}

test('every kind of value has a bad-value case above', () => {
  for (const spec of FLAGS) {
    const display = spec.name.length === 1 ? `-${spec.name}` : `--${spec.name}`;
    assert.ok(
      BAD.some(([argv]) =>
        argv.some(
          (a) => a === display || a.startsWith(`${display}=`) || a.startsWith(`-${spec.name}=`),
        ),
      ),
      `no bad-value test for ${display}`,
    );
  }
});

test('--help lists every flag with its default and environment variable; exit 0', async () => {
  for (const arg of ['--help', '-help', '-h']) {
    const r = await run([arg]);
    assert.equal(r.code, 0);
    assert.equal(r.stderr, '');
    assert.equal(r.stdout, helpText(packageVersion()));
  }
  const text = (await run(['--help'])).stdout;
  for (const spec of FLAGS) {
    assert.ok(text.includes(envName(spec)), envName(spec));
    if (spec.defaultText)
      assert.ok(text.includes(`(default ${spec.defaultText}, env ${envName(spec)})`), spec.name);
  }
  assert.match(text, /mmproxy check/);
  assert.match(text, /mmproxy demo/);
});

test('--version prints the package version; exit 0', async () => {
  for (const arg of ['--version', '-version']) {
    const r = await run([arg]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^mmproxy \d+\.\d+\.\d+/);
  }
});
