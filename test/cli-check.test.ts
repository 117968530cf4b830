// `mmproxy check` through main(): every line OK and exit 0 with the routing rules in place; FAIL
// lines with the commands that fix them and exit 1 in a fresh namespace without them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { main } from '../cli/main.js';
import { inFreshNetns, moduleUrl } from './cli-netns.js';

test('with the routing rules (the test namespace): 8 OK lines, exit 0', async () => {
  const server = net.createServer((c) => c.destroy()).listen(0, '::');
  await once(server, 'listening');
  try {
    const port = (server.address() as net.AddressInfo).port;
    let out = '';
    const code = await main(['check', '-4', `127.0.0.1:${port}`, '-6', `[::1]:${port}`], {
      stdout: { write: (s: string) => (out += s) },
      stderr: { write: (s: string) => assert.fail(s) },
      env: {},
    });
    assert.equal(code, 0, out);
    const lines = out.trimEnd().split('\n');
    assert.equal(lines.filter((l) => l.startsWith('OK  ')).length, 8, out);
    assert.equal(lines.at(-1), 'All 8 checks passed.');
    assert.ok(
      lines.includes(
        `OK    IPv4 target 127.0.0.1:${port} accepts connections from 192.0.2.1 (spoofed): connected from the made-up client address and the reply came back`,
      ),
      out,
    );
  } finally {
    server.close();
  }
});

test('without them (a fresh namespace): FAIL lines with the exact fix, exit 1', async () => {
  const code = `
    import net from 'node:net';
    const { main } = await import(${JSON.stringify(moduleUrl('../cli/main.js'))});
    const s = net.createServer((c) => c.destroy()).listen(0, '::');
    await new Promise((r) => s.on('listening', r));
    const port = s.address().port;
    let out = '';
    const status = await main(['check', '-4', '127.0.0.1:' + port, '-6', '[::1]:' + port, '--setup-routes', '77'], { stdout: { write: (x) => (out += x) }, env: {} });
    s.close();
    console.log(JSON.stringify({ status, out }));`;
  const r = await inFreshNetns(code);
  assert.equal(r.status, 0, r.stderr);
  const { status, out } = JSON.parse(r.stdout) as { status: number; out: string };
  assert.equal(status, 1);
  assert.match(
    out,
    /^FAIL  replies from the IPv4 target reach this host: ip route get 192\.0\.2\.1 from 127\.0\.0\.1: RTNETLINK answers: Network is unreachable\n      fix: ip rule add from 127\.0\.0\.1\/8 iif lo table 77\n      fix: ip route add local 0\.0\.0\.0\/0 dev lo table 77$/m,
  );
  assert.match(out, /^      fix: ip -6 route add local ::\/0 dev lo table 77$/m);
  assert.match(
    out,
    /^FAIL  IPv6 target \[::1\]:\d+ accepts connections from 2001:db8::1 \(spoofed\): .*ETIMEDOUT/m,
  );
  assert.match(out, /^OK    transparent IPv4 sockets/m);
  assert.match(out, /^4 of 8 checks failed\.$/m);
});
