// Writes the seed corpus (fuzz/corpus/framing/) from headers the package's own encoder makes:
// v1 and v2, every family, LOCAL, TLVs, and the truncated and corrupted forms of each.
//   node fuzz/make-seeds.mjs [path/to/compiled/lib/codec/index.js]
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const codec = process.argv[2] ?? path.join(here, '..', 'dist', 'lib', 'codec', 'index.js');
const { encodeHeader, TLV_TYPE } = await import(pathToFileURL(path.resolve(codec)).href);

const ep = (address, port) => ({ address, port });
const base = (command, protocol, source, destination, tlvs = [], extra = {}) => ({
  version: 2,
  command,
  protocol,
  source,
  destination,
  tlvs,
  ...extra,
});
const headers = [];
const v1 = (h) => headers.push(encodeHeader({ ...h, version: 1 }, { version: 1 }));
const v2 = (h, crc32c = false) => headers.push(encodeHeader(h, { version: 2, crc32c }));

v1(base('PROXY', 'TCP4', ep('192.0.2.1', 51000), ep('127.0.0.1', 443)));
v1(base('PROXY', 'TCP6', ep('2001:db8::1', 51000), ep('::1', 443)));
v1(base('PROXY', 'TCP4', ep('255.255.255.255', 65535), ep('255.255.255.255', 65535)));
v1(
  base(
    'PROXY',
    'TCP6',
    ep('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 65535),
    ep('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 65535),
  ),
);
headers.push(Buffer.from('PROXY UNKNOWN\r\n'));
for (const [p, s, d] of [
  ['TCP4', ep('192.0.2.1', 1), ep('127.0.0.1', 2)],
  ['UDP4', ep('192.0.2.1', 1), ep('127.0.0.1', 2)],
  ['TCP6', ep('2001:db8::1', 1), ep('::1', 2)],
  ['UDP6', ep('2001:db8::1', 1), ep('::1', 2)],
  ['UNIX_STREAM', ep('/tmp/a', null), ep('/tmp/b', null)],
  ['UNIX_DGRAM', ep('/tmp/a', null), ep('/tmp/b', null)],
]) {
  v2(base('PROXY', p, s, d));
  v2(base('PROXY', p, s, d, [{ type: TLV_TYPE.NOOP, value: Buffer.alloc(7) }]), true);
}
v2(base('LOCAL', 'UNKNOWN', null, null));
v2(base('LOCAL', 'UDP4', null, null));
v2(base('PROXY', 'UNKNOWN', null, null));
v2(
  base('PROXY', 'TCP4', ep('192.0.2.1', 1), ep('127.0.0.1', 2), [], {
    alpn: 'h2',
    authority: 'example.com',
    uniqueId: Buffer.alloc(16, 1),
    netns: 'blue',
    ssl: {
      client: 7,
      verify: 0,
      version: 'TLSv1.3',
      cn: 'client',
      cipher: 'TLS_AES_128_GCM_SHA256',
    },
  }),
  true,
);

const dir = path.join(here, 'corpus', 'framing');
mkdirSync(dir, { recursive: true });
const seeds = new Set();
for (const h of headers) {
  const payload = Buffer.from('GET / HTTP/1.1\r\n\r\n');
  seeds.add(Buffer.concat([h, payload]));
  for (const cut of [1, 5, 6, 11, 12, 13, 15, 16, Math.floor(h.length / 2), h.length - 1]) {
    if (cut < h.length) seeds.add(h.subarray(0, cut));
  }
  const flipped = Buffer.from(h);
  flipped[Math.min(13, h.length - 1)] ^= 0xff; // version, command or family byte
  seeds.add(flipped);
}
let n = 0;
for (const s of seeds) {
  const name = createHash('sha1').update(s).digest('hex');
  writeFileSync(path.join(dir, name), s);
  n++;
}
console.log(`${n} seeds in ${path.relative(process.cwd(), dir)}`);
