// --setup-routes: adds what is missing, removes exactly what it added — checked with a recorded
// `ip` and against the real kernel in fresh network namespaces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setupRoutes } from '../cli/routes.js';
import type { IpRunner } from '../lib/self-check.js';
import { inFreshNetns, moduleUrl } from './cli-netns.js';

/** A fake `ip` that keeps rule and route text and records every change. */
function fakeIp(initialRules: string, initialRoutes: string, failOn?: string) {
  const calls: string[] = [];
  let rules = initialRules;
  let routes = initialRoutes;
  const ip: IpRunner = async (args) => {
    const cmd = args.join(' ');
    if (cmd.endsWith('rule show')) return { code: 0, stdout: rules, stderr: '' };
    if (cmd.includes('route show table')) return { code: 0, stdout: routes, stderr: '' };
    calls.push(cmd);
    if (cmd === failOn)
      return { code: 2, stdout: '', stderr: 'RTNETLINK answers: Operation not permitted\n' };
    if (cmd.includes('rule add')) rules += '32765:\tfrom 127.0.0.1/8 iif lo lookup 123\n';
    if (cmd.includes('route add')) routes += 'local default dev lo scope host\n';
    return { code: 0, stdout: '', stderr: '' };
  };
  return { ip, calls };
}

test('adds only the missing entries and tears down only those, newest first', async () => {
  const { ip, calls } = fakeIp(
    '0:\tfrom all lookup local\n32765:\tfrom 127.0.0.1/8 iif lo lookup 123\n',
    '',
  );
  const setup = await setupRoutes([{ family: 4, address: '127.0.0.1' }], 123, ip);
  assert.deepEqual(
    setup.present.map((c) => c.text),
    ['ip rule add from 127.0.0.1/8 iif lo table 123'],
  );
  assert.deepEqual(
    setup.added.map((c) => c.text),
    ['ip route add local 0.0.0.0/0 dev lo table 123'],
  );
  assert.deepEqual(calls, ['route add local 0.0.0.0/0 dev lo table 123']);
  assert.deepEqual(await setup.teardown(), []);
  assert.deepEqual(calls.slice(1), ['route del local 0.0.0.0/0 dev lo table 123']);
  assert.deepEqual(await setup.teardown(), [], 'a second teardown does nothing');
  assert.equal(calls.length, 2);
});

test('a failure part way removes what was added and throws the ip error', async () => {
  const { ip, calls } = fakeIp('', '', '-6 rule add from ::1/128 iif lo table 5');
  await assert.rejects(
    setupRoutes(
      [
        { family: 4, address: '127.0.0.1' },
        { family: 6, address: '::1' },
      ],
      5,
      ip,
    ),
    /ip -6 rule add from ::1\/128 iif lo table 5: RTNETLINK answers: Operation not permitted/,
  );
  assert.deepEqual(calls, [
    'rule add from 127.0.0.1/8 iif lo table 5',
    'route add local 0.0.0.0/0 dev lo table 5',
    '-6 rule add from ::1/128 iif lo table 5',
    'route del local 0.0.0.0/0 dev lo table 5',
    'rule del from 127.0.0.1/8 iif lo table 5',
  ]);
});

const SCRIPT = (table: number): string => `
  import { execFileSync } from 'node:child_process';
  const { setupRoutes } = await import(${JSON.stringify(moduleUrl('../cli/routes.js'))});
  const show = () => ['rule', '-6 rule', 'route show table ${table}', '-6 route show table ${table}']
    .map((c) => execFileSync('sh', ['-c', 'ip ' + c + ' 2>/dev/null || true']).toString().trim()).join('\\n');
  const before = show();
  const setup = await setupRoutes([{ family: 4, address: '127.0.0.1' }, { family: 6, address: '::1' }], ${table});
  const during = show();
  const added = setup.added.length;
  const failed = await setup.teardown();
  console.log(JSON.stringify({ before, during, after: show(), added, present: setup.present.length, failed }));`;

test('in a fresh namespace the real entries appear, then exactly the same state as before returns', async () => {
  const r = await inFreshNetns(SCRIPT(124));
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.equal(out.added, 4);
  assert.deepEqual(out.failed, []);
  assert.match(out.during as string, /from 127\.0\.0\.1\/8 iif lo lookup 124/);
  assert.match(out.during as string, /from ::1 iif lo lookup 124/);
  assert.match(out.during as string, /local default dev lo scope host/);
  assert.match(out.during as string, /local default dev lo metric 1024/);
  assert.equal(out.after, out.before);
});

test('entries that were there before are left in place at exit', async () => {
  const setupCmds = [
    'ip rule add from 127.0.0.1/8 iif lo table 124',
    'ip route add local 0.0.0.0/0 dev lo table 124',
  ];
  const r = await inFreshNetns(SCRIPT(124), setupCmds);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.equal(out.present, 2);
  assert.equal(out.added, 2);
  assert.equal(out.after, out.before);
  assert.match(out.after as string, /from 127\.0\.0\.1\/8 iif lo lookup 124/);
  assert.doesNotMatch(out.after as string, /from ::1 iif lo lookup 124/);
});
