// Decoding a v2 (binary) PROXY header: the 16-byte fixed part and the address block.
import { UNIX_PATH_SIZE, V2_SIGNATURE } from './constants.js';
import { badSignature, fault, hex2, truncated } from './faults.js';
import { formatIPv4, formatIPv6 } from './ip-address.js';
import { decodeV2Tlvs } from './tlv.js';
import { utf8 } from './tlv-strings.js';
import type { DecodeResult, ProxyEndpoint, ProxyHeader, ProxyProtocolName } from './types.js';

export function decodeV2(
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
  if (total > tlvStart && !decodeV2Tlvs(bytes, n, tlvStart, total, header)) {
    return v2NeedMore(dgram, n, `${total} bytes`);
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
