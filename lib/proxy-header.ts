// The PROXY protocol header codec (HAProxy's doc/proxy-protocol.txt, v1 text and v2 binary with
// TLVs): decodeHeader turns the first bytes of a connection or datagram into a ProxyHeader, or says
// why they can never be one; encodeHeader writes any header the decoder reads.
//
// Theory of operation. decodeHeader is called each time more bytes arrive, on every connection, so
// it is written as byte loops over the caller's array with no regular expressions, no string
// splitting and no intermediate arrays. A call either
//   - returns null: every byte so far is a valid beginning of a header (stream transport only;
//     a datagram is complete by definition, so a short one is ERR_PROXY_TRUNCATED);
//   - returns the header and its length: the payload starts at that offset;
//   - throws ProxyProtocolError at the first byte after which no valid header is possible, so a
//     reader never waits for more bytes of something that is already wrong.
// The input is only read. Everything the result holds (TLV values included) is a copy, so the
// caller may reuse its buffer as soon as the call returns.
//
// Where the spec leaves a choice, the stricter reading is taken, because a header decides whose
// address the application sees; each such choice is marked "Choice:" below.
import { ProxyProtocolError } from './errors.js';
import { CRC32C_INIT, crc32cFinish, crc32cUpdate, crc32cZeroed } from './codec/crc32c.js';
import {
  SCAN_INCOMPLETE,
  SCAN_INVALID,
  formatIPv4,
  formatIPv6,
  parseIPv4,
  parseIPv6,
  scanFailedAt,
  scanIPv4,
  scanIPv6,
} from './codec/ip-address.js';

// So that the "mmproxy-native/codec" entry point alone is enough to tell decoding errors apart.
export { ProxyProtocolError };

// ---------------------------------------------------------------------------------------------
// Types

/** `PROXY`: the connection is relayed for the client named in the header. `LOCAL`: the sender
 * (a load balancer's health check, say) opened it for itself; the addresses are its own. */
export type ProxyCommand = 'PROXY' | 'LOCAL';

/** Transport and address family. `UNKNOWN` is v1 `UNKNOWN` or v2 `AF_UNSPEC`. */
export type ProxyProtocolName =
  'TCP4' | 'TCP6' | 'UDP4' | 'UDP6' | 'UNIX_STREAM' | 'UNIX_DGRAM' | 'UNKNOWN';

/** One end of the proxied connection. For AF_UNIX, `address` is the socket path and `port` null. */
export interface ProxyEndpoint {
  /** IPv4 dotted quad or IPv6 in the canonical form Node prints; or an AF_UNIX path. */
  address: string;
  port: number | null;
}

/** A type-length-value record of a v2 header, as it was on the wire. */
export interface Tlv {
  type: number;
  /** The value bytes: a copy, never a view of the decoder's input. */
  value: Uint8Array;
}

/**
 * The PP2_TYPE_SSL TLV (0x20): how the client reached the load balancer over TLS. Every sub-TLV
 * is in `tlvs` in wire order; those the spec names are also decoded into the optional fields.
 */
export interface ProxySsl {
  /** Bit field of {@link SSL_CLIENT} flags. */
  client: number;
  /** 0 when the client presented a certificate and it was verified; non-zero otherwise. */
  verify: number;
  /** PP2_SUBTYPE_SSL_VERSION (0x21), e.g. "TLSv1.3". */
  version?: string;
  /** PP2_SUBTYPE_SSL_CN (0x22): the client certificate's Common Name. */
  cn?: string;
  /** PP2_SUBTYPE_SSL_CIPHER (0x23), e.g. "ECDHE-RSA-AES128-GCM-SHA256". */
  cipher?: string;
  /** PP2_SUBTYPE_SSL_SIG_ALG (0x24): algorithm that signed the frontend's certificate. */
  sigAlg?: string;
  /** PP2_SUBTYPE_SSL_KEY_ALG (0x25): algorithm of the frontend certificate's key. */
  keyAlg?: string;
  /** PP2_SUBTYPE_SSL_GROUP (0x26): key exchange group, e.g. "X25519". */
  group?: string;
  /** PP2_SUBTYPE_SSL_SIG_SCHEME (0x27): TLS signature scheme, e.g. "rsa_pss_rsae_sha256". */
  sigScheme?: string;
  /** PP2_SUBTYPE_SSL_CLIENT_CERT (0x28): the client certificate, DER. Same bytes as its sub-TLV. */
  clientCert?: Uint8Array;
  /** Every sub-TLV in wire order, including those decoded above and unknown ones. */
  tlvs: Tlv[];
}

/**
 * A decoded PROXY protocol header.
 *
 * `tlvs` is the wire truth: every top-level TLV in order, unknown types included. The TLVs the
 * spec names are also decoded into the optional fields, present only when their TLV is:
 * `alpn` (0x01), `authority` (0x02), `crc32c` (0x03, already verified), `uniqueId` (0x05), `ssl`
 * (0x20) and `netns` (0x30). NOOP (0x04) appears only in `tlvs`. A v1 header has no TLVs.
 *
 * `source` and `destination` are null for LOCAL and for UNKNOWN (whose addresses, if any, the
 * spec says to ignore). For LOCAL, `protocol` still reports the family byte the sender wrote.
 */
export interface ProxyHeader {
  version: 1 | 2;
  command: ProxyCommand;
  protocol: ProxyProtocolName;
  /** The client. */
  source: ProxyEndpoint | null;
  /** The address the client connected to (the load balancer's frontend). */
  destination: ProxyEndpoint | null;
  tlvs: Tlv[];
  /** PP2_TYPE_ALPN, one character per byte (latin1), e.g. "h2". */
  alpn?: string;
  /** PP2_TYPE_AUTHORITY: the host name the client asked for (TLS SNI), UTF-8. */
  authority?: string;
  /** PP2_TYPE_CRC32C: the checksum, which matched the header. */
  crc32c?: number;
  /** PP2_TYPE_UNIQUE_ID: up to 128 opaque bytes. Same bytes as its entry in `tlvs`. */
  uniqueId?: Uint8Array;
  /** PP2_TYPE_SSL. */
  ssl?: ProxySsl;
  /** PP2_TYPE_NETNS: the network namespace's name. */
  netns?: string;
}

export interface DecodeOptions {
  /**
   * `'stream'` refuses datagram families (UDP4, UDP6, UNIX_DGRAM). `'dgram'` refuses v1 and
   * stream families (TCP4, TCP6, UNIX_STREAM) and treats a short input as a truncated header
   * rather than a header still arriving. LOCAL and UNKNOWN pass on both. Absent: all accepted.
   */
  transport?: 'stream' | 'dgram';
}

export interface DecodeResult {
  header: ProxyHeader;
  /** Bytes the header took: the payload starts at this offset. */
  length: number;
}

/** What {@link encodeHeader} takes for `ssl`: a {@link ProxySsl} whose `tlvs` may be left out. */
export interface ProxySslInput extends Omit<ProxySsl, 'tlvs'> {
  tlvs?: readonly Tlv[];
}

/** What {@link encodeHeader} takes: a {@link ProxyHeader} whose `tlvs` may be left out. */
export interface ProxyHeaderInput extends Omit<ProxyHeader, 'version' | 'tlvs' | 'ssl'> {
  /** Ignored: the encoding's version is an option of {@link encodeHeader}. */
  version?: 1 | 2;
  tlvs?: readonly Tlv[];
  ssl?: ProxySslInput;
}

export interface EncodeOptions {
  version: 1 | 2;
  /** Add a CRC32C TLV if the header has none. An existing one is always refilled. */
  crc32c?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Constants from the spec

/** Top-level TLV types the spec names. */
export const TLV_TYPE = {
  ALPN: 0x01,
  AUTHORITY: 0x02,
  CRC32C: 0x03,
  NOOP: 0x04,
  UNIQUE_ID: 0x05,
  SSL: 0x20,
  NETNS: 0x30,
} as const;

/** Sub-TLV types inside PP2_TYPE_SSL. */
export const SSL_SUBTYPE = {
  VERSION: 0x21,
  CN: 0x22,
  CIPHER: 0x23,
  SIG_ALG: 0x24,
  KEY_ALG: 0x25,
  GROUP: 0x26,
  SIG_SCHEME: 0x27,
  CLIENT_CERT: 0x28,
} as const;

/** Bits of {@link ProxySsl.client}. */
export const SSL_CLIENT = {
  /** The client connected over TLS. */
  SSL: 0x01,
  /** The client presented a certificate on this connection. */
  CERT_CONN: 0x02,
  /** The client presented a certificate at least once in this TLS session. */
  CERT_SESS: 0x04,
} as const;

/** Longest v1 line, CRLF included. */
export const V1_MAX_LENGTH = 107;
/** Longest v2 header: 16 fixed bytes and a 16-bit length. */
export const V2_MAX_LENGTH = 16 + 0xffff;
/** Longest PP2_TYPE_UNIQUE_ID value. */
export const UNIQUE_ID_MAX_LENGTH = 128;

const V2_SIGNATURE = Uint8Array.of(
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
);
const V1_SIGNATURE = Uint8Array.of(0x50, 0x52, 0x4f, 0x58, 0x59, 0x20); // "PROXY "
const UNIX_PATH_SIZE = 108;

const SP = 0x20;
const CR = 0x0d;
const LF = 0x0a;

// ---------------------------------------------------------------------------------------------
// Errors: built off the hot path, with the offset and the offending byte in the message.

function fault(code: string, what: string, offset: number): ProxyProtocolError {
  return new ProxyProtocolError(code, `${what} at offset ${offset}`);
}

function describeByte(c: number | undefined): string {
  if (c === undefined) return 'end of input';
  const hex = '0x' + c.toString(16).padStart(2, '0');
  if (c === SP) return `space (${hex})`;
  if (c === CR) return `CR (${hex})`;
  if (c === LF) return `LF (${hex})`;
  if (c > 0x20 && c < 0x7f) return `'${String.fromCharCode(c)}' (${hex})`;
  return hex;
}

function hex2(n: number): string {
  return '0x' + n.toString(16).padStart(2, '0');
}

function truncated(n: number, needed: string): ProxyProtocolError {
  return fault(
    'ERR_PROXY_TRUNCATED',
    `datagram ends after ${n} byte${n === 1 ? '' : 's'} inside a PROXY header (${needed})`,
    n,
  );
}

// ---------------------------------------------------------------------------------------------
// Decoding

/**
 * Decodes the PROXY protocol header at the start of `bytes`.
 *
 * Returns null when `bytes` is a proper prefix of a valid header (stream transport: wait for more
 * bytes and call again with all of them), or the header and how many bytes it took. Throws
 * {@link ProxyProtocolError} as soon as the bytes can no longer become a valid header; its `code`
 * names the fault and its message says where. Never modifies `bytes`; the result shares no memory
 * with it.
 */
export function decodeHeader(bytes: Uint8Array, options?: DecodeOptions): DecodeResult | null {
  const transport = options === undefined ? undefined : options.transport;
  if (transport !== undefined && transport !== 'stream' && transport !== 'dgram') {
    throw new TypeError(`options.transport must be 'stream' or 'dgram', not ${String(transport)}`);
  }
  const n = bytes.length;
  if (n === 0) {
    if (transport === 'dgram') throw truncated(0, 'an empty datagram');
    return null;
  }
  const first = bytes[0];
  if (first === V2_SIGNATURE[0]) return decodeV2(bytes, n, transport);
  if (first === V1_SIGNATURE[0]) {
    if (transport === 'dgram') {
      checkV1Signature(bytes, n);
      throw fault(
        'ERR_PROXY_TRANSPORT_MISMATCH',
        'v1 (text) PROXY header on a datagram transport, which carries only v2',
        0,
      );
    }
    return decodeV1(bytes, n);
  }
  throw badSignature(0, first);
}

function badSignature(offset: number, c: number | undefined): ProxyProtocolError {
  return fault(
    'ERR_PROXY_BAD_SIGNATURE',
    `not a PROXY protocol header: ${describeByte(c)} matches neither "PROXY " (v1) nor the v2 signature`,
    offset,
  );
}

function checkV1Signature(bytes: Uint8Array, n: number): void {
  const end = n < 6 ? n : 6;
  for (let i = 1; i < end; i++) if (bytes[i] !== V1_SIGNATURE[i]) throw badSignature(i, bytes[i]);
}

// --- v1 --------------------------------------------------------------------------------------

const v1Addresses = new Uint8Array(32); // source at 0, destination at 16
let scannedPort = 0;

// Running out of bytes inside the v1 line: wait for more, unless the line already used up its
// 107 bytes without a CRLF.
function v1NeedMore(end: number): null {
  if (end >= V1_MAX_LENGTH) {
    throw fault(
      'ERR_PROXY_V1_TOO_LONG',
      `v1 PROXY line has no CRLF within its first ${V1_MAX_LENGTH} bytes`,
      V1_MAX_LENGTH,
    );
  }
  return null;
}

function decodeV1(bytes: Uint8Array, n: number): DecodeResult | null {
  checkV1Signature(bytes, n);
  const end = n < V1_MAX_LENGTH ? n : V1_MAX_LENGTH;
  if (end <= 6) return null;

  // "TCP4 " | "TCP6 " | "UNKNOWN" (then CRLF or a space and anything up to CRLF)
  let p = 6;
  let family = 0;
  const c6 = bytes[6]!;
  if (c6 === 0x54) {
    p = expectLiteral(bytes, 7, end, 'CP');
    if (p < 0) return v1NeedMore(end);
    if (p === end) return v1NeedMore(end);
    const f = bytes[p]!;
    if (f === 0x34) family = 4;
    else if (f === 0x36) family = 6;
    else throw badV1Protocol(bytes, p);
    p++;
    if (p === end) return v1NeedMore(end);
    if (bytes[p] !== SP) throw badV1Protocol(bytes, p);
    p++;
  } else if (c6 === 0x55) {
    p = expectLiteral(bytes, 7, end, 'NKNOWN');
    if (p < 0) return v1NeedMore(end);
    return decodeV1Unknown(bytes, p, end);
  } else {
    throw badV1Protocol(bytes, 6);
  }

  const scan = family === 4 ? scanIPv4 : scanIPv6;
  const srcEnd = scan(bytes, p, end, SP, false, v1Addresses, 0);
  if (srcEnd < 0) return v1AddressResult(bytes, srcEnd, end, 'source', family);
  const dstEnd = scan(bytes, srcEnd + 1, end, SP, false, v1Addresses, 16);
  if (dstEnd < 0) return v1AddressResult(bytes, dstEnd, end, 'destination', family);

  const srcPortEnd = scanV1Port(bytes, dstEnd + 1, end, SP, 'source');
  if (srcPortEnd < 0) return v1NeedMore(end);
  const sourcePort = scannedPort;
  const dstPortEnd = scanV1Port(bytes, srcPortEnd + 1, end, CR, 'destination');
  if (dstPortEnd < 0) return v1NeedMore(end);
  const lf = dstPortEnd + 1;
  if (lf >= end) return v1NeedMore(end);
  if (bytes[lf] !== LF) throw badV1Terminator(bytes, lf);

  const format = family === 4 ? formatIPv4 : formatIPv6;
  return {
    header: {
      version: 1,
      command: 'PROXY',
      protocol: family === 4 ? 'TCP4' : 'TCP6',
      source: { address: format(v1Addresses, 0), port: sourcePort },
      destination: { address: format(v1Addresses, 16), port: scannedPort },
      tlvs: [],
    },
    length: lf + 1,
  };
}

// Matches the ASCII `literal` at bytes[p..]; returns the index after it, or -1 when the input ends
// first. Only called inside the protocol token, hence the error it throws.
function expectLiteral(bytes: Uint8Array, p: number, end: number, literal: string): number {
  for (let k = 0; k < literal.length; k++, p++) {
    if (p >= end) return -1;
    if (bytes[p] !== literal.charCodeAt(k)) throw badV1Protocol(bytes, p);
  }
  return p;
}

function badV1Protocol(bytes: Uint8Array, at: number): ProxyProtocolError {
  return fault(
    'ERR_PROXY_V1_BAD_PROTOCOL',
    `v1 PROXY line: ${describeByte(bytes[at])} where "TCP4 ", "TCP6 " or "UNKNOWN" was expected`,
    at,
  );
}

function badV1Terminator(bytes: Uint8Array, at: number): ProxyProtocolError {
  return fault(
    'ERR_PROXY_V1_BAD_TERMINATOR',
    `v1 PROXY line: ${describeByte(bytes[at])} where the line must end with CR LF`,
    at,
  );
}

// Choice: after "UNKNOWN", anything up to the first CRLF is ignored, as the spec requires of
// receivers, so long as the line stays within 107 bytes; the header then carries no addresses.
function decodeV1Unknown(bytes: Uint8Array, p: number, end: number): DecodeResult | null {
  if (p === end) return v1NeedMore(end);
  const c = bytes[p];
  if (c === CR) {
    if (p + 1 === end) return v1NeedMore(end);
    if (bytes[p + 1] !== LF) throw badV1Terminator(bytes, p + 1);
    return unknownV1(p + 2);
  }
  if (c !== SP) throw badV1Protocol(bytes, p);
  for (let i = p + 1; i + 1 < end; i++) {
    if (bytes[i] === CR && bytes[i + 1] === LF) return unknownV1(i + 2);
  }
  return v1NeedMore(end);
}

function unknownV1(length: number): DecodeResult {
  return {
    header: {
      version: 1,
      command: 'PROXY',
      protocol: 'UNKNOWN',
      source: null,
      destination: null,
      tlvs: [],
    },
    length,
  };
}

function v1AddressResult(
  bytes: Uint8Array,
  result: number,
  end: number,
  which: string,
  family: number,
): null {
  if (result === SCAN_INCOMPLETE) return v1NeedMore(end);
  const at = scanFailedAt();
  const c = bytes[at];
  const why =
    c === SP && at > 0 && bytes[at - 1] === SP
      ? `an empty ${which} address (fields are separated by exactly one space)`
      : `${describeByte(c)} cannot continue or end a valid IPv${family} ${which} address`;
  throw fault('ERR_PROXY_V1_BAD_ADDRESS', `v1 PROXY line: ${why}`, at);
}

// Choice: ports are 0-65535 in decimal with no leading zero, as the spec says; "0" alone is a
// valid port (it has no leading zero), "00" and "080" are not.
function scanV1Port(
  bytes: Uint8Array,
  p: number,
  end: number,
  terminator: number,
  which: string,
): number {
  let value = 0;
  let digits = 0;
  for (let i = p; i < end; i++) {
    const c = bytes[i]!;
    if (c >= 0x30 && c <= 0x39) {
      if (digits === 1 && value === 0) {
        throw fault('ERR_PROXY_V1_BAD_PORT', `v1 PROXY line: ${which} port has a leading zero`, i);
      }
      value = value * 10 + (c - 0x30);
      if (value > 0xffff) {
        throw fault('ERR_PROXY_V1_BAD_PORT', `v1 PROXY line: ${which} port exceeds 65535`, i);
      }
      digits++;
    } else if (c === terminator && digits > 0) {
      scannedPort = value;
      return i;
    } else if (c === LF && terminator === CR) {
      throw badV1Terminator(bytes, i);
    } else {
      const why =
        digits === 0 ? `an empty ${which} port` : `${describeByte(c)} in the ${which} port`;
      throw fault('ERR_PROXY_V1_BAD_PORT', `v1 PROXY line: ${why}`, i);
    }
  }
  return -1;
}

// --- v2 --------------------------------------------------------------------------------------

function decodeV2(
  bytes: Uint8Array,
  n: number,
  transport: 'stream' | 'dgram' | undefined,
): DecodeResult | null {
  const dgram = transport === 'dgram';
  const sigEnd = n < 12 ? n : 12;
  for (let i = 1; i < sigEnd; i++) {
    if (bytes[i] !== V2_SIGNATURE[i]) throw badSignature(i, bytes[i]);
  }
  if (n <= 12) return v2NeedMore(dgram, n, 'the 16-byte fixed part');

  const verCmd = bytes[12]!;
  if (verCmd >> 4 !== 2) {
    throw fault(
      'ERR_PROXY_V2_BAD_VERSION',
      `PROXY v2 header: version ${verCmd >> 4} (byte ${hex2(verCmd)}), only 2 is defined`,
      12,
    );
  }
  const cmd = verCmd & 0x0f;
  if (cmd > 1) {
    throw fault(
      'ERR_PROXY_V2_BAD_COMMAND',
      `PROXY v2 header: command ${cmd} (byte ${hex2(verCmd)}), only 0 LOCAL and 1 PROXY are defined`,
      12,
    );
  }
  const local = cmd === 0;
  if (n === 13) return v2NeedMore(dgram, n, 'the 16-byte fixed part');

  // Choice: only the seven family/protocol bytes the spec lists are accepted, for LOCAL too,
  // although LOCAL ignores them: any other value means a sender that does not follow the spec.
  const fam = bytes[13]!;
  let addressSize: number;
  let protocol: ProxyProtocolName;
  switch (fam) {
    case 0x00:
      protocol = 'UNKNOWN';
      addressSize = 0;
      break;
    case 0x11:
      protocol = 'TCP4';
      addressSize = 12;
      break;
    case 0x12:
      protocol = 'UDP4';
      addressSize = 12;
      break;
    case 0x21:
      protocol = 'TCP6';
      addressSize = 36;
      break;
    case 0x22:
      protocol = 'UDP6';
      addressSize = 36;
      break;
    case 0x31:
      protocol = 'UNIX_STREAM';
      addressSize = 2 * UNIX_PATH_SIZE;
      break;
    case 0x32:
      protocol = 'UNIX_DGRAM';
      addressSize = 2 * UNIX_PATH_SIZE;
      break;
    default:
      throw fault(
        'ERR_PROXY_V2_BAD_FAMILY',
        `PROXY v2 header: family/protocol byte ${hex2(fam)} is not one the spec defines`,
        13,
      );
  }
  if (!local && transport !== undefined && (fam & 0x0f) !== 0) {
    const isDgram = (fam & 0x0f) === 2;
    if (isDgram !== dgram) {
      throw fault(
        'ERR_PROXY_TRANSPORT_MISMATCH',
        `PROXY v2 header: ${protocol} on a ${transport} transport`,
        13,
      );
    }
  }
  if (n < 16) return v2NeedMore(dgram, n, 'the 16-byte fixed part');

  const len = (bytes[14]! << 8) | bytes[15]!;
  const total = 16 + len;
  // Choice: a LOCAL header may leave out the address block (the spec asks senders to send a
  // zero length) but may not carry part of one: a length between 1 and the family's address
  // size is refused, since what it holds can be neither addresses nor TLVs after them.
  if (len < addressSize && (!local || len !== 0)) {
    throw fault(
      'ERR_PROXY_V2_SHORT_ADDRESS',
      `PROXY v2 header: length ${len} is shorter than the ${addressSize}-byte ${protocol} address block`,
      14,
    );
  }
  const tlvStart = local && len === 0 ? 16 : 16 + addressSize;
  if (n < tlvStart) return v2NeedMore(dgram, n, `${total} bytes`);

  let source: ProxyEndpoint | null = null;
  let destination: ProxyEndpoint | null = null;
  // Choice: LOCAL skips the address block (the spec says to ignore it) but its TLVs are decoded
  // and checked like any others, so a CRC32C covers health checks too.
  if (!local) {
    switch (addressSize) {
      case 12:
        source = {
          address: formatIPv4(bytes, 16),
          port: (bytes[24]! << 8) | bytes[25]!,
        };
        destination = {
          address: formatIPv4(bytes, 20),
          port: (bytes[26]! << 8) | bytes[27]!,
        };
        break;
      case 36:
        source = {
          address: formatIPv6(bytes, 16),
          port: (bytes[48]! << 8) | bytes[49]!,
        };
        destination = {
          address: formatIPv6(bytes, 32),
          port: (bytes[50]! << 8) | bytes[51]!,
        };
        break;
      case 2 * UNIX_PATH_SIZE:
        source = { address: unixPath(bytes, 16), port: null };
        destination = { address: unixPath(bytes, 16 + UNIX_PATH_SIZE), port: null };
        break;
    }
  }
  const header: ProxyHeader = {
    version: 2,
    command: local ? 'LOCAL' : 'PROXY',
    protocol,
    source,
    destination,
    tlvs: [],
  };

  // Choice: the family's address block may be followed by more bytes; they are TLVs and must
  // parse as such (AF_UNSPEC has an empty address block, so everything after 16 bytes is TLVs,
  // which is how HAProxy sends LOCAL health checks with TLVs).
  if (total > tlvStart) {
    const available = n < total ? n : total;
    if (available > tlvStart) copyHeader(bytes, available, available === total);
    else regionDelta = 0; // nothing to read yet; decodeTlvs only checks the framing
    const d = regionDelta;
    crcValueAt = -1;
    if (!decodeTlvs(tlvStart + d, available + d, total + d, header)) {
      return v2NeedMore(dgram, n, `${total} bytes`);
    }
    if (crcValueAt >= 0) verifyCrc32c(bytes, total, crcValueAt - d, header.crc32c!);
  }
  return { header, length: total };
}

function v2NeedMore(dgram: boolean, n: number, needed: string): null {
  if (dgram) throw truncated(n, `it needs ${needed}`);
  return null;
}

// Choice: an AF_UNIX address is the path up to its first NUL (an abstract socket, whose name
// starts with NUL, gives ""), and must be valid UTF-8.
function unixPath(bytes: Uint8Array, start: number): string {
  let end = start;
  const limit = start + UNIX_PATH_SIZE;
  let ascii = true;
  while (end < limit) {
    const c = bytes[end]!;
    if (c === 0) break;
    if (c >= 0x80) ascii = false;
    end++;
  }
  if (ascii) {
    // Not through the string cache, which holds only validated TLV strings, and not a loop of
    // concatenations, since a path is often longer than a TLV string.
    return String.fromCharCode.apply(null, bytes.subarray(start, end) as unknown as number[]);
  }
  let view = new Uint8Array(bytes.buffer, bytes.byteOffset + start, end - start);
  // TextDecoder refuses views of a SharedArrayBuffer.
  if (!(bytes.buffer instanceof ArrayBuffer)) view = Uint8Array.from(view);
  const text = utf8(view);
  if (text === null) {
    throw fault(
      'ERR_PROXY_V2_BAD_UNIX_PATH',
      'PROXY v2 header: AF_UNIX path is not valid UTF-8',
      start,
    );
  }
  return text;
}

// The checksum covers the header with its own four bytes read as zeros.
function verifyCrc32c(bytes: Uint8Array, total: number, at: number, expected: number): void {
  const actual = crc32cZeroed(bytes, total, at);
  if (actual !== expected) {
    throw fault(
      'ERR_PROXY_CRC32C_MISMATCH',
      `PROXY v2 header: CRC32C TLV says 0x${expected.toString(16).padStart(8, '0')}, ` +
        `the header's checksum is 0x${actual.toString(16).padStart(8, '0')}`,
      at,
    );
  }
}

// --- TLVs ------------------------------------------------------------------------------------

function readU32(bytes: Uint8Array, at: number): number {
  return (
    ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0
  );
}

// TLV values are copies, so that callers may reuse their buffers; but one typed array allocated
// per value would be most of the cost of a header with TLVs (and any array over 64 bytes gets
// memory of its own outside the heap, which costs about a microsecond). So the header is copied
// once, into a slab this module owns (as Buffer.allocUnsafe does with its pool, but zero-filled),
// and every value is a view of that copy. A value's `.buffer` may therefore hold other headers'
// bytes, never the caller's memory. Complete headers of up to a quarter slab share slabs; larger
// ones, and headers still arriving, get their own copy. The TLVs are then read from the copy,
// which is always a plain Uint8Array, and so is the checksum.
//
// The whole header is copied, not only its TLVs, so that the checksum reads one array. A slab
// costs about as much to allocate at 16 KiB as at 8 KiB (the cost is per allocation, not per
// byte); a larger one would keep more memory alive for one retained value.
const SLAB_SIZE = 16384;
let slab = new Uint8Array(SLAB_SIZE);
let slabBuffer = slab.buffer;
let slabView = new DataView(slabBuffer);
let slabUsed = 0;
// The copy being decoded: input byte `i` is `region[i + regionDelta]`, and `region` starts at
// offset 0 of `regionBuffer`.
let region = slab;
let regionBuffer: ArrayBuffer = slab.buffer;
let regionView = slabView; // for reading four bytes at once
let regionDelta = 0;

// Copies bytes[0..end) and points `region` at the copy.
function copyHeader(bytes: Uint8Array, end: number, complete: boolean): void {
  let target: Uint8Array<ArrayBuffer>;
  let at: number;
  if (complete && end <= SLAB_SIZE / 4) {
    if (slabUsed + end > SLAB_SIZE) {
      slab = new Uint8Array(SLAB_SIZE);
      slabBuffer = slab.buffer;
      slabView = new DataView(slabBuffer);
      slabUsed = 0;
    }
    target = slab;
    at = slabUsed;
    slabUsed += end;
  } else {
    target = new Uint8Array(end);
    at = 0;
  }
  target.set(
    end === bytes.length ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, end),
    at,
  );
  region = target;
  if (target === slab) {
    regionBuffer = slabBuffer;
    regionView = slabView;
  } else {
    regionBuffer = target.buffer;
    regionView = new DataView(regionBuffer);
  }
  regionDelta = at;
}

// Strings in TLVs (ALPN, TLS version, cipher and algorithm names, authority, netns) take few
// distinct values across connections, so the last string decoded for each small hash of its
// bytes is kept, and returned again when the bytes match: one comparison instead of validating
// and building the string. A cached string has passed the checks of its kind, and bytes equal to
// it pass them too, so each kind has its own table. Direct-mapped and bounded (2^CACHE_BITS
// strings of at most CACHE_MAX_LENGTH characters per kind); a collision only costs a miss. Only
// strings whose characters are their bytes are cached (ASCII, or latin1 for ALPN). Each slot also
// keeps the string's bytes, compared four at a time: reading a string's characters one by one
// costs several times as much.
const LATIN1 = 0; // ALPN: any bytes, one character each
const ASCII = 1; // printable US-ASCII
const UTF8 = 2; // UTF-8 without control characters (cached only when ASCII)
const CACHE_BITS = 9;
const CACHE_MAX_LENGTH = 64;
const stringCache: string[] = new Array<string>(3 << CACHE_BITS).fill('');
const cacheBytes = new DataView(new ArrayBuffer((3 << CACHE_BITS) * CACHE_MAX_LENGTH));
let cacheSlot = 0;

// The cached string equal to b[s..e), or '' (sets cacheSlot either way). 0 < e - s <= max.
function lookUp(b: Uint8Array, s: number, e: number, kind: number): string {
  const length = e - s;
  const h = Math.imul(
    length ^ (b[s]! << 8) ^ (b[e - 1]! << 16) ^ (b[s + (length >> 1)]! << 24),
    0x9e3779b1,
  );
  const slot = (kind << CACHE_BITS) | (h >>> (32 - CACHE_BITS));
  cacheSlot = slot;
  const text = stringCache[slot]!;
  if (text.length !== length) return '';
  const view = regionView;
  const cached = cacheBytes;
  const base = slot * CACHE_MAX_LENGTH;
  let k = 0;
  for (; k + 4 <= length; k += 4) {
    if (view.getInt32(s + k, true) !== cached.getInt32(base + k, true)) return '';
  }
  for (; k < length; k++) if (b[s + k] !== cached.getUint8(base + k)) return '';
  return text;
}

// Remembers `text`, made of b[s..e), in the slot the last lookUp chose.
function remember(b: Uint8Array, s: number, e: number, text: string): void {
  const base = cacheSlot * CACHE_MAX_LENGTH;
  for (let i = s; i < e; i++) cacheBytes.setUint8(base + i - s, b[i]!);
  stringCache[cacheSlot] = text;
}

// One character per byte. Short strings are concatenated (the engine copies strings of up to 12
// characters into a flat one); longer ones are made in one go, since a concatenated one would be
// a rope, whose characters are slower to read (and the cache reads them).
function charString(b: Uint8Array, s: number, e: number): string {
  if (e - s <= 12) {
    let text = '';
    for (let i = s; i < e; i++) text += String.fromCharCode(b[i]!);
    return text;
  }
  // In chunks, to stay far below the engine's limit on arguments.
  let text = '';
  for (let at = s; at < e; at += 4096) {
    const chunk = b.subarray(at, e - at > 4096 ? at + 4096 : e);
    text += String.fromCharCode.apply(null, chunk as unknown as number[]);
  }
  return text;
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function utf8(view: Uint8Array): string | null {
  try {
    return utf8Decoder.decode(view);
  } catch {
    return null;
  }
}

function badString(what: string, why: string, at: number): ProxyProtocolError {
  return fault('ERR_PROXY_TLV_BAD_STRING', `PROXY v2 ${what}: ${why}`, at - regionDelta);
}

// ALPN: the spec gives no character set; one character per byte.
function latin1String(b: Uint8Array, s: number, e: number): string {
  const length = e - s;
  if (length === 0) return '';
  if (length > CACHE_MAX_LENGTH) return charString(b, s, e);
  const hit = lookUp(b, s, e, LATIN1);
  if (hit !== '') return hit;
  const text = charString(b, s, e);
  remember(b, s, e, text);
  return text;
}

// Choice: the spec calls these US-ASCII; control characters and bytes above 0x7e are refused so
// that a value can be logged or compared without surprises.
function asciiString(b: Uint8Array, s: number, e: number, what: string): string {
  const length = e - s;
  if (length === 0) return '';
  const cache = length <= CACHE_MAX_LENGTH;
  if (cache) {
    const hit = lookUp(b, s, e, ASCII);
    if (hit !== '') return hit;
  }
  for (let i = s; i < e; i++) {
    const c = b[i]!;
    if (c < 0x20 || c > 0x7e) {
      throw badString(what, `${describeByte(c)} is not printable US-ASCII`, i);
    }
  }
  const text = charString(b, s, e);
  if (cache) remember(b, s, e, text);
  return text;
}

// Choice: UTF-8 strings (authority, client certificate CN) must be valid UTF-8 without control
// characters (C0 or DEL): a NUL or a line break in a host name is an attack, not a name.
function utf8String(b: Uint8Array, s: number, e: number, what: string): string {
  const length = e - s;
  if (length === 0) return '';
  const cache = length <= CACHE_MAX_LENGTH;
  if (cache) {
    const hit = lookUp(b, s, e, UTF8);
    if (hit !== '') return hit;
  }
  let ascii = true;
  for (let i = s; i < e; i++) {
    const c = b[i]!;
    if (c < 0x20 || c === 0x7f) throw badString(what, `control character ${describeByte(c)}`, i);
    if (c >= 0x80) ascii = false;
  }
  if (ascii) {
    const text = charString(b, s, e);
    if (cache) remember(b, s, e, text);
    return text;
  }
  const text = utf8(new Uint8Array(regionBuffer, s, length));
  if (text === null) throw badString(what, 'not valid UTF-8', s);
  return text;
}

function duplicate(what: string, type: number, at: number): ProxyProtocolError {
  return fault(
    'ERR_PROXY_TLV_DUPLICATE',
    `PROXY v2 header: a second ${what} TLV (type ${hex2(type)})`,
    at - regionDelta,
  );
}

function badLength(what: string, type: number, length: number, rule: string, at: number) {
  return fault(
    'ERR_PROXY_TLV_BAD_LENGTH',
    `PROXY v2 header: ${what} TLV (type ${hex2(type)}) of ${length} bytes; it must be ${rule}`,
    at - regionDelta,
  );
}

// Set by decodeTlvs: where the CRC32C value sits in `region`, or -1.
let crcValueAt = -1;

// Walks a TLV list in region[pos..total), of which region[..available) has arrived (all three
// are positions in `region`). Every TLV that has fully arrived is checked and decoded into
// `header`; returns false when the list continues past `available`. Framing errors (a TLV
// running past `total`) are reported as soon as the TLV's three-byte head is seen.
//
// Choice: each TLV the spec names may appear once (NOOP any number of times); a second one is
// refused rather than letting the first or the last silently win. Unknown types are kept raw.
function decodeTlvs(pos: number, available: number, total: number, header: ProxyHeader): boolean {
  const b = region;
  const buffer = regionBuffer;
  const tlvs = header.tlvs;
  let seen = 0; // one bit per named type already decoded
  while (pos < total) {
    if (total - pos < 3) throw overrun('TLV', total - pos, total, pos);
    if (pos + 3 > available) return false;
    const type = b[pos]!;
    const start = pos + 3;
    const length = (b[pos + 1]! << 8) | b[pos + 2]!;
    const end = start + length;
    if (end > total) throw overrunValue('TLV', type, end, total, pos);
    if (end > available) return false;
    const value = new Uint8Array(buffer, start, length);
    tlvs.push({ type, value });
    switch (type) {
      case 0x01:
        if (seen & 0x01) throw duplicate('ALPN', type, pos);
        seen |= 0x01;
        header.alpn = latin1String(b, start, end);
        break;
      case 0x02:
        if (seen & 0x02) throw duplicate('authority', type, pos);
        seen |= 0x02;
        header.authority = utf8String(b, start, end, 'authority TLV');
        break;
      case 0x03:
        if (seen & 0x04) throw duplicate('CRC32C', type, pos);
        seen |= 0x04;
        if (length !== 4) throw badLength('CRC32C', type, length, 'exactly 4', pos);
        crcValueAt = start;
        header.crc32c = readU32(b, start);
        break;
      case 0x05:
        if (seen & 0x08) throw duplicate('unique ID', type, pos);
        seen |= 0x08;
        if (length > UNIQUE_ID_MAX_LENGTH) {
          throw badLength('unique ID', type, length, `at most ${UNIQUE_ID_MAX_LENGTH}`, pos);
        }
        header.uniqueId = value;
        break;
      case 0x20:
        if (seen & 0x10) throw duplicate('SSL', type, pos);
        seen |= 0x10;
        header.ssl = decodeSsl(b, buffer, start, end, pos);
        break;
      case 0x30:
        if (seen & 0x20) throw duplicate('netns', type, pos);
        seen |= 0x20;
        header.netns = asciiString(b, start, end, 'netns TLV');
        break;
      default:
        break; // NOOP and types the spec does not name: kept in `tlvs` only
    }
    pos = end;
  }
  return true;
}

function overrun(what: string, left: number, total: number, at: number): ProxyProtocolError {
  return fault(
    'ERR_PROXY_TLV_OVERRUN',
    `PROXY v2 header: ${left} byte${left === 1 ? '' : 's'} left before the end at ${total - regionDelta}, ` +
      `too few for a ${what} head (3 bytes)`,
    at - regionDelta,
  );
}

function overrunValue(
  what: string,
  type: number,
  end: number,
  total: number,
  at: number,
): ProxyProtocolError {
  const d = regionDelta;
  return fault(
    'ERR_PROXY_TLV_OVERRUN',
    `PROXY v2 header: ${what} type ${hex2(type)} runs to ${end - d}, past the end of its container at ${total - d}`,
    at - d,
  );
}

const SSL_NAMES = [
  'SSL version',
  'SSL CN',
  'SSL cipher',
  'SSL signature algorithm',
  'SSL key algorithm',
  'SSL group',
  'SSL signature scheme',
  'SSL client certificate',
];

function decodeSsl(
  b: Uint8Array,
  buffer: ArrayBuffer,
  start: number,
  end: number,
  at: number,
): ProxySsl {
  if (end - start < 5) {
    throw badLength('SSL', 0x20, end - start, 'at least 5 (client flags and verify result)', at);
  }
  const tlvs: Tlv[] = [];
  const ssl: ProxySsl = { client: b[start]!, verify: readU32(b, start + 1), tlvs };
  let seen = 0; // bit k: sub-type 0x21 + k already decoded
  let pos = start + 5;
  while (pos < end) {
    if (end - pos < 3) throw overrun('SSL sub-TLV', end - pos, end, pos);
    const type = b[pos]!;
    const s = pos + 3;
    const length = (b[pos + 1]! << 8) | b[pos + 2]!;
    const e = s + length;
    if (e > end) throw overrunValue('SSL sub-TLV', type, e, end, pos);
    const value = new Uint8Array(buffer, s, length);
    tlvs.push({ type, value });
    const k = type - 0x21;
    if (k >= 0 && k < 8) {
      if (seen & (1 << k)) throw duplicate(SSL_NAMES[k]!, type, pos);
      seen |= 1 << k;
      switch (type) {
        case 0x21:
          ssl.version = asciiString(b, s, e, 'SSL version sub-TLV');
          break;
        case 0x22:
          ssl.cn = utf8String(b, s, e, 'SSL CN sub-TLV');
          break;
        case 0x23:
          ssl.cipher = asciiString(b, s, e, 'SSL cipher sub-TLV');
          break;
        case 0x24:
          ssl.sigAlg = asciiString(b, s, e, 'SSL signature algorithm sub-TLV');
          break;
        case 0x25:
          ssl.keyAlg = asciiString(b, s, e, 'SSL key algorithm sub-TLV');
          break;
        case 0x26:
          ssl.group = asciiString(b, s, e, 'SSL group sub-TLV');
          break;
        case 0x27:
          ssl.sigScheme = asciiString(b, s, e, 'SSL signature scheme sub-TLV');
          break;
        default:
          ssl.clientCert = value;
          break;
      }
    }
    pos = e;
  }
  return ssl;
}

// ---------------------------------------------------------------------------------------------
// Encoding

interface InvalidHeaderError extends TypeError {
  code: 'ERR_INVALID_ARG_VALUE';
}

function invalid(message: string, cause?: unknown): InvalidHeaderError {
  const err = new TypeError(
    message,
    cause === undefined ? undefined : { cause },
  ) as InvalidHeaderError;
  err.code = 'ERR_INVALID_ARG_VALUE';
  return err;
}

/**
 * Encodes a header as v1 text or v2 binary.
 *
 * Writes `header.tlvs` in order, then a TLV for each decoded field (`alpn`, `authority`,
 * `crc32c`, `uniqueId`, `ssl`, `netns`) that has none in `tlvs`; a field and its TLV that disagree
 * are an error. A CRC32C TLV is always filled with the checksum of the result (its value in the
 * input is ignored); `crc32c: true` adds one. So `decodeHeader(encodeHeader(h, {version:
 * h.version}))!.header` deep-equals any decoded header `h`.
 *
 * Throws a TypeError (code `ERR_INVALID_ARG_VALUE`) naming the field for a header that cannot be
 * written, including anything v1 cannot express (LOCAL, UDP, AF_UNIX, TLVs) and anything
 * {@link decodeHeader} would refuse.
 */
export function encodeHeader(header: ProxyHeaderInput, options: EncodeOptions): Buffer {
  if (options.version === 1) return encodeV1(header, options);
  if (options.version === 2) return encodeV2(header, options);
  throw invalid(`options.version must be 1 or 2, not ${String(options.version)}`);
}

function checkPort(port: unknown, where: string): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 0xffff) {
    throw invalid(`${where}.port must be an integer from 0 to 65535, not ${String(port)}`);
  }
  return port;
}

function ipBytes(endpoint: ProxyEndpoint | null, family: 4 | 6, where: string): Uint8Array {
  if (endpoint === null || typeof endpoint !== 'object') {
    throw invalid(`${where} is required for a PROXY header over IPv${family}`);
  }
  const bytes =
    typeof endpoint.address === 'string'
      ? family === 4
        ? parseIPv4(endpoint.address)
        : parseIPv6(endpoint.address)
      : null;
  if (bytes === null) {
    throw invalid(
      `${where}.address must be an IPv${family} address, not ${JSON.stringify(endpoint.address)}`,
    );
  }
  return bytes;
}

const NAMED_FIELDS = ['alpn', 'authority', 'crc32c', 'uniqueId', 'ssl', 'netns'] as const;

function encodeV1(header: ProxyHeaderInput, options: EncodeOptions): Buffer {
  const cannot = (why: string) => invalid(`cannot encode as PROXY v1: ${why}; use version 2`);
  if (options.crc32c) throw cannot('v1 has no TLVs, so no CRC32C');
  if (header.command !== 'PROXY') throw cannot(`v1 has no ${String(header.command)} command`);
  if (header.tlvs !== undefined && header.tlvs.length > 0) throw cannot('v1 has no TLVs');
  for (const field of NAMED_FIELDS) {
    if (header[field] !== undefined) throw cannot(`v1 has no TLVs (header.${field} is set)`);
  }
  if (header.protocol === 'UNKNOWN') {
    if (header.source !== null || header.destination !== null) {
      throw cannot(
        'a v1 UNKNOWN header carries no addresses (source and destination must be null)',
      );
    }
    return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  }
  if (header.protocol !== 'TCP4' && header.protocol !== 'TCP6') {
    throw cannot(`v1 carries only TCP4, TCP6 and UNKNOWN, not ${String(header.protocol)}`);
  }
  const family = header.protocol === 'TCP4' ? 4 : 6;
  const format = family === 4 ? formatIPv4 : formatIPv6;
  const src = format(ipBytes(header.source, family, 'header.source'));
  const dst = format(ipBytes(header.destination, family, 'header.destination'));
  const sport = checkPort(header.source!.port, 'header.source');
  const dport = checkPort(header.destination!.port, 'header.destination');
  return Buffer.from(`PROXY ${header.protocol} ${src} ${dst} ${sport} ${dport}\r\n`, 'latin1');
}

const FAMILY_BYTE: Record<ProxyProtocolName, number> = {
  UNKNOWN: 0x00,
  TCP4: 0x11,
  UDP4: 0x12,
  TCP6: 0x21,
  UDP6: 0x22,
  UNIX_STREAM: 0x31,
  UNIX_DGRAM: 0x32,
};

function addressBlockSize(fam: number): number {
  switch (fam >> 4) {
    case 1:
      return 12;
    case 2:
      return 36;
    case 3:
      return 2 * UNIX_PATH_SIZE;
    default:
      return 0;
  }
}

function checkTlvList(list: readonly Tlv[] | undefined, where: string): Tlv[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw invalid(`${where} must be an array of { type, value }`);
  return list.map((tlv, i) => {
    if (
      tlv === null ||
      typeof tlv !== 'object' ||
      !Number.isInteger(tlv.type) ||
      tlv.type < 0 ||
      tlv.type > 0xff ||
      !(tlv.value instanceof Uint8Array)
    ) {
      throw invalid(`${where}[${i}] must be { type: 0-255, value: Uint8Array }`);
    }
    if (tlv.value.length > 0xffff) {
      throw invalid(`${where}[${i}].value is ${tlv.value.length} bytes; a TLV holds at most 65535`);
    }
    return tlv;
  });
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// Adds the TLV for a decoded field unless `list` has one of that type, which must then agree.
function mergeField(list: Tlv[], type: number, value: Uint8Array | undefined, where: string): void {
  if (value === undefined) return;
  const existing = list.find((tlv) => tlv.type === type);
  if (existing === undefined) list.push({ type, value });
  else if (!bytesEqual(existing.value, value)) {
    throw invalid(`${where} disagrees with the TLV of type ${hex2(type)} in its tlvs`);
  }
}

function stringBytes(value: unknown, where: string, encoding: 'utf8' | 'latin1'): Uint8Array {
  if (typeof value !== 'string') throw invalid(`${where} must be a string`);
  if (encoding === 'latin1') {
    for (let i = 0; i < value.length; i++) {
      if (value.charCodeAt(i) > 0xff) {
        throw invalid(`${where} must hold one byte per character (latin1)`);
      }
    }
  }
  return new Uint8Array(Buffer.from(value, encoding));
}

function optionalString(
  value: string | undefined,
  where: string,
  encoding: 'utf8' | 'latin1',
): Uint8Array | undefined {
  return value === undefined ? undefined : stringBytes(value, where, encoding);
}

function optionalBytes(value: Uint8Array | undefined, where: string): Uint8Array | undefined {
  if (value !== undefined && !(value instanceof Uint8Array)) {
    throw invalid(`${where} must be a Uint8Array`);
  }
  return value;
}

function encodeSsl(ssl: ProxySslInput): Uint8Array {
  if (ssl === null || typeof ssl !== 'object') throw invalid('header.ssl must be an object');
  if (!Number.isInteger(ssl.client) || ssl.client < 0 || ssl.client > 0xff) {
    throw invalid(`header.ssl.client must be an integer from 0 to 255, not ${String(ssl.client)}`);
  }
  if (!Number.isInteger(ssl.verify) || ssl.verify < 0 || ssl.verify > 0xffffffff) {
    throw invalid(`header.ssl.verify must be a 32-bit unsigned integer, not ${String(ssl.verify)}`);
  }
  const subs = checkTlvList(ssl.tlvs, 'header.ssl.tlvs');
  const at = 'header.ssl';
  mergeField(subs, 0x21, optionalString(ssl.version, `${at}.version`, 'utf8'), `${at}.version`);
  mergeField(subs, 0x22, optionalString(ssl.cn, `${at}.cn`, 'utf8'), `${at}.cn`);
  mergeField(subs, 0x23, optionalString(ssl.cipher, `${at}.cipher`, 'utf8'), `${at}.cipher`);
  mergeField(subs, 0x24, optionalString(ssl.sigAlg, `${at}.sigAlg`, 'utf8'), `${at}.sigAlg`);
  mergeField(subs, 0x25, optionalString(ssl.keyAlg, `${at}.keyAlg`, 'utf8'), `${at}.keyAlg`);
  mergeField(subs, 0x26, optionalString(ssl.group, `${at}.group`, 'utf8'), `${at}.group`);
  const sigScheme = optionalString(ssl.sigScheme, `${at}.sigScheme`, 'utf8');
  mergeField(subs, 0x27, sigScheme, `${at}.sigScheme`);
  mergeField(subs, 0x28, optionalBytes(ssl.clientCert, `${at}.clientCert`), `${at}.clientCert`);
  let size = 5;
  for (const sub of subs) size += 3 + sub.value.length;
  if (size > 0xffff)
    throw invalid(`header.ssl encodes to ${size} bytes; a TLV holds at most 65535`);
  const out = new Uint8Array(size);
  out[0] = ssl.client;
  writeU32(out, 1, ssl.verify);
  writeTlvs(out, 5, subs);
  return out;
}

function writeU32(out: Uint8Array, at: number, value: number): void {
  out[at] = value >>> 24;
  out[at + 1] = (value >>> 16) & 0xff;
  out[at + 2] = (value >>> 8) & 0xff;
  out[at + 3] = value & 0xff;
}

function writeTlvs(out: Uint8Array, pos: number, list: readonly Tlv[]): number {
  for (const tlv of list) {
    out[pos] = tlv.type;
    out[pos + 1] = tlv.value.length >>> 8;
    out[pos + 2] = tlv.value.length & 0xff;
    out.set(tlv.value, pos + 3);
    pos += 3 + tlv.value.length;
  }
  return pos;
}

function writeUnixPath(out: Uint8Array, at: number, endpoint: ProxyEndpoint | null, where: string) {
  if (endpoint === null || typeof endpoint !== 'object' || typeof endpoint.address !== 'string') {
    throw invalid(`${where} must be { address: <socket path>, port: null } for AF_UNIX`);
  }
  if (endpoint.port !== null) throw invalid(`${where}.port must be null for AF_UNIX`);
  const path = Buffer.from(endpoint.address, 'utf8');
  if (path.length > UNIX_PATH_SIZE || path.includes(0)) {
    throw invalid(`${where}.address must be at most ${UNIX_PATH_SIZE} bytes of UTF-8 without NUL`);
  }
  out.set(path, at);
}

function encodeV2(header: ProxyHeaderInput, options: EncodeOptions): Buffer {
  if (!Object.hasOwn(FAMILY_BYTE, header.protocol)) {
    throw invalid(
      `header.protocol ${JSON.stringify(header.protocol)} is not a PROXY protocol name`,
    );
  }
  const fam = FAMILY_BYTE[header.protocol];
  if (header.command !== 'PROXY' && header.command !== 'LOCAL') {
    throw invalid(
      `header.command must be 'PROXY' or 'LOCAL', not ${JSON.stringify(header.command)}`,
    );
  }
  const local = header.command === 'LOCAL';
  if ((local || fam === 0) && (header.source !== null || header.destination !== null)) {
    throw invalid(
      `header.source and header.destination must be null for ${local ? 'LOCAL' : 'UNKNOWN'}`,
    );
  }

  const tlvs = checkTlvList(header.tlvs, 'header.tlvs');
  mergeField(tlvs, 0x01, optionalString(header.alpn, 'header.alpn', 'latin1'), 'header.alpn');
  const authority = optionalString(header.authority, 'header.authority', 'utf8');
  mergeField(tlvs, 0x02, authority, 'header.authority');
  if (header.crc32c !== undefined && !tlvs.some((tlv) => tlv.type === 0x03)) {
    tlvs.push({ type: 0x03, value: new Uint8Array(4) });
  }
  mergeField(tlvs, 0x05, optionalBytes(header.uniqueId, 'header.uniqueId'), 'header.uniqueId');
  mergeField(
    tlvs,
    0x20,
    header.ssl === undefined ? undefined : encodeSsl(header.ssl),
    'header.ssl',
  );
  mergeField(tlvs, 0x30, optionalString(header.netns, 'header.netns', 'utf8'), 'header.netns');
  if (options.crc32c && !tlvs.some((tlv) => tlv.type === 0x03)) {
    tlvs.push({ type: 0x03, value: new Uint8Array(4) });
  }

  // LOCAL without TLVs sends no address block, as the spec asks of senders; with TLVs, a zeroed
  // block keeps the family's layout for receivers that skip it by size.
  const addressSize = local && tlvs.length === 0 ? 0 : addressBlockSize(fam);
  let len = addressSize;
  for (const tlv of tlvs) len += 3 + tlv.value.length;
  if (len > 0xffff) {
    throw invalid(`the header needs ${len} bytes after its fixed part; PROXY v2 allows 65535`);
  }
  const out = Buffer.alloc(16 + len);
  out.set(V2_SIGNATURE, 0);
  out[12] = local ? 0x20 : 0x21;
  out[13] = fam;
  out[14] = len >>> 8;
  out[15] = len & 0xff;
  if (!local) {
    if (addressSize === 12 || addressSize === 36) {
      const family = addressSize === 12 ? 4 : 6;
      const size = family === 4 ? 4 : 16;
      out.set(ipBytes(header.source, family, 'header.source'), 16);
      out.set(ipBytes(header.destination, family, 'header.destination'), 16 + size);
      const ports = 16 + 2 * size;
      const sport = checkPort(header.source!.port, 'header.source');
      const dport = checkPort(header.destination!.port, 'header.destination');
      out[ports] = sport >>> 8;
      out[ports + 1] = sport & 0xff;
      out[ports + 2] = dport >>> 8;
      out[ports + 3] = dport & 0xff;
    } else if (addressSize === 2 * UNIX_PATH_SIZE) {
      writeUnixPath(out, 16, header.source, 'header.source');
      writeUnixPath(out, 16 + UNIX_PATH_SIZE, header.destination, 'header.destination');
    }
  }
  writeTlvs(out, 16 + addressSize, tlvs);

  // The checksum covers the finished header with its own value zeroed.
  let crcAt = -1;
  let pos = 16 + addressSize;
  for (const tlv of tlvs) {
    if (tlv.type === 0x03) {
      if (crcAt >= 0) throw invalid('header.tlvs holds more than one CRC32C TLV');
      if (tlv.value.length !== 4) throw invalid('a CRC32C TLV in header.tlvs must be 4 bytes long');
      crcAt = pos + 3;
    }
    pos += 3 + tlv.value.length;
  }
  if (crcAt >= 0) {
    out.fill(0, crcAt, crcAt + 4);
    // Through a plain Uint8Array, as the decoder does: the checksum's loads stay of one type.
    const plain = new Uint8Array(out.buffer, out.byteOffset, out.length);
    writeU32(out, crcAt, crc32cFinish(crc32cUpdate(CRC32C_INIT, plain, 0, plain.length)));
  }

  // Whatever the decoder would refuse (a control character in the authority, a unique ID over
  // 128 bytes, a malformed SSL sub-TLV in tlvs...) is refused here, by the decoder itself.
  try {
    decodeHeader(out);
  } catch (err) {
    if (err instanceof ProxyProtocolError) {
      throw invalid(`the header cannot be encoded: ${err.message} (${err.code})`, err);
    }
    throw err;
  }
  return out;
}
