// Test helpers for real sockets in the test namespace: an upstream server that records what it
// saw, PROXY clients, temporary files and small waiting utilities.
import net from 'node:net';
import { once } from 'node:events';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';

/** Fails the test early, with a clear message, when not run through test/run.js. */
export function requireNamespace(): void {
  assert.equal(
    process.env.MMPROXY_TEST_NETNS,
    '1',
    'this test needs the private namespace that test/run.js makes (npm test)',
  );
}

export interface UpstreamConnection {
  socket: net.Socket;
  remoteAddress: string;
  remotePort: number;
  family: string;
}

export type UpstreamHandler = (socket: net.Socket) => void;

/** A TCP server on loopback that records each accepted connection's peer. */
export class Upstream {
  readonly server: net.Server;
  readonly connections: UpstreamConnection[] = [];
  #waiters: Array<() => void> = [];

  constructor(handler: UpstreamHandler = echo) {
    // Half-open on: the tests decide when each side ends.
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => {
      this.connections.push({
        socket,
        remoteAddress: socket.remoteAddress!,
        remotePort: socket.remotePort!,
        family: socket.remoteFamily!,
      });
      socket.on('error', () => {});
      handler(socket);
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  static async start(host: string, handler?: UpstreamHandler): Promise<Upstream> {
    const u = new Upstream(handler);
    u.server.listen(0, host);
    await once(u.server, 'listening');
    return u;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  get endpoint(): string {
    const a = this.server.address() as net.AddressInfo;
    return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  }

  /** Resolves once `n` connections have been accepted. */
  async waitFor(n: number, timeoutMs = 5000): Promise<UpstreamConnection[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.connections.length < n) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`upstream saw ${this.connections.length} of ${n} connections`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.connections.slice(0, n);
  }

  async close(): Promise<void> {
    for (const c of this.connections) c.socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Echoes every byte, and ends its side once the client has ended. */
export function echo(socket: net.Socket): void {
  socket.pipe(socket);
}

/** Connects to the proxy and writes `chunks` (header and payload, split as given). */
export async function connectAndSend(
  port: number,
  chunks: Array<Uint8Array | string>,
  host = '127.0.0.1',
  gapMs = 0,
): Promise<net.Socket> {
  const socket = net.connect({ port, host, noDelay: true, allowHalfOpen: true });
  await once(socket, 'connect');
  for (const c of chunks) {
    socket.write(c);
    if (gapMs > 0) await sleep(gapMs);
  }
  return socket;
}

/** Everything the socket receives until it ends (or errors), as one Buffer. */
export function readAll(socket: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    socket.on('data', (d: Buffer) => parts.push(d));
    socket.once('end', () => resolve(Buffer.concat(parts)));
    socket.once('error', reject);
  });
}

/** Resolves with how the socket ended: 'end' (FIN), 'reset' (ECONNRESET) or 'close'. */
export function ending(socket: net.Socket): Promise<'end' | 'reset' | 'close'> {
  return new Promise((resolve) => {
    socket.once('end', () => resolve('end'));
    socket.once('error', (e: NodeJS.ErrnoException) =>
      resolve(e.code === 'ECONNRESET' || e.code === 'EPIPE' ? 'reset' : 'close'),
    );
    socket.once('close', () => resolve('close'));
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it returns true or the time runs out. */
export async function until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The process's open file descriptors (numbers), from /proc/self/fd. */
export function openFds(): number[] {
  return readdirSync('/proc/self/fd')
    .map(Number)
    .sort((a, b) => a - b);
}

/** Threads of this process, from /proc/self/task. */
export function threadCount(): number {
  return readdirSync('/proc/self/task').length;
}

/** Hashes what the socket receives until its peer's FIN; rejects on a reset. */
export function receiveHashed(socket: net.Socket): Promise<{ hash: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    socket.on('data', (d: Buffer) => {
      hash.update(d);
      bytes += d.length;
    });
    socket.once('end', () => resolve({ hash: hash.digest('hex'), bytes }));
    socket.once('error', reject);
  });
}

/**
 * Runs an ES module `script` in a child node that holds only the capabilities in `keep`
 * (setpriv's names, e.g. ['net_raw']; none by default), and returns the JSON it printed.
 */
export function runWithCapabilities(script: string, keep: readonly string[] = []): unknown {
  const caps = ['-all', ...keep.map((c) => `+${c}`)].join(',');
  const r = spawnSync(
    'setpriv',
    [
      `--inh-caps=-all`,
      `--bounding-set=${caps}`,
      '--',
      process.execPath,
      '--input-type=module',
      '-e',
      script,
    ],
    { encoding: 'utf8', timeout: 20_000 },
  );
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** A file in a fresh temporary directory, to rewrite and to remove with its directory. */
export function tmpFile(
  name: string,
  text: string,
): { file: string; write: (t: string) => void; remove: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'mmproxy-cli-'));
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return {
    file,
    write: (t) => writeFileSync(file, t),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Sends a header and a line; resolves with the echo, or null when the proxy closed instead. */
export async function roundTrip(
  port: number,
  header: string | Uint8Array,
  payload = 'ping\n',
): Promise<{ socket: net.Socket; echoed: string | null }> {
  const socket = await connectAndSend(port, [header, payload]);
  socket.on('error', () => {});
  const echoed = await new Promise<string | null>((resolve) => {
    socket.once('data', (d: Buffer) => resolve(d.toString()));
    socket.once('close', () => resolve(null));
    socket.once('end', () => resolve(null));
  });
  return { socket, echoed };
}
