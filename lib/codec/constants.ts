// The PROXY protocol spec's numbers: TLV types, SSL flags, length limits, signatures.

/** Top-level TLV types the spec names. */
export const TLV_TYPE = {
  ALPN: 0x01,
  AUTHORITY: 0x02,
  CRC32C: 0x03,
  NOOP: 0x04,
  UNIQUE_ID: 0x05,
  SSL: 0x20,
  NETNS: 0x30,
} as const;

/** Sub-TLV types inside PP2_TYPE_SSL. */
export const SSL_SUBTYPE = {
  VERSION: 0x21,
  CN: 0x22,
  CIPHER: 0x23,
  SIG_ALG: 0x24,
  KEY_ALG: 0x25,
  GROUP: 0x26,
  SIG_SCHEME: 0x27,
  CLIENT_CERT: 0x28,
} as const;

/** Bits of {@link ProxySsl.client}. */
export const SSL_CLIENT = {
  /** The client connected over TLS. */
  SSL: 0x01,
  /** The client presented a certificate on this connection. */
  CERT_CONN: 0x02,
  /** The client presented a certificate at least once in this TLS session. */
  CERT_SESS: 0x04,
} as const;

/** Longest v1 line, CRLF included. */
export const V1_MAX_LENGTH = 107;
/** Longest v2 header: 16 fixed bytes and a 16-bit length. */
export const V2_MAX_LENGTH = 16 + 0xffff;
/** Longest PP2_TYPE_UNIQUE_ID value. */
export const UNIQUE_ID_MAX_LENGTH = 128;

export const V2_SIGNATURE = Uint8Array.of(
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
);
export const V1_SIGNATURE = Uint8Array.of(0x50, 0x52, 0x4f, 0x58, 0x59, 0x20); // "PROXY "
export const UNIX_PATH_SIZE = 108;

export const SP = 0x20;
export const CR = 0x0d;
export const LF = 0x0a;
