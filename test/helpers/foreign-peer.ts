// A peer with an address this host does not have, for tests of what the proxy does with a load
// balancer on another host: a python3 child binds with IP_TRANSPARENT (as the proxy's upstream
// sockets do; the namespace's routing rules bring the replies back), sends, and prints what it
// got back. Node's sockets cannot bind to an address the host lacks.
import { execFile } from 'node:child_process';

const SCRIPT = String.raw`
import socket, sys, base64
proto, src, port, payload, wait = sys.argv[1], sys.argv[2], int(sys.argv[3]), base64.b64decode(sys.argv[4]), float(sys.argv[5])
fam = socket.AF_INET6 if ':' in src else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM)
if fam == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, 75, 1)  # IPV6_TRANSPARENT
else:
    s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT
s.bind((src, 0))
s.settimeout(wait)
dst = '::1' if fam == socket.AF_INET6 else '127.0.0.1'
got = b''
try:
    if proto == 'tcp':
        s.connect((dst, port))
        s.sendall(payload)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    else:
        s.sendto(payload, (dst, port))
        got = s.recv(65536)
except (socket.timeout, ConnectionResetError):
    pass
sys.stdout.write(base64.b64encode(got).decode())
`;

/**
 * Connects (TCP) or sends one datagram (UDP) from `source` to the proxy's `port` on loopback,
 * and resolves with everything received until the proxy closes or `waitMs` of silence.
 */
export function foreignPeer(
  protocol: 'tcp' | 'udp',
  source: string,
  port: number,
  payload: Uint8Array,
  waitMs = 1000,
): Promise<Buffer> {
  const args = [
    '-c',
    SCRIPT,
    protocol,
    source,
    String(port),
    Buffer.from(payload).toString('base64'),
    String(waitMs / 1000),
  ];
  return new Promise((resolve, reject) => {
    execFile('python3', args, { timeout: waitMs + 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`foreign peer ${source}: ${err.message}\n${stderr}`));
      else resolve(Buffer.from(stdout, 'base64'));
    });
  });
}
