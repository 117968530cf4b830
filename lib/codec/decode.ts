// decodeHeader: tells v1 from v2 in a connection's or datagram's first bytes, and decodes it.
//
// Theory of operation. decodeHeader is called each time more bytes arrive, on every connection, so
// it is written as byte loops over the caller's array with no regular expressions, no string
// splitting and no intermediate arrays. A call either
//   - returns null: every byte so far is a valid beginning of a header (stream transport only;
//     a datagram is complete by definition, so a short one is ERR_PROXY_TRUNCATED);
//   - returns the header and its length: the payload starts at that offset;
//   - throws ProxyProtocolError at the first byte after which no valid header is possible, so a
//     reader never waits for more bytes of something that is already wrong.
// The input is only read. Everything the result holds (TLV values included) is a copy, so the
// caller may reuse its buffer as soon as the call returns.
//
// Where the spec leaves a choice, the stricter reading is taken, because a header decides whose
// address the application sees; each such choice is marked "Choice:" where it is made (v1.ts,
// v2.ts, tlv.ts, tlv-strings.ts).
import { V1_SIGNATURE, V2_SIGNATURE } from './constants.js';
import { badSignature, fault, truncated } from './faults.js';
import { checkV1Signature, decodeV1 } from './v1.js';
import { decodeV2 } from './v2.js';
import type { DecodeOptions, DecodeResult } from './types.js';

/**
 * Decodes the PROXY protocol header at the start of `bytes`.
 *
 * Returns null when `bytes` is a proper prefix of a valid header (stream transport: wait for more
 * bytes and call again with all of them), or the header and how many bytes it took. Throws
 * {@link ProxyProtocolError} as soon as the bytes can no longer become a valid header; its `code`
 * names the fault and its message says where. Never modifies `bytes`; the result shares no memory
 * with it.
 */
export function decodeHeader(bytes: Uint8Array, options?: DecodeOptions): DecodeResult | null {
  const transport = options === undefined ? undefined : options.transport;
  if (transport !== undefined && transport !== 'stream' && transport !== 'dgram') {
    throw new TypeError(`options.transport must be 'stream' or 'dgram', not ${String(transport)}`);
  }
  const n = bytes.length;
  if (n === 0) {
    if (transport === 'dgram') throw truncated(0, 'an empty datagram');
    return null;
  }
  const first = bytes[0];
  if (first === V2_SIGNATURE[0]) return decodeV2(bytes, n, transport);
  if (first === V1_SIGNATURE[0]) {
    if (transport === 'dgram') {
      checkV1Signature(bytes, n);
      throw fault(
        'ERR_PROXY_TRANSPORT_MISMATCH',
        'v1 (text) PROXY header on a datagram transport, which carries only v2',
        0,
      );
    }
    return decodeV1(bytes, n);
  }
  throw badSignature(0, first);
}
