// Strings in TLVs (ALPN, authority, netns, SSL names): validated by kind, and cached.
import type { ProxyProtocolError } from '../errors.js';
import { describeByte, fault } from './faults.js';
import { regionBuffer, regionDelta, regionView } from './header-copy.js';

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

export function utf8(view: Uint8Array): string | null {
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
export function latin1String(b: Uint8Array, s: number, e: number): string {
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
export function asciiString(b: Uint8Array, s: number, e: number, what: string): string {
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
export function utf8String(b: Uint8Array, s: number, e: number, what: string): string {
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
