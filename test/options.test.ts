// Tests for lib/options.ts: defaults, normalization, and the message for every kind of bad value.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import {
  DEFAULTS,
  loadAllowlist,
  normalizeOptions,
  type NormalizedOptions,
  type ProxyOptions,
} from '../lib/options.js';
import { Allowlist } from '../lib/allowlist.js';
import { AllowlistError, InvalidOptionError } from '../lib/errors.js';

const expectedDefaults: NormalizedOptions = {
  listen: { address: '0.0.0.0', port: 8443, family: 4 },
  listenFds: null,
  target4: { address: '127.0.0.1', port: 443, family: 4 },
  target6: { address: '::1', port: 443, family: 6 },
  protocol: 'tcp',
  allowlist: null,
  allowedSubnetsFile: null,
  mark: 0,
  listeners: 1,
  workers: Math.min(os.availableParallelism(), 256),
  closeAfter: 60,
  headerTimeout: 10000,
  drainTimeout: 30000,
  maxConnections: Infinity,
  maxFlows: 65536,
  dynamicDestination: false,
  dynamicDestinationAllow: null,
  local: 'load-balancer',
  route: null,
  routeModule: null,
  verbosity: 0,
};

test('defaults are go-mmproxy’s', () => {
  assert.deepEqual(normalizeOptions(), expectedDefaults);
  assert.deepEqual(normalizeOptions({}), expectedDefaults);
  assert.deepEqual(
    normalizeOptions({ listen: undefined, mark: undefined, route: undefined }),
    expectedDefaults,
  );
  assert.equal(DEFAULTS.listen, '0.0.0.0:8443');
  assert.equal(DEFAULTS.target4, '127.0.0.1:443');
  assert.equal(DEFAULTS.target6, '[::1]:443');
  assert.equal(DEFAULTS.closeAfter, 60);
  assert.ok(Object.isFrozen(DEFAULTS));
});

const good: [ProxyOptions, Partial<NormalizedOptions>][] = [
  [{ listen: '[::]:8443' }, { listen: { address: '::', port: 8443, family: 6 } }],
  [{ listen: '0.0.0.0:0' }, { listen: { address: '0.0.0.0', port: 0, family: 4 } }],
  [{ listen: '[0:0::0001]:65535' }, { listen: { address: '::1', port: 65535, family: 6 } }],
  [
    { listen: '[::FFFF:127.0.0.1]:1' },
    { listen: { address: '::ffff:127.0.0.1', port: 1, family: 6 } },
  ],
  [{ listen: { address: '::', port: 0 } }, { listen: { address: '::', port: 0, family: 6 } }],
  [
    { listen: { address: '127.0.0.1', port: 9000, family: 'IPv4' } },
    { listen: { address: '127.0.0.1', port: 9000, family: 4 } },
  ],
  [{ target4: '10.0.0.1:80' }, { target4: { address: '10.0.0.1', port: 80, family: 4 } }],
  [
    { target4: { address: '10.0.0.1', port: 80, family: 4 } },
    { target4: { address: '10.0.0.1', port: 80, family: 4 } },
  ],
  [
    { target6: '[2001:DB8::1]:8080' },
    { target6: { address: '2001:db8::1', port: 8080, family: 6 } },
  ],
  [{ target6: { address: '::1', port: 1 } }, { target6: { address: '::1', port: 1, family: 6 } }],
  // Names are kept as given, with the family to resolve them for (listen: either, IPv4 first).
  [{ target4: 'app.internal:443' }, { target4: { host: 'app.internal', port: 443, family: 4 } }],
  [{ target6: 'app.internal:443' }, { target6: { host: 'app.internal', port: 443, family: 6 } }],
  [{ target6: 'localhost:8443' }, { target6: { host: 'localhost', port: 8443, family: 6 } }],
  [{ listen: 'proxy.internal:0' }, { listen: { host: 'proxy.internal', port: 0, family: 0 } }],
  [
    { target4: 'App_1.Example-Internal.:80' },
    { target4: { host: 'App_1.Example-Internal.', port: 80, family: 4 } },
  ],
  [
    { target4: { address: 'app.internal', port: 443, family: 'IPv4' } },
    { target4: { host: 'app.internal', port: 443, family: 4 } },
  ],
  [
    { listen: { address: 'proxy.internal', port: 8443, family: 6 } },
    { listen: { host: 'proxy.internal', port: 8443, family: 6 } },
  ],
  [
    { listen: `${'a'.repeat(63)}.b:1` },
    { listen: { host: `${'a'.repeat(63)}.b`, port: 1, family: 0 } },
  ],
  [{ protocol: 'udp' }, { protocol: 'udp' }],
  [{ mark: 0xffffffff }, { mark: 4294967295 }],
  [{ mark: 123 }, { mark: 123 }],
  [{ listeners: 1024 }, { listeners: 1024 }],
  [{ workers: 1 }, { workers: 1 }],
  [{ workers: 256 }, { workers: 256 }],
  [{ closeAfter: 0.5 }, { closeAfter: 0.5 }],
  [{ headerTimeout: 1 }, { headerTimeout: 1 }],
  [{ drainTimeout: 0 }, { drainTimeout: 0 }],
  [{ maxConnections: 0 }, { maxConnections: Infinity }],
  [{ maxConnections: Infinity }, { maxConnections: Infinity }],
  [{ maxConnections: 1 }, { maxConnections: 1 }],
  [{ maxFlows: 1 }, { maxFlows: 1 }],
  [{ dynamicDestination: true }, { dynamicDestination: true }],
  [{ local: 'reject' }, { local: 'reject' }],
  [{ verbosity: 2 }, { verbosity: 2 }],
];

for (const [input, expected] of good) {
  test(`normalizes ${JSON.stringify(input)}`, () => {
    assert.deepEqual(normalizeOptions(input), { ...expectedDefaults, ...expected });
  });
}

test('route keeps the function it was given', () => {
  const route = () => null;
  assert.equal(normalizeOptions({ route }).route, route);
});

const E = {
  listen:
    'an IP address or host name and port such as "0.0.0.0:8443", "[::]:8443" or "proxy.internal:8443"',
  listenObject: 'an IP address or host name and port such as { address: "0.0.0.0", port: 8443 }',
  target4: 'an IPv4 address or host name and port such as "127.0.0.1:443" or "app.internal:443"',
  target4Object:
    'an IPv4 address or host name and port such as { address: "127.0.0.1", port: 443 }',
  target6: 'an IPv6 address or host name and port such as "[::1]:443" or "app.internal:443"',
  target6Object: 'an IPv6 address or host name and port such as { address: "::1", port: 443 }',
  subnets: 'an Allowlist or a non-empty array of subnets such as ["192.0.2.0/24", "2001:db8::/32"]',
};

// [options, the option named, the message after 'option "<name>" must be '].
const bad: [Record<string, unknown>, string, string][] = [
  [{ target4: '[::1]:443' }, 'target4', `${E.target4}; got "[::1]:443" ("::1" is IPv6)`],
  [{ target4: '127.0.0.1' }, 'target4', `${E.target4}; got "127.0.0.1" (the port is missing)`],
  [
    { target4: '127.0.0.1:0' },
    'target4',
    `${E.target4}; got "127.0.0.1:0" (the port must be a whole number from 1 to 65535)`,
  ],
  [
    { target4: '127.0.0.1:65536' },
    'target4',
    `${E.target4}; got "127.0.0.1:65536" (the port must be a whole number from 1 to 65535)`,
  ],
  [
    { target4: '127.0.0.1:https' },
    'target4',
    `${E.target4}; got "127.0.0.1:https" (the port must be a whole number from 1 to 65535)`,
  ],
  [
    { target4: '127.0.0.1:+80' },
    'target4',
    `${E.target4}; got "127.0.0.1:+80" (the port must be a whole number from 1 to 65535)`,
  ],
  [
    { target4: '127.000.0.1:443' },
    'target4',
    `${E.target4}; got "127.000.0.1:443" ("127.000.0.1" is not an IP address, and a host name does not end in a number)`,
  ],
  [
    { target4: '0x7f000001:443' },
    'target4',
    `${E.target4}; got "0x7f000001:443" ("0x7f000001" is not an IP address, and a host name does not end in a number)`,
  ],
  [
    { target4: 'app internal:443' },
    'target4',
    `${E.target4}; got "app internal:443" ("app internal" is not an IP address or host name)`,
  ],
  [
    { target4: '-app.internal:443' },
    'target4',
    `${E.target4}; got "-app.internal:443" ("-app.internal" is not an IP address or host name)`,
  ],
  [
    { target4: 'app..internal:443' },
    'target4',
    `${E.target4}; got "app..internal:443" ("app..internal" is not an IP address or host name)`,
  ],
  [
    { target4: `${'a'.repeat(64)}.b:443` },
    'target4',
    `${E.target4}; got "${'a'.repeat(64)}.b:443" ("${'a'.repeat(64)}.b" is not an IP address or host name)`,
  ],
  [
    { target4: 'app.internal:0' },
    'target4',
    `${E.target4}; got "app.internal:0" (the port must be a whole number from 1 to 65535)`,
  ],
  [
    { target4: { address: 'app.internal', port: 443, family: 'IPv6' } },
    'target4',
    `${E.target4Object}; got {"address":"app.internal","port":443,"family":"IPv6"} ` +
      `(family "IPv6" is not one target4 can use)`,
  ],
  [
    { target6: '[app.internal]:443' },
    'target6',
    `${E.target6}; got "[app.internal]:443" (only an IPv6 address goes in brackets, not "app.internal")`,
  ],
  [{ target4: 443 }, 'target4', `${E.target4}; got 443`],
  [{ target4: null }, 'target4', `${E.target4}; got null`],
  [{ target4: ['127.0.0.1', 443] }, 'target4', `${E.target4}; got ["127.0.0.1",443]`],
  [
    { target4: { address: '127.0.0.1', port: '443' } },
    'target4',
    `${E.target4Object}; got {"address":"127.0.0.1","port":"443"} (port must be a number)`,
  ],
  [
    { target4: { address: '127.0.0.1' } },
    'target4',
    `${E.target4Object}; got {"address":"127.0.0.1"} (port must be a number)`,
  ],
  [
    { target4: { addr: '127.0.0.1', port: 443 } },
    'target4',
    `${E.target4Object}; got {"addr":"127.0.0.1","port":443} (unknown key "addr")`,
  ],
  [
    { target4: { address: 2130706433, port: 443 } },
    'target4',
    `${E.target4Object}; got {"address":2130706433,"port":443} (address must be a string)`,
  ],
  [
    { target4: { address: '127.0.0.1', port: 443, family: 'IPv6' } },
    'target4',
    `${E.target4Object}; got {"address":"127.0.0.1","port":443,"family":"IPv6"} ` +
      `(family "IPv6" does not match the address)`,
  ],
  [
    { target6: '::1:443' },
    'target6',
    `${E.target6}; got "::1:443" (put an IPv6 address in brackets: "[::1]:443")`,
  ],
  [{ target6: '[::1]' }, 'target6', `${E.target6}; got "[::1]" (write the port after "]:")`],
  [{ target6: '[::1]443' }, 'target6', `${E.target6}; got "[::1]443" (write the port after "]:")`],
  [{ target6: '[::1:443' }, 'target6', `${E.target6}; got "[::1:443" (write the port after "]:")`],
  [
    { target6: '[127.0.0.1]:443' },
    'target6',
    `${E.target6}; got "[127.0.0.1]:443" (only an IPv6 address goes in brackets)`,
  ],
  [
    { target6: '127.0.0.1:443' },
    'target6',
    `${E.target6}; got "127.0.0.1:443" ("127.0.0.1" is IPv4)`,
  ],
  [
    { target6: '[fe80::1%eth0]:443' },
    'target6',
    `${E.target6}; got "[fe80::1%eth0]:443" (zone indexes such as %eth0 are not supported)`,
  ],
  [
    { target6: { address: 'fe80::1%eth0', port: 443 } },
    'target6',
    `${E.target6Object}; got {"address":"fe80::1%eth0","port":443} ` +
      `(zone indexes such as %eth0 are not supported)`,
  ],
  [
    { target6: { address: '[::1]', port: 443 } },
    'target6',
    `${E.target6Object}; got {"address":"[::1]","port":443} ("[::1]" is not an IP address or host name)`,
  ],
  [
    { listen: '0.0.0.0:-1' },
    'listen',
    `${E.listen}; got "0.0.0.0:-1" (the port must be a whole number from 0 to 65535)`,
  ],
  [
    { listen: '0.0.0.0:99999' },
    'listen',
    `${E.listen}; got "0.0.0.0:99999" (the port must be a whole number from 0 to 65535)`,
  ],
  [
    { listen: ':8443' },
    'listen',
    `${E.listen}; got ":8443" ("" is not an IP address or host name)`,
  ],
  [{ listen: '' }, 'listen', `${E.listen}; got "" (the port is missing)`],
  [
    { listen: { address: '0.0.0.0', port: 1.5 } },
    'listen',
    `${E.listenObject}; got {"address":"0.0.0.0","port":1.5} ` +
      `(the port must be a whole number from 0 to 65535)`,
  ],
  [{ protocol: 'TCP' }, 'protocol', 'one of "tcp", "udp"; got "TCP"'],
  [{ protocol: 'sctp' }, 'protocol', 'one of "tcp", "udp"; got "sctp"'],
  [{ allowedSubnets: '192.0.2.0/24' }, 'allowedSubnets', `${E.subnets}; got "192.0.2.0/24"`],
  [
    { allowedSubnets: [] },
    'allowedSubnets',
    `${E.subnets}; got [] (the allowlist has no entries; give at least one subnet such as ` +
      `192.0.2.0/24 or 2001:db8::/32, or a single address such as 192.0.2.7 (an empty ` +
      `allowlist is refused rather than read as "allow everyone"))`,
  ],
  [
    { allowedSubnets: ['192.0.2.0/24', 'lb.example.com'] },
    'allowedSubnets',
    `${E.subnets}; got ["192.0.2.0/24","lb.example.com"] (allowlist entry 1 ("lb.example.com"): ` +
      `"lb.example.com" is not an IPv4 or IPv6 address; write subnets such as 192.0.2.0/24 or ` +
      `2001:db8::/32, or a single address such as 192.0.2.7)`,
  ],
  [
    { allowedSubnetsFile: '' },
    'allowedSubnetsFile',
    'a file path such as "/etc/mmproxy/allowed-subnets.txt"; got ""',
  ],
  [
    { allowedSubnetsFile: ['/etc/a'] },
    'allowedSubnetsFile',
    'a file path such as "/etc/mmproxy/allowed-subnets.txt"; got ["/etc/a"]',
  ],
  [{ mark: -1 }, 'mark', 'a whole number from 0 to 4294967295 such as 1; got -1'],
  [{ mark: 2 ** 32 }, 'mark', 'a whole number from 0 to 4294967295 such as 1; got 4294967296'],
  [{ mark: 1.5 }, 'mark', 'a whole number from 0 to 4294967295 such as 1; got 1.5'],
  [{ mark: '7' }, 'mark', 'a whole number from 0 to 4294967295 such as 1; got "7"'],
  [{ mark: 7n }, 'mark', 'a whole number from 0 to 4294967295 such as 1; got 7n'],
  [{ listeners: 0 }, 'listeners', 'a whole number from 1 to 1024 such as 4; got 0'],
  [{ listeners: 1025 }, 'listeners', 'a whole number from 1 to 1024 such as 4; got 1025'],
  [{ listeners: '2' }, 'listeners', 'a whole number from 1 to 1024 such as 4; got "2"'],
  [{ workers: 0 }, 'workers', 'a whole number from 1 to 256 such as 4; got 0'],
  [{ workers: 257 }, 'workers', 'a whole number from 1 to 256 such as 4; got 257'],
  [{ workers: NaN }, 'workers', 'a whole number from 1 to 256 such as 4; got NaN'],
  [
    { closeAfter: 0 },
    'closeAfter',
    'a number of seconds, more than 0 and at most 2147483, such as 60; got 0',
  ],
  [
    { closeAfter: Infinity },
    'closeAfter',
    'a number of seconds, more than 0 and at most 2147483, such as 60; got Infinity',
  ],
  [
    { closeAfter: '60' },
    'closeAfter',
    'a number of seconds, more than 0 and at most 2147483, such as 60; got "60"',
  ],
  [
    { headerTimeout: -5 },
    'headerTimeout',
    'a number of milliseconds, more than 0 and at most 2147483647, such as 10000; got -5',
  ],
  [
    { headerTimeout: 2 ** 31 },
    'headerTimeout',
    'a number of milliseconds, more than 0 and at most 2147483647, such as 10000; got 2147483648',
  ],
  [
    { drainTimeout: -1 },
    'drainTimeout',
    'a number of milliseconds, 0 or more and at most 2147483647, such as 30000; got -1',
  ],
  [
    { drainTimeout: -0.001 },
    'drainTimeout',
    'a number of milliseconds, 0 or more and at most 2147483647, such as 30000; got -0.001',
  ],
  [
    { maxConnections: -1 },
    'maxConnections',
    'a whole number from 1 to 4294967295, or 0 or Infinity for no limit, such as 10000; got -1',
  ],
  [
    { maxConnections: 2.5 },
    'maxConnections',
    'a whole number from 1 to 4294967295, or 0 or Infinity for no limit, such as 10000; got 2.5',
  ],
  [{ maxFlows: 0 }, 'maxFlows', 'a whole number from 1 to 4294967295 such as 65536; got 0'],
  [{ dynamicDestination: 'yes' }, 'dynamicDestination', 'one of false, true; got "yes"'],
  [{ dynamicDestination: 1 }, 'dynamicDestination', 'one of false, true; got 1'],
  [{ local: 'lb' }, 'local', 'one of "load-balancer", "reject"; got "lb"'],
  [{ verbosity: 3 }, 'verbosity', 'one of 0, 1, 2; got 3'],
  [{ verbosity: '1' }, 'verbosity', 'one of 0, 1, 2; got "1"'],
  [{ route: 'http://x' }, 'route', 'a function such as (connection) => decision; got "http://x"'],
  [{ route: null }, 'route', 'a function such as (connection) => decision; got null'],
];

for (const [input, option, rest] of bad) {
  test(`rejects ${option} = ${JSON.stringify(input[option], (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v))}`, () => {
    assert.throws(
      () => normalizeOptions(input as ProxyOptions),
      (err: unknown) => {
        assert.ok(err instanceof InvalidOptionError);
        assert.equal(err.code, 'ERR_MMPROXY_INVALID_OPTION');
        assert.equal(err.option, option);
        assert.equal(err.message, `option "${option}" must be ${rest}`);
        return true;
      },
    );
  });
}

test('long values are shortened in messages; cyclic values do not break them', () => {
  const cyclic: Record<string, unknown> = { address: '127.0.0.1', port: 443 };
  cyclic.self = cyclic;
  assert.throws(() => normalizeOptions({ target4: cyclic as never }), {
    message: `option "target4" must be ${E.target4Object}; got [object Object] (unknown key "self")`,
  });
  assert.throws(() => normalizeOptions({ allowedSubnets: 'x'.repeat(200) as never }), {
    message: new RegExp(`; got "${'x'.repeat(78)}…$`),
  });
});

test('the options object itself must be an object', () => {
  for (const input of [null, 'listen', 5, []]) {
    assert.throws(() => normalizeOptions(input as never), {
      name: 'InvalidOptionError',
      option: 'options',
      message: `option "options" must be an object such as { listen: "0.0.0.0:8443" }; got ${JSON.stringify(input)}`,
    });
  }
});

test('unknown options are named, with a suggestion and the valid names', () => {
  const valid =
    'listen, target4, target6, protocol, allowedSubnets, allowedSubnetsFile, mark, listeners, ' +
    'listenFds, workers, closeAfter, headerTimeout, drainTimeout, maxConnections, maxFlows, ' +
    'dynamicDestination, dynamicDestinationAllow, local, route, routeModule, verbosity';
  assert.throws(() => normalizeOptions({ targt4: '127.0.0.1:443' } as ProxyOptions), {
    name: 'InvalidOptionError',
    option: 'targt4',
    message: `unknown option "targt4" (did you mean "target4"?); valid options are ${valid}`,
  });
  assert.throws(() => normalizeOptions({ closeafter: 5 } as ProxyOptions), {
    message: `unknown option "closeafter" (did you mean "closeAfter"?); valid options are ${valid}`,
  });
  assert.throws(() => normalizeOptions({ port: 1, host: 'x' } as ProxyOptions), {
    option: 'port',
    message: `unknown options "port", "host"; valid options are ${valid}`,
  });
  assert.throws(() => normalizeOptions({ banana: 1 } as ProxyOptions), {
    message: `unknown option "banana"; valid options are ${valid}`,
  });
});

test('dynamicDestinationAllow: entries are normalized; a bad list names the option, the entry and an example', () => {
  const o = normalizeOptions({
    dynamicDestination: true,
    dynamicDestinationAllow: ['127.0.0.1:10000-20000', '[::1]/128:443', '10.1.0.0/8'],
  });
  assert.deepEqual(o.dynamicDestinationAllow?.entries, [
    '127.0.0.1/32:10000-20000',
    '[::1]/128:443',
    '10.0.0.0/8',
  ]);
  assert.equal(normalizeOptions({ dynamicDestination: true }).dynamicDestinationAllow, null);
  const expected =
    'option "dynamicDestinationAllow" must be an array of subnets with optional ports such as ' +
    '["127.0.0.1/32:10000-20000","[::1]/128:443","10.0.0.0/8"]; got ';
  const cases: Array<[unknown, string]> = [
    ['10.0.0.0/8', `${expected}"10.0.0.0/8"`],
    [[], `${expected}[] (the list is empty, which would refuse every destination)`],
    [
      ['10.0.0.0/8', '10.0.0.0/8:99999'],
      `${expected}["10.0.0.0/8","10.0.0.0/8:99999"] (entry 1 "10.0.0.0/8:99999": after ":" ` +
        'comes a port from 1 to 65535 or a range such as 10000-20000, not "99999")',
    ],
  ];
  for (const [value, message] of cases) {
    assert.throws(
      () => normalizeOptions({ dynamicDestination: true, dynamicDestinationAllow: value as never }),
      { name: 'InvalidOptionError', option: 'dynamicDestinationAllow', message },
    );
  }
  assert.throws(() => normalizeOptions({ dynamicDestinationAllow: ['10.0.0.0/8'] }), {
    name: 'InvalidOptionError',
    option: 'dynamicDestinationAllow',
    message:
      'option "dynamicDestinationAllow" limits where dynamicDestination connects, and ' +
      'dynamicDestination is off; set both, such as { dynamicDestination: true, ' +
      'dynamicDestinationAllow: ["127.0.0.1/32:10000-20000"] }',
  });
});

test('allowedSubnets and allowedSubnetsFile exclude each other', () => {
  assert.throws(
    () => normalizeOptions({ allowedSubnets: ['192.0.2.0/24'], allowedSubnetsFile: '/etc/lb' }),
    {
      name: 'InvalidOptionError',
      option: 'allowedSubnets',
      message:
        'options "allowedSubnets" and "allowedSubnetsFile" cannot both be given; use ' +
        'allowedSubnets for subnets in code such as ["192.0.2.0/24"], or allowedSubnetsFile ' +
        'for a file such as "/etc/mmproxy/allowed-subnets.txt"',
    },
  );
  // undefined is "not given", so spreading a config with one of them unset works.
  assert.equal(
    normalizeOptions({ allowedSubnets: undefined, allowedSubnetsFile: '/etc/lb' })
      .allowedSubnetsFile,
    '/etc/lb',
  );
});

test('inline allowlists: arrays become an Allowlist; an Allowlist is kept as is', async () => {
  const fromArray = normalizeOptions({ allowedSubnets: ['192.0.2.1/24', '2001:db8::/32'] });
  assert.ok(fromArray.allowlist instanceof Allowlist);
  assert.deepEqual(fromArray.allowlist.entries, ['192.0.2.0/24', '2001:db8::/32']);
  assert.equal(await loadAllowlist(fromArray), fromArray.allowlist);
  const list = Allowlist.from(['198.51.100.0/24']);
  const given = normalizeOptions({ allowedSubnets: list });
  assert.equal(given.allowlist, list);
  assert.equal(await loadAllowlist(given), list);
});

test('no allowlist configured: loadAllowlist resolves null (everyone allowed)', async () => {
  assert.equal(await loadAllowlist(normalizeOptions()), null);
});

test('allowedSubnetsFile is resolved to an absolute path and read by loadAllowlist', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mmproxy-options-'));
  try {
    const file = path.join(dir, 'allowed.txt');
    await writeFile(file, '# lb\n203.0.113.0/24\n');
    const relative = path.relative(process.cwd(), file);
    const options = normalizeOptions({ allowedSubnetsFile: relative });
    assert.equal(options.allowedSubnetsFile, file);
    assert.equal(options.allowlist, null);
    const list = await loadAllowlist(options);
    assert.ok(list);
    assert.deepEqual(list.entries, ['203.0.113.0/24']);
    await assert.rejects(
      loadAllowlist(normalizeOptions({ allowedSubnetsFile: path.join(dir, 'missing') })),
      AllowlistError,
    );
    await writeFile(file, '\n# nothing\n');
    await assert.rejects(loadAllowlist(options), {
      name: 'AllowlistError',
      message: /the allowlist has no entries/,
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
