// The codec's public types: a decoded header and its parts, and the codec's options.

/** `PROXY`: the connection is relayed for the client named in the header. `LOCAL`: the sender
 * (a load balancer's health check, say) opened it for itself; the addresses are its own. */
export type ProxyCommand = 'PROXY' | 'LOCAL';

/** Transport and address family. `UNKNOWN` is v1 `UNKNOWN` or v2 `AF_UNSPEC`. */
export type ProxyProtocolName =
  'TCP4' | 'TCP6' | 'UDP4' | 'UDP6' | 'UNIX_STREAM' | 'UNIX_DGRAM' | 'UNKNOWN';

/** One end of the proxied connection. For AF_UNIX, `address` is the socket path and `port` null. */
export interface ProxyEndpoint {
  /** IPv4 dotted quad or IPv6 in the canonical form Node prints; or an AF_UNIX path. */
  address: string;
  port: number | null;
}

/** A type-length-value record of a v2 header, as it was on the wire. */
export interface Tlv {
  type: number;
  /** The value bytes: a copy, never a view of the decoder's input. */
  value: Uint8Array;
}

/**
 * The PP2_TYPE_SSL TLV (0x20): how the client reached the load balancer over TLS. Every sub-TLV
 * is in `tlvs` in wire order; those the spec names are also decoded into the optional fields.
 */
export interface ProxySsl {
  /** Bit field of {@link SSL_CLIENT} flags. */
  client: number;
  /** 0 when the client presented a certificate and it was verified; non-zero otherwise. */
  verify: number;
  /** PP2_SUBTYPE_SSL_VERSION (0x21), e.g. "TLSv1.3". */
  version?: string;
  /** PP2_SUBTYPE_SSL_CN (0x22): the client certificate's Common Name. */
  cn?: string;
  /** PP2_SUBTYPE_SSL_CIPHER (0x23), e.g. "ECDHE-RSA-AES128-GCM-SHA256". */
  cipher?: string;
  /** PP2_SUBTYPE_SSL_SIG_ALG (0x24): algorithm that signed the frontend's certificate. */
  sigAlg?: string;
  /** PP2_SUBTYPE_SSL_KEY_ALG (0x25): algorithm of the frontend certificate's key. */
  keyAlg?: string;
  /** PP2_SUBTYPE_SSL_GROUP (0x26): key exchange group, e.g. "X25519". */
  group?: string;
  /** PP2_SUBTYPE_SSL_SIG_SCHEME (0x27): TLS signature scheme, e.g. "rsa_pss_rsae_sha256". */
  sigScheme?: string;
  /** PP2_SUBTYPE_SSL_CLIENT_CERT (0x28): the client certificate, DER. Same bytes as its sub-TLV. */
  clientCert?: Uint8Array;
  /** Every sub-TLV in wire order, including those decoded above and unknown ones. */
  tlvs: Tlv[];
}

/**
 * A decoded PROXY protocol header.
 *
 * `tlvs` is the wire truth: every top-level TLV in order, unknown types included. The TLVs the
 * spec names are also decoded into the optional fields, present only when their TLV is:
 * `alpn` (0x01), `authority` (0x02), `crc32c` (0x03, already verified), `uniqueId` (0x05), `ssl`
 * (0x20) and `netns` (0x30). NOOP (0x04) appears only in `tlvs`. A v1 header has no TLVs.
 *
 * `source` and `destination` are null for LOCAL and for UNKNOWN (whose addresses, if any, the
 * spec says to ignore). For LOCAL, `protocol` still reports the family byte the sender wrote.
 */
export interface ProxyHeader {
  version: 1 | 2;
  command: ProxyCommand;
  protocol: ProxyProtocolName;
  /** The client. */
  source: ProxyEndpoint | null;
  /** The address the client connected to (the load balancer's frontend). */
  destination: ProxyEndpoint | null;
  tlvs: Tlv[];
  /** PP2_TYPE_ALPN, one character per byte (latin1), e.g. "h2". */
  alpn?: string;
  /** PP2_TYPE_AUTHORITY: the host name the client asked for (TLS SNI), UTF-8. */
  authority?: string;
  /** PP2_TYPE_CRC32C: the checksum, which matched the header. */
  crc32c?: number;
  /** PP2_TYPE_UNIQUE_ID: up to 128 opaque bytes. Same bytes as its entry in `tlvs`. */
  uniqueId?: Uint8Array;
  /** PP2_TYPE_SSL. */
  ssl?: ProxySsl;
  /** PP2_TYPE_NETNS: the network namespace's name. */
  netns?: string;
}

export interface DecodeOptions {
  /**
   * `'stream'` refuses datagram families (UDP4, UDP6, UNIX_DGRAM). `'dgram'` refuses v1 and
   * stream families (TCP4, TCP6, UNIX_STREAM) and treats a short input as a truncated header
   * rather than a header still arriving. LOCAL and UNKNOWN pass on both. Absent: all accepted.
   */
  transport?: 'stream' | 'dgram';
}

export interface DecodeResult {
  header: ProxyHeader;
  /** Bytes the header took: the payload starts at this offset. */
  length: number;
}

/** What {@link encodeHeader} takes for `ssl`: a {@link ProxySsl} whose `tlvs` may be left out. */
export interface ProxySslInput extends Omit<ProxySsl, 'tlvs'> {
  tlvs?: readonly Tlv[];
}

/** What {@link encodeHeader} takes: a {@link ProxyHeader} whose `tlvs` may be left out. */
export interface ProxyHeaderInput extends Omit<ProxyHeader, 'version' | 'tlvs' | 'ssl'> {
  /** Ignored: the encoding's version is an option of {@link encodeHeader}. */
  version?: 1 | 2;
  tlvs?: readonly Tlv[];
  ssl?: ProxySslInput;
}

export interface EncodeOptions {
  version: 1 | 2;
  /** Add a CRC32C TLV if the header has none. An existing one is always refilled. */
  crc32c?: boolean;
}
