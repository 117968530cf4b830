// encodeHeader: writes any header the decoder reads, as v1 text or v2 binary.
import { ProxyProtocolError } from '../errors.js';
import { UNIX_PATH_SIZE, V2_SIGNATURE } from './constants.js';
import { CRC32C_INIT, crc32cFinish, crc32cUpdate } from './crc32c.js';
import { decodeHeader } from './decode.js';
import { invalid } from './faults.js';
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from './ip-address.js';
import { encodeSsl } from './ssl.js';
import {
  checkTlvList,
  mergeField,
  optionalBytes,
  optionalString,
  writeTlvs,
  writeU32,
} from './tlv-write.js';
import type {
  EncodeOptions,
  ProxyEndpoint,
  ProxyHeaderInput,
  ProxyProtocolName,
  Tlv,
} from './types.js';

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
