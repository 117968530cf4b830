// The codec's public surface, and the package's "mmproxy-native/codec" entry point.
//
// The PROXY protocol (HAProxy's doc/proxy-protocol.txt, v1 text and v2 binary with TLVs):
// decodeHeader (decode.ts) turns the first bytes of a connection or datagram into a ProxyHeader, or
// says why they can never be one; encodeHeader (encode.ts) writes any header the decoder reads.
export { decodeHeader } from './decode.js';
export { encodeHeader } from './encode.js';
export {
  TLV_TYPE,
  SSL_SUBTYPE,
  SSL_CLIENT,
  V1_MAX_LENGTH,
  V2_MAX_LENGTH,
  UNIQUE_ID_MAX_LENGTH,
} from './constants.js';
export type {
  ProxyCommand,
  ProxyProtocolName,
  ProxyEndpoint,
  Tlv,
  ProxySsl,
  ProxyHeader,
  DecodeOptions,
  DecodeResult,
  ProxySslInput,
  ProxyHeaderInput,
  EncodeOptions,
} from './types.js';
// So that the "mmproxy-native/codec" entry point alone is enough to tell decoding errors apart.
export { ProxyProtocolError } from '../errors.js';
