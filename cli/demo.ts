// `mmproxy demo`: a newcomer's first run, no setup and no root. It re-executes itself in a private
// user + network namespace (where IP_TRANSPARENT and routing rules need no privileges), then runs
// the real proxy between a client that sends PROXY headers for made-up clients and an upstream
// that reports the peer address it sees, and prints, line by line, that the two match.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { encodeHeader } from '../lib/codec/index.js';
import { runIp } from '../lib/self-check.js';
import type { CliIo } from './io.js';
import { setupRoutes } from './routes.js';

/** Set in the re-executed child: we are inside the private namespace. */
const INSIDE = 'MMPROXY_DEMO_NAMESPACE';

/** Made-up clients from the documentation ranges, both families, both header versions. */
const CLIENTS = [
  { address: '203.0.113.7', port: 51000, version: 1 },
  { address: '198.51.100.23', port: 40312, version: 2 },
  { address: '2001:db8::7', port: 51000, version: 1 },
  { address: '2001:db8:cafe::42', port: 61999, version: 2 },
] as const;

export async function runDemo(io: CliIo): Promise<number> {
  if (io.env[INSIDE] === '1') return inside(io);
  if (process.platform !== 'linux') {
    io.stderr.write(
      `mmproxy demo needs Linux (network namespaces, IP_TRANSPARENT); this is ${process.platform}.\n`,
    );
    return 1;
  }
  io.stdout.write(
    'Starting a private network namespace (unshare --user --map-root-user --net): nothing here\n' +
      'touches your network, and nothing needs root.\n\n',
  );
  const bin = fileURLToPath(new URL('./bin.js', import.meta.url));
  const child = spawn(
    'unshare',
    ['--user', '--map-root-user', '--net', process.execPath, bin, 'demo'],
    { env: { ...io.env, [INSIDE]: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => io.stdout.write(d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    io.stderr.write(d.toString());
  });
  const [code, error] = await new Promise<[number | null, Error | null]>((resolve) => {
    child.on('error', (err) => resolve([null, err]));
    child.on('close', (status) => resolve([status, null]));
  });
  if (error || (code !== 0 && /unshare:/.test(stderr))) {
    io.stderr.write(refusedHelp(error ? error.message : stderr.trim()));
    return 1;
  }
  return code ?? 1;
}

function refusedHelp(why: string): string {
  return [
    '',
    `This system does not let unprivileged users create a user + network namespace (${why}).`,
    'Some distributions turn them off. Either allow them:',
    '  sudo sysctl -w kernel.unprivileged_userns_clone=1                 (Debian and older Ubuntu)',
    '  sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0     (Ubuntu 23.10 and later)',
    'or run the demo as root, which needs no user namespace and still changes nothing outside',
    'its private network namespace:',
    '  sudo npx mmproxy demo',
    'In a container, run it on the host instead (or give the container CAP_SYS_ADMIN).',
    '',
  ].join('\n');
}

/** Inside the namespace: routing, upstream, proxy, clients. */
async function inside(io: CliIo): Promise<number> {
  const say = (line: string): void => void io.stdout.write(line + '\n');
  const lo = await runIp(['link', 'set', 'lo', 'up']);
  if (lo.code !== 0) {
    io.stderr.write(`mmproxy demo: ip link set lo up: ${lo.stderr.trim()}\n`);
    return 1;
  }
  const routes = await setupRoutes(
    [
      { family: 4, address: '127.0.0.1' },
      { family: 6, address: '::1' },
    ],
    123,
  );
  say('Routing that brings replies back to the proxy (what `mmproxy --setup-routes` adds):');
  for (const c of routes.added) say(`  ${c.text}`);

  // The upstream: an application that knows nothing of PROXY headers. It tells each client the
  // address it sees in getpeername(), which is all the demo is about.
  const upstream = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.end(`${formatPeer(socket.remoteAddress ?? '?', socket.remotePort ?? 0)}\n`);
  });
  upstream.listen(0, '::');
  await once(upstream, 'listening');
  const upstreamPort = (upstream.address() as net.AddressInfo).port;

  const { createProxy } = await import('../lib/proxy.js');
  const proxy = createProxy({
    listen: '127.0.0.1:0',
    target4: `127.0.0.1:${upstreamPort}`,
    target6: `[::1]:${upstreamPort}`,
  });
  let failures = 0;
  try {
    await proxy.listen();
    const bound = proxy.address()!;
    say('');
    say(
      `upstream app on 127.0.0.1:${upstreamPort} and [::1]:${upstreamPort}, replying with the peer it sees`,
    );
    say(
      `mmproxy on ${bound.address}:${bound.port} (-4 127.0.0.1:${upstreamPort} -6 [::1]:${upstreamPort})`,
    );
    say('a load balancer connecting from 127.0.0.1 with a PROXY header for each made-up client:');
    say('');
    for (const client of CLIENTS) {
      const family = net.isIPv4(client.address) ? 4 : 6;
      const header = encodeHeader(
        {
          command: 'PROXY',
          protocol: family === 4 ? 'TCP4' : 'TCP6',
          source: { address: client.address, port: client.port },
          destination: { address: family === 4 ? '192.0.2.10' : '2001:db8::10', port: 443 },
        },
        { version: client.version },
      );
      const claimed = formatPeer(client.address, client.port);
      let saw: string;
      try {
        saw = await exchange(bound.port, header);
      } catch (err) {
        saw = `nothing (${(err as Error).message})`;
      }
      const ok = saw === claimed;
      if (!ok) failures++;
      say(
        `client ${claimed.padEnd(25)} (PROXY v${client.version}) → upstream saw ${saw} ${ok ? '✓' : '✗'}`,
      );
    }
  } finally {
    await proxy.close({ drainTimeout: 0 });
    upstream.close();
    await routes.teardown();
  }
  say('');
  if (failures > 0) {
    say(`${failures} of ${CLIENTS.length} clients were not seen with their own address.`);
    return 1;
  }
  say('The application saw every client with its own address and port.');
  say('');
  say('On a real host: `mmproxy check` tells what is missing, then for example');
  say('  sudo mmproxy -l 0.0.0.0:8443 -4 127.0.0.1:443 -6 [::1]:443 --setup-routes');
  return 0;
}

/** Connects through the proxy, sends the header, resolves with the upstream's reply line. */
function exchange(port: number, header: Uint8Array): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(header));
    let reply = '';
    socket.setTimeout(5000, () => socket.destroy(new Error('timed out')));
    socket.on('data', (d: Buffer) => (reply += d.toString()));
    socket.on('error', reject);
    socket.on('end', () => {
      socket.end();
      if (reply) resolve(reply.trim());
      else reject(new Error('the proxy closed the connection'));
    });
  });
}

/** How people write an address and port; an IPv4 client seen on a dual-stack socket unmapped. */
function formatPeer(address: string, port: number): string {
  const a =
    address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
  return a.includes(':') ? `[${a}]:${port}` : `${a}:${port}`;
}
