// The spoofing check knows this host's addresses the way the kernel does: an interface that is
// up without carrier (docker0 with no container) keeps its addresses in the local table though
// os.networkInterfaces() leaves it out, and an address added to the host counts within a second.
// In a fresh namespace of its own, so that the addresses it adds touch no other test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inFreshNetns, moduleUrl, ROUTING_SETUP } from './cli-netns.js';

test('addresses of an interface without carrier, and one added meanwhile, are never spoofed', async () => {
  const code = `
    import net from 'node:net';
    import os from 'node:os';
    import { once } from 'node:events';
    import { execFileSync } from 'node:child_process';
    const { createProxy } = await import(${JSON.stringify(moduleUrl('../lib/index.js'))});
    const up = net.createServer((s) => s.pipe(s)).listen(0, '127.0.0.1');
    const up6 = net.createServer((s) => s.pipe(s)).listen(0, '::1');
    await Promise.all([once(up, 'listening'), once(up6, 'listening')]);
    const proxy = createProxy({
      listen: '0.0.0.0:0',
      target4: { address: '127.0.0.1', port: up.address().port },
      target6: { address: '::1', port: up6.address().port },
      workers: 1,
    });
    await proxy.listen();
    const port = proxy.address().port;
    const reasons = [];
    proxy.on('reject', (r) => reasons.push(r.reason + ': ' + (r.error?.message ?? '')));
    const v1 = (src, sport) =>
      src.includes(':')
        ? 'PROXY TCP6 ' + src + ' ::1 ' + sport + ' 443\\r\\n'
        : 'PROXY TCP4 ' + src + ' 127.0.0.1 ' + sport + ' 443\\r\\n';
    const local = Buffer.from('0d0a0d0a000d0a515549540a20000000', 'hex');
    const attempt = (header, localAddress) =>
      new Promise((resolve) => {
        const s = net.connect({ port, host: '127.0.0.1', localAddress });
        s.on('connect', () => s.write(Buffer.concat([Buffer.from(header), Buffer.from('hello')])));
        s.on('data', (d) => { resolve(d.toString()); s.destroy(); });
        s.on('error', () => resolve('closed'));
        s.on('close', () => resolve('closed'));
      });
    const out = { listed: Object.keys(os.networkInterfaces()) };
    out.noCarrier = await attempt(v1('172.17.0.1', 5000));
    out.noCarrierBroadcast = await attempt(v1('172.17.255.255', 5001));
    out.noCarrier6 = await attempt(v1('2001:db8:17::1', 5002));
    out.elsewhere = await attempt(v1('172.17.0.2', 5003));
    out.before = await attempt(v1('203.0.113.60', 5004));
    execFileSync('ip', ['addr', 'add', '203.0.113.60/32', 'dev', 'v0']);
    await new Promise((r) => setTimeout(r, 1050));
    out.after = await attempt(v1('203.0.113.60', 5005));
    out.localFromThisHost = await attempt(local, '172.17.0.1');
    out.reasons = reasons;
    out.spoofRefused = proxy.stats().rejected.spoofRefused;
    await proxy.close();
    up.close();
    up6.close();
    console.log(JSON.stringify(out));`;
  const r = await inFreshNetns(code, [
    ...ROUTING_SETUP,
    // v1 stays down, so v0 is up without carrier (NO-CARRIER, like docker0 with no container).
    'ip link add v0 type veth peer name v1',
    'ip addr add 172.17.0.1/16 dev v0',
    'ip -6 addr add 2001:db8:17::1/64 dev v0 nodad',
    'ip link set v0 up',
  ]);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.deepEqual(out.listed, ['lo'], 'libuv leaves the interface out');
  assert.equal(out.noCarrier, 'closed');
  assert.equal(out.noCarrierBroadcast, 'closed');
  assert.equal(out.noCarrier6, 'closed');
  assert.equal(out.elsewhere, 'hello', 'another address of that subnet is an ordinary client');
  assert.equal(out.before, 'hello');
  assert.equal(out.after, 'closed', 'an address added a second ago is this host’s');
  assert.equal(out.localFromThisHost, 'closed', 'LOCAL from a load balancer on this host');
  assert.equal(out.spoofRefused, 5, JSON.stringify(out));
  const reasons = out.reasons as string[];
  assert.match(
    reasons[0]!,
    /^spoofRefused: refusing to connect from 172\.17\.0\.1:5000 \(local-address\)/,
  );
  assert.match(reasons[2]!, /^spoofRefused: .*2001:db8:17::1.*\(local-address\)/);
  assert.match(
    reasons[4]!,
    /load balancer's address 172\.17\.0\.1 for a LOCAL header \(local-address\)/,
  );
});

test('the local table is read alone, not the whole routing table (strict netlink checking)', async () => {
  const code = `
    import fs from 'node:fs';
    import { execFileSync } from 'node:child_process';
    const { loadNative } = await import(${JSON.stringify(moduleUrl('../lib/native.js'))});
    const addon = loadNative();
    const lines = [];
    for (let i = 0; i < 3000; i++) lines.push('route add 172.16.' + ((i / 250) | 0) + '.' + (i % 250) + '/32 dev v0');
    fs.writeFileSync('/tmp/mmproxy-routes.batch', lines.join('\\n') + '\\n');
    execFileSync('ip', ['-batch', '/tmp/mmproxy-routes.batch']);
    fs.rmSync('/tmp/mmproxy-routes.batch');
    console.log(JSON.stringify(addon.localTable()));`;
  const r = await inFreshNetns(code, [
    'ip link add v0 type veth peer name v1',
    'ip link set v0 up',
    'ip link set v1 up',
    'ip addr add 10.0.0.1/8 dev v0',
  ]);
  assert.equal(r.status, 0, r.stderr);
  const table = JSON.parse(r.stdout) as { prefixes: string[]; routesRead: number };
  assert.ok(table.prefixes.includes('10.0.0.1/32'), r.stdout);
  assert.ok(table.routesRead < 50, `${table.routesRead} route messages read for the local table`);
});

test('a local route of prefix length 0 makes every address of its family this host’s', async () => {
  const code = `
    const { HostAddresses } = await import(${JSON.stringify(moduleUrl('../lib/host-addresses.js'))});
    const { loadNative } = await import(${JSON.stringify(moduleUrl('../lib/native.js'))});
    const h = new HostAddresses();
    console.log(JSON.stringify({ table: loadNative().localTable().prefixes, v4: h.has('203.0.113.9'), v6: h.has('2001:db8::9') }));
    h.close();`;
  const r = await inFreshNetns(code, ['ip route add local 0.0.0.0/0 dev lo table local']);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { table: string[]; v4: boolean; v6: boolean };
  assert.ok(out.table.includes('0.0.0.0/0'), r.stdout);
  assert.equal(out.v4, true, 'bind() would succeed for any IPv4 address here');
  assert.equal(out.v6, false);
});

test('out of descriptors while reading the local table: refused (fail closed), and the batch is still decided', async () => {
  // ulimit keeps the descriptor count small, so the child can use them all up quickly.
  const code = `
    import fs from 'node:fs';
    import net from 'node:net';
    const { createProxy } = await import(${JSON.stringify(moduleUrl('../lib/index.js'))});
    const app = net.createServer((s) => s.end('hi'));
    await new Promise((r) => app.listen(0, '127.0.0.1', r));
    const proxy = createProxy({ listen: '127.0.0.1:0', target4: '127.0.0.1:' + app.address().port, workers: 1 });
    const rejects = [];
    proxy.on('reject', (r) => rejects.push(r.reason + ': ' + (r.error?.message ?? '')));
    await proxy.listen();
    const port = proxy.address().port;
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const open = () => { const s = net.connect(port, '127.0.0.1'); s.on('error', () => {}); return s; };
    const reply = (s) => new Promise((r) => { let got = ''; s.on('data', (d) => (got += d)); s.on('close', () => r(got || 'closed')); });
    const a = open(), b = open();
    await sleep(300);
    const held = [];
    try { for (;;) held.push(fs.openSync('/dev/null', 'r')); } catch {}
    // Both headers in one batch, while no descriptor is free: a names a client, b this host.
    a.write('PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\\r\\n');
    b.write('PROXY TCP4 198.51.100.1 127.0.0.1 40001 443\\r\\n');
    const ra = reply(a), rb = reply(b);
    await sleep(300);
    for (const fd of held) fs.closeSync(fd);
    // Once descriptors are back, this host's own address is refused as such.
    const c = open();
    await new Promise((r) => c.on('connect', r));
    c.write('PROXY TCP4 198.51.100.1 127.0.0.1 40002 443\\r\\n');
    const rc = await reply(c);
    const out = { held: held.length, a: await ra, b: await rb, c: rc, rejects, stats: proxy.stats().rejected, active: proxy.stats().active };
    await proxy.close({ drainTimeout: 0 });
    app.close();
    console.log(JSON.stringify(out));`;
  const r = await inFreshNetns(code, [
    ...ROUTING_SETUP,
    'ip link add d0 type veth peer name d1',
    'ip link set d1 up',
    'ip link set d0 up',
    'ip addr add 198.51.100.1/24 dev d0',
    'ulimit -n 256',
  ]);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, unknown> & { rejects: string[] };
  const detail = JSON.stringify(out, null, 1);
  assert.ok((out.held as number) > 0, detail);
  assert.equal(out.b, 'closed', detail);
  assert.equal(out.c, 'closed', detail);
  assert.equal(out.active, 0, detail);
  assert.ok(
    out.rejects.some((x) => /^spoofRefused: .*198\.51\.100\.1:40001 .*could not be read/.test(x)),
    detail,
  );
  assert.ok(
    out.rejects.some((x) => /^spoofRefused: .*40002 \(local-address\)$/.test(x)),
    detail,
  );
});
