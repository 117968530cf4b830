// systemd's service protocol with the real `mmproxy` in the test namespace. Notifications arrive
// on a NOTIFY_SOCKET datagram socket that python3 binds, so that the code under test is not
// trusted for both ends: READY=1 once a connection works, STATUS= with the live count,
// RELOADING=1 (MONOTONIC_USEC=) and READY=1 around SIGHUP, STOPPING=1 when a drain begins, and
// WATCHDOG=1 only while every relay worker answers. Socket activation runs through
// systemd-socket-activate and through a python3 parent that passes sockets it made: TCP, UDP,
// several sockets, connections queued before the proxy started, and sockets of the wrong kind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { createProxy } from '../lib/proxy.js';
import { ListenFdError, InvalidOptionError } from '../lib/errors.js';
import { normalizeOptions } from '../lib/options.js';
import { listenFdsFromEnv, SystemdEnvError, watchdogUsecFromEnv } from '../lib/systemd.js';
import { STATUS_INTERVAL_MS } from '../cli/systemd.js';
import { Command } from './helpers/command.js';
import { v1, v2 } from './helpers/headers.js';
import {
  connectAndSend,
  ending,
  requireNamespace,
  roundTrip,
  sleep,
  tmpFile,
  until,
  Upstream,
} from './helpers/net.js';

// Binds the AF_UNIX datagram socket named by argv[1] (a path, or @name for an abstract one) and
// prints each datagram with the CLOCK_MONOTONIC time it arrived.
const RECEIVER = String.raw`
import json, socket, sys, time
name = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\0' + name[1:] if name.startswith('@') else name)
print(json.dumps({'bound': True}), flush=True)
while True:
    data = s.recv(65536)
    print(json.dumps({'text': data.decode(), 'us': time.monotonic_ns() // 1000}), flush=True)
`;

interface Notification {
  index: number;
  text: string;
  fields: Record<string, string>;
  /** CLOCK_MONOTONIC microseconds when it arrived. */
  receivedUs: number;
}

/** A NOTIFY_SOCKET of the test's own: every notification mmproxy sent to it, in order. */
class NotifyReceiver {
  readonly messages: Notification[] = [];
  #waiters: Array<() => void> = [];

  private constructor(
    readonly address: string,
    readonly child: ChildProcess,
  ) {}

  static async start(address: string): Promise<NotifyReceiver> {
    const child = spawn('python3', ['-c', RECEIVER, address], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const receiver = new NotifyReceiver(address, child);
    const bound = new Promise<void>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`the receiver exited with ${code}`)));
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const m = JSON.parse(line) as { bound?: true; text: string; us: number };
        if (m.bound) return resolve();
        const fields = Object.fromEntries(
          m.text.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
        );
        const index = receiver.messages.length;
        receiver.messages.push({ index, text: m.text, fields, receivedUs: m.us });
        for (const w of receiver.#waiters.splice(0)) w();
      });
    });
    await bound;
    return receiver;
  }

  /** The first notification from index `from` that matches; fails after the timeout. */
  async waitFor(
    match: (n: Notification) => boolean,
    what: string,
    from = 0,
    timeoutMs = 10_000,
  ): Promise<Notification> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.slice(from).find(match);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`no notification ${what}; got ${JSON.stringify(this.texts())}`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** How many notifications from index `from` set `key`. */
  count(key: string, from = 0): number {
    return this.messages.slice(from).filter((n) => key in n.fields).length;
  }

  texts(): string[] {
    return this.messages.map((n) => n.text);
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}

const has =
  (key: string, value = '1') =>
  (n: Notification): boolean =>
    n.fields[key] === value;

/** A port that is free now, of the protocol. */
async function freePort(protocol: 'tcp' | 'udp', host = '127.0.0.1'): Promise<number> {
  if (protocol === 'udp') {
    const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    s.bind(0, host);
    await once(s, 'listening');
    const { port } = s.address();
    s.close();
    return port;
  }
  const s = net.createServer().listen(0, host);
  await once(s, 'listening');
  const { port } = s.address() as net.AddressInfo;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** systemd-socket-activate in front of mmproxy; resolves once its sockets listen. */
async function socketActivated(
  activateArgs: string[],
  args: string[],
  env: Record<string, string> = {},
): Promise<Command> {
  const cmd = new Command(args, env, { via: ['systemd-socket-activate', ...activateArgs] });
  const sockets = activateArgs.filter((a) => a === '-l').length;
  await until(
    () => (cmd.stderr.match(/^Listening on .* as \d+\.$/gm) ?? []).length === sockets,
    `systemd-socket-activate listening (stderr: ${cmd.stderr})`,
  );
  return cmd;
}

// Makes the sockets argv[1] lists (tcp, udp, tcp-bound: bound but not listening, unix), prints
// their ports, waits for a line on stdin, then puts them on fds 3, 4, … and execs the rest of
// argv with LISTEN_FDS, LISTEN_FDNAMES (the kinds) and LISTEN_PID: its own pid, which exec keeps,
// or with argv[2] == "parent" its parent's.
const PASSER = String.raw`
import json, os, socket, sys
kinds = sys.argv[1].split(',')
whose = sys.argv[2]
socks = []
for k in kinds:
    if k == 'tcp' or k == 'tcp-bound':
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(('127.0.0.1', 0))
        if k == 'tcp':
            s.listen(64)
    elif k == 'udp':
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(('127.0.0.1', 0))
    elif k == 'unix':
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind('\0mmproxy-test-%d' % os.getpid())
        s.listen(1)
    socks.append(s)
ports = [s.getsockname()[1] if s.family != socket.AF_UNIX else 0 for s in socks]
print(json.dumps({'level': 'TEST', 'msg': 'ports', 'ports': ports}), flush=True)
sys.stdin.readline()
high = [os.dup(s.fileno()) for s in socks]
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i, inheritable=True)
pid = os.getpid() if whose == 'self' else os.getppid()
env = dict(os.environ, LISTEN_FDS=str(len(socks)), LISTEN_PID=str(pid), LISTEN_FDNAMES=':'.join(kinds))
os.execve(sys.argv[3], sys.argv[3:], env)
`;

/** mmproxy started by a python3 parent that passes it sockets; `go()` lets it exec. */
async function passedSockets(
  kinds: string[],
  args: string[],
  whose: 'self' | 'parent' = 'self',
): Promise<{ cmd: Command; ports: number[]; go: () => void }> {
  const cmd = new Command(
    args,
    {},
    { via: ['python3', '-c', PASSER, kinds.join(','), whose], stdin: true },
  );
  const line = await cmd.msg('ports');
  return { cmd, ports: line.ports as number[], go: () => cmd.child.stdin!.write('go\n') };
}

/** Whether the upstream saw a connection from the client (the start-up self-check connects too). */
function sawClient(upstream: Upstream, address: string, port: number): boolean {
  return upstream.connections.some((c) => c.remoteAddress === address && c.remotePort === port);
}

function targets(upstream: Upstream): string[] {
  return ['-4', `127.0.0.1:${upstream.port}`, '-6', `[::1]:${upstream.port}`];
}

test('LISTEN_* and WATCHDOG_* are read as sd_listen_fds and sd_watchdog_enabled read them', () => {
  assert.deepEqual(listenFdsFromEnv({ LISTEN_PID: '42', LISTEN_FDS: '2' }, 42), {
    fds: [3, 4],
    names: ['unknown', 'unknown'],
  });
  assert.deepEqual(
    listenFdsFromEnv({ LISTEN_PID: '42', LISTEN_FDS: '2', LISTEN_FDNAMES: 'web:' }, 42),
    { fds: [3, 4], names: ['web', 'unknown'] },
  );
  // Meant for another process, or none at all.
  assert.equal(listenFdsFromEnv({ LISTEN_PID: '41', LISTEN_FDS: '2' }, 42), null);
  assert.equal(listenFdsFromEnv({ LISTEN_FDS: '2' }, 42), null);
  assert.equal(listenFdsFromEnv({ LISTEN_PID: '42', LISTEN_FDS: '0' }, 42), null);
  assert.equal(listenFdsFromEnv({}, 42), null);
  assert.throws(() => listenFdsFromEnv({ LISTEN_PID: '42', LISTEN_FDS: 'two' }, 42), {
    name: 'SystemdEnvError',
    message: 'LISTEN_FDS must be a number of file descriptors; got "two"',
  });
  assert.throws(() => listenFdsFromEnv({ LISTEN_PID: 'me', LISTEN_FDS: '1' }, 42), SystemdEnvError);

  assert.equal(watchdogUsecFromEnv({ WATCHDOG_USEC: '30000000' }, 42), 30_000_000);
  assert.equal(watchdogUsecFromEnv({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '42' }, 42), 30e6);
  assert.equal(watchdogUsecFromEnv({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '1' }, 42), null);
  assert.equal(watchdogUsecFromEnv({ WATCHDOG_USEC: '0' }, 42), null);
  assert.equal(watchdogUsecFromEnv({}, 42), null);
  assert.throws(() => watchdogUsecFromEnv({ WATCHDOG_USEC: '30s' }, 42), SystemdEnvError);
});

test('listenFds: validated, and exclusive with listen and listeners', () => {
  assert.deepEqual(normalizeOptions({ listenFds: [3, 4] }).listenFds, [3, 4]);
  assert.equal(normalizeOptions({}).listenFds, null);
  for (const bad of [[], [3, 3], [-1], [1.5], ['3'], 3]) {
    assert.throws(
      () => normalizeOptions({ listenFds: bad as number[] }),
      (e: unknown) => e instanceof InvalidOptionError && e.option === 'listenFds',
      JSON.stringify(bad),
    );
  }
  assert.throws(
    () => normalizeOptions({ listenFds: [3], listen: '0.0.0.0:8443' }),
    /options "listenFds" and "listen" cannot both be given/,
  );
  assert.throws(
    () => normalizeOptions({ listenFds: [3], listeners: 2 }),
    /options "listenFds" and "listeners" cannot both be given/,
  );
});

test('library: a listenFds entry that is no socket rejects listen() with a ListenFdError and stays open; heartbeat() answers only while listening', async (t) => {
  requireNamespace();
  // A file is not a socket, and neither is a fd that is not open.
  const file = tmpFile('not-a-socket', '');
  const fileFd = openSync(file.file, 'r');
  t.after(() => {
    closeSync(fileFd);
    file.remove();
  });
  for (const [fd, found] of [
    [fileFd, 'not a socket'],
    [1_000_000, 'not an open file descriptor'],
  ] as const) {
    const proxy = createProxy({ listenFds: [fd] });
    await assert.rejects(proxy.listen(), (e: unknown) => {
      assert.ok(e instanceof ListenFdError);
      assert.equal(e.code, 'ERR_MMPROXY_LISTEN_FD');
      assert.equal(e.fd, fd);
      assert.equal(e.found, found);
      assert.equal(e.expected, 'a listening TCP socket');
      assert.equal(e.message, `listen fd ${fd} is ${found}, not a listening TCP socket`);
      return true;
    });
  }
  assert.doesNotThrow(() => fstatSync(fileFd), 'the fd a failed listen() was given stays open');

  const proxy = createProxy({ listen: '127.0.0.1:0', workers: 2 });
  assert.equal(proxy.heartbeat(), false, 'not listening yet');
  await proxy.listen();
  assert.equal(proxy.heartbeat(), true, 'the first call: nothing asked before');
  await until(() => proxy.heartbeat(), 'the workers answering');
  await proxy.close();
  assert.equal(proxy.heartbeat(), false, 'closed');
});

test('NOTIFY_SOCKET: READY=1 once a connection works, STATUS= with the live count, RELOADING=1 with MONOTONIC_USEC and READY=1 around SIGHUP, STOPPING=1 when the drain begins', async (t) => {
  requireNamespace();
  const dir = mkdtempSync(path.join(tmpdir(), 'mmproxy-notify-'));
  const receiver = await NotifyReceiver.start(path.join(dir, 'notify'));
  const upstream = await Upstream.start('::');
  const allow = tmpFile('allowed.txt', '127.0.0.0/8\n');
  t.after(async () => {
    receiver.stop();
    await upstream.close();
    allow.remove();
    rmSync(dir, { recursive: true, force: true });
  });
  const cmd = new Command(
    [
      '-l',
      '127.0.0.1:0',
      ...targets(upstream),
      '--allowed-subnets',
      allow.file,
      '--drain-timeout',
      '20',
    ],
    { NOTIFY_SOCKET: receiver.address },
  );
  t.after(() => cmd.stop());

  const ready = await receiver.waitFor(has('READY'), 'READY=1');
  const status = /^Serving 0 connections \(tcp on 127\.0\.0\.1:(\d+)\)$/.exec(ready.fields.STATUS!);
  assert.ok(status, ready.text);
  const port = Number(status[1]);
  // Ready means serving: a connection made at once goes through.
  const first = await roundTrip(port, v1('203.0.113.7', 51000));
  assert.equal(first.echoed, 'ping\n');
  assert.ok(sawClient(upstream, '::ffff:203.0.113.7', 51000));

  // The count reaches STATUS= on its own, without a state change.
  const update = await receiver.waitFor(
    (n) => n.fields.STATUS === `Serving 1 connection (tcp on 127.0.0.1:${port})`,
    'a STATUS= line with 1 connection',
    ready.index + 1,
    STATUS_INTERVAL_MS + 5000,
  );
  assert.deepEqual(Object.keys(update.fields), ['STATUS']);

  // SIGHUP: RELOADING=1 stamped with CLOCK_MONOTONIC, then READY=1 once the new list is in force.
  allow.write('198.51.100.0/24\n');
  let from = receiver.messages.length;
  cmd.signal('SIGHUP');
  const reloading = await receiver.waitFor(has('RELOADING'), 'RELOADING=1', from);
  const stamp = Number(reloading.fields.MONOTONIC_USEC);
  assert.ok(
    stamp <= reloading.receivedUs && stamp > reloading.receivedUs - 5_000_000,
    `MONOTONIC_USEC=${reloading.fields.MONOTONIC_USEC} is CLOCK_MONOTONIC (received at ${reloading.receivedUs})`,
  );
  assert.match(reloading.fields.STATUS!, /^Reloading; 1 connection active \(tcp on /);
  const reloaded = await receiver.waitFor(has('READY'), 'READY=1 after the reload', from);
  assert.ok(reloaded.index > reloading.index);
  assert.equal(
    (await roundTrip(port, v1('203.0.113.8', 51001))).echoed,
    null,
    'the reloaded list, without 127.0.0.1, is in force',
  );
  await cmd.msg('allowed subnets reloaded');

  // SIGTERM: STOPPING=1 as the drain begins, while the open connection still works.
  from = receiver.messages.length;
  cmd.signal('SIGTERM');
  const stopping = await receiver.waitFor(has('STOPPING'), 'STOPPING=1', from);
  assert.equal(stopping.fields.STATUS, 'Draining 1 connection (at most 20 s)');
  await sleep(100);
  assert.equal(cmd.child.exitCode, null, 'still draining');
  const ended = ending(first.socket);
  first.socket.end();
  assert.equal(await ended, 'end');
  assert.deepEqual(await cmd.exited, { code: 0, signal: null });

  const states = receiver.messages
    .map((n) => Object.keys(n.fields).find((k) => k !== 'STATUS' && k !== 'MONOTONIC_USEC'))
    .filter((k) => k !== undefined);
  assert.deepEqual(states, ['READY', 'RELOADING', 'READY', 'STOPPING']);
  assert.equal(receiver.count('WATCHDOG'), 0, 'no WATCHDOG=1 without WATCHDOG_USEC');
});

// Stops one thread of process argv[1] whose name starts with argv[2] (PTRACE_SEIZE +
// PTRACE_INTERRUPT: the rest of the process runs on), prints "stopped", and lets it go on when a
// line arrives on stdin.
const FREEZER = String.raw`
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
pid = int(sys.argv[1])
tids = sorted(int(t) for t in os.listdir('/proc/%d/task' % pid)
              if open('/proc/%d/task/%s/comm' % (pid, t)).read().strip().startswith(sys.argv[2]))
if not tids:
    sys.exit('no thread named ' + sys.argv[2])
tid = tids[0]
if libc.ptrace(0x4206, tid, None, None) != 0 or libc.ptrace(0x4207, tid, None, None) != 0:
    sys.exit('ptrace: ' + os.strerror(ctypes.get_errno()))
os.waitpid(tid, 0x40000000)
print('stopped', flush=True)
sys.stdin.readline()
libc.ptrace(17, tid, None, None)
print('resumed', flush=True)
`;

test('WATCHDOG_USEC: WATCHDOG=1 at half the interval while every relay worker answers, none while one is stopped, none after STOPPING=1; none when WATCHDOG_PID is another process', async (t) => {
  requireNamespace();
  const receiver = await NotifyReceiver.start(`@mmproxy-test-${process.pid}-watchdog`);
  const upstream = await Upstream.start('::');
  t.after(async () => {
    receiver.stop();
    await upstream.close();
  });
  // WATCHDOG_PID is the pid of mmproxy itself: sh sets it to its own, which exec keeps.
  const cmd = new Command(
    ['-l', '127.0.0.1:0', ...targets(upstream), '--workers', '2', '--drain-timeout', '20'],
    { NOTIFY_SOCKET: receiver.address, WATCHDOG_USEC: '400000' },
    { via: ['sh', '-c', 'WATCHDOG_PID=$$ exec "$@"', 'sh'] },
  );
  t.after(() => cmd.stop());
  const ready = await receiver.waitFor(has('READY'), 'READY=1');
  const port = Number(/:(\d+)\)$/.exec(ready.fields.STATUS!)![1]);
  await sleep(1200);
  // Every 200 ms: 6 or so in 1.2 s (a busy machine may delay a few).
  const fed = receiver.count('WATCHDOG', ready.index);
  assert.ok(fed >= 3 && fed <= 9, `${fed} WATCHDOG=1 in 1.2 s`);

  // One relay thread stopped, the rest of the process running: the watchdog goes hungry.
  const freezer = spawn('python3', ['-c', FREEZER, String(cmd.child.pid), 'mmproxy-relay'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  // Let go of the thread whatever happens: a process with a thread held in ptrace cannot end.
  let hungry: number;
  try {
    const freezerLines = createInterface({ input: freezer.stdout! });
    const nextLine = (): Promise<string> =>
      new Promise((resolve) => {
        freezerLines.once('line', resolve);
        freezer.once('exit', (code) => resolve(`the freezer exited with ${code}`));
      });
    assert.equal(await nextLine(), 'stopped');
    const warned = await cmd.msg('a relay worker did not answer: not feeding the systemd watchdog');
    assert.equal(warned.level, 'WARN');
    // A WATCHDOG=1 sent before the worker stopped may still be on its way: let it arrive.
    await sleep(250);
    hungry = receiver.messages.length;
    await sleep(1000);
    assert.equal(receiver.count('WATCHDOG', hungry), 0, 'no WATCHDOG=1 while a worker is stopped');
    const resumed = nextLine();
    freezer.stdin!.write('go\n');
    assert.equal(await resumed, 'resumed');
    await cmd.msg('every relay worker answers again: feeding the watchdog');
    await receiver.waitFor(has('WATCHDOG'), 'WATCHDOG=1 again', hungry);
  } finally {
    freezer.kill('SIGKILL');
  }

  // A drain ends the feeding, as systemd ends watching: none after STOPPING=1.
  const open = await roundTrip(port, v1('203.0.113.9', 51009));
  assert.equal(open.echoed, 'ping\n');
  cmd.signal('SIGTERM');
  const stopping = await receiver.waitFor(has('STOPPING'), 'STOPPING=1', hungry);
  await sleep(800);
  assert.equal(cmd.child.exitCode, null, 'still draining');
  assert.equal(receiver.count('WATCHDOG', stopping.index), 0, 'no WATCHDOG=1 after STOPPING=1');
  open.socket.end();
  assert.deepEqual(await cmd.exited, { code: 0, signal: null });

  // WATCHDOG_PID names another process (pid 1): the watchdog is not ours to feed.
  const other = new Command(['-l', '127.0.0.1:0', ...targets(upstream)], {
    NOTIFY_SOCKET: receiver.address,
    WATCHDOG_USEC: '400000',
    WATCHDOG_PID: '1',
  });
  t.after(() => other.stop());
  const otherReady = await receiver.waitFor(has('READY'), 'READY=1 (second run)', stopping.index);
  await sleep(1000);
  assert.equal(receiver.count('WATCHDOG', otherReady.index), 0);
});

test('systemd-socket-activate -l (TCP): the passed socket is the listener, -l is not used, and the connection that started the proxy is served', async (t) => {
  requireNamespace();
  const upstream = await Upstream.start('::');
  t.after(() => upstream.close());
  const port = await freePort('tcp');
  // -l names an address this host does not have: were it used, listening would fail.
  const cmd = await socketActivated(
    ['-l', `127.0.0.1:${port}`, '--fdname=web'],
    ['-l', '192.0.2.1:1', ...targets(upstream)],
  );
  t.after(() => cmd.stop());
  // systemd-socket-activate starts mmproxy on the first connection, which waits in the backlog.
  const first = await roundTrip(port, v1('203.0.113.20', 52000));
  assert.equal(first.echoed, 'ping\n');
  assert.ok(sawClient(upstream, '::ffff:203.0.113.20', 52000));
  const passed = await cmd.msg(
    'listening on the sockets systemd passed; -l and --listeners are not used',
  );
  assert.equal(passed.listenFds, '3');
  assert.equal(passed.fdNames, 'web');
  const listening = await cmd.msg('listening');
  assert.equal(listening.localAddr, `127.0.0.1:${port}`);
  assert.equal(listening.listenAddr, 'fd 3 "web"');
  cmd.signal('SIGTERM');
  first.socket.end();
  assert.deepEqual(await cmd.exited, { code: 0, signal: null });
});

test('systemd-socket-activate with two sockets, IPv4 and IPv6: both serve; with --datagram (UDP, one on 0.0.0.0): the datagram that started the proxy is served, and a new flow is answered from the address it went to', async (t) => {
  requireNamespace();
  const upstream = await Upstream.start('::');
  t.after(() => upstream.close());
  const [p4, p6] = [await freePort('tcp'), await freePort('tcp', '::1')];
  const cmd = await socketActivated(
    ['-l', `127.0.0.1:${p4}`, '-l', `[::1]:${p6}`, '--fdname=v4:v6'],
    targets(upstream),
  );
  t.after(() => cmd.stop());
  const a = await roundTrip(p4, v1('203.0.113.21', 52001));
  assert.equal(a.echoed, 'ping\n');
  const b = await connectAndSend(p6, [v2('2001:db8::21', 52002), 'ping6\n'], '::1');
  const echoed = await new Promise<string>((resolve) =>
    b.once('data', (d: Buffer) => resolve(d.toString())),
  );
  assert.equal(echoed, 'ping6\n');
  assert.ok(sawClient(upstream, '2001:db8::21', 52002));
  const passed = await cmd.msg(
    'listening on the sockets systemd passed; -l and --listeners are not used',
  );
  assert.equal(passed.listenFds, '3,4');
  assert.equal(passed.fdNames, 'v4,v6');
  a.socket.destroy();
  b.destroy();
  cmd.signal('SIGTERM');
  assert.deepEqual(await cmd.exited, { code: 0, signal: null });

  // UDP: an echoing upstream and a load balancer of each family. The upstreams are bound to
  // loopback addresses, whose replies the namespace's routing rules deliver.
  const echoing = async (type: 'udp4' | 'udp6', host: string): Promise<dgram.Socket> => {
    const up = dgram.createSocket(type);
    up.on('message', (msg, rinfo) => up.send(msg, rinfo.port, rinfo.address));
    up.bind(0, host);
    await once(up, 'listening');
    t.after(() => up.close());
    return up;
  };
  const up4 = await echoing('udp4', '127.0.0.1');
  const up6 = await echoing('udp6', '::1');
  const u4 = await freePort('udp', '0.0.0.0');
  const u6 = await freePort('udp', '::1');
  const udp = await socketActivated(
    ['--datagram', '-l', `0.0.0.0:${u4}`, '-l', `[::1]:${u6}`],
    ['-p', 'udp', '-4', `127.0.0.1:${up4.address().port}`, '-6', `[::1]:${up6.address().port}`],
  );
  t.after(() => udp.stop());
  const replies: Array<{ text: string; from: string; port: number }> = [];
  const lb4 = dgram.createSocket('udp4');
  const lb6 = dgram.createSocket('udp6');
  t.after(() => {
    lb4.close();
    lb6.close();
  });
  for (const lb of [lb4, lb6]) {
    lb.on('message', (m, r) => replies.push({ text: m.toString(), from: r.address, port: r.port }));
  }
  const datagram = (header: Uint8Array, text: string): Buffer =>
    Buffer.concat([Buffer.from(header), Buffer.from(text)]);
  // The first datagram starts the proxy; it waits in the socket meanwhile.
  lb4.send(datagram(v2('203.0.113.22', 53000, '127.0.0.1', u4, 'UDP4'), 'hello4'), u4, '127.0.0.1');
  await until(
    () => replies.length === 1,
    'the reply to the datagram that started the proxy',
    10_000,
  );
  assert.deepEqual(replies[0], { text: 'hello4', from: '127.0.0.1', port: u4 });
  // A new flow to 127.0.0.2: its reply leaves from there only if the adopted wildcard socket
  // reports each datagram's destination (IP_PKTINFO); routing alone would pick 127.0.0.1.
  lb4.send(datagram(v2('203.0.113.23', 53002, '127.0.0.2', u4, 'UDP4'), 'to .2'), u4, '127.0.0.2');
  await until(() => replies.length === 2, 'the reply from 127.0.0.2');
  assert.deepEqual(replies[1], { text: 'to .2', from: '127.0.0.2', port: u4 });
  await udp.msg('listening');
  lb6.send(datagram(v2('2001:db8::22', 53001, '::1', u6, 'UDP6'), 'hello6'), u6, '::1');
  await until(() => replies.length === 3, 'the reply on the IPv6 socket');
  assert.deepEqual(replies[2], { text: 'hello6', from: '::1', port: u6 });
  udp.signal('SIGTERM');
  assert.deepEqual(await udp.exited, { code: 0, signal: null });
});

test('a passed socket of the wrong kind for -p stops the start (exit 1) with a line that names its fd and name, what it is and what was expected', async (t) => {
  requireNamespace();
  const upstream = await Upstream.start('::');
  t.after(() => upstream.close());
  const failure = async (cmd: Command): Promise<Record<string, unknown>> => {
    const line = await cmd.msg('a socket systemd passed cannot be used');
    assert.equal(line.level, 'ERROR');
    assert.deepEqual(await cmd.exited, { code: 1, signal: null });
    return line;
  };

  // A UDP socket for -p tcp.
  const u = await freePort('udp');
  const udp = await socketActivated(
    ['--datagram', '-l', `127.0.0.1:${u}`, '--fdname=dns'],
    targets(upstream),
  );
  t.after(() => udp.stop());
  const client = dgram.createSocket('udp4');
  client.send('wake up', u, '127.0.0.1', () => client.close());
  const l1 = await failure(udp);
  assert.equal(l1.fd, 3);
  assert.equal(l1.fdName, 'dns');
  assert.equal(l1.found, 'an IPv4 UDP socket');
  assert.equal(l1.expected, 'a listening TCP socket');
  assert.equal(
    l1.error,
    'fd 3 ("dns") is an IPv4 UDP socket; -p tcp needs a listening TCP socket ' +
      '(ListenStream= in the .socket unit)',
  );

  // A TCP socket for -p udp.
  const p = await freePort('tcp');
  const tcp = await socketActivated(['-l', `127.0.0.1:${p}`], ['-p', 'udp', ...targets(upstream)]);
  t.after(() => tcp.stop());
  const s = net.connect(p, '127.0.0.1');
  s.on('error', () => {});
  t.after(() => s.destroy());
  const l2 = await failure(tcp);
  assert.equal(l2.found, 'an IPv4 TCP socket');
  assert.equal(l2.expected, 'a bound UDP socket');
  assert.match(l2.error as string, /-p udp needs a bound UDP socket \(ListenDatagram= in/);

  // From a python3 parent: a good socket, then one that does not listen (the second is named).
  const notListening = await passedSockets(['tcp', 'tcp-bound'], targets(upstream));
  t.after(() => notListening.cmd.stop());
  notListening.go();
  const l3 = await failure(notListening.cmd);
  assert.equal(l3.fd, 4);
  assert.equal(l3.fdName, 'tcp-bound');
  assert.equal(l3.found, 'an IPv4 TCP socket that is not listening');

  // A unix socket.
  const unix = await passedSockets(['unix'], targets(upstream));
  t.after(() => unix.cmd.stop());
  unix.go();
  const l4 = await failure(unix.cmd);
  assert.equal(l4.found, 'a unix stream socket');
});

test('sockets from a python3 parent: connections queued before the proxy started are all served; LISTEN_PID of another process is ignored; a malformed LISTEN_FDS is exit 2', async (t) => {
  requireNamespace();
  const upstream = await Upstream.start('::');
  t.after(() => upstream.close());
  const { cmd, ports, go } = await passedSockets(['tcp'], targets(upstream));
  t.after(() => cmd.stop());
  // Three clients connect and send their header and a line while nothing accepts yet.
  const clients = await Promise.all(
    [0, 1, 2].map((i) =>
      connectAndSend(ports[0]!, [v1(`203.0.113.${30 + i}`, 54000 + i), `q${i}\n`]),
    ),
  );
  const echoes = clients.map(
    (c) => new Promise<string>((resolve) => c.once('data', (d: Buffer) => resolve(d.toString()))),
  );
  await sleep(200);
  assert.equal(upstream.connections.length, 0, 'nothing served before the proxy starts');
  go();
  assert.deepEqual(await Promise.all(echoes), ['q0\n', 'q1\n', 'q2\n']);
  for (let i = 0; i < 3; i++)
    assert.ok(sawClient(upstream, `::ffff:203.0.113.${30 + i}`, 54000 + i));
  for (const c of clients) c.destroy();
  cmd.signal('SIGTERM');
  assert.deepEqual(await cmd.exited, { code: 0, signal: null });

  // LISTEN_PID names the parent: the variables are not for mmproxy, which opens -l itself.
  const notOurs = await passedSockets(
    ['tcp'],
    ['-l', '127.0.0.1:0', ...targets(upstream)],
    'parent',
  );
  t.after(() => notOurs.cmd.stop());
  notOurs.go();
  const listening = await notOurs.cmd.msg('listening');
  assert.notEqual(listening.localAddr, `127.0.0.1:${notOurs.ports[0]}`);
  assert.equal(listening.listenAddr, '127.0.0.1:0');
  assert.equal(
    notOurs.cmd.lines.some((l) => l.msg.startsWith('listening on the sockets systemd passed')),
    false,
  );
  notOurs.cmd.signal('SIGTERM');
  assert.deepEqual(await notOurs.cmd.exited, { code: 0, signal: null });

  const malformed = new Command(
    ['-l', '127.0.0.1:0', ...targets(upstream)],
    {},
    {
      via: ['sh', '-c', 'LISTEN_PID=$$ LISTEN_FDS=two exec "$@"', 'sh'],
    },
  );
  t.after(() => malformed.stop());
  assert.deepEqual(await malformed.exited, { code: 2, signal: null });
  assert.equal(
    malformed.stderr,
    'mmproxy: LISTEN_FDS must be a number of file descriptors; got "two"\n',
  );
});
