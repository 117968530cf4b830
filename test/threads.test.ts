// Decisions in the thread that owns the connection: every relay worker is a Node.js worker
// thread that decides its own connections, so a blocked main thread delays none of them; a
// route module runs in those threads; a thread that dies is reported; and late answers for
// connections that have gone are dropped. Real sockets in the test namespace.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { createProxy, type Proxy } from '../lib/proxy.js';
import type { ProxyOptions } from '../lib/options.js';
import type { ConnectionInfo, RejectInfo } from '../lib/proxy-types.js';
import {
  Upstream,
  connectAndSend,
  ending,
  openFds,
  requireNamespace,
  sleep,
  threadCount,
  until,
} from './helpers/net.js';
import { v1, v2 } from './helpers/headers.js';

requireNamespace();

let dir: string;
let up4: Upstream;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'mmproxy-threads-'));
  up4 = await Upstream.start('127.0.0.1');
});

after(async () => {
  await up4.close();
  await rm(dir, { recursive: true, force: true });
});

async function moduleFile(name: string, source: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, source);
  return file;
}

async function startProxy(options: ProxyOptions = {}): Promise<{ proxy: Proxy; port: number }> {
  const proxy = createProxy({
    listen: '127.0.0.1:0',
    target4: up4.endpoint,
    target6: '[::1]:9',
    workers: 2,
    ...options,
  });
  await proxy.listen();
  return { proxy, port: proxy.address()!.port };
}

/** Sends a v1 header from 192.0.2.1:clientPort and payload; the echo, or why there was none. */
async function tryEcho(port: number, clientPort: number, payload = 'ping'): Promise<string> {
  // A proxy that resets connections still in its accept queue (a relay thread that went away)
  // fails the connect itself.
  const socket = await connectAndSend(port, [v1('192.0.2.1', clientPort), payload]).catch(
    () => null,
  );
  if (socket === null) return 'closed';
  const got = await new Promise<string>((resolve) => {
    let data = '';
    socket.on('data', (d: Buffer) => {
      data += d.toString();
      if (data === payload) resolve(data);
    });
    // A refused connection ends with a reset or, when the proxy had read all it was sent, a
    // FIN; the socket is half-open (allowHalfOpen), so its end counts as closed too.
    const closed = () => resolve(data === '' ? 'closed' : data);
    socket.on('end', closed);
    socket.on('close', closed);
    socket.on('error', () => {});
  });
  socket.destroy();
  return got;
}

describe('a blocked main thread', () => {
  test('delays no new connection: each one made during a 1 s block is relayed within 100 ms', async () => {
    // The client and the upstream both live in another process: nothing they do waits for
    // this one, whose event loop the test blocks.
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `
        import net from 'node:net';
        const server = net.createServer((s) => s.pipe(s));
        server.listen(0, '127.0.0.1', () => {
          process.stdout.write(JSON.stringify({ upstream: server.address().port }) + '\\n');
        });
        let proxyPort = 0;
        process.stdin.once('data', async (d) => {
          proxyPort = Number(String(d));
          process.stdout.write(JSON.stringify({ go: true }) + '\\n');
          const results = [];
          const until = Date.now() + 900;
          let n = 0;
          while (Date.now() < until) {
            const started = performance.now();
            const ms = await new Promise((resolve) => {
              const s = net.connect(proxyPort, '127.0.0.1', () => {
                s.write('PROXY TCP4 192.0.2.9 127.0.0.1 ' + (20000 + n++) + ' 443\\r\\nping');
              });
              s.once('data', () => { resolve(performance.now() - started); s.destroy(); });
              s.once('error', () => resolve(-1));
              setTimeout(() => { resolve(-2); s.destroy(); }, 3000);
            });
            results.push(ms);
            await new Promise((r) => setTimeout(r, 30));
          }
          process.stdout.write(JSON.stringify({ results }) + '\\n');
          server.close();
          process.exit(0);
        });
        `,
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    const lines: Array<Record<string, unknown>> = [];
    let buffered = '';
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      let i;
      while ((i = buffered.indexOf('\n')) >= 0) {
        lines.push(JSON.parse(buffered.slice(0, i)) as Record<string, unknown>);
        buffered = buffered.slice(i + 1);
      }
    });
    await until(() => lines.length >= 1, 'the child upstream');
    const upstreamPort = lines[0]!.upstream as number;
    const { proxy, port } = await startProxy({ target4: `127.0.0.1:${upstreamPort}` });
    const connections: ConnectionInfo[] = [];
    proxy.on('connection', (c) => connections.push(c));
    try {
      child.stdin.write(String(port));
      await until(() => lines.length >= 2, 'the child to start');
      // The block: no timer, no I/O, no message of this thread runs for a second.
      const end = Date.now() + 1000;
      while (Date.now() < end) {
        /* busy */
      }
      await until(() => lines.length >= 3, 'the results', 10_000);
      const results = lines[2]!.results as number[];
      assert.ok(results.length >= 10, `only ${results.length} connections were made`);
      for (const ms of results) {
        assert.ok(ms >= 0, `a connection failed (${ms})`);
        assert.ok(
          ms < 100,
          `a connection took ${ms.toFixed(1)} ms: ${results.map((r) => r.toFixed(1)).join(' ')}`,
        );
      }
      // Events still come, after the block, with the decoded header.
      await until(() => connections.length === results.length, 'the connection events');
      assert.equal(connections[0]!.header.source?.address, '192.0.2.9');
    } finally {
      child.kill();
      await proxy.close();
    }
  });
});

describe('routeModule', () => {
  let proxy: Proxy;
  let port: number;
  let file: string;
  const rejects: RejectInfo[] = [];
  before(async () => {
    file = await moduleFile(
      'route.mjs',
      `
      import { isMainThread } from 'node:worker_threads';
      export function route(request) {
        if (isMainThread) return false;  // it must run in a relay worker's thread
        const port = request.client?.port;
        if (port === 1001) return undefined;
        if (port === 1002) {
          // The worker thread's own timers and promises work.
          return new Promise((resolve) => setTimeout(() => resolve(true), 30));
        }
        if (port === 1003) throw new Error('no route for 1003');
        if (port === 1004) return { address: 'not an address', port: 1 };
        if (port === 1005) return null;
        if (port === 1006) return Promise.reject(new Error('async refusal'));
        return undefined;
      }
      `,
    );
    ({ proxy, port } = await startProxy({ routeModule: file }));
    proxy.on('reject', (r) => rejects.push(r));
  });
  after(() => proxy.close());

  test('runs in the worker threads: sync and async answers admit', async () => {
    assert.equal(await tryEcho(port, 1001), 'ping');
    assert.equal(await tryEcho(port, 1002), 'ping');
  });

  test('a hook that throws or answers badly refuses only its own connection, with the reason', async () => {
    rejects.length = 0;
    const answers = await Promise.all([
      tryEcho(port, 1003),
      tryEcho(port, 1004),
      tryEcho(port, 1005),
      tryEcho(port, 1006),
      tryEcho(port, 1001),
    ]);
    assert.deepEqual(answers, ['closed', 'closed', 'closed', 'closed', 'ping']);
    await until(() => rejects.length === 4, 'four rejects');
    const messages = rejects.map((r) => `${r.reason}: ${r.error?.message ?? ''}`).sort();
    assert.deepEqual(messages, [
      'routeRejected: ',
      'routeRejected: async refusal',
      'routeRejected: no route for 1003',
      'routeRejected: route hook chose not an address, not an IP address',
    ]);
    assert.equal(proxy.stats().rejected.routeRejected, 4);
  });

  test('a file URL works as well as a path', async () => {
    const p = await startProxy({ routeModule: pathToFileURL(file) });
    try {
      assert.equal(await tryEcho(p.port, 1001), 'ping');
      assert.equal(await tryEcho(p.port, 1005), 'closed');
    } finally {
      await p.proxy.close();
    }
  });

  test('route and routeModule together are refused', () => {
    assert.throws(
      () => createProxy({ route: () => undefined, routeModule: file }),
      /"route" and "routeModule" cannot both be given/,
    );
  });
});

describe('a route module that cannot be used fails listen() with an error naming the file', () => {
  const cases: Array<[string, string | null, RegExp]> = [
    ['syntax.mjs', 'export function route( {', /SyntaxError|Unexpected/],
    ['noexport.mjs', 'export const other = 1;', /exports no function "route" \(it exports other\)/],
    ['throws.mjs', 'throw new Error("broken at load");', /broken at load/],
    ['missing.mjs', null, /Cannot find module|ERR_MODULE_NOT_FOUND|no such file/i],
  ];
  for (const [name, source, why] of cases) {
    test(name, async () => {
      const file = source === null ? path.join(dir, name) : await moduleFile(name, source);
      const fdsBefore = openFds().length;
      const proxy = createProxy({
        listen: '127.0.0.1:0',
        target4: up4.endpoint,
        routeModule: file,
      });
      await assert.rejects(proxy.listen(), (e: Error) => {
        assert.ok(e.message.includes(pathToFileURL(file).href), e.message);
        assert.match(e.message, why);
        return true;
      });
      // Nothing stays open: no listener, no thread.
      await until(() => openFds().length <= fdsBefore, `descriptors back to ${fdsBefore}`);
    });
  }
});

describe('a relay worker thread that dies', () => {
  test("puts the proxy into 'error', and close() still ends everything", async () => {
    const file = await moduleFile(
      'dies.mjs',
      `export function route(request) {
        if (request.client?.port === 1666) process.exit(7);  // ends this worker thread only
        return undefined;
      }`,
    );
    const threadsBefore = threadCount();
    const fdsBefore = openFds().length;
    const { proxy, port } = await startProxy({ routeModule: file, workers: 1 });
    const errors: Error[] = [];
    proxy.on('error', (e) => errors.push(e));
    assert.equal(await tryEcho(port, 1001), 'ping');
    assert.equal(await tryEcho(port, 1666), 'closed');
    await until(() => errors.length === 1, "the proxy's 'error'");
    assert.match(errors[0]!.message, /relay worker 0 exited \(code 7\) while serving/);
    await proxy.close();
    await until(() => threadCount() <= threadsBefore, `threads back to ${threadsBefore}`);
    await until(() => openFds().length <= fdsBefore, `descriptors back to ${fdsBefore}`);
  });
  test('that exits amid a burst of connections does not abort the process', async () => {
    const file = await moduleFile(
      'dies-in-burst.mjs',
      `export function route(request) {
        if (request.client?.port === 1666) process.exit(7);
        return undefined;
      }`,
    );
    const { proxy, port } = await startProxy({ routeModule: file, workers: 1 });
    const errors: Error[] = [];
    proxy.on('error', (e) => errors.push(e));
    // Connections still queued while the thread is torn down must not run a round there.
    const answers = Promise.all(
      Array.from({ length: 200 }, (_, i) => tryEcho(port, i === 100 ? 1666 : 7000 + i)),
    );
    await until(() => errors.length === 1, "the proxy's 'error'");
    // With its only relay thread gone nobody accepts: connections still in the listen queue
    // wait until close(), which ends every one of them.
    await proxy.close();
    const got = await answers;
    assert.equal(got.length, 200);
    assert.ok(
      got.every((a) => a === 'ping' || a === 'closed'),
      got.join(),
    );
    assert.equal(got[100], 'closed');
  });
});

describe('a relay thread whose route module never returns', () => {
  test('does not stop close() from keeping its deadline, and leaves nothing behind', async () => {
    const threadsBefore = threadCount();
    const fdsBefore = openFds().length;
    const file = await moduleFile(
      'spins.mjs',
      `export function route(request) {
        if (request.client?.port === 1777) for (;;) {}
        return undefined;
      }`,
    );
    const { proxy, port } = await startProxy({ routeModule: file, workers: 1 });
    assert.equal(await tryEcho(port, 1001), 'ping');
    const stuck = connectAndSend(port, [v1('192.0.2.1', 1777), 'ping']).then(ending);
    await sleep(200); // the thread is now inside the endless loop
    const started = Date.now();
    await proxy.close({ drainTimeout: 100 });
    const took = Date.now() - started;
    // The drain deadline, then the grace for a thread that does not answer (2 s).
    assert.ok(took < 4000, `close() took ${took} ms`);
    assert.equal(await stuck, 'reset');
    await until(() => threadCount() <= threadsBefore, `threads back to ${threadsBefore}`);
    await until(() => openFds().length <= fdsBefore, `descriptors back to ${fdsBefore}`);
  });
});

describe('a late answer for a connection that has gone', () => {
  test('emits no connection event and connects nothing', async () => {
    const file = await moduleFile(
      'slow.mjs',
      `export function route() { return new Promise((r) => setTimeout(() => r(true), 300)); }`,
    );
    const { proxy, port } = await startProxy({ routeModule: file });
    const connections: ConnectionInfo[] = [];
    proxy.on('connection', (c) => connections.push(c));
    try {
      const before = up4.connections.length;
      const socket = await connectAndSend(port, [v1('192.0.2.1', 3001)]);
      await sleep(50);
      socket.resetAndDestroy();
      await until(() => proxy.stats().rejected.clientClosed === 1, 'clientClosed');
      await sleep(400);
      assert.equal(connections.length, 0, 'no connection event for a client that reset');
      assert.equal(up4.connections.length, before, 'no upstream connection');
      assert.equal(proxy.stats().admitted, 0);
    } finally {
      await proxy.close();
    }
  });
});

describe('UDP', () => {
  test("a new flow's first datagram is decided in the worker thread that owns it", async () => {
    const file = await moduleFile(
      'udp-route.mjs',
      `import { isMainThread } from 'node:worker_threads';
      export function route(request) {
        return !isMainThread && request.protocol === 'udp' && request.client?.port === 4001;
      }`,
    );
    const echo = dgram.createSocket('udp4');
    echo.on('message', (m, from) => echo.send(m, from.port, from.address));
    echo.bind(0, '127.0.0.1');
    await once(echo, 'listening');
    const proxy = createProxy({
      protocol: 'udp',
      listen: '127.0.0.1:0',
      target4: `127.0.0.1:${echo.address().port}`,
      routeModule: file,
    });
    await proxy.listen();
    const lb = dgram.createSocket('udp4');
    lb.bind(0, '127.0.0.1');
    await once(lb, 'listening');
    const replies: string[] = [];
    lb.on('message', (m) => replies.push(m.toString()));
    try {
      for (const clientPort of [4001, 4002]) {
        const header = v2('192.0.2.7', clientPort, '127.0.0.1', 53, 'UDP4');
        lb.send(
          Buffer.concat([header, Buffer.from(`from ${clientPort}`)]),
          proxy.address()!.port,
          '127.0.0.1',
        );
      }
      await until(() => replies.length >= 1, 'the reply');
      await until(() => proxy.stats().rejected.routeRejected === 1, 'the refused flow');
      assert.deepEqual(replies, ['from 4001']);
    } finally {
      lb.close();
      echo.close();
      await proxy.close();
    }
  });
});

describe('events', () => {
  test('cost nothing when nobody listens, and come when someone does', async () => {
    const { proxy, port } = await startProxy();
    try {
      assert.equal(await tryEcho(port, 5001), 'ping');
      const seen: ConnectionInfo[] = [];
      const listener = (c: ConnectionInfo): void => void seen.push(c);
      proxy.on('connection', listener);
      assert.equal(await tryEcho(port, 5002), 'ping');
      await until(() => seen.length === 1, 'the connection event');
      assert.equal(seen[0]!.client?.port, 5002);
      proxy.off('connection', listener);
      assert.equal(await tryEcho(port, 5003), 'ping');
      await sleep(50);
      assert.equal(seen.length, 1);
      assert.equal(proxy.stats().admitted, 3);
      await ending(await connectAndSend(port, ['garbage\r\n']));
    } finally {
      await proxy.close();
    }
  });
});

describe('mmproxy --route FILE', () => {
  test('a module that cannot be loaded stops the start (exit 1) with a line naming the file', async () => {
    const file = path.join(dir, 'absent-route.mjs');
    const bin = new URL('../cli/bin.js', import.meta.url).pathname;
    const child = spawn(
      process.execPath,
      [bin, '-l', '127.0.0.1:0', '-4', up4.endpoint, '--route', file],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const [code] = (await once(child, 'exit')) as [number];
    assert.equal(code, 1, out);
    assert.ok(out.includes(pathToFileURL(file).href), out);
  });

  test('a module that loads decides in the relay threads', async () => {
    const file = await moduleFile(
      'cli-route.mjs',
      `export function route(r) { return r.client?.port === 6001 ? undefined : false; }`,
    );
    const bin = new URL('../cli/bin.js', import.meta.url).pathname;
    const child = spawn(
      process.execPath,
      [bin, '-l', '127.0.0.1:0', '-4', up4.endpoint, '--route', file, '-v', '2'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await until(() => /"localAddr":"127\.0\.0\.1:(\d+)"/.test(out), 'the listening line', 10_000);
      const port = Number(/"localAddr":"127\.0\.0\.1:(\d+)"/.exec(out)![1]);
      assert.equal(await tryEcho(port, 6001), 'ping');
      assert.equal(await tryEcho(port, 6002), 'closed');
    } finally {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  });
});

describe('unref()', () => {
  for (const when of ['before', 'after'] as const) {
    test(`${when} listen(): the process ends by itself, cleanly`, async () => {
      const proxyUrl = new URL('../lib/proxy.js', import.meta.url).href;
      const code = `
        const { createProxy } = await import(${JSON.stringify(proxyUrl)});
        const p = createProxy({ listen: '127.0.0.1:0', target4: '127.0.0.1:9', workers: 2 });
        ${when === 'before' ? 'p.unref(); await p.listen();' : 'await p.listen(); p.unref();'}
        console.log('listening on', p.address().port);
      `;
      const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      const [exitCode, signal] = (await once(child, 'exit')) as [number | null, string | null];
      clearTimeout(timer);
      assert.equal(signal, null, `killed (still alive after 5 s?) ${err}`);
      assert.equal(exitCode, 0, err);
      assert.match(out, /^listening on \d+$/m, 'listen() resolved before the process ended');
    });
  }
});
