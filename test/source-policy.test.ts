// Tests for lib/source-policy.ts: which header sources may be spoofed, and this host's addresses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { localAddresses, spoofRefusal, type SpoofRefusal } from '../lib/source-policy.js';

const local = new Set(['10.1.2.3', '::ffff:10.1.2.3', '2001:db8:1::5', '172.16.0.255']);

const cases: [address: string, port: number, expected: SpoofRefusal | null][] = [
  // Documentation addresses: ordinary clients.
  ['192.0.2.1', 51000, null],
  ['198.51.100.7', 1, null],
  ['203.0.113.9', 65535, null],
  ['2001:db8::1', 443, null],
  ['::ffff:203.0.113.9', 51000, null],
  // Link-local and IPv4-compatible addresses are not special to the kernel.
  ['169.254.1.1', 51000, null],
  ['fe80::1', 51000, null],
  ['fe80::1%eth0', 51000, null],
  ['::127.0.0.1', 51000, null],
  ['255.255.255.254', 51000, null],
  ['240.0.0.1', 51000, null],
  ['223.255.255.255', 51000, null],
  ['1.0.0.0', 51000, null],
  ['ff::1', 51000, null],
  ['::2', 51000, null],
  // Unspecified and "this network".
  ['0.0.0.0', 51000, 'unspecified'],
  ['0.1.2.3', 51000, 'unspecified'],
  ['0.255.255.255', 51000, 'unspecified'],
  ['::', 51000, 'unspecified'],
  ['0:0:0:0:0:0:0:0', 51000, 'unspecified'],
  ['::ffff:0.0.0.0', 51000, 'unspecified'],
  ['::ffff:0.1.0.0', 51000, 'unspecified'],
  // Loopback.
  ['127.0.0.1', 51000, 'loopback'],
  ['127.255.255.254', 51000, 'loopback'],
  ['127.1.2.3', 51000, 'loopback'],
  ['::1', 51000, 'loopback'],
  ['0:0:0:0:0:0:0:1', 51000, 'loopback'],
  ['::ffff:127.0.0.1', 51000, 'loopback'],
  ['::FFFF:7f00:1', 51000, 'loopback'],
  // Multicast.
  ['224.0.0.1', 51000, 'multicast'],
  ['239.255.255.255', 51000, 'multicast'],
  ['::ffff:224.0.0.251', 51000, 'multicast'],
  ['ff02::1', 51000, 'multicast'],
  ['ff00::', 51000, 'multicast'],
  ['FF0E::1:2', 51000, 'multicast'],
  // Limited broadcast.
  ['255.255.255.255', 51000, 'broadcast'],
  ['::ffff:255.255.255.255', 51000, 'broadcast'],
  // This host, in any spelling.
  ['10.1.2.3', 51000, 'local-address'],
  ['::ffff:10.1.2.3', 51000, 'local-address'],
  ['::ffff:a01:203', 51000, 'local-address'],
  ['2001:db8:1::5', 51000, 'local-address'],
  ['2001:DB8:1:0:0:0:0:5', 51000, 'local-address'],
  ['172.16.0.255', 51000, 'local-address'],
  ['10.1.2.4', 51000, null],
  // Port zero, after the address reasons.
  ['192.0.2.1', 0, 'port-zero'],
  ['2001:db8::1', 0, 'port-zero'],
  ['127.0.0.1', 0, 'loopback'],
  // Input that is not an address and port fails closed.
  ['localhost', 51000, 'invalid'],
  ['', 51000, 'invalid'],
  ['192.0.2.1:80', 51000, 'invalid'],
  ['[2001:db8::1]', 51000, 'invalid'],
  ['192.0.2.1', -1, 'invalid'],
  ['192.0.2.1', 65536, 'invalid'],
  ['192.0.2.1', 80.5, 'invalid'],
  ['192.0.2.1', NaN, 'invalid'],
];

for (const [address, port, expected] of cases) {
  test(`spoofRefusal(${JSON.stringify(address)}, ${port}) is ${expected}`, () => {
    assert.equal(spoofRefusal(address, port, local), expected);
  });
}

test('spoofRefusal finds an IPv4 local address given only in its mapped form', () => {
  const mappedOnly = new Set(['::ffff:192.0.2.50']);
  assert.equal(spoofRefusal('192.0.2.50', 1000, mappedOnly), 'local-address');
  assert.equal(spoofRefusal('::ffff:192.0.2.50', 1000, mappedOnly), 'local-address');
  assert.equal(spoofRefusal('192.0.2.51', 1000, mappedOnly), null);
  assert.equal(spoofRefusal('192.0.2.50', 1000, new Set()), null);
});

test('localAddresses holds every interface address in Node form, IPv4 also mapped', () => {
  const set = localAddresses();
  const interfaces = Object.values(os.networkInterfaces()).flatMap((infos) => infos ?? []);
  assert.ok(interfaces.length > 0);
  for (const info of interfaces) {
    const address = info.address.split('%')[0]!;
    assert.ok(set.has(address), `${address} in localAddresses()`);
    if (info.family === 'IPv4') assert.ok(set.has(`::ffff:${address}`));
    assert.notEqual(spoofRefusal(address, 40000, set), null, address);
  }
  for (const address of set) assert.ok(!address.includes('%'), address);
});

test('localAddresses adds network and broadcast addresses of IPv4 subnets wider than /31', (t) => {
  t.mock.method(os, 'networkInterfaces', () => ({
    lo: [
      info('127.0.0.1', '255.0.0.0', 'IPv4'),
      info('::1', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'IPv6'),
    ],
    eth0: [
      info('192.168.10.20', '255.255.255.0', 'IPv4'),
      info('fe80::1234', 'ffff:ffff:ffff:ffff::', 'IPv6', 2),
    ],
    p2p: [info('198.51.100.1', '255.255.255.254', 'IPv4')],
    host: [info('203.0.113.5', '255.255.255.255', 'IPv4')],
  }));
  const set = localAddresses();
  const v4 = ['127.0.0.1', '127.0.0.0', '127.255.255.255', '192.168.10.20', '192.168.10.0'];
  v4.push('192.168.10.255', '198.51.100.1', '203.0.113.5');
  assert.deepEqual(
    [...set].sort(),
    [...v4, ...v4.map((a) => `::ffff:${a}`), '::1', 'fe80::1234'].sort(),
  );
  assert.equal(spoofRefusal('192.168.10.255', 5000, set), 'local-address');
  assert.equal(spoofRefusal('192.168.10.21', 5000, set), null);
  assert.equal(spoofRefusal('198.51.100.0', 5000, set), null);
  assert.equal(spoofRefusal('fe80::1234', 5000, set), 'local-address');
});

function info(
  address: string,
  netmask: string,
  family: 'IPv4' | 'IPv6',
  scopeid = 0,
): os.NetworkInterfaceInfo {
  const common = { address, netmask, mac: '00:00:00:00:00:00', internal: false, cidr: null };
  return family === 'IPv4' ? { ...common, family } : { ...common, family, scopeid };
}
