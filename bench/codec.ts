// Benchmark: decodeHeader against the npm package proxy-protocol-js, in one process, on three
// headers; both sides must end with the client's and the server's addresses as strings.
//   node dist/bench/codec.js [milliseconds-per-run] [runs]
import ppjs from 'proxy-protocol-js';
import { decodeHeader, encodeHeader } from '../lib/codec/index.js';
import { formatIPv4, formatIPv6 } from '../lib/codec/ip-address.js';

const RUN_MS = Number(process.argv[2] ?? 300);
const RUNS = Number(process.argv[3] ?? 7);
const BATCH = 1000;

interface Input {
  name: string;
  bytes: Uint8Array;
  note?: string;
}

const tcp4 = {
  source: { address: '203.0.113.7', port: 51000 },
  destination: { address: '192.0.2.1', port: 443 },
};

const inputs: Input[] = [
  {
    name: 'v1 TCP4',
    bytes: new Uint8Array(
      encodeHeader({ command: 'PROXY', protocol: 'TCP4', ...tcp4 }, { version: 1 }),
    ),
  },
  {
    name: 'v2 TCP4',
    bytes: new Uint8Array(
      encodeHeader({ command: 'PROXY', protocol: 'TCP4', ...tcp4 }, { version: 2 }),
    ),
  },
  {
    name: 'v2 TCP6',
    bytes: new Uint8Array(
      encodeHeader(
        {
          command: 'PROXY',
          protocol: 'TCP6',
          source: { address: '2001:db8:85a3::8a2e:370:7334', port: 51000 },
          destination: { address: '2001:db8::1', port: 443 },
        },
        { version: 2 },
      ),
    ),
  },
  {
    name: 'v2 TCP6 + TLVs',
    bytes: new Uint8Array(
      encodeHeader(
        {
          command: 'PROXY',
          protocol: 'TCP6',
          source: { address: '2001:db8:85a3::8a2e:370:7334', port: 51000 },
          destination: { address: '2001:db8::1', port: 443 },
          alpn: 'h2',
          authority: 'www.example.com',
          uniqueId: Uint8Array.from({ length: 32 }, (_, i) => i * 7),
          ssl: {
            client: 0x05,
            verify: 0,
            version: 'TLSv1.3',
            cn: 'client.example.com',
            cipher: 'TLS_AES_128_GCM_SHA256',
            sigAlg: 'RSA-SHA256',
            keyAlg: 'RSA2048',
          },
        },
        { version: 2, crc32c: true },
      ),
    ),
    note:
      'proxy-protocol-js does not parse TLVs (it returns them as one raw byte slice); ' +
      'decodeHeader also decodes every TLV and verifies the CRC32C',
  },
];

let sink = 0;

// mmproxy-native: the decoder's result already holds the address strings.
function ours(bytes: Uint8Array): void {
  const result = decodeHeader(bytes)!;
  sink += result.header.source!.address.length + result.header.destination!.address.length;
}

// proxy-protocol-js: v1 gives strings; v2 gives arrays of numbers, which are formatted here with
// this package's own formatters (the fastest at hand), so that the comparison is about parsing.
// The formatters take bytes, hence the copy into a Uint8Array; handing them plain arrays would
// also make their element loads polymorphic and slow down both sides.
function theirs(bytes: Uint8Array): void {
  if (bytes[0] === 0x50) {
    const p = ppjs.V1BinaryProxyProtocol.parse(bytes);
    sink += p.source.ipAddress.length + p.destination.ipAddress.length;
    return;
  }
  const p = ppjs.V2ProxyProtocol.parse(bytes);
  const a = p.proxyAddress;
  let src: string;
  let dst: string;
  if (a instanceof ppjs.IPv4ProxyAddress) {
    src = formatIPv4(new Uint8Array(a.sourceAddress.address));
    dst = formatIPv4(new Uint8Array(a.destinationAddress.address));
  } else if (a instanceof ppjs.IPv6ProxyAddress) {
    src = formatIPv6(new Uint8Array(a.sourceAddress.address));
    dst = formatIPv6(new Uint8Array(a.destinationAddress.address));
  } else {
    throw new Error('unexpected address family');
  }
  sink += src.length + dst.length;
}

// Calls per second over one run of about RUN_MS milliseconds.
function measure(fn: (bytes: Uint8Array) => void, bytes: Uint8Array): number {
  const deadline = process.hrtime.bigint() + BigInt(RUN_MS) * 1_000_000n;
  const start = process.hrtime.bigint();
  let calls = 0;
  let now = start;
  do {
    for (let i = 0; i < BATCH; i++) fn(bytes);
    calls += BATCH;
    now = process.hrtime.bigint();
  } while (now < deadline);
  return calls / (Number(now - start) / 1e9);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function rate(perSecond: number): string {
  return perSecond >= 1e6
    ? `${(perSecond / 1e6).toFixed(2)} M/s`
    : `${(perSecond / 1e3).toFixed(0)} k/s`;
}

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + ' '.repeat(width - text.length);
}

// Both implementations must agree on the addresses before anything is timed.
for (const input of inputs) {
  const header = decodeHeader(input.bytes)!.header;
  const before = sink;
  theirs(input.bytes);
  const theirLength = sink - before;
  const ourLength = header.source!.address.length + header.destination!.address.length;
  if (theirLength !== ourLength) throw new Error(`${input.name}: the two decoders disagree`);
}

console.log(
  `PROXY header decoding, headers per second: median of ${RUNS} alternating runs of ~${RUN_MS} ms ` +
    `(node ${process.version})`,
);
console.log('');
const columns = [18, 8, 16, 20, 8];
console.log(
  [
    pad('input', 18),
    pad('bytes', 8),
    pad('mmproxy-native', 16),
    pad('proxy-protocol-js', 20),
    'ratio',
  ].join(''),
);
const notes: string[] = [];
for (const input of inputs) {
  measure(ours, input.bytes); // warm up both before the measured runs
  measure(theirs, input.bytes);
  const a: number[] = [];
  const b: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    // Alternate which goes first, so neither always runs on a cooler or warmer machine.
    if (run % 2 === 0) {
      a.push(measure(ours, input.bytes));
      b.push(measure(theirs, input.bytes));
    } else {
      b.push(measure(theirs, input.bytes));
      a.push(measure(ours, input.bytes));
    }
  }
  const ratio = median(a) / median(b);
  console.log(
    [
      pad(input.name, columns[0]!),
      pad(String(input.bytes.length), columns[1]!),
      pad(rate(median(a)), columns[2]!),
      pad(rate(median(b)), columns[3]!),
      `${ratio.toFixed(1)}x`,
    ].join(''),
  );
  if (input.note) notes.push(`${input.name}: ${input.note}.`);
}
console.log('');
for (const note of notes) console.log(`Note: ${note}`);
if (sink === 0) console.log(''); // keeps the results observable
