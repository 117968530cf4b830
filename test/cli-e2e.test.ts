// The real `mmproxy` executable in the test namespace: it proxies a connection from the client's
// address, reloads its allowlist on SIGHUP (keeping the old one when the new file is bad), drains
// an open connection on SIGTERM and exits 0, stops at once on a second signal, serves metrics,
// exits 1 when it cannot listen and 2 on a usage error, and sets up and removes routing entries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { v1, v2 } from './helpers/headers.js';
import { ending, requireNamespace, roundTrip, sleep, tmpFile, Upstream } from './helpers/net.js';
import { inFreshNetns } from './cli-netns.js';
import { BIN, Command, type LogLine } from './helpers/command.js';

async function startProxy(
  upstream: Upstream,
  extra: string[] = [],
  env: Record<string, string> = {},
): Promise<{ cmd: Command; port: number }> {
  const cmd = new Command(
    [
      '-l',
      '127.0.0.1:0',
      '-4',
      `127.0.0.1:${upstream.port}`,
      '-6',
      `[::1]:${upstream.port}`,
      ...extra,
    ],
    env,
  );
  const listening = await cmd.msg('listening');
  const port = Number(/:(\d+)$/.exec(listening.localAddr as string)![1]);
  // The start-up self-check connects to the upstream too; let it finish first.
  await cmd.waitFor(
    (l) => l.msg === 'self-check passed' || l.msg === 'self-check failed',
    'the self-check',
  );
  return { cmd, port };
}

test('proxies from the client address, reloads the allowlist on SIGHUP, drains an open connection on SIGTERM, exit 0', async (t) => {
  requireNamespace();
  const upstream = await Upstream.start('::');
  const allow = tmpFile('allowed.txt', '127.0.0.0/8\n');
  t.after(async () => {
    await upstream.close();
    allow.remove();
  });
  const { cmd, port } = await startProxy(upstream, [
    '--allowed-subnets',
    allow.file,
    '-v',
    '2',
    '--drain-timeout',
    '20',
    '--metrics',
    '127.0.0.1:0',
  ]);
  t.after(() => cmd.stop());
  const metricsLine = await cmd.msg('serving metrics');
  const metricsUrl = `http://${metricsLine.metricsAddr as string}`;
  const before = upstream.connections.length;

  // A connection through the proxy arrives from the client named in the header.
  const first = await roundTrip(port, v1('203.0.113.7', 51000));
  assert.equal(first.echoed, 'ping\n');
  // The self-check's own connections (plain, and from its documentation addresses) may be
  // accepted by the upstream only now: they are left out.
  const selfCheck = ['::ffff:127.0.0.1', '::1', '::ffff:192.0.2.1', '2001:db8::1'];
  const seen = upstream.connections
    .slice(before)
    .filter((c) => !selfCheck.includes(c.remoteAddress ?? ''));
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.remoteAddress, '::ffff:203.0.113.7');
  assert.equal(seen[0]!.remotePort, 51000);
  const v6 = await roundTrip(port, v2('2001:db8::7', 51001));
  assert.equal(v6.echoed, 'ping\n');
  assert.equal(upstream.connections.at(-1)!.remoteAddress, '2001:db8::7');
  v6.socket.destroy();
  const conn = await cmd.msg('new connection');
  assert.equal(conn.clientAddr, '203.0.113.7:51000');
  assert.equal(conn.targetAddr, `127.0.0.1:${upstream.port}`);

  // SIGHUP with a list that no longer holds the load balancer (127.0.0.1): refused from now on.
  allow.write('198.51.100.0/24\n');
  let mark = cmd.lines.length;
  cmd.signal('SIGHUP');
  const reloaded = await cmd.msg('allowed subnets reloaded', mark);
  assert.equal(reloaded.subnets, 1);
  const count = upstream.connections.length;
  const refused = await roundTrip(port, v1('203.0.113.8', 51002));
  assert.equal(refused.echoed, null);
  assert.equal(upstream.connections.length, count, 'the upstream saw nothing');

  // A bad file keeps the list in force and says why.
  allow.write('198.51.100.0/24\nnot a subnet\n');
  mark = cmd.lines.length;
  cmd.signal('SIGHUP');
  const bad = await cmd.msg('failed to reload allowed subnets; keeping the previous list', mark);
  assert.equal(bad.level, 'ERROR');
  assert.match(bad.error as string, /allowed\.txt:2: bad allowlist line "not a subnet"/);
  assert.equal(
    (await roundTrip(port, v1('203.0.113.9', 51003))).echoed,
    null,
    'still the second list',
  );

  // And a good one lets the load balancer in again.
  allow.write('127.0.0.1/32\n');
  mark = cmd.lines.length;
  cmd.signal('SIGHUP');
  await cmd.msg('allowed subnets reloaded', mark);
  const again = await roundTrip(port, v1('203.0.113.10', 51004));
  assert.equal(again.echoed, 'ping\n');
  again.socket.destroy();

  const metrics = await (await fetch(metricsUrl)).text();
  assert.match(metrics, /^mmproxy_allowlist_reloads_total\{result="ok"\} 2$/m);
  assert.match(metrics, /^mmproxy_allowlist_reloads_total\{result="error"\} 1$/m);
  assert.match(metrics, /^mmproxy_rejected_total\{reason="notAllowed"\} 2$/m);
  assert.match(metrics, /^mmproxy_connections_admitted_total 3$/m);

  // SIGTERM while the first connection is open: it keeps working until it ends, then exit 0.
  mark = cmd.lines.length;
  cmd.signal('SIGTERM');
  const shutting = await cmd.msg('shutting down: draining connections', mark);
  assert.equal(shutting.drainTimeoutSeconds, 20);
  assert.ok((shutting.active as number) >= 1);
  await sleep(200);
  assert.equal(cmd.child.exitCode, null, 'still draining');
  first.socket.write('still there?\n');
  const reply = await new Promise<string>((resolve) =>
    first.socket.once('data', (d: Buffer) => resolve(d.toString())),
  );
  assert.equal(reply, 'still there?\n');
  const ended = ending(first.socket);
  first.socket.end();
  assert.equal(await ended, 'end', 'the upstream ended its side after ours: a clean close');
  const exit = await cmd.exited;
  assert.deepEqual(exit, { code: 0, signal: null });
  const stopped = cmd.lines.at(-1)!;
  assert.equal(stopped.msg, 'stopped');
  assert.equal(stopped.exitCode, 0);
  // Every line is go-mmproxy-shaped.
  for (const l of cmd.lines) {
    assert.deepEqual(Object.keys(l).slice(0, 3), ['time', 'level', 'msg']);
  }
});

test('a second signal stops at once, ending live connections', async (t) => {
  requireNamespace();
  const upstream = await Upstream.start('::');
  t.after(() => upstream.close());
  const { cmd, port } = await startProxy(upstream, ['--drain-timeout', '60']);
  t.after(() => cmd.stop());
  const open = await roundTrip(port, v1('203.0.113.20', 52000));
  assert.equal(open.echoed, 'ping\n');
  const ended = ending(open.socket);
  const mark = cmd.lines.length;
  const started = Date.now();
  cmd.signal('SIGINT');
  await cmd.msg('shutting down: draining connections', mark);
  cmd.signal('SIGTERM');
  await cmd.msg('stopping now', mark);
  const exit = await cmd.exited;
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.ok(Date.now() - started < 10_000, 'did not wait for the 60 s drain');
  assert.notEqual(await ended, undefined);
});

test('-v 0 logs no connections but a summary of drops; without --allowed-subnets SIGHUP only warns', async (t) => {
  requireNamespace();
  const upstream = await Upstream.start('::');
  t.after(() => upstream.close());
  const { cmd, port } = await startProxy(upstream);
  t.after(() => cmd.stop());
  const bad = await roundTrip(port, 'GARBAGE HEADER\r\n');
  assert.equal(bad.echoed, null);
  const ok = await roundTrip(port, v1('203.0.113.30', 53000));
  assert.equal(ok.echoed, 'ping\n');
  ok.socket.destroy();
  let mark = cmd.lines.length;
  cmd.signal('SIGHUP');
  const warned = await cmd.msg(
    'SIGHUP ignored: there is no --allowed-subnets file to reload',
    mark,
  );
  assert.equal(warned.level, 'WARN');
  mark = cmd.lines.length;
  cmd.signal('SIGTERM');
  // The final summary before "stopped" counts the bad header.
  const summary = await cmd.msg('connections dropped', mark);
  assert.deepEqual(summary.rejected, { badHeader: 1 });
  assert.equal(summary.level, 'WARN');
  assert.deepEqual(await cmd.exited, { code: 0, signal: null });
  assert.equal(
    cmd.lines.filter((l) => l.level === 'DEBUG').length,
    0,
    'no per-connection lines at -v 0',
  );
});

test('--dynamic-destination alone warns at start; with --dynamic-destination-allow it does not, and a destination outside is refused, logged and counted', async (t) => {
  requireNamespace();
  const upstream = await Upstream.start('::');
  t.after(() => upstream.close());
  const RISK =
    /^--dynamic-destination without --allowed-subnets or --dynamic-destination-allow: anyone who reaches the listener can connect from any address to any port of this host$/;

  const open = await startProxy(upstream, ['--dynamic-destination']);
  t.after(() => open.cmd.stop());
  const until = open.cmd.lines.findIndex((l) => l.msg === 'listening');
  const warned = open.cmd.lines.slice(0, until).find((l) => RISK.test(l.msg));
  assert.ok(warned, JSON.stringify(open.cmd.lines));
  assert.equal(warned.level, 'WARN');
  assert.match(String(warned.fix), /--dynamic-destination-allow LIST/);
  await open.cmd.stop();

  const { cmd, port } = await startProxy(upstream, [
    '--dynamic-destination',
    '--dynamic-destination-allow',
    `127.0.0.1/32:${upstream.port}`,
    '-v',
    '1',
  ]);
  t.after(() => cmd.stop());
  assert.equal(
    cmd.lines.some((l) => RISK.test(l.msg)),
    false,
    'no warning with a destination list',
  );
  const ok = await roundTrip(port, v1('203.0.113.40', 53001, '127.0.0.1', upstream.port));
  assert.equal(ok.echoed, 'ping\n');
  ok.socket.destroy();
  const refused = await roundTrip(port, v1('203.0.113.41', 53002, '127.0.0.1', upstream.port + 1));
  assert.equal(refused.echoed, null);
  const line = await cmd.waitFor((l) => l.reason === 'destinationRefused', 'the refusal');
  assert.equal(line.level, 'DEBUG');
  assert.equal(line.msg, 'destination in the PROXY header not in the allowed destinations');
  const mark = cmd.lines.length;
  cmd.signal('SIGTERM');
  const summary = await cmd.msg('connections dropped', mark);
  assert.deepEqual(summary.rejected, { destinationRefused: 1 });
  assert.deepEqual(await cmd.exited, { code: 0, signal: null });
});

test('a port in use: exit 1 with the error logged; a bad flag: exit 2 on stderr', async () => {
  requireNamespace();
  const taken = net.createServer().listen(0, '127.0.0.1');
  await once(taken, 'listening');
  try {
    const port = (taken.address() as net.AddressInfo).port;
    const cmd = new Command(['-l', `127.0.0.1:${port}`]);
    const exit = await cmd.exited;
    assert.deepEqual(exit, { code: 1, signal: null });
    const line = cmd.lines.find((l) => l.msg === 'failed to bind listener');
    assert.ok(line, JSON.stringify(cmd.lines));
    assert.equal(line.level, 'ERROR');
    assert.equal(line.code, 'EADDRINUSE');
  } finally {
    taken.close();
  }
  const usage = new Command(['--mark', 'x']);
  assert.deepEqual(await usage.exited, { code: 2, signal: null });
  assert.equal(usage.lines.length, 0);
  assert.match(usage.stderr, /--mark must be an integer/);
  const missing = new Command(['--allowed-subnets', '/nonexistent/file']);
  assert.deepEqual(await missing.exited, { code: 1, signal: null });
  assert.match(JSON.stringify(missing.lines), /failed to load allowed subnets file/);
});

test('--setup-routes in a fresh namespace: the proxy works without prior rules, and they are gone after exit', async () => {
  requireNamespace();
  const code = `
    import net from 'node:net';
    import { spawn, execFileSync } from 'node:child_process';
    const rules = () => execFileSync('sh', ['-c', 'ip rule; ip -6 rule; ip route show table 124; ip -6 route show table 124 2>/dev/null || true']).toString();
    const before = rules();
    // The start-up self-check connects here too and closes at once: its connection may be reset.
    const up = net.createServer((c) => { c.on('error', () => {}); c.end(c.remoteAddress + ' ' + c.remotePort); }).listen(0, '::');
    await new Promise((r) => up.on('listening', r));
    const p = up.address().port;
    const child = spawn(process.execPath, [${JSON.stringify(BIN)}, '-l', '127.0.0.1:0', '-4', '127.0.0.1:' + p, '-6', '[::1]:' + p, '--setup-routes', '124']);
    let out = '';
    const lines = [];
    child.stdout.on('data', (d) => { out += d; let i; while ((i = out.indexOf('\\n')) >= 0) { lines.push(JSON.parse(out.slice(0, i))); out = out.slice(i + 1); } });
    const wait = async (msg) => { for (let i = 0; i < 200; i++) { const l = lines.find((x) => x.msg === msg); if (l) return l; await new Promise((r) => setTimeout(r, 50)); } throw new Error('no ' + msg + ': ' + JSON.stringify(lines)); };
    const listening = await wait('listening');
    const during = rules();
    const port = Number(listening.localAddr.split(':').pop());
    const s = net.connect(port, '127.0.0.1', () => s.write('PROXY TCP4 203.0.113.40 127.0.0.1 54000 443\\r\\n'));
    let seen = '';
    s.on('data', (d) => (seen += d));
    await new Promise((r) => s.on('close', r));
    child.kill('SIGTERM');
    const [exitCode] = await new Promise((r) => child.on('exit', (...a) => r(a)));
    up.close();
    console.log(JSON.stringify({ before, during, after: rules(), seen, exitCode, lines }));`;
  const r = await inFreshNetns(code);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as {
    before: string;
    during: string;
    after: string;
    seen: string;
    exitCode: number;
    lines: LogLine[];
  };
  assert.equal(out.seen, '::ffff:203.0.113.40 54000');
  assert.equal(out.exitCode, 0);
  assert.match(out.during, /from 127\.0\.0\.1\/8 iif lo lookup 124/);
  assert.match(out.during, /from ::1 iif lo lookup 124/);
  assert.equal(out.after, out.before);
  const setup = out.lines.find((l) => l.msg === 'routing entries set up')!;
  assert.deepEqual(setup.added, [
    'ip rule add from 127.0.0.1/8 iif lo table 124',
    'ip route add local 0.0.0.0/0 dev lo table 124',
    'ip -6 rule add from ::1/128 iif lo table 124',
    'ip -6 route add local ::/0 dev lo table 124',
  ]);
  assert.ok(out.lines.some((l) => l.msg === 'routing entries removed' && l.removed === 4));
});

test('SIGHUP and SIGTERM while start-up waits for the allowlist do what they do later; routes are removed', async () => {
  requireNamespace();
  // The allowlist is a FIFO, so listen() waits in start-up until the test writes the list.
  const code = `
    import fs from 'node:fs';
    import { spawn, execFileSync } from 'node:child_process';
    const rules = () => execFileSync('sh', ['-c', 'ip rule; ip -6 rule']).toString();
    const before = rules();
    const dir = fs.mkdtempSync('/tmp/mmproxy-fifo-');
    const fifo = dir + '/allowed';
    execFileSync('mkfifo', [fifo]);
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const start = () => {
      const child = spawn(process.execPath, [${JSON.stringify(BIN)}, '-l', '127.0.0.1:0', '-4', '127.0.0.1:9', '-6', '[::1]:9', '--allowed-subnets', fifo, '--setup-routes', '125']);
      const lines = [];
      let out = '';
      child.stdout.on('data', (d) => { out += d; let i; while ((i = out.indexOf('\\n')) >= 0) { lines.push(JSON.parse(out.slice(0, i))); out = out.slice(i + 1); } });
      const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
      const alive = () => child.exitCode === null && child.signalCode === null;
      const wait = async (msg) => { for (let i = 0; i < 200 && alive(); i++) { if (lines.some((x) => x.msg === msg)) return true; await sleep(50); } return lines.some((x) => x.msg === msg); };
      // Writes the list once the command opens the FIFO to read it; never blocks on a dead one.
      const feed = async () => {
        for (let i = 0; i < 200 && alive(); i++) {
          try {
            const fd = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
            fs.writeSync(fd, '0.0.0.0/0\\n::/0\\n');
            fs.closeSync(fd);
            return true;
          } catch (e) { if (e.code !== 'ENXIO') throw e; await sleep(25); }
        }
        return false;
      };
      return { child, lines, exited, alive, wait, feed };
    };
    const result = {};
    // A reload asked for during start-up happens once listening.
    let c = start();
    await c.wait('routing entries set up');
    c.child.kill('SIGHUP');
    await sleep(300);
    result.hupAliveDuringStartup = c.alive();
    await c.feed();
    result.hupListening = await c.wait('listening');
    await c.feed();
    result.hupReloaded = await c.wait('allowed subnets reloaded');
    c.child.kill('SIGTERM');
    result.hupExit = await c.exited;
    result.hupRulesAfter = rules();
    result.hupLines = c.lines.map((l) => l.msg);
    // A stop asked for during start-up stops, cleans up and exits 0.
    c = start();
    await c.wait('routing entries set up');
    c.child.kill('SIGTERM');
    await sleep(300);
    await c.feed();
    result.termExit = await c.exited;
    result.termRulesAfter = rules();
    result.termLines = c.lines.map((l) => l.msg);
    // A second stop while start-up still hangs (the list never comes) stops at once.
    c = start();
    await c.wait('routing entries set up');
    c.child.kill('SIGTERM');
    await sleep(200);
    c.child.kill('SIGTERM');
    result.forcedExit = await Promise.race([c.exited, sleep(8000).then(() => 'still running')]);
    if (c.alive()) c.child.kill('SIGKILL');
    result.forcedRulesAfter = rules();
    result.forcedLines = c.lines.map((l) => l.msg);
    fs.rmSync(dir, { recursive: true });
    console.log(JSON.stringify({ before, ...result }));`;
  const r = await inFreshNetns(code, [], 60_000);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, unknown> & { before: string };
  const detail = JSON.stringify(out, null, 1);
  assert.equal(out.hupAliveDuringStartup, true, detail);
  assert.equal(out.hupListening, true, detail);
  assert.equal(out.hupReloaded, true, detail);
  assert.deepEqual(out.hupExit, { code: 0, signal: null }, detail);
  assert.equal(out.hupRulesAfter, out.before, detail);
  assert.deepEqual(out.termExit, { code: 0, signal: null }, detail);
  assert.equal(out.termRulesAfter, out.before, detail);
  assert.ok((out.termLines as string[]).includes('stop requested during start-up'), detail);
  assert.ok((out.termLines as string[]).includes('routing entries removed'), detail);
  // Ended by the signal itself: a normal exit would wait for the thread stuck on the FIFO.
  assert.deepEqual(out.forcedExit, { code: null, signal: 'SIGTERM' }, detail);
  assert.equal(out.forcedRulesAfter, out.before, detail);
  assert.ok((out.forcedLines as string[]).includes('stopping now, during start-up'), detail);
});

test('a SIGHUP as soon as the process listens for signals, before the command is loaded, does not kill it', async () => {
  requireNamespace();
  for (let round = 0; round < 3; round++) {
    const cmd = new Command(['-l', '127.0.0.1:0', '-4', '127.0.0.1:9']);
    try {
      // bin.ts installs its handlers first thing; SigCgt shows them (SIGHUP is bit 0).
      for (let i = 0; i < 2000; i++) {
        const status = readFileSync(`/proc/${cmd.child.pid}/status`, 'utf8');
        const caught = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1] ?? '0';
        if ((BigInt(`0x${caught}`) & 1n) === 1n) break;
        await sleep(1);
      }
      cmd.signal('SIGHUP');
      await cmd.msg('listening');
      await cmd.msg('SIGHUP ignored: there is no --allowed-subnets file to reload');
      cmd.signal('SIGTERM');
      assert.deepEqual(await cmd.exited, { code: 0, signal: null }, JSON.stringify(cmd.lines));
    } finally {
      await cmd.stop();
    }
  }
});

test('a listener destroyed from outside (ss -K): the command logs why and exits 1, TCP and UDP', async () => {
  requireNamespace();
  for (const protocol of ['tcp', 'udp'] as const) {
    const cmd = new Command(['-p', protocol, '-l', '127.0.0.1:0', '-4', '127.0.0.1:9']);
    try {
      const listening = await cmd.msg('listening');
      const port = Number(String(listening.localAddr).split(':').pop());
      execFileSync('ss', ['-K', protocol === 'tcp' ? '-tln' : '-uln', `sport = :${port}`]);
      if (protocol === 'tcp') {
        // A connection attempt after the kill is refused; the command must notice either way.
        const probe = net.connect(port, '127.0.0.1');
        probe.on('error', () => {});
      }
      const exit = await Promise.race([cmd.exited, sleep(5000).then(() => 'still running')]);
      assert.deepEqual(
        exit,
        { code: 1, signal: null },
        `${protocol}: ${JSON.stringify(cmd.lines)}`,
      );
      const line = cmd.lines.find((l) => l.msg === 'listener failed');
      assert.ok(line, JSON.stringify(cmd.lines));
      assert.match(
        String(line.error),
        protocol === 'tcp'
          ? /^accept failed: EINVAL 127\.0\.0\.1:\d+/
          : /^recvmmsg failed: ECONNABORTED/,
      );
    } finally {
      await cmd.stop();
    }
  }
});
