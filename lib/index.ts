// The package's public entry point: the proxy, its options and allowlist, the PROXY header codec,
// the self-check, systemd's service protocol, and the error classes.
export { createProxy, Proxy } from './proxy.js';
export type { ProxyEvents } from './proxy.js';
export type {
  BoundAddress,
  ConnectionInfo,
  Endpoint,
  ProxyStats,
  RejectInfo,
  RejectReason,
  RouteHook,
  RouteRequest,
  RouteResult,
  UdpStats,
} from './proxy-types.js';
export { normalizeOptions, loadAllowlist, DEFAULTS } from './options.js';
export type { ProxyOptions, NormalizedOptions, EndpointInput, HostEndpoint } from './options.js';
export type { ResolvedEndpoint, ResolvedTargets, TargetResolution } from './targets.js';
export { Allowlist } from './allowlist.js';
export {
  decodeHeader,
  encodeHeader,
  TLV_TYPE,
  SSL_SUBTYPE,
  SSL_CLIENT,
  V1_MAX_LENGTH,
  V2_MAX_LENGTH,
  UNIQUE_ID_MAX_LENGTH,
} from './codec/index.js';
export type {
  ProxyHeader,
  ProxyHeaderInput,
  ProxySsl,
  ProxySslInput,
  ProxyEndpoint,
  Tlv,
  ProxyCommand,
  ProxyProtocolName,
  DecodeOptions,
  DecodeResult,
  EncodeOptions,
} from './codec/index.js';
export { selfCheck, routingCommands, remoteBackendCommands, SPOOF_SOURCES } from './self-check.js';
export type {
  CheckItem,
  CheckStatus,
  SelfCheckOptions,
  RouteCommand,
  IpRunner,
  IpResult,
} from './self-check.js';
export { spoofRefusal, localAddresses } from './source-policy.js';
export type { SpoofRefusal } from './source-policy.js';
export {
  listenFdsFromEnv,
  watchdogUsecFromEnv,
  monotonicUsec,
  SystemdNotifier,
  SystemdEnvError,
  LISTEN_FDS_START,
} from './systemd.js';
export type { PassedSockets, SystemdNotifierOptions } from './systemd.js';
export {
  ProxyProtocolError,
  InvalidOptionError,
  AllowlistError,
  ResolveError,
  ListenFdError,
} from './errors.js';
export type { SystemError } from './errors.js';
