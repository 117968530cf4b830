// Host names for listen, target4 and target6, resolved for real: the library with localhost, and
// the `mmproxy` command in a namespace of its own with a private /etc/hosts (bind-mounted over
// the real one, a resolv.conf that points nowhere): a name reaches its address and is logged,
// SIGHUP after the hosts file changes moves new connections and leaves open ones alone, a name
// that stops resolving keeps its address with a WARN, and a name that never resolves stops the
// start with exit 2 naming the flag and the name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createProxy } from '../lib/proxy.js';
import { ResolveError } from '../lib/errors.js';
import { v1, v2 } from './helpers/headers.js';
import { connectAndSend, requireNamespace, Upstream } from './helpers/net.js';
import { inFreshNetns, ROUTING_SETUP } from './cli-netns.js';

const BIN = fileURLToPath(new URL('../cli/bin.js', import.meta.url));

type LogLine = Record<string, unknown> & { level: string; msg: string };

/** Sends a header and a line through the proxy; resolves with the first reply. */
async function ask(port: number, header: string | Uint8Array): Promise<string> {
  const socket = await connectAndSend(port, [header, 'ping\n']);
  try {
    return await new Promise<string>((resolve, reject) => {
      socket.once('data', (d: Buffer) => resolve(d.toString()));
      socket.once('error', reject);
      socket.once('close', () => reject(new Error('closed without a reply')));
    });
  } finally {
    socket.destroy();
  }
}

test('library: localhost names for listen and both targets; listen() resolves them', async (t) => {
  requireNamespace();
  const upstream = await Upstream.start('::');
  t.after(() => upstream.close());
  const proxy = createProxy({
    listen: 'localhost:0',
    target4: `localhost:${upstream.port}`,
    target6: `localhost:${upstream.port}`,
    workers: 1,
  });
  t.after(() => proxy.close({ drainTimeout: 0 }));
  assert.deepEqual(proxy.targets, { target4: null, target6: null }, 'not resolved before listen');
  await proxy.listen();
  assert.equal(proxy.address()!.address, '127.0.0.1');
  assert.deepEqual(proxy.targets, {
    target4: { address: '127.0.0.1', port: upstream.port, family: 4, host: 'localhost' },
    target6: { address: '::1', port: upstream.port, family: 6, host: 'localhost' },
  });
  const port = proxy.address()!.port;
  assert.equal(await ask(port, v1('203.0.113.50', 55000)), 'ping\n');
  assert.equal(await ask(port, v2('2001:db8::50', 55001)), 'ping\n');
  const seen = upstream.connections.map((c) => c.remoteAddress);
  assert.deepEqual(seen, ['::ffff:203.0.113.50', '2001:db8::50']);
  // Resolving again: localhost stays what it is.
  const again = await proxy.resolveTargets();
  assert.deepEqual(
    again.map((r) => [r.option, r.host, r.address, r.changed, r.error]),
    [
      ['target4', 'localhost', '127.0.0.1', false, null],
      ['target6', 'localhost', '::1', false, null],
    ],
  );
});

test('library: a name that does not resolve rejects listen() and opens nothing; addresses need no resolver', async () => {
  requireNamespace();
  // .invalid never resolves (RFC 6761); the namespace has no route to any name server either.
  const proxy = createProxy({ listen: '127.0.0.1:0', target6: 'nothing.invalid:443' });
  await assert.rejects(proxy.listen(), (err: unknown) => {
    assert.ok(err instanceof ResolveError, String(err));
    assert.equal(err.option, 'target6');
    assert.equal(err.host, 'nothing.invalid');
    assert.match(err.message, /^option "target6": cannot resolve "nothing\.invalid" to an IPv6/);
    return true;
  });
  assert.equal(proxy.address(), null);
  await proxy.close();
  const numeric = createProxy({ listen: '127.0.0.1:0' });
  assert.deepEqual(await numeric.resolveTargets(), []);
  assert.deepEqual(numeric.targets, {
    target4: { address: '127.0.0.1', port: 443, family: 4 },
    target6: { address: '::1', port: 443, family: 6 },
  });
});

/** Files bind-mounted over /etc/hosts, /etc/resolv.conf and /etc/nsswitch.conf for one run. */
function privateResolver(): { dir: string; setup: string[]; remove: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'mmproxy-hosts-'));
  writeFileSync(path.join(dir, 'hosts'), '');
  // Nothing answers on 127.0.0.1:53 in the namespace: names outside the file fail at once.
  writeFileSync(path.join(dir, 'resolv.conf'), 'nameserver 127.0.0.1\noptions attempts:1\n');
  writeFileSync(path.join(dir, 'nsswitch.conf'), 'hosts: files dns\n');
  const bind = (file: string): string => `mount --bind ${path.join(dir, file)} /etc/${file}`;
  return {
    dir,
    setup: [
      ...ROUTING_SETUP,
      bind('hosts'),
      bind('resolv.conf'),
      bind('nsswitch.conf'),
      // A name service cache would answer from the real hosts file.
      'if [ -d /run/nscd ]; then mount -t tmpfs tmpfs /run/nscd; fi',
    ],
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Module code the namespaced scripts share: start the command, read its lines, talk to it. */
const PRELUDE = (dir: string): string => `
  import fs from 'node:fs';
  import net from 'node:net';
  import { spawn } from 'node:child_process';
  // Edited in place, as an operator edits /etc/hosts; the bind mount shows it at once.
  const setHosts = (text) => fs.writeFileSync(${JSON.stringify(dir)} + '/hosts', text);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const start = (args) => {
    const child = spawn(process.execPath, [${JSON.stringify(BIN)}, ...args]);
    const lines = [];
    let out = '', stderr = '';
    child.stdout.on('data', (d) => { out += d; let i; while ((i = out.indexOf('\\n')) >= 0) { lines.push(JSON.parse(out.slice(0, i))); out = out.slice(i + 1); } });
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
    const wait = async (match, from = 0) => {
      for (let i = 0; i < 200; i++) {
        const l = lines.slice(from).find(match);
        if (l) return l;
        if (child.exitCode !== null) break;
        await sleep(50);
      }
      throw new Error('no such line; lines: ' + JSON.stringify(lines) + ' stderr: ' + stderr);
    };
    return { child, lines, exited, wait, stderr: () => stderr };
  };
  // An upstream that answers each line with its own address and the peer's.
  const upstream = (host, port) => new Promise((resolve) => {
    const s = net.createServer((c) => {
      c.on('error', () => {});
      c.on('data', (d) => c.write(host + ' ' + c.remoteAddress + ' ' + d));
    });
    s.listen(port, host, () => resolve(s));
  });
  const open = (port, header) => new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(header));
    s.on('error', reject);
    const say = (text) => new Promise((r, j) => { s.once('data', (d) => r(String(d))); s.once('close', () => j(new Error('closed'))); s.write(text); });
    s.once('connect', () => resolve({ say, end: () => s.destroy() }));
  });
  const once = async (port, header) => { const c = await open(port, header); try { return await c.say('ping\\n'); } finally { c.end(); } };
`;

test('mmproxy -4/-6 NAME:PORT: resolved from /etc/hosts and logged; SIGHUP moves new connections, keeps open ones, and keeps the address when the name goes', async () => {
  requireNamespace();
  const r = privateResolver();
  try {
    const code = `${PRELUDE(r.dir)}
      const first = await upstream('127.0.0.1', 0);
      const port = first.address().port;
      const servers = [first, await upstream('127.0.0.2', port), await upstream('::1', port)];
      // Two names: glibc answers an IPv4 lookup of a name listed with ::1 with 127.0.0.1 too.
      setHosts('127.0.0.1 app.test\\n::1 app6.test\\n');
      const p = start(['-l', '127.0.0.1:0', '-4', 'app.test:' + port, '-6', 'app6.test:' + port]);
      const result = { port };
      const listening = await p.wait((l) => l.msg === 'listening');
      await p.wait((l) => l.msg === 'self-check passed' || l.msg === 'self-check failed');
      result.selfCheck = p.lines.find((l) => l.msg.startsWith('self-check')).msg;
      const proxyPort = Number(listening.localAddr.split(':').pop());
      result.resolvedAtStart = p.lines.filter((l) => l.msg === 'resolved host name');
      result.v4 = await once(proxyPort, 'PROXY TCP4 203.0.113.7 127.0.0.1 51000 443\\r\\n');
      result.v6 = await once(proxyPort, 'PROXY TCP6 2001:db8::7 ::1 51001 443\\r\\n');
      const kept = await open(proxyPort, 'PROXY TCP4 203.0.113.8 127.0.0.1 51002 443\\r\\n');
      result.keptBefore = await kept.say('one\\n');

      // The name moves to 127.0.0.2: new connections go there, the open one stays.
      setHosts('127.0.0.2 app.test\\n::1 app6.test\\n');
      let mark = p.lines.length;
      p.child.kill('SIGHUP');
      result.moved = await p.wait((l) => l.msg.startsWith('host name resolved to a new address'), mark);
      result.same = await p.wait((l) => l.msg === 'host name resolved again; same address', mark);
      result.afterMove = await once(proxyPort, 'PROXY TCP4 203.0.113.9 127.0.0.1 51003 443\\r\\n');
      result.keptAfter = await kept.say('two\\n');

      // The IPv4 address goes from the file: the previous address stays in force, with a WARN.
      setHosts('::1 app6.test\\n');
      mark = p.lines.length;
      p.child.kill('SIGHUP');
      result.failed = await p.wait((l) => l.msg.startsWith('failed to resolve host name'), mark);
      await p.wait((l) => l.msg === 'host name resolved again; same address', mark);
      result.afterFailure = await once(proxyPort, 'PROXY TCP4 203.0.113.10 127.0.0.1 51004 443\\r\\n');
      result.noFileWarning = p.lines.some((l) => l.msg.startsWith('SIGHUP ignored'));
      kept.end();
      p.child.kill('SIGTERM');
      result.exit = await p.exited;
      for (const s of servers) s.close();
      console.log(JSON.stringify(result));`;
    const out = await inFreshNetns(code, r.setup, 60_000, { privateMounts: true });
    assert.equal(out.status, 0, out.stderr);
    const res = JSON.parse(out.stdout) as Record<string, unknown> & { port: number };
    const detail = JSON.stringify(res, null, 1);
    const fields = (l: unknown): unknown => {
      const { level, msg, flag, name, address, previous, error } = l as LogLine;
      return { level, msg, flag, name, address, previous, error };
    };
    assert.deepEqual(
      (res.resolvedAtStart as LogLine[]).map(fields),
      [
        {
          level: 'INFO',
          msg: 'resolved host name',
          flag: '-4',
          name: 'app.test',
          address: '127.0.0.1',
        },
        { level: 'INFO', msg: 'resolved host name', flag: '-6', name: 'app6.test', address: '::1' },
      ].map(fields),
      detail,
    );
    assert.equal(res.selfCheck, 'self-check passed', detail);
    assert.equal(res.v4, '127.0.0.1 203.0.113.7 ping\n', detail);
    assert.equal(res.v6, '::1 2001:db8::7 ping\n', detail);
    assert.equal(res.keptBefore, '127.0.0.1 203.0.113.8 one\n', detail);
    assert.deepEqual(
      fields(res.moved),
      fields({
        level: 'INFO',
        msg: 'host name resolved to a new address; new connections go there',
        flag: '-4',
        name: 'app.test',
        address: '127.0.0.2',
        previous: '127.0.0.1',
      }),
      detail,
    );
    assert.equal((res.same as LogLine).flag, '-6', detail);
    assert.equal(res.afterMove, '127.0.0.2 203.0.113.9 ping\n', detail);
    assert.equal(res.keptAfter, '127.0.0.1 203.0.113.8 two\n', 'the open connection stayed');
    const failed = res.failed as LogLine;
    assert.equal(failed.level, 'WARN', detail);
    assert.equal(failed.msg, 'failed to resolve host name; keeping the previous address');
    assert.equal(failed.flag, '-4');
    assert.equal(failed.name, 'app.test');
    assert.equal(failed.address, '127.0.0.2');
    assert.match(String(failed.error), /no such name, or no IPv4 address for it|EAI_AGAIN/);
    assert.equal(res.afterFailure, '127.0.0.2 203.0.113.10 ping\n', detail);
    assert.equal(res.noFileWarning, false, 'SIGHUP did something: no "ignored" warning');
    assert.deepEqual(res.exit, { code: 0, signal: null }, detail);
  } finally {
    r.remove();
  }
});

test('mmproxy with names that do not resolve: exit 2 naming the flag and the name; -l takes IPv4 first; localhost needs no hosts entry', async () => {
  requireNamespace();
  const r = privateResolver();
  try {
    const code = `${PRELUDE(r.dir)}
      const result = {};
      const run = async (args) => {
        const p = start(args);
        const exit = await Promise.race([p.exited, sleep(15000).then(() => 'still running')]);
        if (exit === 'still running') p.child.kill('SIGKILL');
        return { exit, stderr: p.stderr(), msgs: p.lines.map((l) => l.msg) };
      };
      setHosts('127.0.0.1 v4only.test\\n::1 proxy.test\\n127.0.0.3 proxy.test\\n');
      result.missing4 = await run(['-l', '127.0.0.1:0', '-4', 'missing.test:80']);
      result.v6of4only = await run(['-l', '127.0.0.1:0', '-4', '127.0.0.1:80', '-6', 'v4only.test:80']);
      result.missingListen = await run(['-l', 'missing.test:0', '-4', '127.0.0.1:9']);
      result.envMissing = await (async () => {
        process.env.MMPROXY_TARGET4 = 'missing-env.test:80';
        try { return await run(['-l', '127.0.0.1:0']); } finally { delete process.env.MMPROXY_TARGET4; }
      })();

      // -l with both families in the file: the IPv4 address, as go-mmproxy listens.
      const up = await upstream('127.0.0.1', 0);
      const up6 = await upstream('::1', up.address().port);
      let p = start(['-l', 'proxy.test:0', '-4', '127.0.0.1:' + up.address().port]);
      result.listenLine = await p.wait((l) => l.msg === 'listening');
      result.listenResolved = await p.wait((l) => l.msg === 'resolved host name');
      p.child.kill('SIGTERM');
      await p.exited;

      // localhost, with no line for it in the hosts file: 127.0.0.1 for -4, ::1 for -6.
      setHosts('');
      const port = up.address().port;
      p = start(['-l', 'localhost:0', '-4', 'localhost:' + port, '-6', 'localhost:' + port]);
      const listening = await p.wait((l) => l.msg === 'listening');
      await p.wait((l) => l.msg === 'self-check passed' || l.msg === 'self-check failed');
      const proxyPort = Number(listening.localAddr.split(':').pop());
      result.localhostAddr = listening.localAddr;
      result.localhostResolved = p.lines.filter((l) => l.msg === 'resolved host name').map((l) => [l.flag, l.name, l.address]);
      result.localhostV4 = await once(proxyPort, 'PROXY TCP4 203.0.113.20 127.0.0.1 52000 443\\r\\n');
      result.localhostV6 = await once(proxyPort, 'PROXY TCP6 2001:db8::20 ::1 52001 443\\r\\n');
      p.child.kill('SIGTERM');
      result.localhostExit = await p.exited;
      up.close();
      up6.close();
      console.log(JSON.stringify(result));`;
    const out = await inFreshNetns(code, r.setup, 90_000, { privateMounts: true });
    assert.equal(out.status, 0, out.stderr);
    const res = JSON.parse(out.stdout) as Record<
      string,
      { exit: unknown; stderr: string; msgs: string[] } & Record<string, unknown>
    >;
    const detail = JSON.stringify(res, null, 1);
    const refused = (key: string, pattern: RegExp): void => {
      const run = res[key]!;
      assert.deepEqual(run.exit, { code: 2, signal: null }, `${key}: ${detail}`);
      assert.match(run.stderr, pattern, key);
      assert.equal(run.msgs.includes('listening'), false, `${key}: never listened`);
    };
    refused(
      'missing4',
      /^mmproxy: -4 missing\.test:80: cannot resolve "missing\.test" to an IPv4 address: .+; give a name that resolves, or an address, e\.g\. -4 127\.0\.0\.1:443\n$/,
    );
    refused(
      'v6of4only',
      /^mmproxy: -6 v4only\.test:80: cannot resolve "v4only\.test" to an IPv6 address: .+ e\.g\. -6 \[::1\]:443\n$/,
    );
    refused(
      'missingListen',
      /^mmproxy: -l missing\.test:0: cannot resolve "missing\.test" to an IP address: .+ e\.g\. -l 0\.0\.0\.0:8443\n$/,
    );
    refused('envMissing', /^mmproxy: -4 missing-env\.test:80: cannot resolve "missing-env\.test"/);
    assert.match(String(res.listenLine!.localAddr), /^127\.0\.0\.3:\d+$/, detail);
    assert.equal(res.listenResolved!.flag, '-l');
    assert.equal(res.listenResolved!.name, 'proxy.test');
    assert.equal(res.listenResolved!.address, '127.0.0.3');
    assert.match(String(res.localhostAddr), /^127\.0\.0\.1:\d+$/, detail);
    assert.deepEqual(res.localhostResolved, [
      ['-4', 'localhost', '127.0.0.1'],
      ['-6', 'localhost', '::1'],
      ['-l', 'localhost', '127.0.0.1'],
    ]);
    assert.equal(res.localhostV4, '127.0.0.1 203.0.113.20 ping\n', detail);
    assert.equal(res.localhostV6, '::1 2001:db8::20 ping\n', detail);
    assert.deepEqual(res.localhostExit, { code: 0, signal: null }, detail);
  } finally {
    r.remove();
  }
});
