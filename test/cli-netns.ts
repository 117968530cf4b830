// Helpers for the command's tests: run a snippet of module code in a fresh network namespace
// (nested in the test namespace, where we are root), with or without the routing rules.
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';

/** The routing rules test/run.js and DESIGN.md set up, as shell commands. */
export const ROUTING_SETUP = [
  'ip rule add from 127.0.0.1/8 iif lo table 123',
  'ip route add local 0.0.0.0/0 dev lo table 123',
  'ip -6 rule add from ::1/128 iif lo table 123',
  'ip -6 route add local ::/0 dev lo table 123',
];

export interface ChildResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `code` (an ES module body; `url(rel)` in it is not available, pass absolute URLs) with
 * node in a new network namespace whose `lo` is up, after the shell commands in `setup`. With
 * `privateMounts`, in a new mount namespace too, so that `setup` can bind-mount files over
 * /etc/hosts and the like for this run only.
 */
export function inFreshNetns(
  code: string,
  setup: readonly string[] = [],
  timeoutMs = 30_000,
  { privateMounts = false }: { privateMounts?: boolean } = {},
): Promise<ChildResult> {
  assert.equal(
    process.env.MMPROXY_TEST_NETNS,
    '1',
    'run through test/run.js: the test namespace makes us root',
  );
  const script = [
    'set -e',
    'ip link set lo up',
    ...setup,
    'exec "$0" --input-type=module -e "$1"',
  ].join('\n');
  return new Promise((resolve, reject) => {
    const namespaces = privateMounts ? ['--net', '--mount'] : ['--net'];
    const child = spawn('unshare', [...namespaces, 'sh', '-c', script, process.execPath, code], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

/** The file: URL of a compiled module next to this one, for use inside inFreshNetns code. */
export function moduleUrl(relative: string): string {
  return new URL(relative, import.meta.url).href;
}
