// Properties of the PROXY header codec over generated headers and bytes (fast-check): round trips,
// no exception but ProxyProtocolError, trailing bytes ignored, prefixes wait, Node-identical text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fc from 'fast-check';
import {
  decodeHeader,
  encodeHeader,
  type ProxyHeader,
  type ProxyHeaderInput,
  type ProxySslInput,
  type Tlv,
} from '../lib/codec/index.js';
import { ProxyProtocolError } from '../lib/errors.js';
import { formatIPv6, parseIPv4, parseIPv6 } from '../lib/codec/ip-address.js';

// FC_RUNS=5000 for a deeper run.
const RUNS = Number(process.env.FC_RUNS ?? 300);

// ---------------------------------------------------------------------------------------------
// Generators

// Node's own formatting is the oracle for canonical addresses.
function nodeIPv6(bytes: Uint8Array): string {
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return new net.SocketAddress({ address: words.join(':'), family: 'ipv6' }).address;
}

const ipv4 = fc.uint8Array({ minLength: 4, maxLength: 4 }).map((b) => b.join('.'));

// Uniform words rarely contain the zero runs and mapped prefixes that formatting cares about.
const word = fc.oneof(
  fc.constant(0),
  fc.constant(0),
  fc.constant(0xffff),
  fc.integer({ min: 0, max: 0xffff }),
);
const ipv6Bytes = fc.oneof(
  fc.array(word, { minLength: 8, maxLength: 8 }).map((ws) => {
    const b = new Uint8Array(16);
    ws.forEach((w, i) => ((b[2 * i] = w >> 8), (b[2 * i + 1] = w & 0xff)));
    return b;
  }),
  fc
    .uint8Array({ minLength: 4, maxLength: 4 })
    .map((v4) => Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...v4])),
  fc.uint8Array({ minLength: 16, maxLength: 16 }),
);
const ipv6 = ipv6Bytes.map(nodeIPv6);
const port = fc.integer({ min: 0, max: 0xffff });

const printable = fc.string({
  unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
  maxLength: 24,
});
const utf8Text = fc
  .string({ unit: 'grapheme', maxLength: 12 })
  .filter((s) => !/[\u0000-\u001f\u007f]/.test(s));
const unixPath = utf8Text.filter((s) => !s.includes('\0') && Buffer.byteLength(s) <= 108);
const latin1Text = fc.uint8Array({ maxLength: 12 }).map((b) => Buffer.from(b).toString('latin1'));

const NAMED = new Set([0x01, 0x02, 0x03, 0x05, 0x20, 0x30]);
// Plain objects only: the decoder builds them, and deepEqual compares prototypes.
const plain = { noNullPrototype: true } as const;

const rawTlv = (exclude: (type: number) => boolean) =>
  fc.record(
    {
      type: fc.integer({ min: 0, max: 255 }).filter((ty) => !exclude(ty)),
      value: fc.uint8Array({ maxLength: 20 }),
    },
    plain,
  );
const rawTlvs = fc.array(
  rawTlv((ty) => NAMED.has(ty)),
  { maxLength: 4 },
);
const rawSslTlvs = fc.array(
  rawTlv((ty) => ty >= 0x21 && ty <= 0x28),
  { maxLength: 3 },
);

const ssl: fc.Arbitrary<ProxySslInput> = fc.record(
  {
    client: fc.integer({ min: 0, max: 255 }),
    verify: fc.integer({ min: 0, max: 0xffffffff }),
    version: printable,
    cn: utf8Text,
    cipher: printable,
    sigAlg: printable,
    keyAlg: printable,
    group: printable,
    sigScheme: printable,
    clientCert: fc.uint8Array({ maxLength: 40 }),
    tlvs: rawSslTlvs,
  },
  { requiredKeys: ['client', 'verify', 'tlvs'], noNullPrototype: true },
);

const namedFields = fc.record(
  {
    alpn: latin1Text,
    authority: utf8Text,
    uniqueId: fc.uint8Array({ maxLength: 128 }),
    ssl,
    netns: printable,
  },
  { requiredKeys: [], noNullPrototype: true },
);

type Addressing = Pick<ProxyHeader, 'command' | 'protocol' | 'source' | 'destination'>;

const ipEndpoints = (address: fc.Arbitrary<string>) =>
  fc.record(
    {
      source: fc.record({ address, port }, plain),
      destination: fc.record({ address, port }, plain),
    },
    plain,
  );
const unixEndpoints = fc.record(
  {
    source: fc.record({ address: unixPath, port: fc.constant(null) }, plain),
    destination: fc.record({ address: unixPath, port: fc.constant(null) }, plain),
  },
  plain,
);

const v2Addressing: fc.Arbitrary<Addressing> = fc.oneof(
  fc
    .tuple(fc.constantFrom('TCP4' as const, 'UDP4' as const), ipEndpoints(ipv4))
    .map(([protocol, e]) => ({ command: 'PROXY' as const, protocol, ...e })),
  fc
    .tuple(fc.constantFrom('TCP6' as const, 'UDP6' as const), ipEndpoints(ipv6))
    .map(([protocol, e]) => ({ command: 'PROXY' as const, protocol, ...e })),
  fc
    .tuple(fc.constantFrom('UNIX_STREAM' as const, 'UNIX_DGRAM' as const), unixEndpoints)
    .map(([protocol, e]) => ({ command: 'PROXY' as const, protocol, ...e })),
  fc.constant({
    command: 'PROXY' as const,
    protocol: 'UNKNOWN' as const,
    source: null,
    destination: null,
  }),
  fc
    .constantFrom('UNKNOWN', 'TCP4', 'UDP4', 'TCP6', 'UDP6', 'UNIX_STREAM', 'UNIX_DGRAM' as const)
    .map((protocol) => ({ command: 'LOCAL' as const, protocol, source: null, destination: null })),
);

interface V2Input {
  header: ProxyHeaderInput;
  crc32c: boolean;
}

const v2Input: fc.Arbitrary<V2Input> = fc
  .tuple(v2Addressing, rawTlvs, namedFields, fc.boolean())
  .map(([addressing, tlvs, named, crc32c]) => ({
    header: { ...addressing, tlvs, ...named },
    crc32c,
  }));

const v1Header: fc.Arbitrary<ProxyHeader> = fc.oneof(
  ipEndpoints(ipv4).map((e) => ({
    version: 1 as const,
    command: 'PROXY' as const,
    protocol: 'TCP4' as const,
    ...e,
    tlvs: [] as Tlv[],
  })),
  ipEndpoints(ipv6).map((e) => ({
    version: 1 as const,
    command: 'PROXY' as const,
    protocol: 'TCP6' as const,
    ...e,
    tlvs: [] as Tlv[],
  })),
  fc.constant({
    version: 1 as const,
    command: 'PROXY' as const,
    protocol: 'UNKNOWN' as const,
    source: null,
    destination: null,
    tlvs: [] as Tlv[],
  }),
);

// Encoded valid headers of both versions.
const validBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  v2Input.map(({ header, crc32c }) => new Uint8Array(encodeHeader(header, { version: 2, crc32c }))),
  v1Header.map((header) => new Uint8Array(encodeHeader(header, { version: 1 }))),
);

// ---------------------------------------------------------------------------------------------
// Properties

function typeOrder(raw: readonly Tlv[], named: Record<string, unknown>, crc: boolean): number[] {
  const types = raw.map((x) => x.type);
  const fields: [string, number][] = [
    ['alpn', 0x01],
    ['authority', 0x02],
    ['crc32c', 0x03],
    ['uniqueId', 0x05],
    ['ssl', 0x20],
    ['netns', 0x30],
  ];
  for (const [field, type] of fields) if (named[field] !== undefined) types.push(type);
  if (crc) types.push(0x03);
  return types;
}

test('v2: decoding an encoded header gives back its fields, and re-encoding is stable', () => {
  fc.assert(
    fc.property(v2Input, ({ header: input, crc32c }) => {
      const bytes = encodeHeader(input, { version: 2, crc32c });
      const decoded = decodeHeader(bytes);
      assert.ok(decoded);
      assert.equal(decoded.length, bytes.length);
      const h = decoded.header;
      assert.equal(h.version, 2);
      assert.equal(h.command, input.command);
      assert.equal(h.protocol, input.protocol);
      assert.deepEqual(h.source, input.source);
      assert.deepEqual(h.destination, input.destination);
      assert.deepEqual(
        h.tlvs.map((x) => x.type),
        typeOrder(input.tlvs ?? [], input as unknown as Record<string, unknown>, crc32c),
      );
      assert.deepEqual(h.tlvs.slice(0, input.tlvs!.length), input.tlvs);
      for (const field of ['alpn', 'authority', 'uniqueId', 'netns'] as const) {
        assert.deepEqual(h[field], input[field], field);
      }
      assert.equal(h.crc32c !== undefined, crc32c);
      if (input.ssl !== undefined) {
        const { tlvs: subTlvs, ...named } = input.ssl;
        const { tlvs: decodedSubs, ...decodedNamed } = h.ssl!;
        assert.deepEqual(decodedNamed, named);
        assert.deepEqual(decodedSubs.slice(0, subTlvs!.length), subTlvs);
      }
      const again = encodeHeader(h, { version: 2 });
      assert.deepEqual(new Uint8Array(again), new Uint8Array(bytes));
      assert.deepEqual(decodeHeader(again)!.header, h);
    }),
    { numRuns: RUNS },
  );
});

test('v1: decode(encode(h)) deep-equals h, and the line is what encode wrote', () => {
  fc.assert(
    fc.property(v1Header, (h) => {
      const bytes = encodeHeader(h, { version: 1 });
      assert.deepEqual(decodeHeader(bytes), { header: h, length: bytes.length });
      assert.ok(bytes.length <= 107);
    }),
    { numRuns: RUNS },
  );
});

// Inputs that reach deep into the decoder: random bytes, real signatures followed by noise, and
// valid headers with one byte changed, inserted or removed.
const v1Alphabet = fc.constantFrom(...'PROXY TCP46UNKOW0123456789abcdefABCDEF:.\r\n'.split(''));
const noise: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc
    .tuple(
      fc.integer({ min: 0, max: 255 }),
      fc.integer({ min: 0, max: 255 }),
      fc.uint8Array({ maxLength: 300 }),
    )
    .map(([verCmd, fam, rest]) =>
      Uint8Array.from([
        0x0d,
        0x0a,
        0x0d,
        0x0a,
        0x00,
        0x0d,
        0x0a,
        0x51,
        0x55,
        0x49,
        0x54,
        0x0a,
        verCmd,
        fam,
        ...rest,
      ]),
    ),
  fc
    .string({ unit: v1Alphabet, maxLength: 110 })
    .map((s) => Uint8Array.from(Buffer.from('PROXY ' + s, 'latin1'))),
  fc
    .tuple(
      validBytes,
      fc.nat(),
      fc.integer({ min: 0, max: 255 }),
      fc.constantFrom('set', 'insert', 'delete'),
    )
    .map(([bytes, at, value, how]) => {
      const i = at % bytes.length;
      const out = [...bytes];
      if (how === 'set') out[i] = value;
      else if (how === 'insert') out.splice(i, 0, value);
      else out.splice(i, 1);
      return Uint8Array.from(out);
    }),
);

const transports = fc.constantFrom(undefined, 'stream' as const, 'dgram' as const);

test('any bytes give null, a header, or a ProxyProtocolError, and are left as they were', () => {
  fc.assert(
    fc.property(noise, transports, (bytes, transport) => {
      const before = Uint8Array.from(bytes);
      let result;
      try {
        result = decodeHeader(bytes, { transport });
      } catch (err) {
        if (!(err instanceof ProxyProtocolError)) throw err;
        assert.match(err.code, /^ERR_PROXY_[A-Z0-9_]+$/);
        assert.match(err.message, / at offset \d+$/);
        result = undefined;
      }
      assert.deepEqual(bytes, before);
      if (transport === 'dgram') assert.notEqual(result, null);
      if (result) {
        assert.ok(result.length > 0 && result.length <= bytes.length);
        // Whatever the decoder accepts, the encoder writes back to the same header, except the
        // checksum of a LOCAL header whose ignored address bytes were not zero.
        const h = result.header;
        if (!(h.command === 'LOCAL' && h.crc32c !== undefined)) {
          assert.deepEqual(decodeHeader(encodeHeader(h, { version: h.version }))!.header, h);
        }
      }
    }),
    { numRuns: 3 * RUNS },
  );
});

test('bytes after a valid header never change the header or its length', () => {
  fc.assert(
    fc.property(validBytes, fc.uint8Array({ minLength: 1, maxLength: 64 }), (bytes, tail) => {
      const alone = decodeHeader(bytes);
      assert.ok(alone);
      assert.equal(alone.length, bytes.length);
      const followed = decodeHeader(Uint8Array.from([...bytes, ...tail]));
      assert.deepEqual(followed, alone);
    }),
    { numRuns: RUNS },
  );
});

test('every proper prefix of a valid header waits on a stream and is truncated on a datagram', () => {
  fc.assert(
    fc.property(validBytes, (bytes) => {
      const whole = decodeHeader(bytes)!.header;
      const dgramOk =
        whole.version === 2 &&
        (whole.command === 'LOCAL' || !['TCP4', 'TCP6', 'UNIX_STREAM'].includes(whole.protocol));
      for (let cut = 0; cut < bytes.length; cut++) {
        const prefix = bytes.subarray(0, cut);
        assert.equal(decodeHeader(prefix), null);
        if (dgramOk) {
          assert.throws(() => decodeHeader(prefix, { transport: 'dgram' }), {
            code: 'ERR_PROXY_TRUNCATED',
          });
        }
      }
    }),
    { numRuns: 100 },
  );
});

test('IPv6 formatting equals Node for any 16 bytes, and parsing inverts it', () => {
  fc.assert(
    fc.property(ipv6Bytes, (bytes) => {
      const text = formatIPv6(bytes);
      assert.equal(text, nodeIPv6(bytes));
      assert.deepEqual(parseIPv6(text), bytes);
    }),
    { numRuns: 2 * RUNS },
  );
});

test('IPv6 and IPv4 text parsing accept exactly what Node (inet_pton) accepts', () => {
  const chars = fc.constantFrom(...'0123456789abcdefABCDEF:::...'.split(''));
  const candidates = fc.oneof(
    fc.string({ unit: chars, maxLength: 45 }),
    ipv6.map((s) => s.toUpperCase()),
    ipv6Bytes.map((b) => {
      const words: string[] = [];
      for (let i = 0; i < 16; i += 2)
        words.push(((b[i]! << 8) | b[i + 1]!).toString(16).padStart(4, '0'));
      return words.join(':');
    }),
  );
  const accepts = (address: string, family: 'ipv4' | 'ipv6') => {
    try {
      new net.SocketAddress({ address, family });
      return true;
    } catch {
      return false;
    }
  };
  fc.assert(
    fc.property(candidates, (text) => {
      const mine = parseIPv6(text);
      assert.equal(mine !== null, accepts(text, 'ipv6'), JSON.stringify(text));
      if (mine)
        assert.equal(
          formatIPv6(mine),
          new net.SocketAddress({ address: text, family: 'ipv6' }).address,
        );
      assert.equal(parseIPv4(text) !== null, accepts(text, 'ipv4'), JSON.stringify(text));
    }),
    { numRuns: 5 * RUNS },
  );
});
