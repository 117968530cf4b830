// The splice relay: integrity of large transfers both ways at once, backpressure, half-close,
// resets, refused upstreams and the ephemeral-port retry. Real sockets in the test namespace.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { createHash, randomBytes } from 'node:crypto';
import { createProxy, type Proxy } from '../lib/proxy.js';
import type { SystemError } from '../lib/errors.js';
import {
  Upstream,
  connectAndSend,
  ending,
  readAll,
  receiveHashed,
  requireNamespace,
  sleep,
  until,
} from './helpers/net.js';
import { v1, v2 } from './helpers/headers.js';

requireNamespace();

const RELAY_BYTES = Number(process.env.MMPROXY_TEST_RELAY_BYTES ?? 1024 * 1024 * 1024);
const CHUNK = 1024 * 1024;

/** Writes `total` bytes of numbered chunks, respecting backpressure; resolves with their hash. */
async function sendStream(socket: net.Socket, total: number, seed: Buffer): Promise<string> {
  const hash = createHash('sha256');
  let sent = 0;
  let index = 0;
  while (sent < total) {
    const size = Math.min(CHUNK, total - sent);
    const chunk = Buffer.from(seed.subarray(0, size));
    chunk.writeUInt32BE(index++, 0); // every chunk differs: loss, reordering or duplication shows
    hash.update(chunk);
    sent += size;
    if (!socket.write(chunk)) await once(socket, 'drain');
  }
  socket.end();
  return hash.digest('hex');
}

describe('relay', () => {
  let proxy: Proxy;
  let upstream: Upstream;
  let port: number;
  const upstreamSides: Array<
    Promise<{ sentHash: string; received: { hash: string; bytes: number } }>
  > = [];
  const seed = randomBytes(CHUNK);

  before(async () => {
    upstream = await Upstream.start('127.0.0.1', (socket) => {
      upstreamSides.push(
        Promise.all([receiveHashed(socket), sendStream(socket, RELAY_BYTES, seed)]).then(
          ([received, sentHash]) => ({ sentHash, received }),
        ),
      );
    });
    proxy = createProxy({ listen: '127.0.0.1:0', target4: upstream.endpoint, workers: 2 });
    await proxy.listen();
    port = proxy.address()!.port;
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
  });

  test(`${RELAY_BYTES} bytes each way at once arrive intact (SHA-256 at both ends)`, async () => {
    const socket = await connectAndSend(port, [v2('192.0.2.100', 30000)]);
    const clientReceived = receiveHashed(socket);
    const clientSent = sendStream(socket, RELAY_BYTES, seed);
    const [received, sentHash] = await Promise.all([clientReceived, clientSent]);
    const side = await upstreamSides[0]!;
    assert.equal(side.received.bytes, RELAY_BYTES);
    assert.equal(side.received.hash, sentHash, 'client → upstream');
    assert.equal(received.bytes, RELAY_BYTES);
    assert.equal(received.hash, side.sentHash, 'upstream → client');
    const stats = proxy.stats();
    assert.equal(stats.bytesFromClients, RELAY_BYTES);
    assert.equal(stats.bytesFromUpstreams, RELAY_BYTES);
    socket.destroy();
  });
});

describe('backpressure', () => {
  test('an upstream that never reads stops the proxy reading the client', async () => {
    const upstream = await Upstream.start('127.0.0.1', (socket) => socket.pause());
    const proxy = createProxy({ listen: '127.0.0.1:0', target4: upstream.endpoint, workers: 1 });
    await proxy.listen();
    try {
      const socket = await connectAndSend(proxy.address()!.port, [v1('192.0.2.101', 30001)]);
      const chunk = Buffer.alloc(256 * 1024, 7);
      const rssBefore = process.memoryUsage().rss;
      // Offer up to 1 GiB; the client may only write what the path takes.
      let offered = 0;
      const deadline = Date.now() + 1500;
      while (offered < 1024 ** 3 && Date.now() < deadline) {
        offered += chunk.length;
        if (!socket.write(chunk)) {
          const drained = await Promise.race([
            once(socket, 'drain').then(() => true),
            sleep(300).then(() => false),
          ]);
          if (!drained) break;
        }
      }
      const moved1 = proxy.stats().bytesFromClients;
      await sleep(300);
      const moved2 = proxy.stats().bytesFromClients;
      assert.equal(moved2, moved1, 'the proxy keeps reading though the upstream does not');
      assert.ok(moved1 < 64 * 1024 * 1024, `the proxy moved ${moved1} bytes into a closed window`);
      const growth = process.memoryUsage().rss - rssBefore;
      assert.ok(growth < 64 * 1024 * 1024, `RSS grew by ${growth} bytes`);
      socket.destroy();
    } finally {
      await proxy.close();
      await upstream.close();
    }
  });
});

describe('fairness', () => {
  // One worker, one stream that never lets its sockets run dry, because the proxy is its
  // bottleneck: the client writes as fast as it can and the upstream reads as fast as it can
  // (python3, a loop of sendall() and recv_into()), all three processes share one CPU, and the
  // proxy runs at the lowest priority (nice 19). The worker must still come back to its other work
  // (accepts, headers, decisions, other sessions) between rounds of that stream, so that small echo
  // connections opened alongside are served promptly.
  const SINK = `
import socket
s = socket.socket()
s.bind(('127.0.0.1', 0))
s.listen()
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
buf = memoryview(bytearray(4 << 20))
while c.recv_into(buf):
    pass
`;
  const FLOOD = `
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
s.sendall(sys.argv[2].encode())
chunk = bytes(4 << 20)
while True:
    s.sendall(chunk)
`;
  const PROXY = `
    const { createProxy } = await import(process.env.PROXY_MODULE);
    const { createInterface } = await import('node:readline');
    const proxy = createProxy({ listen: '127.0.0.1:0', workers: 1, dynamicDestination: true });
    await proxy.listen();
    console.log(JSON.stringify({ port: proxy.address().port }));
    for await (const line of createInterface({ input: process.stdin })) {
      if (line === 'stats') console.log(JSON.stringify(proxy.stats()));
      else break;
    }
    await proxy.close({ drainTimeout: 0 });
  `;

  /** One CPU this process may run on. */
  function oneCpu(): string {
    const status = readFileSync('/proc/self/status', 'utf8');
    const list = /^Cpus_allowed_list:\s*(\S+)/m.exec(status)![1]!;
    return list.split(',')[0]!.split('-')[0]!;
  }

  test('a saturating stream does not starve small connections on the same worker', async () => {
    const cpu = oneCpu();
    const upstream = await Upstream.start('127.0.0.1');
    const proxyChild = spawn(
      'taskset',
      ['-c', cpu, 'nice', '-n', '19', process.execPath, '--input-type=module', '-e', PROXY],
      {
        env: { ...process.env, PROXY_MODULE: new URL('../lib/proxy.js', import.meta.url).href },
        stdio: ['pipe', 'pipe', 'inherit'],
      },
    );
    const lines = createInterface({ input: proxyChild.stdout! })[Symbol.asyncIterator]();
    const sink = spawn('taskset', ['-c', cpu, 'python3', '-c', SINK], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const sinkLines = createInterface({ input: sink.stdout! })[Symbol.asyncIterator]();
    let flood: ReturnType<typeof spawn> | undefined;
    try {
      const { port } = JSON.parse((await lines.next()).value as string) as { port: number };
      const stats = async (): Promise<ReturnType<Proxy['stats']>> => {
        proxyChild.stdin!.write('stats\n');
        return JSON.parse((await lines.next()).value as string) as ReturnType<Proxy['stats']>;
      };
      const sinkPort = Number((await sinkLines.next()).value);
      const header = v1('192.0.2.60', 36000, '127.0.0.1', sinkPort);
      flood = spawn('taskset', ['-c', cpu, 'python3', '-c', FLOOD, String(port), header], {
        stdio: 'ignore',
      });
      // The stream is under way, and the worker busy with it, before the small ones arrive.
      const deadline = Date.now() + 20_000;
      while ((await stats()).bytesFromClients < 256 * 1024 * 1024) {
        assert.ok(Date.now() < deadline, 'the stream did not get going');
        await sleep(10);
      }
      const waits = await Promise.all(
        Array.from({ length: 5 }, async (_, i) => {
          const started = Date.now();
          const socket = await connectAndSend(port, [
            v1('192.0.2.61', 36001 + i, '127.0.0.1', upstream.port),
            `ping ${i}`,
          ]);
          socket.on('error', () => {});
          const echoed = await Promise.race([
            once(socket, 'data').then(([d]) => (d as Buffer).toString()),
            sleep(2000).then(() => null),
          ]);
          socket.destroy();
          return { echoed, ms: Date.now() - started };
        }),
      );
      const late = waits.filter((w, i) => w.echoed !== `ping ${i}`).length;
      assert.equal(late, 0, `echo connections not served within 2 s: ${JSON.stringify(waits)}`);
      assert.equal((await stats()).rejected.headerTimeout, 0);
    } finally {
      flood?.kill();
      sink.kill();
      proxyChild.stdin!.end();
      await Promise.all([once(proxyChild, 'exit'), once(sink, 'exit')]);
      await upstream.close();
    }
  });
});

describe('half-close and resets', () => {
  let proxy: Proxy;
  let upstream: Upstream;
  let mode: 'reply-after-end' | 'end-first' | 'reset' = 'reply-after-end';
  const reply = randomBytes(3 * 1024 * 1024);

  before(async () => {
    upstream = await Upstream.start('127.0.0.1', (socket) => {
      if (mode === 'reply-after-end') {
        // Reply only after the client's FIN: the client must still get all of it.
        socket.resume();
        socket.once('end', () => socket.end(reply));
      } else if (mode === 'end-first') {
        socket.end('bye');
        const parts: Buffer[] = [];
        socket.on('data', (d: Buffer) => parts.push(d));
        socket.once('end', () => upstreamGot.push(Buffer.concat(parts).toString()));
      } else {
        socket.once('data', () => socket.resetAndDestroy());
      }
    });
    proxy = createProxy({ listen: '127.0.0.1:0', target4: upstream.endpoint, workers: 1 });
    await proxy.listen();
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
  });
  const upstreamGot: string[] = [];

  test("after the client's FIN it still receives the whole reply", async () => {
    mode = 'reply-after-end';
    const socket = await connectAndSend(proxy.address()!.port, [
      v1('192.0.2.110', 31000),
      'request',
    ]);
    socket.end();
    const got = await readAll(socket);
    assert.equal(got.length, reply.length);
    assert.ok(got.equals(reply));
  });

  test("after the upstream's FIN it still receives what the client sends", async () => {
    mode = 'end-first';
    const socket = await connectAndSend(proxy.address()!.port, [v1('192.0.2.111', 31001)]);
    const got = await readAll(socket); // the upstream's 'bye' and its FIN
    assert.equal(got.toString(), 'bye');
    socket.end('still talking');
    await until(() => upstreamGot.length === 1, "the upstream's read");
    assert.equal(upstreamGot[0], 'still talking');
  });

  test('a reset from the upstream resets the client', async () => {
    mode = 'reset';
    const socket = await connectAndSend(proxy.address()!.port, [v1('192.0.2.112', 31002), 'x']);
    assert.equal(await ending(socket), 'reset');
  });

  test('a reset from the client resets the upstream', async () => {
    mode = 'end-first';
    const before = upstream.connections.length;
    const socket = await connectAndSend(proxy.address()!.port, [v1('192.0.2.113', 31003)]);
    const [conn] = (await upstream.waitFor(before + 1)).slice(before);
    const upstreamEnd = new Promise<string>((resolve) => {
      conn!.socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      conn!.socket.once('close', () => resolve('close'));
    });
    // Data still in flight toward the client, then an abortive close.
    socket.resetAndDestroy();
    assert.equal(await upstreamEnd, 'ECONNRESET');
  });
});

describe('upstream failures', () => {
  test('a refusing upstream ends the client promptly and names the failed call', async () => {
    const closed = await Upstream.start('127.0.0.1');
    const target = closed.endpoint;
    await closed.close();
    const proxy = createProxy({ listen: '127.0.0.1:0', target4: target, workers: 1 });
    await proxy.listen();
    try {
      const errors: Array<[SystemError, unknown]> = [];
      proxy.on('connectionError', (e, info) => errors.push([e, info]));
      const socket = await connectAndSend(proxy.address()!.port, [v1('192.0.2.120', 32000), 'x']);
      const started = Date.now();
      assert.equal(await ending(socket), 'reset');
      assert.ok(Date.now() - started < 1000);
      await until(() => errors.length === 1, 'connectionError');
      const [err, info] = errors[0]!;
      assert.equal(err.code, 'ECONNREFUSED');
      assert.match(err.syscall, /^connect\(127\.0\.0\.1:\d+\)/);
      assert.deepEqual((info as { source: unknown }).source, {
        address: '192.0.2.120',
        port: 32000,
      });
      assert.equal(proxy.stats().upstreamFailures, 1);
    } finally {
      await proxy.close();
    }
  });
});

describe('an upstream that does not answer', () => {
  test('ends the client within TCP_SYNCNT 2 (about 7 s) and names the failed call', async () => {
    // A listener whose accept queue is full drops SYNs: the handshake never completes.
    const holder = spawn('python3', [
      '-c',
      'import socket,sys,time\n' +
        's=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(0)\n' +
        'print(s.getsockname()[1], flush=True)\n' +
        'time.sleep(30)',
    ]);
    try {
      const [line] = (await once(holder.stdout!, 'data')) as [Buffer];
      const port = Number(line.toString().trim());
      // With a backlog of 0 the queue holds one connection: this one fills it.
      const fillers = [];
      for (let i = 0; i < 1; i++) {
        const f = net.connect({ port, host: '127.0.0.1' });
        f.on('error', () => {});
        fillers.push(f);
        await once(f, 'connect');
      }
      const proxy = createProxy({
        listen: '127.0.0.1:0',
        target4: `127.0.0.1:${port}`,
        workers: 1,
      });
      await proxy.listen();
      try {
        const errors: SystemError[] = [];
        proxy.on('connectionError', (e) => errors.push(e));
        const socket = await connectAndSend(proxy.address()!.port, [v1('192.0.2.125', 32500), 'x']);
        const started = Date.now();
        assert.equal(await ending(socket), 'reset');
        const took = Date.now() - started;
        assert.ok(took > 2000 && took < 12000, `ended after ${took} ms`);
        await until(() => errors.length === 1, 'connectionError');
        assert.equal(errors[0]!.code, 'ETIMEDOUT');
        assert.match(errors[0]!.syscall, /^connect\(127\.0\.0\.1:\d+\)/);
      } finally {
        await proxy.close();
        for (const f of fillers) f.destroy();
      }
    } finally {
      holder.kill();
    }
  });
});

describe('upstream socket', () => {
  test('a client address and port already in use toward the target is retried from an ephemeral port', async () => {
    const upstream = await Upstream.start('127.0.0.1');
    const proxy = createProxy({ listen: '127.0.0.1:0', target4: upstream.endpoint, workers: 1 });
    await proxy.listen();
    try {
      const port = proxy.address()!.port;
      const a = await connectAndSend(port, [v1('192.0.2.130', 33000), 'a']);
      await once(a, 'data');
      const b = await connectAndSend(port, [v1('192.0.2.130', 33000), 'b']);
      await once(b, 'data');
      const [first, second] = await upstream.waitFor(2);
      assert.equal(first!.remoteAddress, '192.0.2.130');
      assert.equal(first!.remotePort, 33000);
      assert.equal(second!.remoteAddress, '192.0.2.130');
      assert.notEqual(second!.remotePort, 33000);
      assert.equal(proxy.stats().ephemeralPortRetries, 1);
      a.destroy();
      b.destroy();
    } finally {
      await proxy.close();
      await upstream.close();
    }
  });

  test('mark: the upstream socket carries SO_MARK', async () => {
    const upstream = await Upstream.start('127.0.0.1');
    const proxy = createProxy({
      listen: '127.0.0.1:0',
      target4: upstream.endpoint,
      workers: 1,
      mark: 123,
    });
    await proxy.listen();
    try {
      const socket = await connectAndSend(proxy.address()!.port, [v1('192.0.2.131', 33100), 'm']);
      await once(socket, 'data');
      // ss prints the mark of each socket; the upstream one is bound to the client's address.
      const ss = execFileSync('ss', ['-tnie', 'src', '192.0.2.131'], { encoding: 'utf8' });
      assert.match(ss, /192\.0\.2\.131:33100/);
      assert.match(ss, /fwmark:0x7b/);
      socket.destroy();
    } finally {
      await proxy.close();
      await upstream.close();
    }
  });
});
