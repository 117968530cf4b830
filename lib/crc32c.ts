// CRC32C (Castagnoli, RFC 4960 appendix B), the checksum of the PROXY v2 PP2_TYPE_CRC32C TLV.
// Table-driven, eight bytes per step ("slice-by-8"): a header is checked on every connection that
// carries one, so this runs on the connection path.

const POLYNOMIAL = 0x82f63b78; // 0x1EDC6F41 bit-reversed: the algorithm works least significant bit first

// Eight 256-entry tables in one array; table k sits at k * 256. Table k maps a byte to the CRC of
// that byte followed by k zero bytes, which lets eight input bytes be folded in with eight lookups.
const TABLE = buildTable();

function buildTable(): Int32Array {
  const t = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLYNOMIAL : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n]!;
    for (let k = 1; k < 8; k++) {
      c = t[c & 0xff]! ^ (c >>> 8);
      t[k * 256 + n] = c;
    }
  }
  return t;
}

/**
 * Folds `bytes[start..end)` into a running CRC32C state. Start from {@link CRC32C_INIT} and finish
 * with {@link crc32cFinish}; the state is a signed 32-bit integer, as bitwise operators leave it.
 */
export function crc32cUpdate(state: number, bytes: Uint8Array, start: number, end: number): number {
  const t = TABLE;
  let c = state | 0;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    const lo =
      c ^ (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
    const hi = bytes[i + 4]! | (bytes[i + 5]! << 8) | (bytes[i + 6]! << 16) | (bytes[i + 7]! << 24);
    c =
      t[1792 + (lo & 0xff)]! ^
      t[1536 + ((lo >>> 8) & 0xff)]! ^
      t[1280 + ((lo >>> 16) & 0xff)]! ^
      t[1024 + (lo >>> 24)]! ^
      t[768 + (hi & 0xff)]! ^
      t[512 + ((hi >>> 8) & 0xff)]! ^
      t[256 + ((hi >>> 16) & 0xff)]! ^
      t[hi >>> 24]!;
  }
  for (; i < end; i++) c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return c;
}

/** Folds `count` zero bytes into a running state (the checksum field while it is verified). */
export function crc32cZeros(state: number, count: number): number {
  const t = TABLE;
  let c = state | 0;
  for (let i = 0; i < count; i++) c = t[c & 0xff]! ^ (c >>> 8);
  return c;
}

/** The state before any byte. */
export const CRC32C_INIT = -1;

/** The checksum of a finished state, as an unsigned 32-bit number. */
export function crc32cFinish(state: number): number {
  return ~state >>> 0;
}

/** CRC32C of `bytes[start..end)` as an unsigned 32-bit number. */
export function crc32c(bytes: Uint8Array, start = 0, end = bytes.length): number {
  return crc32cFinish(crc32cUpdate(CRC32C_INIT, bytes, start, end));
}
