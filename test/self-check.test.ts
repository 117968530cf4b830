// lib/self-check: the parsers of `ip` output, the fix commands, and the checks themselves against
// the real kernel — in the test namespace (rules present) and in a fresh one (no rules).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import {
  hasLocalDefaultRoute,
  isOurRule,
  parseRules,
  routingCommands,
  selfCheck,
  type CheckItem,
  type IpResult,
  type IpRunner,
} from '../lib/self-check.js';
import { inFreshNetns, moduleUrl } from './cli-netns.js';

function statusById(items: CheckItem[]): Record<string, string> {
  return Object.fromEntries(items.map((i) => [i.id, i.status]));
}

async function upstream(): Promise<{ server: net.Server; port: number; peers: string[] }> {
  const peers: string[] = [];
  const server = net.createServer((c) => {
    peers.push(c.remoteAddress!);
    c.destroy();
  });
  server.listen(0, '::');
  await once(server, 'listening');
  return { server, port: (server.address() as net.AddressInfo).port, peers };
}

test("routingCommands are DESIGN.md's entries, and their exact deletions", () => {
  assert.deepEqual(
    [...routingCommands(4, 123), ...routingCommands(6, 123)].map((c) => c.text),
    [
      'ip rule add from 127.0.0.1/8 iif lo table 123',
      'ip route add local 0.0.0.0/0 dev lo table 123',
      'ip -6 rule add from ::1/128 iif lo table 123',
      'ip -6 route add local ::/0 dev lo table 123',
    ],
  );
  assert.deepEqual(routingCommands(6, 7, '::1')[0]!.del, [
    '-6',
    'rule',
    'del',
    'from',
    '::1/128',
    'iif',
    'lo',
    'table',
    '7',
  ]);
  assert.deepEqual(routingCommands(4, 7, '127.0.0.2')[1]!.del, [
    'route',
    'del',
    'local',
    '0.0.0.0/0',
    'dev',
    'lo',
    'table',
    '7',
  ]);
  // A target on another local address gets a rule for that address.
  assert.equal(
    routingCommands(4, 9, '10.1.2.3')[0]!.text,
    'ip rule add from 10.1.2.3/32 iif lo table 9',
  );
  assert.equal(
    routingCommands(6, 9, 'fd00::5')[0]!.text,
    'ip -6 rule add from fd00::5/128 iif lo table 9',
  );
});

test('parseRules reads every shape `ip rule show` prints', () => {
  const rules = parseRules(
    [
      '0:\tfrom all lookup local',
      '5:\tnot from all to 10.0.0.0/8 iif eth0 [detached] lookup main',
      '32764:\tfrom all fwmark 0x7b/0xff lookup 100',
      '32765:\tfrom 127.0.0.1/8 iif lo lookup 123',
      '32766:\tfrom ::1 iif lo lookup 123 ',
      '32767:\tfrom all lookup default',
      '1000:\tfrom all iif lo lookup 123 proto static',
      'garbage',
    ].join('\n'),
  );
  assert.equal(rules.length, 7);
  assert.deepEqual(rules[1], {
    priority: 5,
    not: true,
    from: 'all',
    to: '10.0.0.0/8',
    iif: 'eth0',
    lookup: 'main',
    other: ['[detached]'],
  });
  assert.deepEqual(rules[2], {
    priority: 32764,
    not: false,
    from: 'all',
    fwmark: '0x7b/0xff',
    lookup: '100',
    other: [],
  });
  assert.equal(isOurRule(rules[3]!, '127.0.0.1/8', 123), true);
  assert.equal(isOurRule(rules[3]!, '127.0.0.1/8', 124), false);
  assert.equal(isOurRule(rules[4]!, '::1/128', 123), true, '/128 is printed without its length');
  assert.equal(isOurRule(rules[6]!, '127.0.0.1/8', 123), false);
  assert.equal(
    isOurRule(parseRules('9: from all iif lo lookup 123 proto static')[0]!, 'all', 123),
    false,
    'extra selectors',
  );
});

test('hasLocalDefaultRoute', () => {
  assert.equal(hasLocalDefaultRoute('local default dev lo scope host \n'), true);
  assert.equal(hasLocalDefaultRoute('local default dev lo metric 1024 pref medium'), true);
  assert.equal(hasLocalDefaultRoute('local 0.0.0.0/0 dev lo scope host'), true);
  assert.equal(hasLocalDefaultRoute('default via 10.0.0.1 dev eth0'), false);
  assert.equal(hasLocalDefaultRoute('local default dev eth0 scope host'), false);
  assert.equal(hasLocalDefaultRoute(''), false);
});

test('in the test namespace (rules for table 123 present) every check passes', async () => {
  const up = await upstream();
  try {
    const items = await selfCheck({ target4: `127.0.0.1:${up.port}`, target6: `[::1]:${up.port}` });
    assert.deepEqual(statusById(items), {
      'transparent-ipv4': 'ok',
      'routing-ipv4': 'ok',
      'target-ipv4': 'ok',
      'spoofed-ipv4': 'ok',
      'transparent-ipv6': 'ok',
      'routing-ipv6': 'ok',
      'target-ipv6': 'ok',
      'spoofed-ipv6': 'ok',
    });
    assert.match(items.find((i) => i.id === 'routing-ipv4')!.detail, /local \(table 123\)/);
    // The spoofed connections really came from the documentation addresses. connectFrom
    // resolves at the handshake; the server may see the connection a moment later.
    const deadline = Date.now() + 2000;
    while (!(up.peers.includes('::ffff:192.0.2.1') && up.peers.includes('2001:db8::1'))) {
      if (Date.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.ok(up.peers.includes('::ffff:192.0.2.1'), up.peers.join());
    assert.ok(up.peers.includes('2001:db8::1'), up.peers.join());
  } finally {
    up.server.close();
  }
});

test('a target given by name is resolved as the proxy resolves it, and says what it chose', async () => {
  const up = await upstream();
  try {
    const items = await selfCheck({
      target4: `localhost:${up.port}`,
      target6: `localhost:${up.port}`,
    });
    assert.deepEqual(statusById(items), {
      'name-ipv4': 'ok',
      'transparent-ipv4': 'ok',
      'routing-ipv4': 'ok',
      'target-ipv4': 'ok',
      'spoofed-ipv4': 'ok',
      'name-ipv6': 'ok',
      'transparent-ipv6': 'ok',
      'routing-ipv6': 'ok',
      'target-ipv6': 'ok',
      'spoofed-ipv6': 'ok',
    });
    const name6 = items.find((i) => i.id === 'name-ipv6')!;
    assert.equal(name6.title, 'IPv6 target name localhost');
    assert.equal(name6.detail, 'resolves to ::1; the proxy uses ::1');
    assert.equal(
      items.find((i) => i.id === 'target-ipv6')!.title,
      `IPv6 target [::1]:${up.port} accepts connections`,
    );
  } finally {
    up.server.close();
  }
  // A name that does not resolve (.invalid never does) and a value that is no name at all.
  const bad = await selfCheck({ target4: 'nothing.invalid:443', target6: 'no name:443' });
  assert.deepEqual(statusById(bad), { 'name-ipv4': 'fail', 'target-ipv6': 'fail' });
  assert.match(bad[0]!.detail, /^cannot resolve "nothing\.invalid" to an IPv4 address: /);
  assert.match(bad[0]!.fix[0]!, /-4 127\.0\.0\.1:443/);
  assert.equal(
    bad[1]!.detail,
    '"no name:443" is not an IPv6 address or host name and port: "no name" is not an IP address or host name',
  );
});

test('a target nobody listens on fails with the command that fixes it', async () => {
  const up = await upstream();
  up.server.close();
  await once(up.server, 'close');
  const items = await selfCheck({ target4: `127.0.0.1:${up.port}` });
  const target = items.find((i) => i.id === 'target-ipv4')!;
  assert.equal(target.status, 'fail');
  assert.match(target.detail, /ECONNREFUSED/);
  assert.deepEqual(target.fix, [
    `start the application on 127.0.0.1:${up.port}, or point -4 at the address it listens on`,
  ]);
  assert.equal(items.find((i) => i.id === 'spoofed-ipv4')!.status, 'fail');
});

test('without the routing rules (a fresh namespace) routing and the spoofed connection fail, with the fix', async () => {
  const code = `
    import net from 'node:net';
    const { selfCheck } = await import(${JSON.stringify(moduleUrl('../lib/self-check.js'))});
    const s = net.createServer((c) => c.destroy()).listen(0, '::');
    await new Promise((r) => s.on('listening', r));
    const port = s.address().port;
    const items = await selfCheck({ target4: '127.0.0.1:' + port, target6: '[::1]:' + port, timeoutMs: 500 });
    console.log(JSON.stringify(items));
    s.close();`;
  const r = await inFreshNetns(code);
  assert.equal(r.status, 0, r.stderr);
  const items = JSON.parse(r.stdout) as CheckItem[];
  assert.deepEqual(statusById(items), {
    'transparent-ipv4': 'ok',
    'routing-ipv4': 'fail',
    'target-ipv4': 'ok',
    'spoofed-ipv4': 'fail',
    'transparent-ipv6': 'ok',
    'routing-ipv6': 'fail',
    'target-ipv6': 'ok',
    'spoofed-ipv6': 'fail',
  });
  const byId = new Map(items.map((i) => [i.id, i]));
  assert.deepEqual(byId.get('routing-ipv4')!.fix, [
    'ip rule add from 127.0.0.1/8 iif lo table 123',
    'ip route add local 0.0.0.0/0 dev lo table 123',
  ]);
  assert.deepEqual(byId.get('routing-ipv6')!.fix, [
    'ip -6 rule add from ::1/128 iif lo table 123',
    'ip -6 route add local ::/0 dev lo table 123',
  ]);
  assert.match(byId.get('spoofed-ipv4')!.detail, /ETIMEDOUT/);
  assert.deepEqual(byId.get('spoofed-ipv4')!.fix, byId.get('routing-ipv4')!.fix);
});

test('the fix commands, once run, make every check pass (in a fresh namespace)', async () => {
  const code = `
    import net from 'node:net';
    import { execFileSync } from 'node:child_process';
    const { selfCheck } = await import(${JSON.stringify(moduleUrl('../lib/self-check.js'))});
    const s = net.createServer((c) => c.destroy()).listen(0, '::');
    await new Promise((r) => s.on('listening', r));
    const opts = { target4: '127.0.0.1:' + s.address().port, target6: '[::1]:' + s.address().port, timeoutMs: 500 };
    for (const item of await selfCheck(opts)) {
      if (item.id.startsWith('routing')) for (const cmd of item.fix) execFileSync('sh', ['-c', cmd]);
    }
    console.log(JSON.stringify(await selfCheck(opts)));
    s.close();`;
  const r = await inFreshNetns(code);
  assert.equal(r.status, 0, r.stderr);
  const items = JSON.parse(r.stdout) as CheckItem[];
  assert.deepEqual(
    items.filter((i) => i.status !== 'ok').map((i) => i.id),
    [],
  );
});

test('a rule to a table without the local route: the fix is only the missing route', async () => {
  const ip: IpRunner = async (args): Promise<IpResult> => {
    const cmd = args.join(' ');
    if (cmd === 'route get 127.0.0.1')
      return { code: 0, stdout: 'local 127.0.0.1 dev lo table local src 127.0.0.1\n', stderr: '' };
    if (cmd === 'route get 192.0.2.1 from 127.0.0.1')
      return { code: 2, stdout: '', stderr: 'RTNETLINK answers: Network is unreachable\n' };
    if (cmd === 'rule show')
      return {
        code: 0,
        stdout: '0:\tfrom all lookup local\n32765:\tfrom 127.0.0.1/8 iif lo lookup 77\n',
        stderr: '',
      };
    if (cmd === 'route show table 77')
      return { code: 2, stdout: '', stderr: 'Error: ipv4: FIB table does not exist.\n' };
    throw new Error(`unexpected ip ${cmd}`);
  };
  const native = {
    probeTransparent: () => ({ ok: true }),
    connectFrom: async () => ({ ok: true }),
  };
  const items = await selfCheck({ target4: '127.0.0.1:443', ip, native, protocol: 'udp' });
  const routing = items.find((i) => i.id === 'routing-ipv4')!;
  assert.equal(routing.status, 'fail');
  assert.equal(
    routing.detail,
    'ip route get 192.0.2.1 from 127.0.0.1: RTNETLINK answers: Network is unreachable',
  );
  assert.deepEqual(routing.fix, ['ip route add local 0.0.0.0/0 dev lo table 77']);
});

test('without ip, a remote target, no permission, no IPv6: each says so', async () => {
  const noIp: IpRunner = async () => ({
    code: -1,
    stdout: '',
    stderr: 'the ip command (iproute2) is not installed',
  });
  const denied = {
    probeTransparent: (family: 4 | 6) =>
      family === 4
        ? { ok: false, errno: 1, syscall: 'setsockopt(IPPROTO_IP, IP_TRANSPARENT, 1)' }
        : { ok: false, errno: 97, syscall: 'socket(AF_INET6)' },
    connectFrom: async (source: unknown) =>
      source ? { ok: false, errno: 1, syscall: 'setsockopt' } : { ok: true },
  };
  const items = await selfCheck({
    target4: '127.0.0.1:443',
    target6: '[::1]:443',
    ip: noIp,
    native: denied,
  });
  assert.deepEqual(statusById(items), {
    'transparent-ipv4': 'fail',
    'routing-ipv4': 'fail',
    'target-ipv4': 'ok',
    'spoofed-ipv4': 'fail',
    'transparent-ipv6': 'skip',
  });
  const byId = new Map(items.map((i) => [i.id, i]));
  assert.match(byId.get('transparent-ipv4')!.detail, /IP_TRANSPARENT, 1\) failed: EPERM/);
  assert.match(byId.get('transparent-ipv4')!.fix.join('\n'), /CAP_NET_ADMIN/);
  assert.deepEqual(byId.get('spoofed-ipv4')!.fix, byId.get('transparent-ipv4')!.fix);
  assert.match(byId.get('routing-ipv4')!.detail, /not installed/);
  assert.match(byId.get('routing-ipv4')!.fix[0]!, /iproute2/);
  assert.equal(byId.get('transparent-ipv6')!.detail, 'IPv6 is disabled on this host');

  const remote: IpRunner = async (args) =>
    args.join(' ') === 'route get 10.9.8.7'
      ? { code: 0, stdout: '10.9.8.7 via 10.0.0.1 dev eth0 src 10.0.0.2\n', stderr: '' }
      : { code: 2, stdout: '', stderr: 'unexpected' };
  const ok = { probeTransparent: () => ({ ok: true }), connectFrom: async () => ({ ok: true }) };
  const r = await selfCheck({ target4: '10.9.8.7:443', ip: remote, native: ok });
  const routing = r.find((i) => i.id === 'routing-ipv4')!;
  assert.equal(routing.status, 'skip');
  assert.match(routing.detail, /remote-backend recipe/);
  // When the spoofed connection to a remote backend times out, the fix is that recipe.
  const timesOut = {
    probeTransparent: () => ({ ok: true }),
    connectFrom: async (source: unknown) =>
      source
        ? { ok: false, errno: 110, syscall: 'connect(10.9.8.7:443) from 192.0.2.1:0' }
        : { ok: true },
  };
  const t = await selfCheck({ target4: '10.9.8.7:443', ip: remote, native: timesOut, table: 100 });
  assert.deepEqual(t.find((i) => i.id === 'spoofed-ipv4')!.fix, [
    'iptables -t mangle -A OUTPUT -m mark --mark 123 -j CONNMARK --save-mark',
    'iptables -t mangle -A PREROUTING -i eth0 -m connmark --mark 123 -j CONNMARK --restore-mark',
    'ip rule add fwmark 123 iif eth0 lookup 100',
    'ip route add local 0.0.0.0/0 dev lo table 100',
    'and run mmproxy with --mark 123',
    'on the backend, send replies to client addresses through this host',
  ]);
});
