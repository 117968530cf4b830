// Tests for lib/destination-allow.ts: the entries dynamicDestinationAllow takes, how they are
// normalized, what each refusal says, and which destinations they contain.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DestinationAllowlist } from '../lib/destination-allow.js';

const valid: Array<[string, string]> = [
  ['127.0.0.1/32:10000-20000', '127.0.0.1/32:10000-20000'],
  ['[::1]/128:443', '[::1]/128:443'],
  ['10.0.0.0/8', '10.0.0.0/8'],
  ['10.1.2.3/8:80', '10.0.0.0/8:80'],
  ['192.0.2.7', '192.0.2.7/32'],
  ['192.0.2.7:53', '192.0.2.7/32:53'],
  ['192.0.2.7:1-65535', '192.0.2.7/32:1-65535'],
  ['192.0.2.7:8080-8080', '192.0.2.7/32:8080'],
  ['[::1]', '[::1]/128'],
  ['[::1]:443', '[::1]/128:443'],
  ['[2001:db8::]/32', '[2001:db8::]/32'],
  ['2001:db8::1/32', '[2001:db8::]/32'],
  ['[2001:DB8::]/32:1000-2000', '[2001:db8::]/32:1000-2000'],
  ['[::ffff:192.0.2.0]/120:80', '192.0.2.0/24:80'],
];

for (const [input, normalized] of valid) {
  test(`accepts ${input} as ${normalized}`, () => {
    assert.deepEqual(DestinationAllowlist.from([input]).entries, [normalized]);
  });
}

const invalid: Array<[unknown[], RegExp]> = [
  [[], /^the list is empty/],
  [[''], /^entry 0 "": an empty entry$/],
  [['10.0.0.0/8', 7], /^entry 1 7: each entry must be a string$/],
  [['10.0.0.0/8 :80'], /spaces inside an entry/],
  [['::1:443'], /an IPv6 address goes in brackets/],
  [['2001:db8::1'], /an IPv6 address goes in brackets/],
  [['[127.0.0.1]:80'], /only an IPv6 address goes in brackets/],
  [['[::1/128]:443'], /the prefix length goes after "\]"/],
  [['[::1'], /a "\[" without its "\]"/],
  [['[::1]443'], /"443" after "\]"/],
  [['10.0.0.0/8:'], /after ":" comes a port from 1 to 65535 or a range/],
  [['10.0.0.0/8:0'], /after ":" comes a port from 1 to 65535/],
  [['10.0.0.0/8:65536'], /after ":" comes a port/],
  [['10.0.0.0/8:080'], /after ":" comes a port/],
  [['10.0.0.0/8:1-'], /after ":" comes a port/],
  [['10.0.0.0/8:http'], /after ":" comes a port/],
  [['10.0.0.0/8:20-10'], /the port range 20-10 ends before it starts/],
  [['10.0.0.0/33'], /prefix length 33 is longer than 32/],
  [['localhost:80'], /"localhost" is not an IPv4 or IPv6 address/],
  [['[fe80::1%eth0]:80'], /zone index/],
];

for (const [input, pattern] of invalid) {
  test(`refuses ${JSON.stringify(input)}`, () => {
    assert.throws(
      () => DestinationAllowlist.from(input),
      (err: unknown) => {
        assert.ok(err instanceof TypeError);
        assert.match(err.message, pattern);
        return true;
      },
    );
  });
}

test('contains: the subnet and the port range, both ends included', () => {
  const list = DestinationAllowlist.from([
    '127.0.0.1/32:10000-20000',
    '[::1]/128:443',
    '10.0.0.0/8',
  ]);
  const cases: Array<[string, number, boolean]> = [
    ['127.0.0.1', 10000, true],
    ['127.0.0.1', 20000, true],
    ['127.0.0.1', 9999, false],
    ['127.0.0.1', 20001, false],
    ['127.0.0.2', 15000, false],
    ['::ffff:127.0.0.1', 15000, true],
    ['::1', 443, true],
    ['::1', 444, false],
    ['::2', 443, false],
    ['10.200.0.1', 1, true],
    ['10.200.0.1', 65535, true],
    ['11.0.0.1', 80, false],
    ['not an address', 80, false],
  ];
  for (const [address, port, expected] of cases) {
    assert.equal(list.contains(address, port), expected, `${address} port ${port}`);
  }
});
