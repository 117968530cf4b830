// The Proxy's lifecycle as Node users know it from net.Server: listen errors shaped like Node's,
// close() that stops accepting at once, drains to a deadline and leaves no thread or fd behind.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { spawnSync } from 'node:child_process';
import { createProxy } from '../lib/proxy.js';
import {
  Upstream,
  connectAndSend,
  ending,
  openFds,
  requireNamespace,
  runWithCapabilities,
  sleep,
  threadCount,
  until,
} from './helpers/net.js';
import { v1 } from './helpers/headers.js';

requireNamespace();

describe('listen()', () => {
  test('EADDRINUSE arrives as a Node-shaped error', async () => {
    const taken = net.createServer().listen(0, '127.0.0.1');
    await once(taken, 'listening');
    const port = (taken.address() as net.AddressInfo).port;
    const proxy = createProxy({ listen: `127.0.0.1:${port}` });
    try {
      await assert.rejects(
        proxy.listen(),
        (e: NodeJS.ErrnoException & { address?: string; port?: number }) => {
          assert.equal(e.code, 'EADDRINUSE');
          assert.equal(e.errno, -98);
          assert.equal(e.syscall, `bind(127.0.0.1:${port})`);
          assert.equal(e.address, '127.0.0.1');
          assert.equal(e.port, port);
          return true;
        },
      );
    } finally {
      taken.close();
      await proxy.close();
    }
  });

  test('without permission for IP_TRANSPARENT it refuses to start and says what to do', () => {
    const script = `
      import { createProxy } from ${JSON.stringify(new URL('../lib/proxy.js', import.meta.url).href)};
      const proxy = createProxy({ listen: '127.0.0.1:0' });
      proxy.listen().then(
        () => { console.log('listening'); return proxy.close(); },
        (e) => console.log(JSON.stringify({ code: e.code, syscall: e.syscall, message: e.message })),
      );`;
    const result = runWithCapabilities(script) as {
      code: string;
      syscall: string;
      message: string;
    };
    assert.equal(result.code, 'EPERM');
    assert.equal(result.syscall, 'setsockopt(IPPROTO_IP, IP_TRANSPARENT, 1)');
    assert.match(result.message, /CAP_NET_ADMIN/);
  });

  test('listeners: N opens N SO_REUSEPORT sockets that all serve', async () => {
    const upstream = await Upstream.start('127.0.0.1');
    const proxy = createProxy({
      listen: '127.0.0.1:0',
      target4: upstream.endpoint,
      listeners: 4,
      workers: 2,
    });
    await proxy.listen();
    try {
      const port = proxy.address()!.port;
      const sockets = [];
      for (let i = 0; i < 40; i++) {
        const s = await connectAndSend(port, [v1('192.0.2.140', 34000 + i), 'x']);
        sockets.push(s);
      }
      await Promise.all(sockets.map((s) => once(s, 'data')));
      await upstream.waitFor(40);
      const stats = proxy.stats();
      assert.equal(stats.accepted, 40);
      assert.equal(stats.admitted, 40);
      assert.equal(stats.active, 40);
      for (const s of sockets) s.destroy();
      await until(() => proxy.stats().active === 0, 'connections to end');
    } finally {
      await proxy.close();
      await upstream.close();
    }
  });
});

describe('close()', () => {
  test('stops accepting at once, drains live connections to the deadline, then ends them', async () => {
    const upstream = await Upstream.start('127.0.0.1');
    const fdsBefore = openFds();
    const threadsBefore = threadCount();
    const proxy = createProxy({ listen: '127.0.0.1:0', target4: upstream.endpoint, workers: 2 });
    await proxy.listen();
    assert.equal(threadCount(), threadsBefore + 2, 'two worker threads');
    const port = proxy.address()!.port;
    const live = await connectAndSend(port, [v1('192.0.2.150', 35000), 'one']);
    await once(live, 'data');
    const liveEnd = ending(live);
    let closeEvents = 0;
    proxy.on('close', () => closeEvents++);
    const started = Date.now();
    const closing = proxy.close({ drainTimeout: 600 });
    assert.equal(proxy.close(), closing, 'the same promise each time');
    await sleep(50);
    // No longer accepting…
    const refused = net.connect({ port, host: '127.0.0.1' });
    const outcome = await new Promise((resolve) => {
      refused.once('connect', () => resolve('connected'));
      refused.once('error', (e: NodeJS.ErrnoException) => resolve(e.code));
    });
    assert.equal(outcome, 'ECONNREFUSED');
    // …but the live connection still relays.
    live.write('two');
    const [echo] = (await once(live, 'data')) as [Buffer];
    assert.equal(echo.toString(), 'two');
    await closing;
    const took = Date.now() - started;
    assert.ok(took >= 550, `closed after ${took} ms, before the deadline`);
    assert.notEqual(await liveEnd, 'end', 'the connection was ended at the deadline');
    assert.equal(closeEvents, 1);
    await proxy.close();
    assert.equal(closeEvents, 1, "'close' is emitted once");
    assert.equal(threadCount(), threadsBefore, 'no worker thread is left');
    await upstream.close();
    await sleep(20);
    // Every fd open now was open before createProxy (the test's own sockets may have closed).
    const leaked = openFds().filter((fd) => !fdsBefore.includes(fd));
    assert.deepEqual(leaked, [], 'every fd the proxy opened is closed');
  });

  test('close() returns as soon as the last connection finishes', async () => {
    const upstream = await Upstream.start('127.0.0.1');
    const proxy = createProxy({ listen: '127.0.0.1:0', target4: upstream.endpoint, workers: 1 });
    await proxy.listen();
    const live = await connectAndSend(proxy.address()!.port, [v1('192.0.2.151', 35001), 'x']);
    await once(live, 'data');
    const started = Date.now();
    const closing = proxy.close({ drainTimeout: 10_000 });
    await sleep(100);
    live.end();
    await closing;
    assert.ok(Date.now() - started < 2000);
    await upstream.close();
  });

  test('close({drainTimeout: 0}) during a drain ends it now', async () => {
    const upstream = await Upstream.start('127.0.0.1');
    const proxy = createProxy({ listen: '127.0.0.1:0', target4: upstream.endpoint, workers: 1 });
    await proxy.listen();
    const live = await connectAndSend(proxy.address()!.port, [v1('192.0.2.152', 35002), 'x']);
    live.on('error', () => {});
    await once(live, 'data');
    const started = Date.now();
    const closing = proxy.close({ drainTimeout: 30_000 });
    await sleep(50);
    await proxy.close({ drainTimeout: 0 });
    await closing;
    assert.ok(Date.now() - started < 1000);
    live.destroy();
    await upstream.close();
  });

  test('close() during listen() lets it finish, then closes: one promise, one close event', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const file = join(mkdtempSync(join(tmpdir(), 'mmproxy-')), 'allowed.txt');
    writeFileSync(file, '127.0.0.0/8\n');
    const threadsBefore = threadCount();
    const proxy = createProxy({ listen: '127.0.0.1:0', allowedSubnetsFile: file, workers: 2 });
    let closes = 0;
    proxy.on('close', () => closes++);
    const listening = proxy.listen(); // still reading the allowlist file
    const closing = proxy.close();
    assert.equal(proxy.close(), closing, 'the same promise each time');
    await listening;
    await closing;
    assert.equal(closes, 1);
    assert.equal(threadCount(), threadsBefore, 'the workers started by listen() are stopped');
  });

  // After close() the engine has released its thread-safe function and Node frees it on a later
  // turn of the loop: ref() and unref() must not touch it. A child process, so that the last call
  // (ref) is seen not to keep the loop alive, and so that valgrind can watch the same steps.
  const AFTER_CLOSE = `
    import { createProxy } from ${JSON.stringify(new URL('../lib/proxy.js', import.meta.url).href)};
    const proxy = createProxy({ listen: '127.0.0.1:0', workers: 1 });
    await proxy.listen();
    await proxy.close();
    await new Promise((resolve) => setTimeout(resolve, 50)); // the released function is freed
    proxy.unref();
    proxy.ref();
    proxy.unref();
    proxy.ref();
    console.log('done');`;

  test('ref() and unref() after close() do nothing: no throw, and the process exits', () => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', AFTER_CLOSE], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(r.signal, null, r.stderr);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'done');
  });

  const valgrind = spawnSync('valgrind', ['--version']).status === 0;
  const asan = (process.env.LD_PRELOAD ?? '').includes('libasan'); // scripts/asan.sh
  test(
    'ref() and unref() after close() read no freed memory (valgrind)',
    {
      skip: asan
        ? 'under ASan (scripts/asan.sh), which watches the other test instead'
        : valgrind
          ? false
          : 'valgrind is not installed',
      timeout: 180_000,
    },
    () => {
      const r = spawnSync(
        'valgrind',
        ['-q', '--error-exitcode=99', process.execPath, '--input-type=module', '-e', AFTER_CLOSE],
        { encoding: 'utf8', timeout: 170_000 },
      );
      const invalid = r.stderr.split('\n').filter((l) => /Invalid (read|write)/.test(l));
      assert.deepEqual(invalid, [], r.stderr);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim(), 'done');
    },
  );

  test('closing a proxy that never listened resolves and emits close', async () => {
    const proxy = createProxy({ listen: '127.0.0.1:0' });
    let closed = false;
    proxy.on('close', () => (closed = true));
    await proxy.close();
    assert.ok(closed);
  });
});
