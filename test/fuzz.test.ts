// The native header framing under libFuzzer (ASan + UBSan) for a short run, and a differential
// test: the TypeScript decoder and native frame_header() must agree on where each header ends.
// Needs clang with libFuzzer (Debian: clang-14 libclang-rt-14-dev); fails, never skips, without.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeHeader, encodeHeader, TLV_TYPE, type ProxyHeader } from '../lib/proxy-header.js';

const SECONDS = Number(process.env.MMPROXY_FUZZ_SECONDS ?? 20);
const DIFFERENTIAL_CASES = Number(process.env.MMPROXY_DIFF_CASES ?? 3000);

/** The repository root: the nearest parent with fuzz/run.sh (dist/test/ or a scratch out/). */
function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'fuzz', 'run.sh'))) {
    const up = path.dirname(dir);
    assert.notEqual(up, dir, 'fuzz/run.sh not found above the test file');
    dir = up;
  }
  return path.dirname(path.dirname(realpathSync(path.join(dir, 'fuzz', 'run.sh'))));
}
const root = repoRoot();
const out = process.env.MMPROXY_FUZZ_OUT ?? path.join(root, 'fuzz', 'out');

function runFuzz(seconds: number): { status: number | null; output: string } {
  const r = spawnSync(path.join(root, 'fuzz', 'run.sh'), [String(seconds)], {
    encoding: 'utf8',
    env: { ...process.env, MMPROXY_FUZZ_OUT: out },
    maxBuffer: 64 * 1024 * 1024,
  });
  return { status: r.status, output: `${r.stdout}\n${r.stderr}` };
}

test(`libFuzzer over header framing for ${SECONDS} s finds no crash and no broken property`, () => {
  const { status, output } = runFuzz(SECONDS);
  assert.notEqual(status, 2, `clang is missing: ${output.trim().split('\n').pop()}`);
  assert.equal(status, 0, `the fuzzer failed:\n${output.slice(-4000)}`);
  const runs = /Done (\d+) runs/.exec(output);
  assert.ok(runs && Number(runs[1]) > 10_000, `too few runs: ${runs?.[0] ?? 'none'}`);
});

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

function frameNative(inputs: Buffer[]): Native[] {
  const cli = path.join(out, 'framing_cli');
  if (!existsSync(cli)) {
    const build = runFuzz(0);
    assert.equal(build.status, 0, `building fuzz/ failed:\n${build.output}`);
  }
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

test(`TypeScript decoder and native framing agree on where ${DIFFERENTIAL_CASES} headers end`, () => {
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
  const native = frameNative(inputs);
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
