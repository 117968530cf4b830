// The package's public entry point.
export { ProxyProtocolError, InvalidOptionError, AllowlistError } from './errors.js';
export type { SystemError } from './errors.js';
