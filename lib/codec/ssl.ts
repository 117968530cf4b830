// The PP2_TYPE_SSL TLV (0x20): client flags, verify result and sub-TLVs, decoded and encoded.
import { badLength, duplicate, invalid, overrun, overrunValue } from './faults.js';
import { readU32 } from './header-copy.js';
import { asciiString, utf8String } from './tlv-strings.js';
import {
  checkTlvList,
  mergeField,
  optionalBytes,
  optionalString,
  writeTlvs,
  writeU32,
} from './tlv-write.js';
import type { ProxySsl, ProxySslInput, Tlv } from './types.js';

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

export function decodeSsl(
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

export function encodeSsl(ssl: ProxySslInput): Uint8Array {
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
