// libFuzzer (clang, ASan + UBSan) over the native header framing and the UDP flow table, for
// MMPROXY_FUZZ_SECONDS (default 20). Not part of `npm test`, which needs no clang: `npm run fuzz`
// runs it, and .ci/run runs that after `npm test`. Without clang it fails, never skips.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SECONDS = Number(process.env.MMPROXY_FUZZ_SECONDS ?? 20);

/** The repository root: the nearest parent with fuzz/run.sh (dist/test/ runs this). */
function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'fuzz', 'run.sh'))) {
    const up = path.dirname(dir);
    assert.notEqual(up, dir, 'fuzz/run.sh not found above the test file');
    dir = up;
  }
  return dir;
}

test(`libFuzzer over header framing for ${SECONDS} s finds no crash and no broken property`, () => {
  const root = repoRoot();
  const r = spawnSync(path.join(root, 'fuzz', 'run.sh'), [String(SECONDS)], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  const output = `${r.stdout}\n${r.stderr}`;
  assert.notEqual(r.status, 2, `clang is missing: ${output.trim().split('\n').pop()}`);
  assert.equal(r.status, 0, `the fuzzer failed:\n${output.slice(-4000)}`);
  const runs = /Done (\d+) runs/.exec(output);
  assert.ok(runs && Number(runs[1]) > 10_000, `too few runs: ${runs?.[0] ?? 'none'}`);
});
