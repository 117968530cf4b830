// Tests for lib/resolve.ts and lib/targets.ts with a lookup of the test's own: which address is
// chosen for each family, localhost without the resolver, the timeout, the errors; names resolved
// at listen and again on demand, a failure keeping the previous address, and a swap that leaves
// what earlier connections read untouched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LookupAddress } from 'node:dns';
import { ResolveError } from '../lib/errors.js';
import { normalizeOptions, type ProxyOptions } from '../lib/options.js';
import { resolveHost, type LookupAll } from '../lib/resolve.js';
import { Targets } from '../lib/targets.js';

type Answer = LookupAddress[] | NodeJS.ErrnoException | 'never';

/** A lookup that answers from `table` (host → answer per family) and records each call. */
function fakeLookup(table: Record<string, Partial<Record<0 | 4 | 6, Answer>>>) {
  const calls: { host: string; family: 0 | 4 | 6; all: boolean }[] = [];
  const lookup: LookupAll = (host, options, callback) => {
    calls.push({ host, family: options.family, all: options.all });
    const answer = table[host]?.[options.family] ?? dnsError('ENOTFOUND', host);
    if (answer === 'never') return;
    setImmediate(() => {
      if (Array.isArray(answer)) callback(null, answer);
      else callback(answer, []);
    });
  };
  return { lookup, calls };
}

function dnsError(code: string, host: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`getaddrinfo ${code} ${host}`), { code, syscall: 'getaddrinfo' });
}

const v4 = (address: string): LookupAddress => ({ address, family: 4 });
const v6 = (address: string): LookupAddress => ({ address, family: 6 });

test('a name resolves for the family asked, all addresses, the first one chosen', async () => {
  const { lookup, calls } = fakeLookup({
    'app.test': {
      4: [v4('10.0.0.2'), v4('10.0.0.3'), v4('10.0.0.2')],
      6: [v6('2001:DB8::2'), v6('2001:db8::3')],
    },
  });
  assert.deepEqual(await resolveHost('target4', 'app.test', 4, { lookup }), {
    address: '10.0.0.2',
    family: 4,
    addresses: ['10.0.0.2', '10.0.0.3'],
  });
  // Canonical text, as the options give addresses.
  assert.deepEqual(await resolveHost('target6', 'app.test', 6, { lookup }), {
    address: '2001:db8::2',
    family: 6,
    addresses: ['2001:db8::2', '2001:db8::3'],
  });
  assert.deepEqual(calls, [
    { host: 'app.test', family: 4, all: true },
    { host: 'app.test', family: 6, all: true },
  ]);
});

test('either family (the listen address): the first IPv4 address, else the first IPv6 one', async () => {
  const { lookup } = fakeLookup({
    both: { 0: [v6('::1'), v4('127.0.0.2'), v4('127.0.0.3')] },
    six: { 0: [v6('2001:db8::9'), v6('2001:db8::8')] },
  });
  const both = await resolveHost('listen', 'both', 0, { lookup });
  assert.deepEqual(both, {
    address: '127.0.0.2',
    family: 4,
    addresses: ['127.0.0.2', '127.0.0.3'],
  });
  const six = await resolveHost('listen', 'six', 0, { lookup });
  assert.deepEqual(six, {
    address: '2001:db8::9',
    family: 6,
    addresses: ['2001:db8::9', '2001:db8::8'],
  });
});

test('localhost is 127.0.0.1 or ::1 without asking the resolver', async () => {
  const { lookup, calls } = fakeLookup({});
  for (const host of ['localhost', 'LocalHost', 'localhost.']) {
    assert.equal((await resolveHost('target4', host, 4, { lookup })).address, '127.0.0.1');
    assert.equal((await resolveHost('target6', host, 6, { lookup })).address, '::1');
    assert.equal((await resolveHost('listen', host, 0, { lookup })).address, '127.0.0.1');
  }
  assert.deepEqual(calls, []);
  // Only localhost itself: a subdomain is a name like any other.
  await assert.rejects(resolveHost('target4', 'app.localhost', 4, { lookup }), ResolveError);
  assert.deepEqual(calls, [{ host: 'app.localhost', family: 4, all: true }]);
});

test('a name that does not resolve: a ResolveError naming the option, the name and why', async () => {
  const { lookup } = fakeLookup({ temp: { 6: dnsError('EAI_AGAIN', 'temp') } });
  await assert.rejects(resolveHost('target4', 'missing.test', 4, { lookup }), (err: unknown) => {
    assert.ok(err instanceof ResolveError);
    assert.equal(err.code, 'ERR_MMPROXY_RESOLVE');
    assert.equal(err.option, 'target4');
    assert.equal(err.host, 'missing.test');
    assert.equal(err.family, 4);
    assert.equal(err.reason, 'no such name, or no IPv4 address for it (ENOTFOUND)');
    assert.equal(
      err.message,
      'option "target4": cannot resolve "missing.test" to an IPv4 address: ' +
        'no such name, or no IPv4 address for it (ENOTFOUND)',
    );
    assert.equal((err.cause as NodeJS.ErrnoException).code, 'ENOTFOUND');
    return true;
  });
  await assert.rejects(resolveHost('target6', 'temp', 6, { lookup }), {
    name: 'ResolveError',
    message:
      'option "target6": cannot resolve "temp" to an IPv6 address: ' +
      'the resolver could not answer now (EAI_AGAIN)',
  });
});

test('addresses the proxy cannot use are left out; none left is an error', async () => {
  const { lookup } = fakeLookup({
    zoned: { 6: [v6('fe80::1%eth0'), v6('2001:db8::1')] },
    'only-zoned': { 6: [v6('fe80::1%eth0')] },
    empty: { 4: [] },
  });
  assert.deepEqual((await resolveHost('target6', 'zoned', 6, { lookup })).addresses, [
    '2001:db8::1',
  ]);
  await assert.rejects(resolveHost('target6', 'only-zoned', 6, { lookup }), {
    reason:
      'it resolves to fe80::1%eth0, and none is an IPv6 address that can be used ' +
      '(zone indexes such as %eth0 are not supported)',
  });
  await assert.rejects(resolveHost('target4', 'empty', 4, { lookup }), {
    reason: 'the resolver returned no IPv4 addresses',
  });
});

test('a lookup that does not answer fails after the timeout; one that throws fails at once', async () => {
  const { lookup } = fakeLookup({ slow: { 4: 'never' } });
  const started = Date.now();
  await assert.rejects(resolveHost('target4', 'slow', 4, { lookup, timeoutMs: 50 }), {
    name: 'ResolveError',
    reason: 'no answer within 50 ms',
  });
  const took = Date.now() - started;
  assert.ok(took >= 45 && took < 2000, `took ${took} ms`);
  const throwing: LookupAll = () => {
    throw new TypeError('bad hints');
  };
  await assert.rejects(resolveHost('target4', 'x.test', 4, { lookup: throwing }), {
    name: 'ResolveError',
    reason: 'bad hints',
  });
});

function targets(options: ProxyOptions, lookup: LookupAll): Targets {
  return new Targets(normalizeOptions(options), { lookup });
}

test('addresses only: in force from the start, and nothing is ever looked up', async () => {
  const { lookup, calls } = fakeLookup({});
  const t = targets({ listen: '[::]:0', target4: '10.0.0.1:80', target6: '[::1]:81' }, lookup);
  assert.equal(t.hasNames, false);
  assert.deepEqual(t.current, {
    target4: { address: '10.0.0.1', port: 80, family: 4 },
    target6: { address: '::1', port: 81, family: 6 },
  });
  assert.deepEqual(await t.forListen(), { address: '::', port: 0, family: 6 });
  assert.deepEqual(await t.refresh(), []);
  assert.deepEqual(calls, []);
});

test('names are resolved at listen: the listen address returned, the targets put in force', async () => {
  const { lookup, calls } = fakeLookup({
    'proxy.test': { 0: [v4('127.0.0.5')] },
    'app.test': { 4: [v4('127.0.0.2')], 6: [v6('::1')] },
  });
  const t = targets(
    { listen: 'proxy.test:0', target4: 'app.test:443', target6: 'app.test:444' },
    lookup,
  );
  assert.equal(t.hasNames, true);
  assert.deepEqual(t.current, { target4: null, target6: null });
  assert.throws(() => t.for(4), /target4 has not been resolved/);
  assert.deepEqual(await t.forListen(), {
    address: '127.0.0.5',
    port: 0,
    family: 4,
    host: 'proxy.test',
  });
  assert.deepEqual(t.for(4), { address: '127.0.0.2', port: 443, family: 4, host: 'app.test' });
  assert.deepEqual(t.for(6), { address: '::1', port: 444, family: 6, host: 'app.test' });
  assert.equal(calls.length, 3);
});

test('listen fails on the first name that does not resolve, in option order', async () => {
  const { lookup } = fakeLookup({ 'app.test': { 6: [v6('::1')] } });
  const t = targets({ target4: 'nope4.test:1', target6: 'nope6.test:1' }, lookup);
  await assert.rejects(t.forListen(), {
    name: 'ResolveError',
    option: 'target4',
    host: 'nope4.test',
  });
  assert.deepEqual(t.current, { target4: null, target6: null }, 'nothing half-applied');
  const l = targets({ listen: 'nope.test:0', target6: 'app.test:1' }, lookup);
  await assert.rejects(l.forListen(), { option: 'listen', host: 'nope.test', family: 0 });
});

test('refresh: a change is put in force whole, a failure keeps the previous address and says why', async () => {
  const table: Record<string, Partial<Record<0 | 4 | 6, Answer>>> = {
    'a.test': { 4: [v4('127.0.0.1')] },
    'b.test': { 6: [v6('::1')] },
  };
  const { lookup, calls } = fakeLookup(table);
  const t = targets({ target4: 'a.test:80', target6: 'b.test:80' }, lookup);
  // Resolved before listen(), as the command does; listen() does not look them up again.
  const first = await t.refresh();
  assert.deepEqual(
    first.map((r) => [r.option, r.host, r.address, r.previous, r.changed, r.error]),
    [
      ['target4', 'a.test', '127.0.0.1', null, true, null],
      ['target6', 'b.test', '::1', null, true, null],
    ],
  );
  await t.forListen();
  assert.equal(calls.length, 2);

  const before = t.current;
  table['a.test'] = { 4: [v4('127.0.0.2')] };
  table['b.test'] = { 6: dnsError('ENOTFOUND', 'b.test') };
  const second = await t.refresh();
  assert.deepEqual(
    second.map((r) => [r.option, r.address, r.previous, r.changed]),
    [
      ['target4', '127.0.0.2', '127.0.0.1', true],
      ['target6', '::1', '::1', false],
    ],
  );
  assert.equal(second[0]!.error, null);
  assert.ok(second[1]!.error instanceof ResolveError);
  assert.match(second[1]!.error.message, /cannot resolve "b\.test" to an IPv6 address/);
  assert.equal(t.for(4).address, '127.0.0.2');
  assert.equal(t.for(6).address, '::1');
  // What a connection read before the swap is not changed under it.
  assert.equal(before.target4!.address, '127.0.0.1');
  assert.ok(Object.isFrozen(t.current));

  const third = await t.refresh();
  assert.deepEqual(
    third.map((r) => [r.address, r.changed]),
    [
      ['127.0.0.2', false],
      ['::1', false],
    ],
  );
});

test('refresh before a name ever resolved: address null, and listen still fails for it', async () => {
  const { lookup } = fakeLookup({});
  const t = targets({ target4: 'nope.test:80' }, lookup);
  const [r] = await t.refresh();
  assert.equal(r!.address, null);
  assert.equal(r!.previous, null);
  assert.ok(r!.error instanceof ResolveError);
  await assert.rejects(t.forListen(), { option: 'target4' });
});

test('resolutions run one after another: the one started last is in force', async () => {
  const table: Record<string, Partial<Record<0 | 4 | 6, Answer>>> = {
    'a.test': { 4: [v4('127.0.0.1')] },
  };
  const slow: LookupAll = (host, options, callback) => {
    const answer = table[host]![options.family] as LookupAddress[];
    // The first lookup answers late: if the two overlapped, it would land last.
    setTimeout(() => callback(null, answer), answer[0]!.address === '127.0.0.1' ? 50 : 0);
  };
  const t = targets({ target4: 'a.test:80' }, slow);
  const first = t.refresh();
  await new Promise((resolve) => setImmediate(resolve)); // its lookup has started
  table['a.test'] = { 4: [v4('127.0.0.9')] };
  const second = t.refresh();
  assert.equal((await first)[0]!.address, '127.0.0.1');
  assert.equal((await second)[0]!.address, '127.0.0.9');
  assert.equal(t.for(4).address, '127.0.0.9');
});
