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
