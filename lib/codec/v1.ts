// Decoding a v1 (text) PROXY line, byte by byte, in at most 107 bytes.
import type { ProxyProtocolError } from '../errors.js';
import { CR, LF, SP, V1_MAX_LENGTH, V1_SIGNATURE } from './constants.js';
import { badSignature, describeByte, fault } from './faults.js';
import {
  SCAN_INCOMPLETE,
  formatIPv4,
  formatIPv6,
  scanFailedAt,
  scanIPv4,
  scanIPv6,
} from './ip-address.js';
import type { DecodeResult } from './types.js';

export function checkV1Signature(bytes: Uint8Array, n: number): void {
  const end = n < 6 ? n : 6;
  for (let i = 1; i < end; i++) if (bytes[i] !== V1_SIGNATURE[i]) throw badSignature(i, bytes[i]);
}

const v1Addresses = new Uint8Array(32); // source at 0, destination at 16
let scannedPort = 0;

// The last place the CR of a 107-byte line can be.
const V1_LAST_CR = V1_MAX_LENGTH - 2;

// Running out of bytes inside the v1 line: wait for more, unless the CRLF can no longer fit in
// 107 bytes: the line reached 106 bytes and its last is not a CR, or it used up all 107. Only
// called before a CRLF was found, so a CR as byte 106 is the one that can still end the line.
function v1NeedMore(bytes: Uint8Array, end: number): null {
  if (end > V1_LAST_CR && bytes[V1_LAST_CR] !== CR) {
    throw fault(
      'ERR_PROXY_V1_TOO_LONG',
      `v1 PROXY line has no CRLF within its first ${V1_MAX_LENGTH} bytes: ` +
        `${describeByte(bytes[V1_LAST_CR])} where its CR must be at the latest`,
      V1_LAST_CR,
    );
  }
  if (end >= V1_MAX_LENGTH) {
    throw fault(
      'ERR_PROXY_V1_TOO_LONG',
      `v1 PROXY line has no CRLF within its first ${V1_MAX_LENGTH} bytes`,
      V1_MAX_LENGTH,
    );
  }
  return null;
}

export function decodeV1(bytes: Uint8Array, n: number): DecodeResult | null {
  checkV1Signature(bytes, n);
  const end = n < V1_MAX_LENGTH ? n : V1_MAX_LENGTH;
  if (end <= 6) return null;

  // "TCP4 " | "TCP6 " | "UNKNOWN" (then CRLF or a space and anything up to CRLF)
  let p = 6;
  let family = 0;
  const c6 = bytes[6]!;
  if (c6 === 0x54) {
    p = expectLiteral(bytes, 7, end, 'CP');
    if (p < 0) return v1NeedMore(bytes, end);
    if (p === end) return v1NeedMore(bytes, end);
    const f = bytes[p]!;
    if (f === 0x34) family = 4;
    else if (f === 0x36) family = 6;
    else throw badV1Protocol(bytes, p);
    p++;
    if (p === end) return v1NeedMore(bytes, end);
    if (bytes[p] !== SP) throw badV1Protocol(bytes, p);
    p++;
  } else if (c6 === 0x55) {
    p = expectLiteral(bytes, 7, end, 'NKNOWN');
    if (p < 0) return v1NeedMore(bytes, end);
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
  if (srcPortEnd < 0) return v1NeedMore(bytes, end);
  const sourcePort = scannedPort;
  const dstPortEnd = scanV1Port(bytes, srcPortEnd + 1, end, CR, 'destination');
  if (dstPortEnd < 0) return v1NeedMore(bytes, end);
  const lf = dstPortEnd + 1;
  if (lf >= end) return v1NeedMore(bytes, end);
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
  if (p === end) return v1NeedMore(bytes, end);
  const c = bytes[p];
  if (c === CR) {
    if (p + 1 === end) return v1NeedMore(bytes, end);
    if (bytes[p + 1] !== LF) throw badV1Terminator(bytes, p + 1);
    return unknownV1(p + 2);
  }
  if (c !== SP) throw badV1Protocol(bytes, p);
  for (let i = p + 1; i + 1 < end; i++) {
    if (bytes[i] === CR && bytes[i + 1] === LF) return unknownV1(i + 2);
  }
  return v1NeedMore(bytes, end);
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
  if (result === SCAN_INCOMPLETE) return v1NeedMore(bytes, end);
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
