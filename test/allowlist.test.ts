// Tests for lib/allowlist.ts: the file format, fail-closed errors, matching, the compiled table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import fc from 'fast-check';
import { Allowlist, COMPILED_RECORD_SIZE, formatV4, formatV6, parseIp } from '../lib/allowlist.js';
import { AllowlistError } from '../lib/errors.js';

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mmproxy-allowlist-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('parse: entries are normalized, IPv4 first, file order kept, duplicates dropped', () => {
  const list = Allowlist.parse(
    [
      '# load balancers',
      '2001:DB8:0:0::/32',
      '192.0.2.0/24 # office',
      '',
      '   \t',
      '\t198.51.100.7  ',
      '2001:db8::1',
      '192.0.2.0/24',
    ].join('\n'),
    'lb.txt',
  );
  assert.deepEqual(list.entries, [
    '192.0.2.0/24',
    '198.51.100.7/32',
    '2001:db8::/32',
    '2001:db8::1/128',
  ]);
  assert.equal(list.size, 4);
  assert.equal(list.source, 'lb.txt');
  assert.equal(
    String(list),
    'Allowlist(lb.txt: 192.0.2.0/24, 198.51.100.7/32, 2001:db8::/32, 2001:db8::1/128)',
  );
});

test('parse: CRLF line ends, a byte-order mark and a missing final newline are fine', () => {
  const list = Allowlist.parse('\uFEFF192.0.2.0/24\r\n# c\r\n\r\n203.0.113.0/24', 'win.txt');
  assert.deepEqual(list.entries, ['192.0.2.0/24', '203.0.113.0/24']);
});

test('parse: host bits are masked, as Go net.ParseCIDR does', () => {
  const list = Allowlist.parse('192.0.2.77/24\n2001:db8::dead:beef/32\n10.1.2.3/0\n', 'f');
  assert.deepEqual(list.entries, ['192.0.2.0/24', '0.0.0.0/0', '2001:db8::/32']);
});

test('parse: IPv4-mapped entries with prefix >= 96 become IPv4 entries; shorter ones stay IPv6', () => {
  const list = Allowlist.parse(
    '::ffff:192.0.2.0/120\n::ffff:198.51.100.9\n::FFFF:0:0/96\n::ffff:0:0/95\n',
    'f',
  );
  assert.deepEqual(list.entries, ['192.0.2.0/24', '198.51.100.9/32', '0.0.0.0/0', '::fffe:0:0/95']);
});

const containsCases: [entries: string, address: string, expected: boolean][] = [
  ['192.0.2.0/24', '192.0.2.0', true],
  ['192.0.2.0/24', '192.0.2.255', true],
  ['192.0.2.0/24', '192.0.3.0', false],
  ['192.0.2.0/24', '::ffff:192.0.2.9', true],
  ['192.0.2.0/24', '::FFFF:c000:209', true],
  ['192.0.2.0/24', '::ffff:192.0.3.9', false],
  ['192.0.2.0/24', '::192.0.2.9', false], // IPv4-compatible, not mapped: an IPv6 address
  ['192.0.2.0/24', '2001:db8::1', false],
  ['192.0.2.1', '192.0.2.1', true],
  ['192.0.2.1', '192.0.2.2', false],
  ['192.0.2.1/32', '192.0.2.1', true],
  ['0.0.0.0/0', '255.255.255.255', true],
  ['0.0.0.0/0', '::ffff:1.2.3.4', true],
  ['0.0.0.0/0', '::1', false],
  ['::/0', '2001:db8::1', true],
  ['::/0', '::', true],
  ['::/0', '192.0.2.1', false],
  ['::/0', '::ffff:192.0.2.1', false],
  ['::ffff:0:0/96', '192.0.2.1', true],
  ['::ffff:0:0/96', '2001:db8::1', false],
  ['2001:db8::/32', '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', true],
  ['2001:db8::/32', '2001:db9::', false],
  ['2001:db8::/33', '2001:db8:7fff::1', true],
  ['2001:db8::/33', '2001:db8:8000::1', false],
  ['2001:db8::1/128', '2001:db8::1', true],
  ['2001:db8::1/128', '2001:db8::2', false],
  ['2001:db8::1', '2001:0db8:0000::0001', true],
  ['fe80::/10', 'fe80::1%eth0', true],
  ['fe80::/10', 'febf::1', true],
  ['fe80::/10', 'fec0::1', false],
  ['192.0.2.0/24', 'not an address', false],
  ['192.0.2.0/24', '', false],
  ['192.0.2.0/24', '192.0.2.1/32', false],
  ['192.0.2.0/24', ' 192.0.2.1', false],
];

for (const [entries, address, expected] of containsCases) {
  test(`contains: ${entries} ${expected ? 'holds' : 'does not hold'} ${JSON.stringify(address)}`, () => {
    assert.equal(Allowlist.parse(entries, 'f').contains(address), expected);
    assert.equal(Allowlist.from([entries]).contains(address), expected);
  });
}

const badLines: [line: string, reason: string][] = [
  ['192.0.2.0/33', 'prefix length 33 is longer than 32'],
  ['2001:db8::/129', 'prefix length 129 is longer than 128'],
  ['192.0.2.0/', 'the prefix length after "/" must be a number from 0 to 32'],
  ['192.0.2.0/-1', 'the prefix length after "/" must be a number from 0 to 32'],
  ['192.0.2.0/024', 'the prefix length after "/" must be a number from 0 to 32'],
  ['192.0.2.0/24/8', 'the prefix length after "/" must be a number from 0 to 32'],
  ['192.0.2.256/24', '"192.0.2.256" is not an IPv4 or IPv6 address'],
  ['192.0.2/24', '"192.0.2" is not an IPv4 or IPv6 address'],
  ['192.000.2.1', '"192.000.2.1" is not an IPv4 or IPv6 address'],
  ['example.com', '"example.com" is not an IPv4 or IPv6 address'],
  ['2001:db8:::/32', '"2001:db8:::" is not an IPv4 or IPv6 address'],
  ['[2001:db8::]/32', '"[2001:db8::]" is not an IPv4 or IPv6 address'],
  ['/24', '"" is not an IPv4 or IPv6 address'],
  ['fe80::1%eth0/64', 'a zone index (%…) has no place in a subnet'],
  ['192.0.2.0/24 198.51.100.0/24', 'one entry a line, without spaces inside it'],
  ['192.0.2.0 /24', 'one entry a line, without spaces inside it'],
  ['192.0.2.0/24;198.51.100.0/24', 'the prefix length after "/" must be a number from 0 to 32'],
];

for (const [line, reason] of badLines) {
  test(`parse: bad line ${JSON.stringify(line)} names file, line, text and an example`, () => {
    const text = `# header\n192.0.2.0/24\n${line}  # trailing comment\n203.0.113.0/24\n`;
    assert.throws(
      () => Allowlist.parse(text, '/etc/mmproxy/allowed.txt'),
      (err: unknown) => {
        assert.ok(err instanceof AllowlistError);
        assert.equal(err.file, '/etc/mmproxy/allowed.txt');
        assert.equal(err.line, 3);
        assert.equal(
          err.message,
          `/etc/mmproxy/allowed.txt:3: bad allowlist line ${JSON.stringify(`${line}  # trailing comment`)}: ` +
            `${reason}; write one subnet a line, such as 192.0.2.0/24 or 2001:db8::/32, ` +
            `or a single address such as 192.0.2.7`,
        );
        return true;
      },
    );
  });
}

test('parse: a line number counts blank lines and CRLF lines', () => {
  assert.throws(() => Allowlist.parse('\r\n\r\n# x\r\n10.0.0.0/8\r\nbad\r\n', 'f'), {
    name: 'AllowlistError',
    line: 5,
    message: /^f:5: bad allowlist line "bad": /,
  });
});

for (const [name, text] of [
  ['empty text', ''],
  ['only comments and blanks', '# nothing here\n\n   \n\t# still nothing\r\n'],
] as const) {
  test(`parse: ${name} is an error, never "allow everyone"`, () => {
    assert.throws(() => Allowlist.parse(text, 'empty.txt'), {
      name: 'AllowlistError',
      code: 'ERR_MMPROXY_ALLOWLIST',
      file: 'empty.txt',
      message:
        'empty.txt: the allowlist has no entries, only blank lines or comments; add at least ' +
        'one subnet such as 192.0.2.0/24 or 2001:db8::/32, or a single address such as ' +
        '192.0.2.7 (an empty allowlist is refused rather than read as "allow everyone")',
    });
  });
}

test('fromFile and fromFileSync read a file', async () => {
  await withTempDir(async (dir) => {
    const file = path.join(dir, 'allowed.txt');
    await writeFile(file, '192.0.2.0/24\n2001:db8::/32\n');
    for (const list of [await Allowlist.fromFile(file), Allowlist.fromFileSync(file)]) {
      assert.deepEqual(list.entries, ['192.0.2.0/24', '2001:db8::/32']);
      assert.equal(list.source, file);
      assert.ok(list.contains('192.0.2.1'));
    }
  });
});

test('fromFile: missing file, directory, empty file, bad line and unreadable file are errors', async () => {
  await withTempDir(async (dir) => {
    const missing = path.join(dir, 'missing.txt');
    const empty = path.join(dir, 'empty.txt');
    const bad = path.join(dir, 'bad.txt');
    await writeFile(empty, '');
    await writeFile(bad, '192.0.2.0/24\nnonsense\n');
    const cases: [string, RegExp][] = [
      [missing, /^cannot read allowlist file .*missing\.txt: ENOENT: /],
      [dir, /^cannot read allowlist file .*: EISDIR: /],
      [empty, /empty\.txt: the allowlist has no entries/],
      [bad, /bad\.txt:2: bad allowlist line "nonsense": /],
    ];
    if (process.getuid?.() !== 0) {
      const locked = path.join(dir, 'locked.txt');
      await writeFile(locked, '192.0.2.0/24\n');
      await chmod(locked, 0o000);
      cases.push([locked, /^cannot read allowlist file .*locked\.txt: EACCES: /]);
    }
    for (const [file, message] of cases) {
      await assert.rejects(Allowlist.fromFile(file), (err: unknown) => {
        assert.ok(err instanceof AllowlistError);
        assert.match(err.message, message);
        assert.equal(err.file, file);
        return true;
      });
      assert.throws(() => Allowlist.fromFileSync(file), { name: 'AllowlistError', message });
    }
    await assert.rejects(Allowlist.fromFile(missing), (err: AllowlistError) => {
      assert.equal((err.cause as NodeJS.ErrnoException).code, 'ENOENT');
      return true;
    });
  });
});

test('from: inline entries follow the same rules; errors name the entry index', () => {
  assert.deepEqual(Allowlist.from([' 192.0.2.1/24 ', '::ffff:10.0.0.0/104']).entries, [
    '192.0.2.0/24',
    '10.0.0.0/8',
  ]);
  assert.equal(Allowlist.from(['192.0.2.0/24']).source, 'inline');
  assert.throws(() => Allowlist.from([]), {
    name: 'AllowlistError',
    message: /^the allowlist has no entries; give at least one subnet such as 192\.0\.2\.0\/24/,
  });
  assert.throws(() => Allowlist.from(['192.0.2.0/24', '192.0.2.0/99']), {
    name: 'AllowlistError',
    message:
      'allowlist entry 1 ("192.0.2.0/99"): prefix length 99 is longer than 32; write subnets ' +
      'such as 192.0.2.0/24 or 2001:db8::/32, or a single address such as 192.0.2.7',
  });
  assert.throws(() => Allowlist.from(['192.0.2.0/24 # lb']), {
    message: /^allowlist entry 0 \("192\.0\.2\.0\/24 # lb"\): one entry a line/,
  });
  assert.throws(() => Allowlist.from(['']), { message: /^allowlist entry 0 \(""\): "" is not/ });
  assert.throws(() => Allowlist.from([42 as unknown as string]), {
    message: /^allowlist entry 0 \(42\): each entry must be a string;/,
  });
  assert.throws(() => Allowlist.from('192.0.2.0/24' as unknown as string[]), {
    name: 'AllowlistError',
    message: /^the allowlist must be an array of subnets/,
  });
});

test('an Allowlist cannot be changed after construction', () => {
  const source = ['192.0.2.0/24'];
  const list = Allowlist.from(source);
  source.push('0.0.0.0/0');
  assert.ok(Object.isFrozen(list));
  assert.ok(Object.isFrozen(list.entries));
  assert.throws(() => (list.entries as string[]).push('0.0.0.0/0'), TypeError);
  assert.throws(() => {
    (list as { source: string }).source = 'x';
  }, TypeError);
  const table = list.compile();
  table.fill(0);
  assert.equal(list.compile()[0], 4);
  assert.equal(list.contains('8.8.8.8'), false);
});

test('compile: 18-byte records, family, prefix, masked address bytes; IPv4 first', () => {
  const table = Allowlist.parse(
    '2001:db8:ff::1/40\n192.0.2.77/24\n::ffff:203.0.113.0/120\n::/0\n',
    'f',
  ).compile();
  assert.equal(COMPILED_RECORD_SIZE, 18);
  assert.ok(table instanceof Uint8Array);
  const records = [];
  for (let at = 0; at < table.length; at += 18) records.push([...table.subarray(at, at + 18)]);
  const zeros = (n: number) => Array<number>(n).fill(0);
  assert.deepEqual(records, [
    [4, 24, 192, 0, 2, 0, ...zeros(12)],
    [4, 24, 203, 0, 113, 0, ...zeros(12)],
    [6, 40, 0x20, 0x01, 0x0d, 0xb8, 0x00, ...zeros(11)],
    [6, 0, ...zeros(16)],
  ]);
});

// --- Differential tests ----------------------------------------------------------------------

/** Address bytes for a peer: 4 for IPv4, 16 for IPv6. */
type Bytes = number[];

function hostText(bytes: Bytes): string {
  if (bytes.length === 4) return bytes.join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(':');
}

function prefixEqual(a: ArrayLike<number>, b: ArrayLike<number>, bits: number): boolean {
  for (let bit = 0; bit < bits; bit++) {
    const mask = 0x80 >> (bit % 8);
    if ((a[bit >> 3]! & mask) !== (b[bit >> 3]! & mask)) return false;
  }
  return true;
}

/** The plainest reading of the compiled table, as the native engine reads it. */
function tableContains(table: Uint8Array, peer: Bytes): boolean {
  const mapped = peer.length === 16 && peer.slice(0, 10).every((b) => b === 0) && peer[10] === 0xff;
  const v4 = peer.length === 4 ? peer : mapped && peer[11] === 0xff ? peer.slice(12) : null;
  for (let at = 0; at < table.length; at += 18) {
    const family = table[at]!;
    const bits = table[at + 1]!;
    const address = table.subarray(at + 2, at + 18);
    if (v4 && family === 4 && prefixEqual(v4, address, bits)) return true;
    if (!v4 && family === 6 && prefixEqual(peer, address, bits)) return true;
  }
  return false;
}

const v4Bytes = fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 });
const v6Bytes = fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 16, maxLength: 16 });
const mappedBytes = v4Bytes.map((b) => [...Array<number>(10).fill(0), 0xff, 0xff, ...b]);
// Short address bytes so that random subnets and peers often overlap.
const nearBytes = fc
  .array(fc.integer({ min: 0, max: 3 }), { minLength: 16, maxLength: 16 })
  .map((b) => [0x20, 0x01, ...b.slice(2)]);
const anyBytes = fc.oneof(v4Bytes, v6Bytes, mappedBytes, nearBytes);

const entryArb = fc
  .tuple(anyBytes, fc.integer({ min: 0, max: 128 }), fc.boolean())
  .map(([bytes, bits, bare]) =>
    bare ? hostText(bytes) : `${hostText(bytes)}/${bits % (bytes.length * 8 + 1)}`,
  );

/** A peer that is random, or shares a random-length prefix with one of the entries' addresses. */
function peerArb(entries: string[]): fc.Arbitrary<Bytes> {
  const near = fc.tuple(fc.nat(), fc.nat(128), anyBytes).map(([pick, keep, noise]) => {
    const base = entries[pick % entries.length]!.split('/')[0]!;
    const bytes = base.includes(':')
      ? hostBytes6(base)
      : base.split('.').map((part) => Number(part));
    return bytes.map((b, i) => {
      const kept = Math.max(0, Math.min(8, keep - i * 8));
      const mask = (0xff << (8 - kept)) & 0xff;
      return (b & mask) | ((noise[i % noise.length] ?? 0) & ~mask & 0xff);
    });
  });
  return fc.oneof(anyBytes, near);
}

function hostBytes6(text: string): Bytes {
  const canonical = new net.SocketAddress({ address: text, family: 'ipv6' }).address;
  const words = new Uint32Array(4);
  assert.equal(parseIp(canonical, words), 6);
  return [...words].flatMap((w) => [w >>> 24, (w >>> 16) & 255, (w >>> 8) & 255, w & 255]);
}

test('contains agrees with a plain matcher over the compiled table (fast-check)', () => {
  fc.assert(
    fc.property(
      fc
        .array(entryArb, { minLength: 1, maxLength: 8 })
        .chain((entries) =>
          fc.tuple(
            fc.constant(entries),
            fc.array(peerArb(entries), { minLength: 1, maxLength: 16 }),
          ),
        ),
      ([entries, peers]) => {
        const list = Allowlist.from(entries);
        const table = list.compile();
        assert.equal(table.length, list.size * 18);
        for (const peer of peers) {
          const text = hostText(peer);
          const expected = tableContains(table, peer);
          assert.equal(list.contains(text), expected, `${text} in ${list.entries.join(' ')}`);
          if (peer.length === 16) {
            const canonical = new net.SocketAddress({ address: text, family: 'ipv6' }).address;
            assert.equal(list.contains(canonical), expected, canonical);
          }
        }
      },
    ),
    { numRuns: 2000 },
  );
});

test('entries re-parse to the same allowlist (normalization is stable)', () => {
  fc.assert(
    fc.property(fc.array(entryArb, { minLength: 1, maxLength: 8 }), (entries) => {
      const list = Allowlist.from(entries);
      const again = Allowlist.parse(list.entries.join('\n'), 'again');
      assert.deepEqual(again.entries, list.entries);
      assert.deepEqual(again.compile(), list.compile());
    }),
  );
});

test('parseIp accepts exactly what net.isIP accepts, and formats as Node does', () => {
  const alphabet = fc.constantFrom(...'0123456789abcdefABCDEF:.:.:'.split(''));
  const candidates = fc.oneof(
    fc.ipV4(),
    fc.ipV4Extended(),
    fc.ipV6(),
    fc.string({ unit: alphabet, maxLength: 46 }),
    fc.ipV6().map((a) => a.replace(/:/, ':::')),
    fc.ipV4().map((a) => `::ffff:${a}`),
    fc.ipV4().map((a) => `1:2:3:4:5:6:${a}`),
    fc.ipV4().map((a) => `1:2:3:4:5:6:7:${a}`),
  );
  const words = new Uint32Array(4);
  fc.assert(
    fc.property(candidates, (text) => {
      const family = parseIp(text, words);
      assert.equal(family, net.isIP(text), text);
      if (family === 6) {
        const node = new net.SocketAddress({ address: text, family: 'ipv6' }).address;
        assert.equal(formatV6(words), node, text);
      } else if (family === 4) {
        assert.equal(formatV4(words[3]!), text);
      }
    }),
    { numRuns: 20000 },
  );
});

test('formatV6 matches Node on tricky zero runs and embedded IPv4', () => {
  const words = new Uint32Array(4);
  for (const text of [
    '::',
    '::1',
    '::2',
    '::ffff:0:0',
    '::ffff:1.2.3.4',
    '::1.2.3.4',
    '::ffff:0:1.2.3.4',
    '1:0:0:1:0:0:0:1',
    '1:0:0:2:0:0:3:4',
    '1::',
    '0:1:0:1:0:1:0:1',
    'fe80::1',
    '64:ff9b::192.0.2.1',
    'FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF',
  ]) {
    assert.equal(parseIp(text, words), 6, text);
    assert.equal(
      formatV6(words),
      new net.SocketAddress({ address: text, family: 'ipv6' }).address,
      text,
    );
  }
});
