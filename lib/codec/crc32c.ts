// CRC32C (Castagnoli, RFC 4960 appendix B), the checksum of the PROXY v2 PP2_TYPE_CRC32C TLV.
// Table-driven, eight bytes per step ("slice-by-8"): a header is checked on every connection that
// carries one, so this runs on the connection path.

const POLYNOMIAL = 0x82f63b78; // 0x1EDC6F41 bit-reversed: the algorithm works least significant bit first

// Eight 256-entry tables in one array; table k sits at k * 256. Table k maps a byte to the CRC of
// that byte followed by k zero bytes, which lets eight input bytes be folded in with eight lookups.
// TABLE16 extends the same to sixteen tables, for the WebAssembly loop below.
const TABLE16 = buildTable();
const TABLE = TABLE16.subarray(0, 8 * 256);

function buildTable(): Int32Array {
  const t = new Int32Array(16 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLYNOMIAL : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n]!;
    for (let k = 1; k < 16; k++) {
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

// ---------------------------------------------------------------------------------------------
// WebAssembly: the same algorithm, sixteen bytes per step ("slice-by-16"), about twice as fast on
// a PROXY header. The loop is bound by the latency of its table loads, one step after the other;
// sixteen bytes a step halve the steps, but in JavaScript the bounds checks of twice the loads
// eat the gain, where in WebAssembly they cost nothing. The module is assembled below from its
// instructions (no build step, no binary blob); where WebAssembly is unavailable (--jitless), the
// JavaScript loop above does the work.
//
// Memory (one 64 KiB page): sixteen 256-entry tables of little-endian 32-bit words at 0, table k
// at k * 1024; the bytes to checksum are copied to SCRATCH.
//
//   (func $crc (param $c i32) (param $p i32) (param $end i32) (result i32)
//     (local $w i64) (local $a i32) (local $b i32) (local $d i32) (local $e i32)
//     while p + 16 <= end: a = c ^ lo32(load64 p); b = hi32(load64 p); d, e likewise at p + 8;
//                          c = T15[a & 255] ^ T14[a >> 8 & 255] ^ ... ^ T0[e >> 24]; p += 16
//     while p + 8 <= end:  the same with T7..T0 over a, b; p += 8
//     while p < end:       c = T0[(c ^ byte p) & 255] ^ (c >>> 8); p += 1
//     c)
const SCRATCH = 16384;
const SCRATCH_SIZE = 65536 - SCRATCH;

function assemble(): Uint8Array {
  const uleb = (n: number): number[] => {
    const out: number[] = [];
    do {
      let b = n & 0x7f;
      n >>>= 7;
      if (n !== 0) b |= 0x80;
      out.push(b);
    } while (n !== 0);
    return out;
  };
  // prettier-ignore
  const C = 0, P = 1, END = 2, W = 3, A = 4, B = 5, D = 6, E = 7;
  const get = (i: number) => [0x20, i];
  const set = (i: number) => [0x21, i];
  const i32 = (n: number) => [0x41, n]; // small non-negative constants only (< 64)
  const xor = 0x73;
  // T_k[(v >>> shift) & 255]: the index times four, loaded at offset k * 1024.
  const lookup = (k: number, v: number, shift: number) => [
    ...get(v),
    ...(shift === 0 ? [] : [...i32(shift), 0x76 /* i32.shr_u */]),
    ...(shift === 24 ? [] : [0x41, ...[0xff, 0x01] /* i32.const 255 */, 0x71 /* i32.and */]),
    ...i32(2),
    0x74, // i32.shl
    0x28,
    2,
    ...uleb(k * 1024), // i32.load align=4 offset=k*1024
  ];
  // Four table lookups of the word in local v, xor-ed into the value on the stack.
  const word = (v: number, top: number, first: boolean) => [
    ...lookup(top, v, 0),
    ...(first ? [] : [xor]),
    ...lookup(top - 1, v, 8),
    xor,
    ...lookup(top - 2, v, 16),
    xor,
    ...lookup(top - 3, v, 24),
    xor,
  ];
  // prettier-ignore
  const load64 = (offset: number, lo: number, hi: number, withCrc: boolean) => [
    ...get(P), 0x29, 3, offset, ...set(W), // w = i64.load p + offset
    ...(withCrc ? get(C) : []),
    ...get(W), 0xa7, // i32.wrap_i64
    ...(withCrc ? [xor] : []),
    ...set(lo),
    ...get(W), 0x42, 32, 0x88, 0xa7, ...set(hi), // hi = wrap(w >>> 32)
  ];
  // while (p + step <= end) { body; p += step }
  // prettier-ignore
  const loop = (step: number, body: number[]) => [
    0x02, 0x40, 0x03, 0x40, // block, loop
    ...get(P), ...i32(step), 0x6a, ...get(END), 0x4b, 0x0d, 1, // br_if 1 (p + step > end)
    ...body,
    ...get(P), ...i32(step), 0x6a, ...set(P),
    0x0c, 0, 0x0b, 0x0b, // br 0, end, end
  ];
  // prettier-ignore
  const code = [
    ...loop(16, [
      ...load64(0, A, B, true),
      ...load64(8, D, E, false),
      ...word(A, 15, true), ...word(B, 11, false), ...word(D, 7, false), ...word(E, 3, false),
      ...set(C),
    ]),
    ...loop(8, [...load64(0, A, B, true), ...word(A, 7, true), ...word(B, 3, false), ...set(C)]),
    ...loop(1, [
      ...get(C), ...get(P), 0x2d, 0, 0, xor, // c ^ i32.load8_u p
      0x41, 0xff, 0x01, 0x71, ...i32(2), 0x74, 0x28, 2, 0, // T0[... & 255]
      ...get(C), ...i32(8), 0x76, xor, ...set(C), // ^ (c >>> 8)
    ]),
    ...get(C),
    0x0b,
  ];
  const body = [2, 1, 0x7e, 4, 0x7f, ...code]; // locals: 1 i64, 4 i32
  const section = (id: number, bytes: number[]) => [id, ...uleb(bytes.length), ...bytes];
  const name = (s: string) => [s.length, ...Array.from(s, (c) => c.charCodeAt(0))];
  // prettier-ignore
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0, // "\0asm", version 1
    ...section(1, [1, 0x60, 3, 0x7f, 0x7f, 0x7f, 1, 0x7f]), // type: (i32 i32 i32) -> i32
    ...section(3, [1, 0]), // one function of type 0
    ...section(5, [1, 0, 1]), // one memory of one page
    ...section(7, [2, ...name('m'), 2, 0, ...name('crc'), 0, 0]), // exports
    ...section(10, [1, ...uleb(body.length), ...body]),
  ]);
}

// The little of the WebAssembly API used here (the project's type libraries do not declare it).
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
};

let wasmCrc: ((c: number, p: number, end: number) => number) | null = null;
let wasmBytes: Uint8Array = new Uint8Array(0);

try {
  const instance = new WebAssembly.Instance(new WebAssembly.Module(assemble()));
  const memory = instance.exports['m'] as { buffer: ArrayBuffer };
  const view = new DataView(memory.buffer);
  for (let k = 0; k < 16; k++) {
    for (let n = 0; n < 256; n++) view.setInt32(k * 1024 + n * 4, TABLE16[k * 256 + n]!, true);
  }
  const crc = instance.exports['crc'] as (c: number, p: number, end: number) => number;
  wasmBytes = new Uint8Array(memory.buffer);
  // Checked against the JavaScript loop before it is trusted, on every length up to 40.
  const probe = Uint8Array.from({ length: 40 }, (_, i) => (i * 151 + 7) & 0xff);
  wasmBytes.set(probe, SCRATCH);
  let same = true;
  for (let n = 0; n <= 40; n++) {
    if (crc(CRC32C_INIT, SCRATCH, SCRATCH + n) !== crc32cUpdate(CRC32C_INIT, probe, 0, n))
      same = false;
  }
  if (same) wasmCrc = crc;
} catch {
  wasmCrc = null; // no WebAssembly here: the JavaScript loop it is
}

/**
 * CRC32C of `bytes[0..end)` read with `bytes[zeroAt..zeroAt+4)` as zeros (a PROXY header with
 * its checksum field cleared), as an unsigned 32-bit number. `bytes` is not modified.
 */
export function crc32cZeroed(bytes: Uint8Array, end: number, zeroAt: number): number {
  const crc = wasmCrc;
  if (crc !== null && end <= SCRATCH_SIZE) {
    const memory = wasmBytes;
    memory.set(
      end === bytes.length ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, end),
      SCRATCH,
    );
    const at = SCRATCH + zeroAt;
    memory[at] = 0;
    memory[at + 1] = 0;
    memory[at + 2] = 0;
    memory[at + 3] = 0;
    return ~crc(CRC32C_INIT, SCRATCH, SCRATCH + end) >>> 0;
  }
  let state = crc32cUpdate(CRC32C_INIT, bytes, 0, zeroAt);
  state = crc32cZeros(state, 4);
  return crc32cFinish(crc32cUpdate(state, bytes, zeroAt + 4, end));
}
