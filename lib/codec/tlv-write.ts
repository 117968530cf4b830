// The encoder's TLV lists: checks those it is given, adds those of named fields, writes them.
import { hex2, invalid } from './faults.js';
import type { Tlv } from './types.js';

export function checkTlvList(list: readonly Tlv[] | undefined, where: string): Tlv[] {
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
export function mergeField(
  list: Tlv[],
  type: number,
  value: Uint8Array | undefined,
  where: string,
): void {
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

export function optionalString(
  value: string | undefined,
  where: string,
  encoding: 'utf8' | 'latin1',
): Uint8Array | undefined {
  return value === undefined ? undefined : stringBytes(value, where, encoding);
}

export function optionalBytes(
  value: Uint8Array | undefined,
  where: string,
): Uint8Array | undefined {
  if (value !== undefined && !(value instanceof Uint8Array)) {
    throw invalid(`${where} must be a Uint8Array`);
  }
  return value;
}

export function writeU32(out: Uint8Array, at: number, value: number): void {
  out[at] = value >>> 24;
  out[at + 1] = (value >>> 16) & 0xff;
  out[at + 2] = (value >>> 8) & 0xff;
  out[at + 3] = value & 0xff;
}

export function writeTlvs(out: Uint8Array, pos: number, list: readonly Tlv[]): number {
  for (const tlv of list) {
    out[pos] = tlv.type;
    out[pos + 1] = tlv.value.length >>> 8;
    out[pos + 2] = tlv.value.length & 0xff;
    out.set(tlv.value, pos + 3);
    pos += 3 + tlv.value.length;
  }
  return pos;
}
