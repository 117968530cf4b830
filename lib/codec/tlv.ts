// The TLVs after a v2 address block: walked, the named ones decoded, the CRC32C verified.
import { crc32cZeroed } from './crc32c.js';
import { UNIQUE_ID_MAX_LENGTH } from './constants.js';
import { badLength, duplicate, fault, overrun, overrunValue } from './faults.js';
import {
  copyHeader,
  copyNothing,
  readU32,
  region,
  regionBuffer,
  regionDelta,
} from './header-copy.js';
import { decodeSsl } from './ssl.js';
import { asciiString, latin1String, utf8String } from './tlv-strings.js';
import type { ProxyHeader } from './types.js';

/**
 * Decodes the TLVs in `bytes[tlvStart..total)`, of which `bytes[..n)` has arrived, into `header`,
 * and verifies the CRC32C TLV if there is one. Returns false when the list continues past `n`.
 */
export function decodeV2Tlvs(
  bytes: Uint8Array,
  n: number,
  tlvStart: number,
  total: number,
  header: ProxyHeader,
): boolean {
  const available = n < total ? n : total;
  if (available > tlvStart) copyHeader(bytes, available, available === total);
  else copyNothing(); // nothing to read yet; decodeTlvs only checks the framing
  const d = regionDelta;
  crcValueAt = -1;
  if (!decodeTlvs(tlvStart + d, available + d, total + d, header)) return false;
  if (crcValueAt >= 0) verifyCrc32c(bytes, total, crcValueAt - d, header.crc32c!);
  return true;
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
