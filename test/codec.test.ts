// The PROXY header codec against tables of real and malformed headers, built byte by byte here
// (not by the encoder), including every split point, transports, payload and address formatting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  decodeHeader,
  encodeHeader,
  type DecodeOptions,
  type ProxyHeader,
  type Tlv,
} from '../lib/codec/index.js';
import { ProxyProtocolError } from '../lib/errors.js';
import { crc32c } from '../lib/codec/crc32c.js';
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from '../lib/codec/ip-address.js';

// ---------------------------------------------------------------------------------------------
// Byte builders, independent of the encoder.

const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

function ascii(text: string): number[] {
  return [...Buffer.from(text, 'latin1')];
}

function v2(verCmd: number, fam: number, body: number[], length = body.length): Uint8Array {
  return Uint8Array.from([...SIG, verCmd, fam, length >> 8, length & 0xff, ...body]);
}

function tlv(type: number, value: number[]): number[] {
  return [type, value.length >> 8, value.length & 0xff, ...value];
}

function ip4(text: string): number[] {
  return text.split('.').map(Number);
}

function ip6(text: string): number[] {
  const bytes = parseIPv6(text);
  assert.ok(bytes, text);
  return [...bytes];
}

function port(p: number): number[] {
  return [p >> 8, p & 0xff];
}

function unixPath(path: string): number[] {
  const out = new Array<number>(108).fill(0);
  Buffer.from(path, 'utf8').forEach((b, i) => (out[i] = b));
  return out;
}

// A v2 header whose TLV list holds a zeroed CRC32C TLV at `crcTlvOffset` (within `body`), filled in.
function withCrc(header: Uint8Array, crcValueAt: number): Uint8Array {
  const sum = crc32c(header);
  const out = Uint8Array.from(header);
  new DataView(out.buffer).setUint32(crcValueAt, sum);
  return out;
}

const tcp4Body = [...ip4('203.0.113.7'), ...ip4('192.0.2.1'), ...port(51000), ...port(443)];
const tcp6Body = [...ip6('2001:db8::7'), ...ip6('2001:db8::1'), ...port(51000), ...port(8443)];

function h(fields: Partial<ProxyHeader> & Pick<ProxyHeader, 'protocol'>): ProxyHeader {
  return {
    version: 2,
    command: 'PROXY',
    source: null,
    destination: null,
    tlvs: [],
    ...fields,
  };
}

function t(type: number, value: number[] | string): Tlv {
  return {
    type,
    value:
      typeof value === 'string'
        ? new Uint8Array(Buffer.from(value, 'utf8'))
        : Uint8Array.from(value),
  };
}

const tcp4Endpoints = {
  source: { address: '203.0.113.7', port: 51000 },
  destination: { address: '192.0.2.1', port: 443 },
};
const tcp6Endpoints = {
  source: { address: '2001:db8::7', port: 51000 },
  destination: { address: '2001:db8::1', port: 8443 },
};

// ---------------------------------------------------------------------------------------------
// Valid headers

interface ValidCase {
  name: string;
  bytes: Uint8Array;
  header: ProxyHeader;
  /** False when the header drops bytes the decoder ignores, so encoding cannot restore them. */
  lossless?: false;
}

const sslValue = [
  0x07, // SSL | CERT_CONN | CERT_SESS
  0x00,
  0x00,
  0x00,
  0x00, // verified
  ...tlv(0x21, ascii('TLSv1.3')),
  ...tlv(0x22, [...Buffer.from('Zoë Example', 'utf8')]),
  ...tlv(0x23, ascii('TLS_AES_128_GCM_SHA256')),
  ...tlv(0x24, ascii('RSA-SHA256')),
  ...tlv(0x25, ascii('RSA2048')),
  ...tlv(0x26, ascii('X25519')),
  ...tlv(0x27, ascii('rsa_pss_rsae_sha256')),
  ...tlv(0x28, [0x30, 0x82, 0x01, 0x0a]),
  ...tlv(0x2f, [9, 9]), // not named by the spec: kept raw
];
const sslHeader = {
  client: 7,
  verify: 0,
  version: 'TLSv1.3',
  cn: 'Zoë Example',
  cipher: 'TLS_AES_128_GCM_SHA256',
  sigAlg: 'RSA-SHA256',
  keyAlg: 'RSA2048',
  group: 'X25519',
  sigScheme: 'rsa_pss_rsae_sha256',
  clientCert: Uint8Array.of(0x30, 0x82, 0x01, 0x0a),
  tlvs: [
    t(0x21, 'TLSv1.3'),
    t(0x22, 'Zoë Example'),
    t(0x23, 'TLS_AES_128_GCM_SHA256'),
    t(0x24, 'RSA-SHA256'),
    t(0x25, 'RSA2048'),
    t(0x26, 'X25519'),
    t(0x27, 'rsa_pss_rsae_sha256'),
    t(0x28, [0x30, 0x82, 0x01, 0x0a]),
    t(0x2f, [9, 9]),
  ],
};

const uniqueId128 = Array.from({ length: 128 }, (_, i) => i);

// TCP6 with every named TLV, a NOOP, an unknown type and a CRC32C over all of it.
const fullTlvs = [
  ...tlv(0x01, ascii('h2')),
  ...tlv(0x02, [...Buffer.from('bücher.example', 'utf8')]),
  ...tlv(0x04, []),
  ...tlv(0x05, uniqueId128),
  ...tlv(0x20, sslValue),
  ...tlv(0x30, ascii('blue')),
  ...tlv(0xe0, [1, 2, 3]),
  ...tlv(0x03, [0, 0, 0, 0]),
];
const fullBytes = withCrc(
  v2(0x21, 0x21, [...tcp6Body, ...fullTlvs]),
  16 + tcp6Body.length + fullTlvs.length - 4,
);
const fullCrc = new DataView(fullBytes.buffer).getUint32(fullBytes.length - 4);

const valid: ValidCase[] = [
  {
    name: 'v1 TCP4 (the spec example)',
    bytes: Uint8Array.from(ascii('PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n')),
    header: h({
      version: 1,
      protocol: 'TCP4',
      source: { address: '192.168.0.1', port: 56324 },
      destination: { address: '192.168.0.11', port: 443 },
    }),
  },
  {
    name: 'v1 TCP4 with extreme ports and addresses',
    bytes: Uint8Array.from(ascii('PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n')),
    header: h({
      version: 1,
      protocol: 'TCP4',
      source: { address: '255.255.255.255', port: 65535 },
      destination: { address: '0.0.0.0', port: 0 },
    }),
  },
  {
    name: 'v1 TCP6, upper case and uncompressed in, canonical out',
    bytes: Uint8Array.from(
      ascii('PROXY TCP6 2001:0DB8:0000:0000:0000:0000:0000:0007 ::FFFF:198.51.100.2 1 2\r\n'),
    ),
    header: h({
      version: 1,
      protocol: 'TCP6',
      source: { address: '2001:db8::7', port: 1 },
      destination: { address: '::ffff:198.51.100.2', port: 2 },
    }),
  },
  {
    name: 'v1 TCP6 longest line the spec names (104 bytes)',
    bytes: Uint8Array.from(
      ascii(
        'PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n',
      ),
    ),
    header: h({
      version: 1,
      protocol: 'TCP6',
      source: { address: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', port: 65535 },
      destination: { address: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', port: 65535 },
    }),
  },
  {
    name: 'v1 UNKNOWN, short form',
    bytes: Uint8Array.from(ascii('PROXY UNKNOWN\r\n')),
    header: h({ version: 1, protocol: 'UNKNOWN' }),
  },
  {
    name: 'v1 UNKNOWN with addresses, which are ignored',
    bytes: Uint8Array.from(ascii('PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n')),
    header: h({ version: 1, protocol: 'UNKNOWN' }),
  },
  {
    name: 'v1 UNKNOWN with anything before CRLF (a lone CR and LF included), 107 bytes',
    bytes: Uint8Array.from([
      ...ascii('PROXY UNKNOWN '),
      ...[0x0d, 0x78, 0x0a],
      ...new Array(86).fill(0x78),
      ...[0x00, 0xff, 0x0d, 0x0a],
    ]),
    header: h({ version: 1, protocol: 'UNKNOWN' }),
  },
  {
    name: 'v2 TCP4',
    bytes: v2(0x21, 0x11, tcp4Body),
    header: h({ protocol: 'TCP4', ...tcp4Endpoints }),
  },
  {
    name: 'v2 UDP4',
    bytes: v2(0x21, 0x12, tcp4Body),
    header: h({ protocol: 'UDP4', ...tcp4Endpoints }),
  },
  {
    name: 'v2 TCP6',
    bytes: v2(0x21, 0x21, tcp6Body),
    header: h({ protocol: 'TCP6', ...tcp6Endpoints }),
  },
  {
    name: 'v2 UDP6 with IPv4-mapped addresses',
    bytes: v2(0x21, 0x22, [
      ...ip6('::ffff:203.0.113.7'),
      ...ip6('::ffff:192.0.2.1'),
      ...port(5353),
      ...port(53),
    ]),
    header: h({
      protocol: 'UDP6',
      source: { address: '::ffff:203.0.113.7', port: 5353 },
      destination: { address: '::ffff:192.0.2.1', port: 53 },
    }),
  },
  {
    name: 'v2 UNIX_STREAM',
    bytes: v2(0x21, 0x31, [...unixPath('/run/lb.sock'), ...unixPath('/run/app.sock')]),
    header: h({
      protocol: 'UNIX_STREAM',
      source: { address: '/run/lb.sock', port: null },
      destination: { address: '/run/app.sock', port: null },
    }),
  },
  {
    name: 'v2 UNIX_DGRAM with a 108-byte path (no NUL) and an abstract socket',
    bytes: v2(0x21, 0x32, [...unixPath('/' + 'p'.repeat(107)), ...unixPath('\0abstract')]),
    header: h({
      protocol: 'UNIX_DGRAM',
      source: { address: '/' + 'p'.repeat(107), port: null },
      destination: { address: '', port: null },
    }),
    lossless: false,
  },
  {
    name: 'v2 PROXY UNSPEC: no addresses',
    bytes: v2(0x21, 0x00, []),
    header: h({ protocol: 'UNKNOWN' }),
  },
  {
    name: 'v2 LOCAL UNSPEC (a health check)',
    bytes: v2(0x20, 0x00, []),
    header: h({ command: 'LOCAL', protocol: 'UNKNOWN' }),
  },
  {
    name: 'v2 LOCAL UNSPEC with TLVs, as HAProxy sends them',
    bytes: v2(0x20, 0x00, [...tlv(0x02, ascii('lb.example')), ...tlv(0x04, [0])]),
    header: h({
      command: 'LOCAL',
      protocol: 'UNKNOWN',
      authority: 'lb.example',
      tlvs: [t(0x02, 'lb.example'), t(0x04, [0])],
    }),
  },
  {
    name: 'v2 LOCAL TCP4 with a zero length',
    bytes: v2(0x20, 0x11, []),
    header: h({ command: 'LOCAL', protocol: 'TCP4' }),
  },
  {
    name: 'v2 LOCAL TCP4: the address block is skipped, TLVs after it are read',
    bytes: v2(0x20, 0x11, [...tcp4Body, ...tlv(0xe1, [7])]),
    header: h({ command: 'LOCAL', protocol: 'TCP4', tlvs: [t(0xe1, [7])] }),
    lossless: false,
  },
  {
    name: 'v2 TCP4 with ALPN',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0x01, ascii('http/1.1'))]),
    header: h({
      protocol: 'TCP4',
      ...tcp4Endpoints,
      alpn: 'http/1.1',
      tlvs: [t(0x01, 'http/1.1')],
    }),
  },
  {
    name: 'v2 TCP4 with an ALPN that is not ASCII (one character per byte)',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0x01, [0x68, 0xff, 0x00])]),
    header: h({
      protocol: 'TCP4',
      ...tcp4Endpoints,
      alpn: 'h\u00ff\u0000',
      tlvs: [t(0x01, [0x68, 0xff, 0x00])],
    }),
  },
  {
    name: 'v2 TCP4 with an authority in UTF-8',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0x02, [...Buffer.from('bücher.example')])]),
    header: h({
      protocol: 'TCP4',
      ...tcp4Endpoints,
      authority: 'bücher.example',
      tlvs: [t(0x02, 'bücher.example')],
    }),
  },
  {
    name: 'v2 TCP4 with a CRC32C',
    bytes: withCrc(v2(0x21, 0x11, [...tcp4Body, ...tlv(0x03, [0, 0, 0, 0])]), 31),
    header: (() => {
      const bytes = withCrc(v2(0x21, 0x11, [...tcp4Body, ...tlv(0x03, [0, 0, 0, 0])]), 31);
      const sum = new DataView(bytes.buffer).getUint32(31);
      return h({
        protocol: 'TCP4',
        ...tcp4Endpoints,
        crc32c: sum,
        tlvs: [t(0x03, [...bytes.subarray(31, 35)])],
      });
    })(),
  },
  {
    name: 'v2 TCP4 with NOOPs (repeatable, empty or not)',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0x04, []), ...tlv(0x04, [0, 0, 0])]),
    header: h({ protocol: 'TCP4', ...tcp4Endpoints, tlvs: [t(0x04, []), t(0x04, [0, 0, 0])] }),
  },
  {
    name: 'v2 TCP4 with a 128-byte unique ID',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0x05, uniqueId128)]),
    header: h({
      protocol: 'TCP4',
      ...tcp4Endpoints,
      uniqueId: Uint8Array.from(uniqueId128),
      tlvs: [t(0x05, uniqueId128)],
    }),
  },
  {
    name: 'v2 TCP4 with SSL and every sub-TLV',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0x20, sslValue)]),
    header: h({
      protocol: 'TCP4',
      ...tcp4Endpoints,
      ssl: sslHeader,
      tlvs: [t(0x20, sslValue)],
    }),
  },
  {
    name: 'v2 TCP4 with a bare SSL TLV (not TLS, verify failed)',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0x20, [0, 0, 0, 0, 1])]),
    header: h({
      protocol: 'TCP4',
      ...tcp4Endpoints,
      ssl: { client: 0, verify: 1, tlvs: [] },
      tlvs: [t(0x20, [0, 0, 0, 0, 1])],
    }),
  },
  {
    name: 'v2 TCP4 with a netns',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0x30, ascii('tenant-7'))]),
    header: h({
      protocol: 'TCP4',
      ...tcp4Endpoints,
      netns: 'tenant-7',
      tlvs: [t(0x30, 'tenant-7')],
    }),
  },
  {
    name: 'v2 TCP4 with unknown TLV types (custom range, empty value) kept raw',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0xea, [1, 2]), ...tlv(0xff, [])]),
    header: h({ protocol: 'TCP4', ...tcp4Endpoints, tlvs: [t(0xea, [1, 2]), t(0xff, [])] }),
  },
  {
    name: 'v2 TCP6 with every TLV and a CRC32C over them',
    bytes: fullBytes,
    header: h({
      protocol: 'TCP6',
      ...tcp6Endpoints,
      alpn: 'h2',
      authority: 'bücher.example',
      uniqueId: Uint8Array.from(uniqueId128),
      ssl: sslHeader,
      netns: 'blue',
      crc32c: fullCrc,
      tlvs: [
        t(0x01, 'h2'),
        t(0x02, 'bücher.example'),
        t(0x04, []),
        t(0x05, uniqueId128),
        t(0x20, sslValue),
        t(0x30, 'blue'),
        t(0xe0, [1, 2, 3]),
        t(0x03, [...fullBytes.subarray(fullBytes.length - 4)]),
      ],
    }),
  },
];

test('the v1 UNKNOWN fixture is what its name says', () => {
  const bytes = valid.find((c) => c.name.startsWith('v1 UNKNOWN with anything'))!.bytes;
  assert.equal(bytes.length, 107);
  assert.deepEqual([...bytes.subarray(105)], [0x0d, 0x0a]);
  assert.ok(bytes.includes(0x00) && bytes.includes(0xff));
});

for (const c of valid) {
  test(`decodes ${c.name}`, () => {
    const result = decodeHeader(c.bytes);
    assert.deepEqual(result, { header: c.header, length: c.bytes.length });
  });
}

test('every proper prefix of a valid header is null on a stream, and the whole is the header', () => {
  for (const c of valid) {
    for (let cut = 0; cut < c.bytes.length; cut++) {
      assert.equal(decodeHeader(c.bytes.subarray(0, cut)), null, `${c.name}, first ${cut} bytes`);
    }
    assert.deepEqual(decodeHeader(c.bytes)?.header, c.header, c.name);
  }
});

test('on a datagram, every proper prefix of a v2 header is ERR_PROXY_TRUNCATED', () => {
  for (const c of valid) {
    if (c.header.version !== 2) continue;
    const dgramFamily = !['TCP4', 'TCP6', 'UNIX_STREAM'].includes(c.header.protocol);
    if (!dgramFamily && c.header.command === 'PROXY') continue;
    assert.deepEqual(decodeHeader(c.bytes, { transport: 'dgram' })?.header, c.header, c.name);
    for (let cut = 0; cut < c.bytes.length; cut++) {
      assert.throws(
        () => decodeHeader(c.bytes.subarray(0, cut), { transport: 'dgram' }),
        (err: unknown) =>
          err instanceof ProxyProtocolError &&
          err.code === 'ERR_PROXY_TRUNCATED' &&
          err.message.endsWith(`at offset ${cut}`),
        `${c.name}, first ${cut} bytes`,
      );
    }
  }
});

test('payload after the header is left alone and length says where it starts', () => {
  const payloads = [
    [0x47],
    ascii('GET / HTTP/1.1\r\n\r\n'),
    [0x0d, 0x0a],
    [0x16, 0x03, 0x01, 0x00],
  ];
  for (const c of valid) {
    for (const payload of payloads) {
      const bytes = Uint8Array.from([...c.bytes, ...payload]);
      assert.deepEqual(decodeHeader(bytes), { header: c.header, length: c.bytes.length }, c.name);
    }
  }
});

test('a Buffer, and a view into a larger buffer at an odd offset, decode the same', () => {
  for (const c of valid) {
    const backing = new Uint8Array(c.bytes.length + 7);
    backing.set(c.bytes, 3);
    const view = backing.subarray(3, 3 + c.bytes.length);
    assert.deepEqual(decodeHeader(view)?.header, c.header, c.name);
    assert.deepEqual(decodeHeader(Buffer.from(c.bytes))?.header, c.header, c.name);
  }
});

test('the decoder never modifies its input', () => {
  for (const c of valid) {
    const input = Uint8Array.from([...c.bytes, 1, 2, 3]);
    const before = Uint8Array.from(input);
    decodeHeader(input);
    decodeHeader(input.subarray(0, c.bytes.length - 1));
    assert.deepEqual(input, before, c.name);
  }
});

test('decoded TLV values are copies: reusing the input buffer does not change them', () => {
  const input = Uint8Array.from(fullBytes);
  const header = decodeHeader(input)!.header;
  const snapshot = structuredClone(header);
  input.fill(0xaa);
  assert.deepEqual(header, snapshot);
  assert.notEqual(header.tlvs[0]!.value.buffer, input.buffer);
  assert.notEqual(header.uniqueId!.buffer, input.buffer);
});

// ---------------------------------------------------------------------------------------------
// Malformed headers

interface ErrorCase {
  name: string;
  bytes: Uint8Array | number[] | string;
  options?: DecodeOptions;
  code: string;
  offset: number;
}

const crcBad = (() => {
  const bytes = withCrc(v2(0x21, 0x11, [...tcp4Body, ...tlv(0x03, [0, 0, 0, 0])]), 31);
  const out = Uint8Array.from(bytes);
  out[20] = 198; // change the destination after the checksum was computed
  return out;
})();

const errors: ErrorCase[] = [
  // signatures
  {
    name: 'HTTP instead of a header',
    bytes: 'GET / HTTP/1.1\r\n',
    code: 'ERR_PROXY_BAD_SIGNATURE',
    offset: 0,
  },
  {
    name: 'a TLS ClientHello',
    bytes: [0x16, 0x03, 0x01],
    code: 'ERR_PROXY_BAD_SIGNATURE',
    offset: 0,
  },
  {
    name: 'v1 signature, wrong 5th byte',
    bytes: 'PROXZ',
    code: 'ERR_PROXY_BAD_SIGNATURE',
    offset: 4,
  },
  {
    name: 'v1 signature without its space',
    bytes: 'PROXY\r\n',
    code: 'ERR_PROXY_BAD_SIGNATURE',
    offset: 5,
  },
  { name: 'lower-case proxy', bytes: 'proxy TCP4', code: 'ERR_PROXY_BAD_SIGNATURE', offset: 0 },
  {
    name: 'v2 signature, wrong 8th byte',
    bytes: [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x52],
    code: 'ERR_PROXY_BAD_SIGNATURE',
    offset: 7,
  },
  { name: 'CRLF then text', bytes: '\r\nGET', code: 'ERR_PROXY_BAD_SIGNATURE', offset: 2 },
  // v1 protocol field
  { name: 'v1 TCP5', bytes: 'PROXY TCP5 ', code: 'ERR_PROXY_V1_BAD_PROTOCOL', offset: 9 },
  { name: 'v1 UDP4', bytes: 'PROXY UDP4 ', code: 'ERR_PROXY_V1_BAD_PROTOCOL', offset: 7 },
  {
    name: 'v1 two spaces after PROXY',
    bytes: 'PROXY  TCP4',
    code: 'ERR_PROXY_V1_BAD_PROTOCOL',
    offset: 6,
  },
  {
    name: 'v1 lower-case tcp4',
    bytes: 'PROXY tcp4 ',
    code: 'ERR_PROXY_V1_BAD_PROTOCOL',
    offset: 6,
  },
  {
    name: 'v1 TCP4 without a space',
    bytes: 'PROXY TCP41',
    code: 'ERR_PROXY_V1_BAD_PROTOCOL',
    offset: 10,
  },
  {
    name: 'v1 UNKNOWNX',
    bytes: 'PROXY UNKNOWNX\r\n',
    code: 'ERR_PROXY_V1_BAD_PROTOCOL',
    offset: 13,
  },
  // v1 addresses
  {
    name: 'v1 octet with a leading zero',
    bytes: 'PROXY TCP4 01.2.3.4 ',
    code: 'ERR_PROXY_V1_BAD_ADDRESS',
    offset: 12,
  },
  {
    name: 'v1 octet over 255',
    bytes: 'PROXY TCP4 1.2.3.256 ',
    code: 'ERR_PROXY_V1_BAD_ADDRESS',
    offset: 19,
  },
  {
    name: 'v1 three octets',
    bytes: 'PROXY TCP4 1.2.3 ',
    code: 'ERR_PROXY_V1_BAD_ADDRESS',
    offset: 16,
  },
  {
    name: 'v1 five octets',
    bytes: 'PROXY TCP4 1.2.3.4.5 ',
    code: 'ERR_PROXY_V1_BAD_ADDRESS',
    offset: 18,
  },
  {
    name: 'v1 empty octet',
    bytes: 'PROXY TCP4 1..3.4 ',
    code: 'ERR_PROXY_V1_BAD_ADDRESS',
    offset: 13,
  },
  {
    name: 'v1 IPv6 in TCP4',
    bytes: 'PROXY TCP4 ::1 ',
    code: 'ERR_PROXY_V1_BAD_ADDRESS',
    offset: 11,
  },
  {
    name: 'v1 IPv4 in TCP6',
    bytes: 'PROXY TCP6 1.2.3.4 ',
    code: 'ERR_PROXY_V1_BAD_ADDRESS',
    offset: 12,
  },
  {
    name: 'v1 IPv6 zone index',
    bytes: 'PROXY TCP6 fe80::1%eth0 ',
    code: 'ERR_PROXY_V1_BAD_ADDRESS',
    offset: 18,
  },
  {
    name: 'v1 IPv6 with two ::',
    bytes: 'PROXY TCP6 1::2::3 ',
    code: 'ERR_PROXY_V1_BAD_ADDRESS',
    offset: 16,
  },
  {
    name: 'v1 IPv6 group of 5 digits',
    bytes: 'PROXY TCP6 12345:: ',
    code: 'ERR_PROXY_V1_BAD_ADDRESS',
    offset: 15,
  },
  {
    name: 'v1 IPv6 of 9 groups',
    bytes: 'PROXY TCP6 1:2:3:4:5:6:7:8:9 ',
    code: 'ERR_PROXY_V1_BAD_ADDRESS',
    offset: 26,
  },
  {
    name: 'v1 IPv6 of 7 groups',
    bytes: 'PROXY TCP6 1:2:3:4:5:6:7 ',
    code: 'ERR_PROXY_V1_BAD_ADDRESS',
    offset: 24,
  },
  {
    name: 'v1 IPv6 mapped octet with leading zero',
    bytes: 'PROXY TCP6 ::ffff:1.2.3.04 ',
    code: 'ERR_PROXY_V1_BAD_ADDRESS',
    offset: 25,
  },
  {
    name: 'v1 two spaces between addresses',
    bytes: 'PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n',
    code: 'ERR_PROXY_V1_BAD_ADDRESS',
    offset: 19,
  },
  {
    name: 'v1 line ends after the addresses',
    bytes: 'PROXY TCP4 1.2.3.4 5.6.7.8\r\n',
    code: 'ERR_PROXY_V1_BAD_ADDRESS',
    offset: 26,
  },
  {
    name: 'v1 destination of the other family',
    bytes: 'PROXY TCP4 1.2.3.4 ::1 1 2\r\n',
    code: 'ERR_PROXY_V1_BAD_ADDRESS',
    offset: 19,
  },
  // v1 ports
  {
    name: 'v1 port with a leading zero',
    bytes: 'PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n',
    code: 'ERR_PROXY_V1_BAD_PORT',
    offset: 28,
  },
  {
    name: 'v1 port 00',
    bytes: 'PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n',
    code: 'ERR_PROXY_V1_BAD_PORT',
    offset: 30,
  },
  {
    name: 'v1 port 65536, before the CRLF arrives',
    bytes: 'PROXY TCP4 1.2.3.4 5.6.7.8 1 65536',
    code: 'ERR_PROXY_V1_BAD_PORT',
    offset: 33,
  },
  {
    name: 'v1 negative port',
    bytes: 'PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n',
    code: 'ERR_PROXY_V1_BAD_PORT',
    offset: 27,
  },
  {
    name: 'v1 hex port',
    bytes: 'PROXY TCP4 1.2.3.4 5.6.7.8 1a 2\r\n',
    code: 'ERR_PROXY_V1_BAD_PORT',
    offset: 28,
  },
  {
    name: 'v1 empty port',
    bytes: 'PROXY TCP4 1.2.3.4 5.6.7.8  2\r\n',
    code: 'ERR_PROXY_V1_BAD_PORT',
    offset: 27,
  },
  {
    name: 'v1 one port only',
    bytes: 'PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n',
    code: 'ERR_PROXY_V1_BAD_PORT',
    offset: 28,
  },
  {
    name: 'v1 three ports',
    bytes: 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n',
    code: 'ERR_PROXY_V1_BAD_PORT',
    offset: 30,
  },
  // v1 line end and length
  {
    name: 'v1 LF without CR',
    bytes: 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n',
    code: 'ERR_PROXY_V1_BAD_TERMINATOR',
    offset: 30,
  },
  {
    name: 'v1 CR without LF',
    bytes: 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX',
    code: 'ERR_PROXY_V1_BAD_TERMINATOR',
    offset: 31,
  },
  {
    name: 'v1 UNKNOWN CR without LF',
    bytes: 'PROXY UNKNOWN\r\r\n',
    code: 'ERR_PROXY_V1_BAD_TERMINATOR',
    offset: 14,
  },
  {
    name: 'v1 UNKNOWN line of 108 bytes',
    bytes: 'PROXY UNKNOWN ' + 'x'.repeat(92) + '\r\n',
    code: 'ERR_PROXY_V1_TOO_LONG',
    offset: 105,
  },
  {
    name: 'v1 107 bytes and no CRLF yet',
    bytes: 'PROXY UNKNOWN ' + 'x'.repeat(93),
    code: 'ERR_PROXY_V1_TOO_LONG',
    offset: 105,
  },
  {
    name: 'v1 106 bytes without a CR: CRLF can no longer fit in 107',
    bytes: 'PROXY UNKNOWN ' + 'x'.repeat(92),
    code: 'ERR_PROXY_V1_TOO_LONG',
    offset: 105,
  },
  {
    name: 'v1 UNKNOWN with a CR at byte 105 and no LF after it',
    bytes: 'PROXY UNKNOWN ' + 'x'.repeat(91) + '\rx',
    code: 'ERR_PROXY_V1_TOO_LONG',
    offset: 107,
  },
  {
    name: 'v1 TCP6 with two long mapped addresses (over 107 bytes)',
    bytes:
      'PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 65535 65535\r\n',
    code: 'ERR_PROXY_V1_TOO_LONG',
    offset: 105,
  },
  {
    name: 'v1 TCP6 with long mapped addresses, cut inside a port at 106 bytes',
    bytes:
      'PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 655',
    code: 'ERR_PROXY_V1_TOO_LONG',
    offset: 105,
  },
  // v2 fixed part
  {
    name: 'v2 version 1',
    bytes: v2(0x11, 0x11, tcp4Body),
    code: 'ERR_PROXY_V2_BAD_VERSION',
    offset: 12,
  },
  {
    name: 'v2 version 3, before the rest arrives',
    bytes: [...SIG, 0x31],
    code: 'ERR_PROXY_V2_BAD_VERSION',
    offset: 12,
  },
  {
    name: 'v2 command 2',
    bytes: v2(0x22, 0x11, tcp4Body),
    code: 'ERR_PROXY_V2_BAD_COMMAND',
    offset: 12,
  },
  { name: 'v2 command 15', bytes: [...SIG, 0x2f], code: 'ERR_PROXY_V2_BAD_COMMAND', offset: 12 },
  { name: 'v2 family 4', bytes: [...SIG, 0x21, 0x41], code: 'ERR_PROXY_V2_BAD_FAMILY', offset: 13 },
  {
    name: 'v2 protocol 3',
    bytes: [...SIG, 0x21, 0x13],
    code: 'ERR_PROXY_V2_BAD_FAMILY',
    offset: 13,
  },
  {
    name: 'v2 UNSPEC family with STREAM',
    bytes: [...SIG, 0x21, 0x01],
    code: 'ERR_PROXY_V2_BAD_FAMILY',
    offset: 13,
  },
  {
    name: 'v2 INET with UNSPEC protocol',
    bytes: [...SIG, 0x21, 0x10],
    code: 'ERR_PROXY_V2_BAD_FAMILY',
    offset: 13,
  },
  {
    name: 'v2 LOCAL with an undefined family',
    bytes: [...SIG, 0x20, 0x41],
    code: 'ERR_PROXY_V2_BAD_FAMILY',
    offset: 13,
  },
  {
    name: 'v2 TCP4 length 11',
    bytes: v2(0x21, 0x11, tcp4Body.slice(0, 11)),
    code: 'ERR_PROXY_V2_SHORT_ADDRESS',
    offset: 14,
  },
  {
    name: 'v2 TCP6 length 12',
    bytes: [...SIG, 0x21, 0x21, 0, 12],
    code: 'ERR_PROXY_V2_SHORT_ADDRESS',
    offset: 14,
  },
  {
    name: 'v2 UNIX length 215',
    bytes: [...SIG, 0x21, 0x31, 0, 215],
    code: 'ERR_PROXY_V2_SHORT_ADDRESS',
    offset: 14,
  },
  {
    name: 'v2 LOCAL TCP4 with part of an address',
    bytes: v2(0x20, 0x11, [1, 2, 3, 4, 5]),
    code: 'ERR_PROXY_V2_SHORT_ADDRESS',
    offset: 14,
  },
  {
    name: 'v2 UNIX path that is not UTF-8',
    bytes: v2(0x21, 0x31, [0x2f, 0xff, ...new Array(106).fill(0), ...unixPath('/b')]),
    code: 'ERR_PROXY_V2_BAD_UNIX_PATH',
    offset: 16,
  },
  // TLVs
  {
    name: 'TLV longer than the header',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0x04, [0, 0])], 12 + 4),
    code: 'ERR_PROXY_TLV_OVERRUN',
    offset: 28,
  },
  {
    name: 'TLV overrun seen before the header is complete',
    bytes: v2(0x21, 0x11, [...tcp4Body, 0x04, 0x00, 0x09], 12 + 3 + 8),
    code: 'ERR_PROXY_TLV_OVERRUN',
    offset: 28,
  },
  {
    name: 'two bytes left for a TLV',
    bytes: v2(0x21, 0x11, [...tcp4Body, 0x04, 0x00]),
    code: 'ERR_PROXY_TLV_OVERRUN',
    offset: 28,
  },
  {
    name: 'SSL sub-TLV running past the SSL TLV',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0x20, [1, 0, 0, 0, 0, 0x21, 0x00, 0x05, 0x54])]),
    code: 'ERR_PROXY_TLV_OVERRUN',
    offset: 36,
  },
  {
    name: 'CRC32C of 3 bytes',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0x03, [0, 0, 0])]),
    code: 'ERR_PROXY_TLV_BAD_LENGTH',
    offset: 28,
  },
  {
    name: 'unique ID of 129 bytes',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0x05, [...uniqueId128, 0])]),
    code: 'ERR_PROXY_TLV_BAD_LENGTH',
    offset: 28,
  },
  {
    name: 'SSL of 4 bytes',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0x20, [1, 0, 0, 0])]),
    code: 'ERR_PROXY_TLV_BAD_LENGTH',
    offset: 28,
  },
  {
    name: 'two authority TLVs',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0x02, ascii('a')), ...tlv(0x02, ascii('b'))]),
    code: 'ERR_PROXY_TLV_DUPLICATE',
    offset: 32,
  },
  {
    name: 'two CRC32C TLVs',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0x03, [0, 0, 0, 0]), ...tlv(0x03, [0, 0, 0, 0])]),
    code: 'ERR_PROXY_TLV_DUPLICATE',
    offset: 35,
  },
  {
    name: 'two SSL CN sub-TLVs',
    bytes: v2(0x21, 0x11, [
      ...tcp4Body,
      ...tlv(0x20, [1, 0, 0, 0, 0, ...tlv(0x22, ascii('a')), ...tlv(0x22, ascii('b'))]),
    ]),
    code: 'ERR_PROXY_TLV_DUPLICATE',
    offset: 40,
  },
  {
    name: 'NUL in the authority',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0x02, [0x61, 0x00, 0x62])]),
    code: 'ERR_PROXY_TLV_BAD_STRING',
    offset: 32,
  },
  {
    name: 'LF in the authority',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0x02, [0x61, 0x0a])]),
    code: 'ERR_PROXY_TLV_BAD_STRING',
    offset: 32,
  },
  {
    name: 'authority that is not UTF-8',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0x02, [0x61, 0xc3, 0x28])]),
    code: 'ERR_PROXY_TLV_BAD_STRING',
    offset: 31,
  },
  {
    name: 'netns that is not ASCII',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0x30, [0x61, 0xc3, 0xa9])]),
    code: 'ERR_PROXY_TLV_BAD_STRING',
    offset: 32,
  },
  {
    name: 'SSL version with a control character',
    bytes: v2(0x21, 0x11, [...tcp4Body, ...tlv(0x20, [1, 0, 0, 0, 0, ...tlv(0x21, [0x54, 0x09])])]),
    code: 'ERR_PROXY_TLV_BAD_STRING',
    offset: 40,
  },
  {
    name: 'CRC32C that does not match',
    bytes: crcBad,
    code: 'ERR_PROXY_CRC32C_MISMATCH',
    offset: 31,
  },
  // transports
  {
    name: 'v1 on a datagram',
    bytes: 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n',
    options: { transport: 'dgram' },
    code: 'ERR_PROXY_TRANSPORT_MISMATCH',
    offset: 0,
  },
  {
    name: 'v1 UNKNOWN on a datagram',
    bytes: 'PROXY UNKNOWN\r\n',
    options: { transport: 'dgram' },
    code: 'ERR_PROXY_TRANSPORT_MISMATCH',
    offset: 0,
  },
  {
    name: 'P then garbage on a datagram',
    bytes: 'PUT',
    options: { transport: 'dgram' },
    code: 'ERR_PROXY_BAD_SIGNATURE',
    offset: 1,
  },
  {
    name: 'v2 TCP4 on a datagram',
    bytes: v2(0x21, 0x11, tcp4Body),
    options: { transport: 'dgram' },
    code: 'ERR_PROXY_TRANSPORT_MISMATCH',
    offset: 13,
  },
  {
    name: 'v2 TCP6 on a datagram',
    bytes: v2(0x21, 0x21, tcp6Body),
    options: { transport: 'dgram' },
    code: 'ERR_PROXY_TRANSPORT_MISMATCH',
    offset: 13,
  },
  {
    name: 'v2 UNIX_STREAM on a datagram',
    bytes: [...SIG, 0x21, 0x31],
    options: { transport: 'dgram' },
    code: 'ERR_PROXY_TRANSPORT_MISMATCH',
    offset: 13,
  },
  {
    name: 'v2 UDP4 on a stream',
    bytes: v2(0x21, 0x12, tcp4Body),
    options: { transport: 'stream' },
    code: 'ERR_PROXY_TRANSPORT_MISMATCH',
    offset: 13,
  },
  {
    name: 'v2 UDP6 on a stream',
    bytes: [...SIG, 0x21, 0x22],
    options: { transport: 'stream' },
    code: 'ERR_PROXY_TRANSPORT_MISMATCH',
    offset: 13,
  },
  {
    name: 'v2 UNIX_DGRAM on a stream',
    bytes: [...SIG, 0x21, 0x32],
    options: { transport: 'stream' },
    code: 'ERR_PROXY_TRANSPORT_MISMATCH',
    offset: 13,
  },
  // truncation (datagrams only)
  {
    name: 'an empty datagram',
    bytes: [],
    options: { transport: 'dgram' },
    code: 'ERR_PROXY_TRUNCATED',
    offset: 0,
  },
  {
    name: 'a datagram with half a signature',
    bytes: SIG.slice(0, 6),
    options: { transport: 'dgram' },
    code: 'ERR_PROXY_TRUNCATED',
    offset: 6,
  },
  {
    name: 'a datagram one byte short',
    bytes: v2(0x21, 0x12, tcp4Body).subarray(0, 27),
    options: { transport: 'dgram' },
    code: 'ERR_PROXY_TRUNCATED',
    offset: 27,
  },
];

function toBytes(b: ErrorCase['bytes']): Uint8Array {
  return typeof b === 'string' ? Uint8Array.from(ascii(b)) : Uint8Array.from(b);
}

for (const c of errors) {
  test(`refuses ${c.name} with ${c.code} at offset ${c.offset}`, () => {
    assert.throws(
      () => decodeHeader(toBytes(c.bytes), c.options),
      (err: unknown) => {
        assert.ok(err instanceof ProxyProtocolError, String(err));
        assert.equal(err.code, c.code, err.message);
        assert.ok(err.message.endsWith(` at offset ${c.offset}`), err.message);
        return true;
      },
    );
  });
}

test('every error code the codec documents has a malformed example above', () => {
  const codes = new Set(errors.map((c) => c.code));
  for (const code of [
    'ERR_PROXY_BAD_SIGNATURE',
    'ERR_PROXY_TRUNCATED',
    'ERR_PROXY_TRANSPORT_MISMATCH',
    'ERR_PROXY_V1_TOO_LONG',
    'ERR_PROXY_V1_BAD_PROTOCOL',
    'ERR_PROXY_V1_BAD_ADDRESS',
    'ERR_PROXY_V1_BAD_PORT',
    'ERR_PROXY_V1_BAD_TERMINATOR',
    'ERR_PROXY_V2_BAD_VERSION',
    'ERR_PROXY_V2_BAD_COMMAND',
    'ERR_PROXY_V2_BAD_FAMILY',
    'ERR_PROXY_V2_SHORT_ADDRESS',
    'ERR_PROXY_V2_BAD_UNIX_PATH',
    'ERR_PROXY_TLV_OVERRUN',
    'ERR_PROXY_TLV_BAD_LENGTH',
    'ERR_PROXY_TLV_DUPLICATE',
    'ERR_PROXY_TLV_BAD_STRING',
    'ERR_PROXY_CRC32C_MISMATCH',
  ]) {
    assert.ok(codes.has(code), code);
  }
});

test('error messages are one printable line that a log can show', () => {
  for (const c of errors) {
    try {
      decodeHeader(toBytes(c.bytes), c.options);
      assert.fail(c.name);
    } catch (err) {
      assert.match((err as Error).message, /^[\x20-\x7e]+$/, c.name);
    }
  }
});

test('transports: LOCAL and UNSPEC pass on both, each family on its own, anything when absent', () => {
  const cases: [string, Uint8Array, ('stream' | 'dgram' | undefined)[]][] = [
    ['LOCAL TCP4', v2(0x20, 0x11, []), ['stream', 'dgram', undefined]],
    ['LOCAL UDP6', v2(0x20, 0x22, []), ['stream', 'dgram', undefined]],
    ['PROXY UNSPEC', v2(0x21, 0x00, []), ['stream', 'dgram', undefined]],
    ['TCP4', v2(0x21, 0x11, tcp4Body), ['stream', undefined]],
    ['UDP4', v2(0x21, 0x12, tcp4Body), ['dgram', undefined]],
    ['TCP6', v2(0x21, 0x21, tcp6Body), ['stream', undefined]],
    ['UDP6', v2(0x21, 0x22, tcp6Body), ['dgram', undefined]],
    [
      'v1 TCP4',
      Uint8Array.from(ascii('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n')),
      ['stream', undefined],
    ],
  ];
  for (const [name, bytes, accepted] of cases) {
    for (const transport of ['stream', 'dgram', undefined] as const) {
      const run = () => decodeHeader(bytes, transport === undefined ? {} : { transport });
      if (accepted.includes(transport)) assert.ok(run(), `${name} on ${transport}`);
      else assert.throws(run, { code: 'ERR_PROXY_TRANSPORT_MISMATCH' }, `${name} on ${transport}`);
    }
  }
});

test('a v1 line missing its last bytes waits; with a wrong byte it fails at once', () => {
  assert.equal(decodeHeader(Uint8Array.from(ascii('PROXY TCP6 2001:db8::1 2001:db8::'))), null);
  assert.equal(decodeHeader(Uint8Array.from(ascii('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r'))), null);
  assert.throws(() => decodeHeader(Uint8Array.from(ascii('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r'))), {
    code: 'ERR_PROXY_V1_BAD_TERMINATOR',
  });
});

test('v1 at the 107-byte limit: a line without CR waits at 105 bytes and is refused at 106', () => {
  const unknown = (n: number, end = '') =>
    Uint8Array.from(ascii('PROXY UNKNOWN ' + 'x'.repeat(n - 14 - end.length) + end));
  assert.equal(decodeHeader(unknown(105)), null);
  assert.throws(() => decodeHeader(unknown(106)), { code: 'ERR_PROXY_V1_TOO_LONG' });
  assert.throws(() => decodeHeader(unknown(107)), { code: 'ERR_PROXY_V1_TOO_LONG' });
  // A CR as byte 106 can still be followed by the LF that makes a 107-byte line.
  assert.equal(decodeHeader(unknown(106, '\r')), null);
  assert.equal(decodeHeader(unknown(107, '\r\n'))?.length, 107);
  assert.equal(decodeHeader(unknown(106, '\r\n'))?.length, 106);
});

// ---------------------------------------------------------------------------------------------
// Addresses

test('IPv6 addresses are formatted exactly as Node formats them', () => {
  const samples = [
    '::',
    '::1',
    '::2:3',
    '1::',
    '1:0:0:1:0:0:0:1',
    '1:0:0:1:0:0:1:1',
    '1:0:1:0:1:0:1:0',
    '1:0:0:0:1:0:0:0',
    '0:0:1:0:0:0:0:0',
    '::ffff:1.2.3.4',
    '::ffff:0:1.2.3.4',
    '::1.2.3.4',
    '::0.1.0.0',
    '::ffff',
    '::ffff:0',
    '::1:ffff:1.2.3.4',
    '64:ff9b::192.0.2.33',
    'fe80::1',
    '2001:db8::',
    '2001:DB8:0:0:0:0:0:1',
    'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
    '0:0:0:0:0:0:102:0',
    '0:0:0:0:0:1:0:0',
    '1:2:3:4:5:6:7:0',
    '0:1:2:3:4:5:6:7',
  ];
  for (const text of samples) {
    const bytes = parseIPv6(text);
    assert.ok(bytes, text);
    const expected = new net.SocketAddress({ address: text, family: 'ipv6' }).address;
    assert.equal(formatIPv6(bytes), expected, text);
    // and through the decoder
    const header = decodeHeader(v2(0x21, 0x21, [...bytes, ...bytes, 0, 1, 0, 2]))!.header;
    assert.equal(header.source!.address, expected);
  }
});

test('IPv4 addresses are formatted as Node formats them', () => {
  for (const text of ['0.0.0.0', '1.2.3.4', '10.0.0.255', '255.255.255.255', '192.0.2.100']) {
    const bytes = parseIPv4(text)!;
    assert.equal(formatIPv4(bytes), new net.SocketAddress({ address: text }).address);
    assert.equal(formatIPv4(Uint8Array.from([9, ...bytes]), 1), text);
  }
});

test('address text parsing accepts what inet_pton accepts', () => {
  const v6: [string, boolean][] = [
    ['::', true],
    ['1:2:3:4:5:6:7::', true],
    ['::1:2:3:4:5:6:7', true],
    ['1:2:3:4:5:6:1.2.3.4', true],
    ['::0:1.2.3.4', true],
    ['ABCD:ef01::', true],
    ['0001:02::', true],
    ['1:2:3:4::5:6:7:8', false],
    ['1:2:3:4:5:6:7:8::', false],
    [':1::', false],
    ['1::2:', false],
    [':::', false],
    ['1:::2', false],
    ['00001::', false],
    ['1:2:3:4:5:6:7:1.2.3.4', false],
    ['::ffff:1.2.3', false],
    ['::ffff:001.2.3.4', false],
    ['1.2.3.4', false],
    ['', false],
    ['g::', false],
    [' ::1', false],
  ];
  for (const [text, ok] of v6) {
    assert.equal(parseIPv6(text) !== null, ok, JSON.stringify(text));
    let nodeOk = true;
    try {
      new net.SocketAddress({ address: text, family: 'ipv6' });
    } catch {
      nodeOk = false;
    }
    assert.equal(nodeOk, ok, `Node disagrees on ${JSON.stringify(text)}`);
  }
  const v4: [string, boolean][] = [
    ['0.0.0.0', true],
    ['255.255.255.255', true],
    ['01.2.3.4', false],
    ['1.2.3', false],
    ['1.2.3.4.', false],
    ['256.1.1.1', false],
    ['1.2.3.4 ', false],
    ['0x1.2.3.4', false],
  ];
  for (const [text, ok] of v4) assert.equal(parseIPv4(text) !== null, ok, JSON.stringify(text));
});

// ---------------------------------------------------------------------------------------------
// CRC32C

test('CRC32C matches the RFC 3720 (iSCSI) test vectors and "123456789"', () => {
  assert.equal(crc32c(Uint8Array.from(ascii('123456789'))), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
});

test('CRC32C gives the same result for any split of the input', () => {
  const data = Uint8Array.from({ length: 100 }, (_, i) => (i * 37 + 11) & 0xff);
  const whole = crc32c(data);
  for (let start = 0; start < 20; start++) {
    const shifted = new Uint8Array(data.length + start);
    shifted.set(data, start);
    assert.equal(crc32c(shifted, start), whole);
  }
});

// ---------------------------------------------------------------------------------------------
// Encoding

test('every valid header above encodes back to bytes that decode to it', () => {
  for (const c of valid) {
    const bytes = encodeHeader(c.header, { version: c.header.version });
    assert.deepEqual(decodeHeader(bytes)?.header, c.header, c.name);
    // v2 headers the spec lets a sender write come back byte for byte
    if (c.header.version === 2 && c.lossless !== false) {
      assert.deepEqual(new Uint8Array(bytes), c.bytes, c.name);
    }
  }
});

test('v1 encoding is the canonical line', () => {
  assert.equal(
    encodeHeader(
      {
        command: 'PROXY',
        protocol: 'TCP6',
        source: { address: '2001:DB8:0:0::7', port: 51000 },
        destination: { address: '::ffff:192.0.2.1', port: 443 },
      },
      { version: 1 },
    ).toString('latin1'),
    'PROXY TCP6 2001:db8::7 ::ffff:192.0.2.1 51000 443\r\n',
  );
  assert.equal(
    encodeHeader(h({ version: 1, protocol: 'UNKNOWN' }), { version: 1 }).toString('latin1'),
    'PROXY UNKNOWN\r\n',
  );
});

test('what v1 cannot express is a clear error', () => {
  const cases: [string, ProxyHeader | Parameters<typeof encodeHeader>[0], RegExp, boolean?][] = [
    ['LOCAL', h({ command: 'LOCAL', protocol: 'UNKNOWN' }), /no LOCAL command/],
    ['UDP4', h({ protocol: 'UDP4', ...tcp4Endpoints }), /only TCP4, TCP6 and UNKNOWN/],
    [
      'UNIX',
      h({
        protocol: 'UNIX_STREAM',
        source: { address: '/a', port: null },
        destination: { address: '/b', port: null },
      }),
      /only TCP4, TCP6 and UNKNOWN/,
    ],
    ['TLVs', h({ protocol: 'TCP4', ...tcp4Endpoints, tlvs: [t(0x04, [])] }), /no TLVs/],
    ['authority', h({ protocol: 'TCP4', ...tcp4Endpoints, authority: 'a' }), /header\.authority/],
    ['crc32c option', h({ protocol: 'TCP4', ...tcp4Endpoints }), /CRC32C/, true],
  ];
  for (const [name, header, message, crc] of cases) {
    assert.throws(
      () => encodeHeader(header, { version: 1, crc32c: crc === true }),
      (err: unknown) =>
        err instanceof TypeError &&
        (err as TypeError & { code: string }).code === 'ERR_INVALID_ARG_VALUE' &&
        message.test(err.message) &&
        /use version 2/.test(err.message),
      name,
    );
  }
});

test('encoding refuses headers that do not fit their protocol', () => {
  const cases: [string, Parameters<typeof encodeHeader>[0], RegExp][] = [
    [
      'IPv6 address in TCP4',
      h({
        protocol: 'TCP4',
        source: { address: '::1', port: 1 },
        destination: tcp4Endpoints.destination,
      }),
      /header\.source\.address must be an IPv4/,
    ],
    [
      'port 65536',
      h({
        protocol: 'TCP4',
        source: { address: '1.2.3.4', port: 65536 },
        destination: tcp4Endpoints.destination,
      }),
      /header\.source\.port/,
    ],
    [
      'null port on TCP',
      h({
        protocol: 'TCP6',
        source: { address: '::1', port: null },
        destination: tcp6Endpoints.destination,
      }),
      /header\.source\.port/,
    ],
    [
      'no destination',
      h({ protocol: 'TCP4', source: tcp4Endpoints.source }),
      /header\.destination is required/,
    ],
    [
      'addresses on LOCAL',
      h({ command: 'LOCAL', protocol: 'TCP4', ...tcp4Endpoints }),
      /must be null for LOCAL/,
    ],
    [
      'unix path too long',
      h({
        protocol: 'UNIX_STREAM',
        source: { address: 'x'.repeat(109), port: null },
        destination: { address: '', port: null },
      }),
      /at most 108 bytes/,
    ],
    [
      'authority with NUL',
      h({ protocol: 'UNKNOWN', authority: 'a\0b' }),
      /ERR_PROXY_TLV_BAD_STRING/,
    ],
    [
      'unique ID of 129 bytes',
      h({ protocol: 'UNKNOWN', uniqueId: new Uint8Array(129) }),
      /ERR_PROXY_TLV_BAD_LENGTH/,
    ],
    [
      'two authorities in tlvs',
      h({ protocol: 'UNKNOWN', tlvs: [t(2, 'a'), t(2, 'b')] }),
      /ERR_PROXY_TLV_DUPLICATE/,
    ],
    [
      'field and TLV disagree',
      h({ protocol: 'UNKNOWN', authority: 'a', tlvs: [t(2, 'b')] }),
      /header\.authority disagrees/,
    ],
    ['CRC32C TLV of 2 bytes', h({ protocol: 'UNKNOWN', tlvs: [t(3, [0, 0])] }), /4 bytes/],
    ['too long', h({ protocol: 'UNKNOWN', tlvs: [t(0xe0, new Array(65533).fill(0))] }), /65535/],
    [
      'unknown protocol',
      { ...h({ protocol: 'UNKNOWN' }), protocol: 'SCTP' as never },
      /not a PROXY protocol name/,
    ],
  ];
  for (const [name, header, message] of cases) {
    assert.throws(() => encodeHeader(header, { version: 2 }), message, name);
  }
});

test('decoded fields without TLVs are appended; crc32c fills a checksum the decoder verifies', () => {
  const bytes = encodeHeader(
    {
      command: 'PROXY',
      protocol: 'TCP4',
      ...tcp4Endpoints,
      tlvs: [t(0xe0, [1])],
      netns: 'blue',
      alpn: 'h2',
      ssl: { client: 1, verify: 0, version: 'TLSv1.2' },
    },
    { version: 2, crc32c: true },
  );
  const header = decodeHeader(bytes)!.header;
  assert.deepEqual(
    header.tlvs.map((x) => x.type),
    [0xe0, 0x01, 0x20, 0x30, 0x03],
  );
  assert.equal(header.alpn, 'h2');
  assert.equal(header.netns, 'blue');
  assert.deepEqual(header.ssl, {
    client: 1,
    verify: 0,
    version: 'TLSv1.2',
    tlvs: [t(0x21, 'TLSv1.2')],
  });
  assert.equal(
    header.crc32c,
    crc32c(Uint8Array.from([...bytes.subarray(0, bytes.length - 4), 0, 0, 0, 0])),
  );
  // A stale checksum in tlvs is refilled rather than written as is.
  const again = encodeHeader(
    { ...header, tlvs: header.tlvs.map((x) => (x.type === 3 ? t(3, [1, 2, 3, 4]) : x)) },
    { version: 2 },
  );
  assert.deepEqual(new Uint8Array(again), new Uint8Array(bytes));
});

test('LOCAL without TLVs is the 16-byte header the spec asks senders for', () => {
  const bytes = encodeHeader(h({ command: 'LOCAL', protocol: 'UNKNOWN' }), { version: 2 });
  assert.deepEqual(new Uint8Array(bytes), v2(0x20, 0x00, []));
});

// ---------------------------------------------------------------------------------------------
// Storage of decoded values

test('values of separately decoded headers never share bytes', () => {
  const a = decodeHeader(fullBytes)!.header;
  const b = decodeHeader(fullBytes)!.header;
  const snapshot = structuredClone(b);
  for (const tlv of a.tlvs) tlv.value.fill(0x55);
  a.ssl!.clientCert!.fill(0x55);
  assert.deepEqual(b, snapshot);
  assert.deepEqual(decodeHeader(fullBytes)!.header, snapshot);
});

test('many distinct strings decode to themselves (string reuse never mixes them up)', () => {
  for (let i = 0; i < 5000; i++) {
    const name = `host-${i}.example`;
    const netns = `ns${i % 97}`;
    const bytes = v2(0x21, 0x11, [
      ...tcp4Body,
      ...tlv(0x02, ascii(name)),
      ...tlv(0x30, ascii(netns)),
      ...tlv(0x01, ascii(i % 2 ? 'h2' : 'http/1.1')),
    ]);
    const header = decodeHeader(bytes)!.header;
    assert.equal(header.authority, name);
    assert.equal(header.netns, netns);
    assert.equal(header.alpn, i % 2 ? 'h2' : 'http/1.1');
  }
});

test('large values: a 60 kB client certificate and long strings', () => {
  const cert = Array.from({ length: 60000 }, (_, i) => (i * 7) & 0xff);
  const longName = 'a'.repeat(200) + '.example';
  const longNetns = 'n'.repeat(5000);
  const sslValue = [1, 0, 0, 0, 0, ...tlv(0x28, cert)];
  const body = [
    ...tcp4Body,
    ...tlv(0x02, ascii(longName)),
    ...tlv(0x30, ascii(longNetns)),
    ...tlv(0x20, sslValue),
  ];
  const bytes = v2(0x21, 0x11, body);
  const header = decodeHeader(bytes)!.header;
  assert.equal(header.authority, longName);
  assert.equal(header.netns, longNetns);
  assert.deepEqual(header.ssl!.clientCert, Uint8Array.from(cert));
  assert.deepEqual(new Uint8Array(encodeHeader(header, { version: 2 })), bytes);
  assert.equal(decodeHeader(bytes.subarray(0, bytes.length - 1)), null);
});

test('the largest v2 header (16 + 65535 bytes) decodes', () => {
  const body = [...tcp4Body, ...tlv(0xe0, new Array(65535 - 12 - 3).fill(1))];
  const bytes = v2(0x21, 0x11, body);
  assert.equal(bytes.length, 16 + 65535);
  assert.equal(decodeHeader(bytes)!.length, 16 + 65535);
});

test('an unknown transport option is a TypeError, not a silent default', () => {
  assert.throws(
    () => decodeHeader(v2(0x21, 0x11, tcp4Body), { transport: 'udp' as never }),
    TypeError,
  );
});
