#!/usr/bin/env node
// Runs the compiled test suite inside a private user + network namespace, where IP_TRANSPARENT,
// routing rules and SO_MARK work without privileges on the host. The namespace has only `lo`, with
// the routing rules from the README, so nothing a test sends can leave the machine.
//   node test/run.js [file-filter…]   (filters are substrings of test file paths)
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const testDir = path.join(root, 'dist', 'test');

function findTests(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return findTests(full);
    return entry.name.endsWith('.test.js') ? [full] : [];
  });
}

const TEST_TIMEOUT_MS = 120_000;
const RUN_TIMEOUT_MS = 20 * 60_000;

const filters = process.argv.slice(2);
const files = findTests(testDir)
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();
if (files.length === 0) {
  console.error(`no test files under ${testDir} match ${filters.join(' ') || '*.test.js'}`);
  process.exit(1);
}

const probe = spawnSync('unshare', ['--user', '--map-root-user', '--net', 'true']);
if (probe.error || probe.status !== 0) {
  console.error(
    'The tests need a private user + network namespace (unshare --user --map-root-user --net), ' +
      'which this system refuses: ' +
      (probe.error?.message ?? probe.stderr.toString().trim()) +
      '\nOn Debian/Ubuntu: sysctl -w kernel.unprivileged_userns_clone=1 ' +
      '(or kernel.apparmor_restrict_unprivileged_userns=0), or run as root.',
  );
  process.exit(1);
}

const setup = [
  'set -e',
  'ip link set lo up',
  'ip rule add from 127.0.0.1/8 iif lo table 123',
  'ip route add local 0.0.0.0/0 dev lo table 123',
  'ip -6 rule add from ::1/128 iif lo table 123',
  'ip -6 route add local ::/0 dev lo table 123',
  'export MMPROXY_TEST_NETNS=1',
  'exec "$@"',
].join('\n');
const result = spawnSync(
  'unshare',
  [
    '--user',
    '--map-root-user',
    '--net',
    'sh',
    '-c',
    setup,
    'sh',
    process.execPath,
    '--test',
    // A test that hangs fails by itself (the longest, backpressure, takes about 30 s).
    `--test-timeout=${TEST_TIMEOUT_MS}`,
    ...files,
  ],
  { stdio: 'inherit', cwd: root, timeout: RUN_TIMEOUT_MS, killSignal: 'SIGKILL' },
);
if (result.error?.code === 'ETIMEDOUT') {
  console.error(
    `the test run did not end within ${RUN_TIMEOUT_MS / 60_000} minutes and was stopped`,
  );
}
// Said, not skipped in silence: the long runs are commands of their own.
console.log(
  '# not in npm test: libFuzzer (npm run fuzz, needs clang and libFuzzer), sanitizers ' +
    '(npm run test:asan), soak (npm run soak), benchmarks (npm run bench)',
);
process.exit(result.status ?? 1);
