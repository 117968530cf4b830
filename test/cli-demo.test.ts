// `mmproxy demo`: the real proxy in a private namespace shows each made-up client's address
// arriving at the upstream; where namespaces are refused it says so and how to run it instead.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../cli/main.js';

const BIN = fileURLToPath(new URL('../cli/bin.js', import.meta.url));

test('the demo shows the upstream seeing every client address, v1 and v2, IPv4 and IPv6; exit 0', async () => {
  const child = spawn(process.execPath, [BIN, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, stdout + stderr);
  const results = stdout.split('\n').filter((l) => l.startsWith('client '));
  assert.deepEqual(
    results.map((l) => l.replace(/\s+/g, ' ')),
    [
      'client 203.0.113.7:51000 (PROXY v1) → upstream saw 203.0.113.7:51000 ✓',
      'client 198.51.100.23:40312 (PROXY v2) → upstream saw 198.51.100.23:40312 ✓',
      'client [2001:db8::7]:51000 (PROXY v1) → upstream saw [2001:db8::7]:51000 ✓',
      'client [2001:db8:cafe::42]:61999 (PROXY v2) → upstream saw [2001:db8:cafe::42]:61999 ✓',
    ],
  );
  assert.match(stdout, /ip rule add from 127\.0\.0\.1\/8 iif lo table 123/);
  assert.equal(stderr, '');
});

test('where unprivileged namespaces are refused, the demo says so and how to run it; exit 1', async () => {
  // A stand-in `unshare` that fails the way a locked-down system does.
  const dir = mkdtempSync(path.join(tmpdir(), 'mmproxy-demo-'));
  try {
    const fake = path.join(dir, 'unshare');
    writeFileSync(
      fake,
      '#!/bin/sh\necho "unshare: unshare failed: Operation not permitted" >&2\nexit 1\n',
    );
    chmodSync(fake, 0o755);
    let stdout = '';
    let stderr = '';
    const code = await main(['demo'], {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s) },
      env: { ...process.env, PATH: `${dir}:${process.env.PATH ?? ''}` },
    });
    assert.equal(code, 1);
    assert.match(
      stderr,
      /does not let unprivileged users create a user \+ network namespace \(unshare: unshare failed: Operation not permitted\)/,
    );
    assert.match(stderr, /kernel\.unprivileged_userns_clone=1/);
    assert.match(stderr, /kernel\.apparmor_restrict_unprivileged_userns=0/);
    assert.match(stderr, /sudo npx mmproxy demo/);
    assert.doesNotMatch(stdout, /client /);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
