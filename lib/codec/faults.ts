// The errors the codec throws, built off the hot path with the offset and the byte at fault.
import { ProxyProtocolError } from '../errors.js';
import { CR, LF, SP } from './constants.js';
import { regionDelta } from './header-copy.js';

export function fault(code: string, what: string, offset: number): ProxyProtocolError {
  return new ProxyProtocolError(code, `${what} at offset ${offset}`);
}

export function describeByte(c: number | undefined): string {
  if (c === undefined) return 'end of input';
  const hex = '0x' + c.toString(16).padStart(2, '0');
  if (c === SP) return `space (${hex})`;
  if (c === CR) return `CR (${hex})`;
  if (c === LF) return `LF (${hex})`;
  if (c > 0x20 && c < 0x7f) return `'${String.fromCharCode(c)}' (${hex})`;
  return hex;
}

export function hex2(n: number): string {
  return '0x' + n.toString(16).padStart(2, '0');
}

export function truncated(n: number, needed: string): ProxyProtocolError {
  return fault(
    'ERR_PROXY_TRUNCATED',
    `datagram ends after ${n} byte${n === 1 ? '' : 's'} inside a PROXY header (${needed})`,
    n,
  );
}

export function badSignature(offset: number, c: number | undefined): ProxyProtocolError {
  return fault(
    'ERR_PROXY_BAD_SIGNATURE',
    `not a PROXY protocol header: ${describeByte(c)} matches neither "PROXY " (v1) nor the v2 signature`,
    offset,
  );
}

// TLV faults are found in the decoder's copy of the header (header-copy.ts); their offsets are
// given in the caller's input.
export function duplicate(what: string, type: number, at: number): ProxyProtocolError {
  return fault(
    'ERR_PROXY_TLV_DUPLICATE',
    `PROXY v2 header: a second ${what} TLV (type ${hex2(type)})`,
    at - regionDelta,
  );
}

export function badLength(what: string, type: number, length: number, rule: string, at: number) {
  return fault(
    'ERR_PROXY_TLV_BAD_LENGTH',
    `PROXY v2 header: ${what} TLV (type ${hex2(type)}) of ${length} bytes; it must be ${rule}`,
    at - regionDelta,
  );
}

export function overrun(what: string, left: number, total: number, at: number): ProxyProtocolError {
  return fault(
    'ERR_PROXY_TLV_OVERRUN',
    `PROXY v2 header: ${left} byte${left === 1 ? '' : 's'} left before the end at ${total - regionDelta}, ` +
      `too few for a ${what} head (3 bytes)`,
    at - regionDelta,
  );
}

export function overrunValue(
  what: string,
  type: number,
  end: number,
  total: number,
  at: number,
): ProxyProtocolError {
  const d = regionDelta;
  return fault(
    'ERR_PROXY_TLV_OVERRUN',
    `PROXY v2 header: ${what} type ${hex2(type)} runs to ${end - d}, past the end of its container at ${total - d}`,
    at - d,
  );
}

export interface InvalidHeaderError extends TypeError {
  code: 'ERR_INVALID_ARG_VALUE';
}

export function invalid(message: string, cause?: unknown): InvalidHeaderError {
  const err = new TypeError(
    message,
    cause === undefined ? undefined : { cause },
  ) as InvalidHeaderError;
  err.code = 'ERR_INVALID_ARG_VALUE';
  return err;
}
