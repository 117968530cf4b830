// The decoder's copy of a v2 header, in slabs it owns: TLV values are views of it.

export function readU32(bytes: Uint8Array, at: number): number {
  return (
    ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0
  );
}

// TLV values are copies, so that callers may reuse their buffers; but one typed array allocated
// per value would be most of the cost of a header with TLVs (and any array over 64 bytes gets
// memory of its own outside the heap, which costs about a microsecond). So the header is copied
// once, into a slab this module owns (as Buffer.allocUnsafe does with its pool, but zero-filled),
// and every value is a view of that copy. A value's `.buffer` may therefore hold other headers'
// bytes, never the caller's memory. Complete headers of up to a quarter slab share slabs; larger
// ones, and headers still arriving, get their own copy. The TLVs are then read from the copy,
// which is always a plain Uint8Array, and so is the checksum.
//
// The whole header is copied, not only its TLVs, so that the checksum reads one array. A slab
// costs about as much to allocate at 16 KiB as at 8 KiB (the cost is per allocation, not per
// byte); a larger one would keep more memory alive for one retained value.
const SLAB_SIZE = 16384;
let slab = new Uint8Array(SLAB_SIZE);
let slabBuffer = slab.buffer;
let slabView = new DataView(slabBuffer);
let slabUsed = 0;
// The copy being decoded: input byte `i` is `region[i + regionDelta]`, and `region` starts at
// offset 0 of `regionBuffer`. Written only here; tlv.ts, tlv-strings.ts and faults.ts read them.
export let region = slab;
export let regionBuffer: ArrayBuffer = slab.buffer;
export let regionView = slabView; // for reading four bytes at once
export let regionDelta = 0;

// Copies bytes[0..end) and points `region` at the copy.
export function copyHeader(bytes: Uint8Array, end: number, complete: boolean): void {
  let target: Uint8Array<ArrayBuffer>;
  let at: number;
  if (complete && end <= SLAB_SIZE / 4) {
    if (slabUsed + end > SLAB_SIZE) {
      slab = new Uint8Array(SLAB_SIZE);
      slabBuffer = slab.buffer;
      slabView = new DataView(slabBuffer);
      slabUsed = 0;
    }
    target = slab;
    at = slabUsed;
    slabUsed += end;
  } else {
    target = new Uint8Array(end);
    at = 0;
  }
  target.set(
    end === bytes.length ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, end),
    at,
  );
  region = target;
  if (target === slab) {
    regionBuffer = slabBuffer;
    regionView = slabView;
  } else {
    regionBuffer = target.buffer;
    regionView = new DataView(regionBuffer);
  }
  regionDelta = at;
}

// For a TLV list none of whose bytes has arrived: nothing is copied, and positions in `region` are
// positions in the input, since decodeTlvs reads no byte then (it only checks the framing).
export function copyNothing(): void {
  regionDelta = 0;
}
