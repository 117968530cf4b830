// A differential test: the TypeScript decoder and native frame_header() must agree on where each
// header ends. fuzz/framing_cli.cc is built with the C++ compiler that building the addon needs
// (ASan + UBSan where it has them); libFuzzer runs are `npm run fuzz` (test/libfuzzer.fuzz.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeHeader, encodeHeader, TLV_TYPE, type ProxyHeader } from '../lib/codec/index.js';

const DIFFERENTIAL_CASES = Number(process.env.MMPROXY_DIFF_CASES ?? 3000);

/** The repository root: the nearest parent with fuzz/framing_cli.cc (dist/test/ runs this). */
function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'fuzz', 'framing_cli.cc'))) {
    const up = path.dirname(dir);
    assert.notEqual(up, dir, 'fuzz/framing_cli.cc not found above the test file');
    dir = up;
  }
  return dir;
}

/**
 * Builds fuzz/framing_cli.cc into build/test/ with $CXX (default c++, as node-gyp uses), with the
 * sanitizers when the compiler can link them; returns the binary and how it was built.
 */
function buildFramingCli(): { cli: string; flavour: string } {
  const root = repoRoot();
  const dir = path.join(root, 'build', 'test');
  mkdirSync(dir, { recursive: true });
  const cli = path.join(dir, 'framing_cli');
  const cxx = process.env.CXX || 'c++';
  const sources = ['fuzz/framing_cli.cc', 'native/header_framing.cc', 'native/sock_addr.cc'];
  const sanitizers = ['-fsanitize=address,undefined', '-fno-sanitize-recover=undefined'];
  const attempts: Array<[string, string[]]> = [
    ['ASan + UBSan', sanitizers],
    ['no sanitizer (the compiler could not link them)', []],
  ];
  const failures: string[] = [];
  for (const [flavour, extra] of attempts) {
    const args = ['-std=c++17', '-O1', '-g', ...extra, '-o', cli, ...sources];
    const r = spawnSync(cxx, args, { cwd: root, encoding: 'utf8' });
    if (r.error)
      assert.fail(`${cxx} could not be run (${r.error.message}); set CXX to a C++17 compiler`);
    if (r.status === 0) return { cli, flavour };
    failures.push(`${cxx} ${args.join(' ')}:\n${r.stderr}`);
  }
  return assert.fail(`building fuzz/framing_cli.cc failed:\n${failures.join('\n')}`);
}

// A small seeded generator, so that a failing case can be reproduced.
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

function randomHeader(r: () => number): Buffer {
  const int = (n: number) => Math.floor(r() * n);
  const v4 = () => `${1 + int(223)}.${int(256)}.${int(256)}.${int(256)}`;
  const v6 = () =>
    Array.from({ length: 8 }, () => (int(4) === 0 ? '0' : int(0x10000).toString(16))).join(':');
  const family = int(2) === 0 ? 4 : 6;
  const addr = family === 4 ? v4 : v6;
  const version = int(3) === 0 ? 1 : 2;
  if (version === 1) {
    if (int(10) === 0) return Buffer.from('PROXY UNKNOWN\r\n');
    return encodeHeader(
      {
        version: 1,
        command: 'PROXY',
        protocol: family === 4 ? 'TCP4' : 'TCP6',
        source: { address: addr(), port: int(65536) },
        destination: { address: addr(), port: int(65536) },
        tlvs: [],
      },
      { version: 1 },
    );
  }
  const header: ProxyHeader = {
    version: 2,
    command: int(8) === 0 ? 'LOCAL' : 'PROXY',
    protocol: family === 4 ? 'TCP4' : 'TCP6',
    source: { address: addr(), port: int(65536) },
    destination: { address: addr(), port: int(65536) },
    tlvs: Array.from({ length: int(4) === 0 ? int(50) : 0 }, () => ({
      type: int(2) === 0 ? TLV_TYPE.NOOP : 0xe0 + int(16),
      value: Buffer.alloc(int(int(10) === 0 ? 2000 : 40), int(256)),
    })),
  };
  if (header.command === 'LOCAL') {
    header.protocol = 'UNKNOWN';
    header.source = header.destination = null;
  }
  return encodeHeader(header, { version: 2, crc32c: int(4) === 0 });
}

type Native = { kind: 'needmore' } | { kind: 'complete' | 'invalid'; length: number };

function frameNative(inputs: Buffer[], diagnostic: (message: string) => void): Native[] {
  const { cli, flavour } = buildFramingCli();
  diagnostic(`native framing built with ${flavour}`);
  const r = spawnSync(cli, [], {
    input: inputs.map((b) => b.toString('hex')).join('\n') + '\n',
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout
    .trim()
    .split('\n')
    .map((line) => {
      const [kind, length] = line.split(' ');
      return kind === 'needmore'
        ? { kind: 'needmore' }
        : { kind: kind as 'complete' | 'invalid', length: Number(length) };
    });
}

type Decoded =
  { kind: 'null' } | { kind: 'header'; length: number } | { kind: 'error'; code: string };

function frameTs(bytes: Buffer): Decoded {
  try {
    const d = decodeHeader(bytes, { transport: 'stream' });
    return d === null ? { kind: 'null' } : { kind: 'header', length: d.length };
  } catch (e) {
    return { kind: 'error', code: String((e as { code?: string }).code) };
  }
}

test(`TypeScript decoder and native framing agree on where ${DIFFERENTIAL_CASES} headers end`, (t) => {
  const r = rng(Number(process.env.MMPROXY_DIFF_SEED ?? 7));
  const inputs: Buffer[] = [];
  for (let i = 0; i < DIFFERENTIAL_CASES; i++) {
    const h = randomHeader(r);
    const payload = Buffer.from('GET / HTTP/1.1\r\n'.repeat(Math.floor(r() * 3)));
    inputs.push(Buffer.concat([h, payload])); // a whole header, payload behind it
    inputs.push(h.subarray(0, Math.floor(r() * h.length))); // a prefix of it
    const corrupt = Buffer.from(h);
    corrupt[Math.floor(r() * Math.min(h.length, 110))]! ^= 1 << Math.floor(r() * 8);
    inputs.push(corrupt); // one flipped bit in its first bytes
  }
  const native = frameNative(inputs, (m) => t.diagnostic(m));
  assert.equal(native.length, inputs.length);
  let agreedEnds = 0;
  for (let i = 0; i < inputs.length; i++) {
    const bytes = inputs[i]!;
    const n = native[i]!;
    const ts = frameTs(bytes);
    const where = `input ${i} (${bytes.subarray(0, 120).toString('hex')}…, ${bytes.length} bytes): native ${JSON.stringify(n)}, TypeScript ${JSON.stringify(ts)}`;
    if (ts.kind === 'header') {
      // What the decoder accepts, native framing must have cut at the same byte.
      assert.deepEqual(n, { kind: 'complete', length: ts.length }, where);
      agreedEnds++;
    } else if (ts.kind === 'null') {
      // The decoder waits: native must not cut a header or give up either.
      assert.ok(n.kind === 'needmore' || (n.kind === 'complete' && n.length > bytes.length), where);
    }
    if (n.kind === 'invalid') assert.equal(ts.kind, 'error', where);
  }
  assert.ok(agreedEnds >= DIFFERENTIAL_CASES, `only ${agreedEnds} headers decoded`);
});

test('at the v1 limit both refuse a line that reached 106 bytes without a CR, and agree on the rest', (t) => {
  const unknown = (n: number, end = '') =>
    Buffer.from('PROXY UNKNOWN ' + 'x'.repeat(n - 14 - end.length) + end);
  const mapped = 'ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255';
  const tcp6 = Buffer.from(`PROXY TCP6 ${mapped} ${mapped} 65535 65535\r\n`);
  const cases: Array<[string, Buffer, Decoded['kind'], Native]> = [
    ['105 bytes, no CR', unknown(105), 'null', { kind: 'needmore' }],
    ['106 bytes, no CR', unknown(106), 'error', { kind: 'invalid', length: 106 }],
    ['107 bytes, no CR', unknown(107), 'error', { kind: 'invalid', length: 106 }],
    ['106 bytes ending in CR', unknown(106, '\r'), 'null', { kind: 'needmore' }],
    ['107 bytes ending in CRLF', unknown(107, '\r\n'), 'header', { kind: 'complete', length: 107 }],
    ['107 bytes, CR then no LF', unknown(107, '\rx'), 'error', { kind: 'invalid', length: 107 }],
    ['TCP6 cut at 105 bytes', tcp6.subarray(0, 105), 'null', { kind: 'needmore' }],
    ['TCP6 cut at 106 bytes', tcp6.subarray(0, 106), 'error', { kind: 'invalid', length: 106 }],
  ];
  const native = frameNative(
    cases.map(([, bytes]) => bytes),
    (m) => t.diagnostic(m),
  );
  for (const [i, [name, bytes, ts, n]] of cases.entries()) {
    assert.equal(frameTs(bytes).kind, ts, `${name}: TypeScript`);
    assert.deepEqual(native[i], n, `${name}: native`);
  }
});
