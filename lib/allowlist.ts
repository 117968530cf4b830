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
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from './codec/ip-address.js';

const EXAMPLE = 'such as 192.0.2.0/24 or 2001:db8::/32, or a single address such as 192.0.2.7';

/** Bytes per record of the compiled table: [family][prefix length][16 address bytes]. */
export const COMPILED_RECORD_SIZE = 18;

// ---------------------------------------------------------------------------------------------
// Address literals as four 32-bit words (network order across words). An IPv4 address is stored
// as its mapped form ::ffff:a.b.c.d so that both spellings of an IPv4 peer compare equal.
// Parsing and printing are lib/codec/ip-address.ts's; these adapters give options.ts and
// source-policy.ts the word form the matchers use.

const wordBytes = new Uint8Array(16);
const wordView = new DataView(wordBytes.buffer);

/**
 * Parses an IP address literal into `out` (four words, network order); IPv4 is stored as
 * ::ffff:a.b.c.d. Returns the family as written (4 or 6), or 0 when `text` is not an address.
 * A zone index (fe80::1%eth0) is refused; callers that accept one strip it first.
 * @internal
 */
export function parseIp(text: string, out: Uint32Array): 0 | 4 | 6 {
  if (text.length < 2 || text.length > 45) return 0;
  const v4 = parseIPv4(text);
  if (v4) {
    out[0] = 0;
    out[1] = 0;
    out[2] = 0xffff;
    out[3] = ((v4[0]! << 24) | (v4[1]! << 16) | (v4[2]! << 8) | v4[3]!) >>> 0;
    return 4;
  }
  const v6 = parseIPv6(text);
  if (!v6) return 0;
  const view = new DataView(v6.buffer, v6.byteOffset, 16);
  for (let k = 0; k < 4; k++) out[k] = view.getUint32(4 * k);
  return 6;
}

/** Whether four words hold an IPv4-mapped address (::ffff:a.b.c.d). @internal */
export function isMapped(words: ArrayLike<number>): boolean {
  return words[0] === 0 && words[1] === 0 && words[2] === 0xffff;
}

/** Dotted-quad text of an unsigned 32-bit IPv4 address. @internal */
export function formatV4(v4: number): string {
  wordView.setUint32(0, v4 >>> 0);
  return formatIPv4(wordBytes);
}

/** IPv6 text exactly as Node prints addresses, from four words. @internal */
export function formatV6(words: ArrayLike<number>): string {
  for (let k = 0; k < 4; k++) wordView.setUint32(4 * k, words[k]! >>> 0);
  return formatIPv6(wordBytes);
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

/**
 * One subnet or address, by the rules of an allowlist line: its normalized CIDR text and its
 * family (an IPv4-mapped subnet of /96 or longer is IPv4), or the reason it is not one.
 * @internal
 */
export function parseSubnet(text: string): { family: 4 | 6; text: string } | string {
  const entry = parseEntry(text);
  return typeof entry === 'string' ? entry : { family: entry.family, text: entry.text };
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
