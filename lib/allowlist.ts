// The subnet allowlist: which load balancers may send us PROXY headers. Parses go-mmproxy's
// --allowed-subnets file format (plus comments and bare addresses), answers `contains` in
// JavaScript, and compiles the table that the native engine checks before reading a byte.
//
// Decisions (documented for users in the README):
// - Fail closed. A missing or unreadable file, a bad line or a file without a single entry is an
//   AllowlistError; go-mmproxy treats those as "allow everyone", which hides the mistake.
// - A CIDR with host bits set (192.0.2.1/24) is accepted and masked (192.0.2.0/24), as Go's
//   net.ParseCIDR does, so files that work with go-mmproxy work here.
// - IPv4 peers are matched against IPv4 entries only, however the socket reports them: an
//   IPv4-mapped peer (::ffff:192.0.2.1) is IPv4. An entry written in the mapped form with a
//   prefix of 96 or more (::ffff:192.0.2.0/120, ::ffff:0:0/96) is stored as the IPv4 entry it
//   means (192.0.2.0/24, 0.0.0.0/0), as Go does. Other IPv6 entries, ::/0 included, match IPv6
//   peers only; to allow everyone write both 0.0.0.0/0 and ::/0 (or configure no allowlist).
// - Entries are kept in file order, IPv4 before IPv6, without duplicates.
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { AllowlistError } from './errors.js';

const EXAMPLE = 'such as 192.0.2.0/24 or 2001:db8::/32, or a single address such as 192.0.2.7';

/** Bytes per record of the compiled table: [family][prefix length][16 address bytes]. */
export const COMPILED_RECORD_SIZE = 18;

// ---------------------------------------------------------------------------------------------
// Address literals as four 32-bit words (network order across words). An IPv4 address is stored
// as its mapped form ::ffff:a.b.c.d so that both spellings of an IPv4 peer compare equal.
// These helpers are shared with options.ts and source-policy.ts; lib/ip-address.ts may take them
// over later.

const groups = new Uint16Array(8);

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Dotted-quad IPv4 in text[start, end) as an unsigned 32-bit number, or -1. Like Node, no leading zeros. */
function parseV4(text: string, start: number, end: number): number {
  let value = 0;
  let parts = 0;
  let i = start;
  while (parts < 4) {
    const first = i;
    let part = 0;
    while (i < end && i - first < 3) {
      const c = text.charCodeAt(i);
      if (c < 48 || c > 57) break;
      part = part * 10 + (c - 48);
      i++;
    }
    const digits = i - first;
    if (digits === 0 || part > 255 || (digits > 1 && text.charCodeAt(first) === 48)) return -1;
    value = value * 256 + part;
    parts++;
    if (parts < 4) {
      if (i >= end || text.charCodeAt(i) !== 46) return -1;
      i++;
    }
  }
  return i === end ? value : -1;
}

/** IPv6 in text[start, end) into `groups`; false when it is not one. No zone index. */
function parseV6(text: string, start: number, end: number): boolean {
  let n = 0;
  let gap = -1;
  let i = start;
  if (end - start >= 2 && text.charCodeAt(i) === 58 && text.charCodeAt(i + 1) === 58) {
    gap = 0;
    i += 2;
  } else if (i < end && text.charCodeAt(i) === 58) {
    return false;
  }
  while (i < end) {
    if (n === 8) return false;
    const first = i;
    let value = 0;
    while (i < end && i - first < 5) {
      const h = hexValue(text.charCodeAt(i));
      if (h < 0) break;
      value = value * 16 + h;
      i++;
    }
    if (i < end && text.charCodeAt(i) === 46) {
      // An embedded IPv4 address takes the last two groups.
      if (n > 6) return false;
      const v4 = parseV4(text, first, end);
      if (v4 < 0) return false;
      groups[n++] = v4 >>> 16;
      groups[n++] = v4 & 0xffff;
      i = end;
      break;
    }
    const digits = i - first;
    if (digits === 0 || digits > 4) return false;
    groups[n++] = value;
    if (i === end) break;
    if (text.charCodeAt(i) !== 58) return false;
    i++;
    if (i < end && text.charCodeAt(i) === 58) {
      if (gap >= 0) return false;
      gap = n;
      i++;
    } else if (i === end) {
      return false;
    }
  }
  if (gap < 0) return n === 8;
  if (n > 7) return false;
  const tail = n - gap;
  for (let k = 0; k < tail; k++) groups[7 - k] = groups[n - 1 - k]!;
  for (let k = gap; k < 8 - tail; k++) groups[k] = 0;
  return true;
}

/**
 * Parses an IP address literal into `out` (four words, network order); IPv4 is stored as
 * ::ffff:a.b.c.d. Returns the family as written (4 or 6), or 0 when `text` is not an address.
 * A zone index (fe80::1%eth0) is refused; callers that accept one strip it first.
 * @internal
 */
export function parseIp(text: string, out: Uint32Array): 0 | 4 | 6 {
  if (text.length < 2 || text.length > 45) return 0;
  const v4 = parseV4(text, 0, text.length);
  if (v4 >= 0) {
    out[0] = 0;
    out[1] = 0;
    out[2] = 0xffff;
    out[3] = v4;
    return 4;
  }
  if (!parseV6(text, 0, text.length)) return 0;
  for (let k = 0; k < 4; k++) out[k] = ((groups[2 * k]! << 16) | groups[2 * k + 1]!) >>> 0;
  return 6;
}

/** Whether four words hold an IPv4-mapped address (::ffff:a.b.c.d). @internal */
export function isMapped(words: ArrayLike<number>): boolean {
  return words[0] === 0 && words[1] === 0 && words[2] === 0xffff;
}

/** Dotted-quad text of an unsigned 32-bit IPv4 address. @internal */
export function formatV4(v4: number): string {
  return `${v4 >>> 24}.${(v4 >>> 16) & 255}.${(v4 >>> 8) & 255}.${v4 & 255}`;
}

/**
 * IPv6 text exactly as Node prints addresses (libuv's inet_ntop): lowercase, the longest run of
 * two or more zero groups compressed, ::ffff:a.b.c.d and ::a.b.c.d in dotted form.
 * @internal
 */
export function formatV6(words: ArrayLike<number>): string {
  const w: number[] = [];
  for (let k = 0; k < 4; k++) {
    const word = words[k]!;
    w.push(word >>> 16, word & 0xffff);
  }
  let bestBase = -1;
  let bestLen = 0;
  let curBase = -1;
  let curLen = 0;
  for (let i = 0; i < 8; i++) {
    if (w[i] === 0) {
      if (curBase === -1) {
        curBase = i;
        curLen = 1;
      } else {
        curLen++;
      }
    } else if (curBase !== -1) {
      if (bestBase === -1 || curLen > bestLen) {
        bestBase = curBase;
        bestLen = curLen;
      }
      curBase = -1;
    }
  }
  if (curBase !== -1 && (bestBase === -1 || curLen > bestLen)) {
    bestBase = curBase;
    bestLen = curLen;
  }
  if (bestBase !== -1 && bestLen < 2) bestBase = -1;
  let text = '';
  for (let i = 0; i < 8; i++) {
    if (bestBase !== -1 && i >= bestBase && i < bestBase + bestLen) {
      if (i === bestBase) text += ':';
      continue;
    }
    if (i !== 0) text += ':';
    if (i === 6 && bestBase === 0 && (bestLen === 6 || (bestLen === 5 && w[5] === 0xffff))) {
      return text + formatV4(words[3]!);
    }
    text += w[i]!.toString(16);
  }
  if (bestBase !== -1 && bestBase + bestLen === 8) text += ':';
  return text;
}

/** The 32-bit mask word for `bits` leading ones (0..32). */
function maskWord(bits: number): number {
  return bits <= 0 ? 0 : bits >= 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
}

// ---------------------------------------------------------------------------------------------

interface Entry {
  family: 4 | 6;
  prefix: number;
  /** IPv4: [v4]; IPv6: four words. Masked. */
  words: number[];
  text: string;
}

const scratch = new Uint32Array(4);

/** One entry (already without comment and surrounding space), or the reason it is not one. */
function parseEntry(text: string): Entry | string {
  if (/\s/.test(text)) return 'one entry a line, without spaces inside it';
  const slash = text.indexOf('/');
  const addressText = slash < 0 ? text : text.slice(0, slash);
  if (addressText.includes('%')) return 'a zone index (%…) has no place in a subnet';
  const family = parseIp(addressText, scratch);
  if (family === 0) return `${JSON.stringify(addressText)} is not an IPv4 or IPv6 address`;
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const prefixText = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) {
      return `the prefix length after "/" must be a number from 0 to ${max}`;
    }
    prefix = Number(prefixText);
    if (prefix > max) return `prefix length ${prefix} is longer than ${max}`;
  }
  if (family === 4 || (prefix >= 96 && isMapped(scratch))) {
    const bits = family === 4 ? prefix : prefix - 96;
    const net = (scratch[3]! & maskWord(bits)) >>> 0;
    return { family: 4, prefix: bits, words: [net], text: `${formatV4(net)}/${bits}` };
  }
  const words: number[] = [];
  for (let k = 0; k < 4; k++) words.push((scratch[k]! & maskWord(prefix - 32 * k)) >>> 0);
  return { family: 6, prefix, words, text: `${formatV6(words)}/${prefix}` };
}

function quoteLine(line: string): string {
  return JSON.stringify(line.length > 120 ? `${line.slice(0, 120)}…` : line);
}

function stripComment(line: string): string {
  const hash = line.indexOf('#');
  return (hash < 0 ? line : line.slice(0, hash)).trim();
}

/** An immutable set of subnets. Swapping one Allowlist reference for another is atomic. */
export class Allowlist {
  /** Normalized CIDR strings (masked, IPv4 first), e.g. "192.0.2.0/24". Frozen. */
  readonly entries: readonly string[];
  /** Where the entries came from: the file name, or "inline" for `from()`. */
  readonly source: string;
  // [net, mask] pairs, host-order numbers: a v4 test is one AND and one compare per entry.
  readonly #v4: Uint32Array;
  // [net0..3, mask0..3] per entry.
  readonly #v6: Uint32Array;
  readonly #compiled: Uint8Array;

  private constructor(parsed: Entry[], source: string) {
    const seen = new Set<string>();
    const unique = parsed.filter((e) => !seen.has(e.text) && seen.add(e.text));
    const v4 = unique.filter((e) => e.family === 4);
    const v6 = unique.filter((e) => e.family === 6);
    const ordered = [...v4, ...v6];
    this.entries = Object.freeze(ordered.map((e) => e.text));
    this.source = source;
    this.#v4 = new Uint32Array(v4.length * 2);
    v4.forEach((e, i) => {
      this.#v4[2 * i] = e.words[0]!;
      this.#v4[2 * i + 1] = maskWord(e.prefix);
    });
    this.#v6 = new Uint32Array(v6.length * 8);
    v6.forEach((e, i) => {
      for (let k = 0; k < 4; k++) {
        this.#v6[8 * i + k] = e.words[k]!;
        this.#v6[8 * i + 4 + k] = maskWord(e.prefix - 32 * k);
      }
    });
    this.#compiled = new Uint8Array(ordered.length * COMPILED_RECORD_SIZE);
    const view = new DataView(this.#compiled.buffer);
    ordered.forEach((e, i) => {
      const at = i * COMPILED_RECORD_SIZE;
      view.setUint8(at, e.family);
      view.setUint8(at + 1, e.prefix);
      e.words.forEach((word, k) => view.setUint32(at + 2 + 4 * k, word));
    });
    Object.freeze(this);
  }

  /** Reads an allowlist file (go-mmproxy's --allowed-subnets format). Rejects with AllowlistError. */
  static async fromFile(file: string): Promise<Allowlist> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (cause) {
      throw unreadable(file, cause);
    }
    return Allowlist.parse(text, file);
  }

  /** `fromFile` for start-up code that cannot wait. */
  static fromFileSync(file: string): Allowlist {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (cause) {
      throw unreadable(file, cause);
    }
    return Allowlist.parse(text, file);
  }

  /**
   * Parses the file format: one subnet or address a line; `#` starts a comment; blank lines,
   * surrounding spaces and CRLF line ends are fine. `sourceName` names the text in errors.
   */
  static parse(text: string, sourceName: string): Allowlist {
    const lines = text.replace(/^\uFEFF/, '').split('\n');
    const parsed: Entry[] = [];
    lines.forEach((raw, index) => {
      const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
      const content = stripComment(line);
      if (content === '') return;
      const entry = parseEntry(content);
      if (typeof entry === 'string') {
        throw new AllowlistError(
          `${sourceName}:${index + 1}: bad allowlist line ${quoteLine(line)}: ${entry}; ` +
            `write one subnet a line, ${EXAMPLE}`,
          { file: sourceName, line: index + 1 },
        );
      }
      parsed.push(entry);
    });
    if (parsed.length === 0) {
      throw new AllowlistError(
        `${sourceName}: the allowlist has no entries, only blank lines or comments; add at ` +
          `least one subnet ${EXAMPLE} (an empty allowlist is refused rather than read as ` +
          `"allow everyone")`,
        { file: sourceName },
      );
    }
    return new Allowlist(parsed, sourceName);
  }

  /** An allowlist from subnet strings in code; the same rules as a file's lines, minus comments. */
  static from(entries: readonly string[]): Allowlist {
    if (!Array.isArray(entries)) {
      throw new AllowlistError(`the allowlist must be an array of subnets ${EXAMPLE}`);
    }
    if (entries.length === 0) {
      throw new AllowlistError(
        `the allowlist has no entries; give at least one subnet ${EXAMPLE} (an empty ` +
          `allowlist is refused rather than read as "allow everyone")`,
      );
    }
    const parsed = entries.map((value: unknown, index) => {
      const entry =
        typeof value === 'string' ? parseEntry(value.trim()) : 'each entry must be a string';
      if (typeof entry === 'string') {
        const shown = typeof value === 'string' ? quoteLine(value) : String(value);
        throw new AllowlistError(
          `allowlist entry ${index} (${shown}): ${entry}; write subnets ${EXAMPLE}`,
        );
      }
      return entry;
    });
    return new Allowlist(parsed, 'inline');
  }

  /** Number of entries. */
  get size(): number {
    return this.entries.length;
  }

  /**
   * Whether the address (as a socket reports it; a zone index is ignored) is in one of the
   * subnets. IPv4-mapped addresses are IPv4. Anything that is not an address is not contained.
   */
  contains(address: string): boolean {
    const zone = address.indexOf('%');
    const family = parseIp(zone < 0 ? address : address.slice(0, zone), scratch);
    if (family === 0) return false;
    if (family === 4 || isMapped(scratch)) {
      const ip = scratch[3]!;
      const table = this.#v4;
      for (let i = 0; i < table.length; i += 2) {
        if ((ip & table[i + 1]!) >>> 0 === table[i]) return true;
      }
      return false;
    }
    const a0 = scratch[0]!;
    const a1 = scratch[1]!;
    const a2 = scratch[2]!;
    const a3 = scratch[3]!;
    const table = this.#v6;
    for (let i = 0; i < table.length; i += 8) {
      if (
        (a0 & table[i + 4]!) >>> 0 === table[i] &&
        (a1 & table[i + 5]!) >>> 0 === table[i + 1] &&
        (a2 & table[i + 6]!) >>> 0 === table[i + 2] &&
        (a3 & table[i + 7]!) >>> 0 === table[i + 3]
      ) {
        return true;
      }
    }
    return false;
  }

  /**
   * The table for the native engine: consecutive 18-byte records [family 4|6][prefix length]
   * [16 address bytes, network order, masked; IPv4 in the first 4]. IPv4 records come first.
   * A fresh copy each call, so the caller may keep or transfer it.
   */
  compile(): Uint8Array {
    return this.#compiled.slice();
  }

  toString(): string {
    return `Allowlist(${this.source}: ${this.entries.join(', ')})`;
  }
}

function unreadable(file: string, cause: unknown): AllowlistError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new AllowlistError(`cannot read allowlist file ${file}: ${detail}`, { file, cause });
}
