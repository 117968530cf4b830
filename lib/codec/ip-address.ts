// IP addresses between raw bytes and text: canonical formatting that matches what Node prints
// (inet_ntop: RFC 5952 compression, lower case, dotted IPv4-mapped/-compatible forms) and strict
// parsing (what glibc's inet_pton accepts, no more). Written for the per-connection path: no
// regular expressions, no intermediate arrays.

// Every piece of an address is looked up rather than converted, and the separators are folded
// into the pieces, because each string concatenation is an allocation: "0".."255", and with the
// dot after them.
const DECIMAL: readonly string[] = Array.from({ length: 256 }, (_, n) => String(n));
const DECIMAL_DOT: readonly string[] = DECIMAL.map((d) => d + '.');
// A 16-bit word in hex is its high byte without leading zeros followed by its low byte padded to
// two digits (or just the low byte unpadded when the high byte is zero); then maybe a colon.
const HEX: readonly string[] = Array.from({ length: 256 }, (_, n) => n.toString(16));
const HEX_COLON: readonly string[] = HEX.map((h) => h + ':');
const HEX2: readonly string[] = HEX.map((h) => h.padStart(2, '0'));
const HEX2_COLON: readonly string[] = HEX2.map((h) => h + ':');

/** `a.b.c.d` from the four bytes at `bytes[offset..offset+4)`. */
export function formatIPv4(bytes: Uint8Array, offset = 0): string {
  return (
    DECIMAL_DOT[bytes[offset]!]! +
    DECIMAL_DOT[bytes[offset + 1]!]! +
    DECIMAL_DOT[bytes[offset + 2]!]! +
    DECIMAL[bytes[offset + 3]!]!
  );
}

function hexWord(bytes: Uint8Array, at: number, colon: boolean): string {
  const hi = bytes[at]!;
  const lo = bytes[at + 1]!;
  if (hi === 0) return colon ? HEX_COLON[lo]! : HEX[lo]!;
  return HEX[hi]! + (colon ? HEX2_COLON[lo]! : HEX2[lo]!);
}

/**
 * The 16 bytes at `bytes[offset..offset+16)` as Node prints an IPv6 address (inet_ntop): lower-case
 * hex without leading zeros, the first longest run of two or more zero words written `::`, and the
 * last 32 bits in dotted form for IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`)
 * addresses.
 */
export function formatIPv6(bytes: Uint8Array, offset = 0): string {
  // Longest run of zero words; strict comparison keeps the first of equally long runs.
  let bestStart = -1;
  let bestLength = 0;
  let runStart = -1;
  for (let w = 0; w < 8; w++) {
    const at = offset + 2 * w;
    if (bytes[at] === 0 && bytes[at + 1] === 0) {
      if (runStart < 0) runStart = w;
      if (w - runStart + 1 > bestLength) {
        bestStart = runStart;
        bestLength = w - runStart + 1;
      }
    } else {
      runStart = -1;
    }
  }
  if (bestLength < 2) bestStart = -1;

  if (bestStart === 0) {
    if (bestLength === 6) return '::' + formatIPv4(bytes, offset + 12);
    if (bestLength === 5 && bytes[offset + 10] === 0xff && bytes[offset + 11] === 0xff) {
      return '::ffff:' + formatIPv4(bytes, offset + 12);
    }
  }

  // Each word carries the colon after it, unless it is the last or '::' follows.
  let text = '';
  for (let w = 0; w < 8; w++) {
    if (w === bestStart) {
      text += '::';
      w += bestLength - 1;
      continue;
    }
    text += hexWord(bytes, offset + 2 * w, w !== 7 && w + 1 !== bestStart);
  }
  return text;
}

/** `formatIPv4` or `formatIPv6`, chosen by the length of `bytes` (4 or 16). */
export function formatIP(bytes: Uint8Array): string {
  if (bytes.length === 4) return formatIPv4(bytes, 0);
  if (bytes.length === 16) return formatIPv6(bytes, 0);
  throw new RangeError(`an IP address is 4 or 16 bytes, not ${bytes.length}`);
}

// ---------------------------------------------------------------------------------------------
// Scanners: parse an address out of a byte stream that may not have arrived in full.

/** Returned by a scanner when every byte up to `end` is a valid beginning of an address. */
export const SCAN_INCOMPLETE = -1;
/** Returned by a scanner when the bytes can no longer be an address; see {@link scanFailedAt}. */
export const SCAN_INVALID = -2;

let failedAt = 0;

/** After {@link SCAN_INVALID}: the index of the first byte that made the address impossible. */
export function scanFailedAt(): number {
  return failedAt;
}

function fail(at: number): number {
  failedAt = at;
  return SCAN_INVALID;
}

/**
 * Scans a dotted-quad IPv4 address (four decimal numbers 0-255, no leading zeros) starting at
 * `src[pos]` and ending at the first byte equal to `terminator`, or at `end` when `final` is true.
 * Writes the four bytes to `out[outOffset..]` and returns the terminator's index; or returns
 * {@link SCAN_INCOMPLETE} when the input ends first, or {@link SCAN_INVALID} at the first byte
 * that no valid address can contain there.
 */
export function scanIPv4(
  src: Uint8Array,
  pos: number,
  end: number,
  terminator: number,
  final: boolean,
  out: Uint8Array,
  outOffset: number,
): number {
  let octet = 0;
  let value = 0;
  let digits = 0;
  for (let i = pos; ; i++) {
    if (i >= end) {
      if (!final) return SCAN_INCOMPLETE;
      if (octet !== 3 || digits === 0) return fail(i);
      out[outOffset + 3] = value;
      return i;
    }
    const c = src[i]!;
    if (c >= 0x30 && c <= 0x39) {
      if (digits === 1 && value === 0) return fail(i); // a leading zero: "01" could be read as octal
      value = value * 10 + (c - 0x30);
      if (value > 255) return fail(i);
      digits++;
    } else if (c === 0x2e) {
      if (digits === 0 || octet === 3) return fail(i);
      out[outOffset + octet] = value;
      octet++;
      value = 0;
      digits = 0;
    } else if (c === terminator) {
      if (octet !== 3 || digits === 0) return fail(i);
      out[outOffset + 3] = value;
      return i;
    } else {
      return fail(i);
    }
  }
}

const words = new Uint16Array(8);
const DOUBLE_COLON = 0x3a3a; // `prev` after the second ':' of '::'

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/**
 * Scans an IPv6 address in any form inet_pton accepts (groups of one to four hex digits in either
 * case, at most one `::`, an optional dotted IPv4 tail; no zone index) with the same contract as
 * {@link scanIPv4}. Invalid input is reported at the first byte after which no valid address is
 * possible, so a reader never waits for more bytes of something that is already wrong.
 */
export function scanIPv6(
  src: Uint8Array,
  pos: number,
  end: number,
  terminator: number,
  final: boolean,
  out: Uint8Array,
  outOffset: number,
): number {
  let count = 0; // 16-bit words completed
  let gap = -1; // where '::' stands, as a word index
  let digits = 0; // hex digits of the word being read
  let value = 0;
  let tokenStart = pos; // first byte of the word being read (re-read as decimal if a '.' follows)
  let prev = -1; // the previous byte, DOUBLE_COLON, or -1 at the start
  let v4Octets = -1; // once the dotted tail has started: octets completed in it
  let v4Digits = 0;
  let v4Value = 0;
  let v4Bits = 0;
  for (let i = pos; ; i++) {
    if (i >= end && !final) return SCAN_INCOMPLETE;
    const c = i >= end ? terminator : src[i]!;
    // Words the address can still hold: '::' stands for at least one.
    const max = gap >= 0 ? 7 : 8;
    if (c === terminator) {
      if (v4Octets >= 0) {
        if (v4Octets !== 3 || v4Digits === 0) return fail(i);
        v4Bits = (v4Bits << 8) | v4Value;
        words[count++] = v4Bits >>> 16;
        words[count++] = v4Bits & 0xffff;
      } else if (digits > 0) {
        words[count++] = value;
      } else if (prev !== DOUBLE_COLON) {
        return fail(i); // empty, or a single trailing ':'
      }
      if (gap >= 0) {
        const tail = count - gap;
        for (let k = 1; k <= tail; k++) words[8 - k] = words[count - k]!;
        for (let k = gap; k < 8 - tail; k++) words[k] = 0;
      } else if (count !== 8) {
        return fail(i);
      }
      for (let k = 0; k < 8; k++) {
        out[outOffset + 2 * k] = words[k]! >>> 8;
        out[outOffset + 2 * k + 1] = words[k]! & 0xff;
      }
      return i;
    }
    if (v4Octets >= 0) {
      if (c >= 0x30 && c <= 0x39) {
        if (v4Digits === 1 && v4Value === 0) return fail(i); // leading zero
        v4Value = v4Value * 10 + (c - 0x30);
        if (v4Value > 255) return fail(i);
        v4Digits++;
      } else if (c === 0x2e) {
        if (v4Digits === 0 || v4Octets === 3) return fail(i);
        v4Bits = (v4Bits << 8) | v4Value;
        v4Octets++;
        v4Digits = 0;
        v4Value = 0;
      } else {
        return fail(i);
      }
    } else if (c === 0x3a) {
      if (digits > 0) {
        // A ':' after a word promises another word or '::'; is there room for either?
        if (count + 1 >= max) return fail(i);
        words[count++] = value;
        digits = 0;
        value = 0;
        prev = c;
      } else if (prev === 0x3a) {
        if (gap >= 0) return fail(i);
        gap = count;
        prev = DOUBLE_COLON;
      } else if (prev === -1) {
        prev = c; // must be the first half of a leading '::'
      } else {
        return fail(i);
      }
      tokenStart = i + 1;
      continue;
    } else if (c === 0x2e) {
      // The word just read is the first octet of a dotted tail, which takes the last two words.
      if (digits === 0 || (gap >= 0 ? count + 2 > max : count !== 6)) return fail(i);
      if (digits > 1 && src[tokenStart] === 0x30) return fail(i);
      let octet = 0;
      for (let k = tokenStart; k < i; k++) {
        const d = src[k]! - 0x30;
        if (d < 0 || d > 9) return fail(i);
        octet = octet * 10 + d;
      }
      if (octet > 255) return fail(i);
      v4Bits = octet;
      v4Octets = 1;
    } else {
      const h = hexValue(c);
      if (h < 0 || digits === 4) return fail(i);
      if (digits === 0 && (count >= max || (prev === 0x3a && count === 0 && gap < 0))) {
        return fail(i); // no room for another word, or a single leading ':'
      }
      value = (value << 4) | h;
      digits++;
    }
    prev = c;
  }
}

// Text parsing reuses the byte scanners, so text and wire input follow one grammar.
const textBytes = new Uint8Array(64);

function toBytes(text: string): number {
  const n = text.length;
  if (n > textBytes.length) return -1;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c > 0x7e) return -1;
    textBytes[i] = c;
  }
  return n;
}

/** The 4 bytes of a dotted-quad IPv4 address (no leading zeros, as inet_pton), or null. */
export function parseIPv4(text: string): Uint8Array | null {
  const n = toBytes(text);
  if (n < 0) return null;
  const out = new Uint8Array(4);
  return scanIPv4(textBytes, 0, n, -1, true, out, 0) === n ? out : null;
}

/** The 16 bytes of an IPv6 address in any form inet_pton accepts (no zone index), or null. */
export function parseIPv6(text: string): Uint8Array | null {
  const n = toBytes(text);
  if (n < 0) return null;
  const out = new Uint8Array(16);
  return scanIPv6(textBytes, 0, n, -1, true, out, 0) === n ? out : null;
}
