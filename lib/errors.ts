// Every error class lib/ throws or emits, and the one builder for errors that come from native
// system calls (shaped like Node's own: code, errno, syscall, address, port).
import { getSystemErrorName } from 'node:util';

/** Malformed PROXY protocol bytes. `code` is a stable string naming the fault. */
export class ProxyProtocolError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'ProxyProtocolError';
    this.code = code;
  }
}

/** A createProxy option (or CLI flag) with a bad value. The message names it and shows an example. */
export class InvalidOptionError extends TypeError {
  readonly code = 'ERR_MMPROXY_INVALID_OPTION';
  readonly option: string;
  constructor(option: string, message: string) {
    super(message);
    this.name = 'InvalidOptionError';
    this.option = option;
  }
}

/** An allowlist that cannot be used: unreadable file, bad line, no entries. */
export class AllowlistError extends Error {
  readonly code = 'ERR_MMPROXY_ALLOWLIST';
  readonly file: string | undefined;
  readonly line: number | undefined;
  constructor(message: string, details: { file?: string; line?: number; cause?: unknown } = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'AllowlistError';
    this.file = details.file;
    this.line = details.line;
  }
}

/**
 * A host name given for an option (`listen`, `target4`, `target6`) that did not resolve to an
 * address of the family the option needs. `cause` is the resolver's error, when there was one.
 */
export class ResolveError extends Error {
  readonly code = 'ERR_MMPROXY_RESOLVE';
  readonly option: string;
  readonly host: string;
  /** The family asked for: 4, 6, or 0 for either. */
  readonly family: 0 | 4 | 6;
  /** Why, in a few words: "no such name, or no IPv4 address for it (ENOTFOUND)". */
  readonly reason: string;
  constructor(option: string, host: string, family: 0 | 4 | 6, reason: string, cause?: unknown) {
    const kind = family === 0 ? 'an IP address' : `an IPv${family} address`;
    super(
      `option "${option}": cannot resolve ${JSON.stringify(host)} to ${kind}: ${reason}`,
      cause === undefined ? undefined : { cause },
    );
    this.name = 'ResolveError';
    this.option = option;
    this.host = host;
    this.family = family;
    this.reason = reason;
  }
}

/**
 * A socket given in `listenFds` (systemd's socket activation) that cannot serve the protocol: a
 * UDP socket for TCP, a TCP socket that does not listen, a unix socket, no socket at all.
 */
export class ListenFdError extends Error {
  readonly code = 'ERR_MMPROXY_LISTEN_FD';
  /** The file descriptor. */
  readonly fd: number;
  /** What it is: "an IPv4 UDP socket", "not a socket". */
  readonly found: string;
  /** What the protocol needs: "a listening TCP socket" or "a bound UDP socket". */
  readonly expected: string;
  constructor(fd: number, found: string, expected: string) {
    super(`listen fd ${fd} is ${found}, not ${expected}`);
    this.name = 'ListenFdError';
    this.fd = fd;
    this.found = found;
    this.expected = expected;
  }
}

export interface SystemErrorDetails {
  /** Positive errno as the kernel reported it. */
  errno: number;
  /** The call that failed, with its arguments: "setsockopt(IPPROTO_IP, IP_TRANSPARENT, 1)". */
  syscall: string;
  address?: string;
  port?: number;
  /** Appended to the message: what the user can do about it. */
  hint?: string;
}

export interface SystemError extends Error {
  code: string;
  errno: number;
  syscall: string;
  address?: string;
  port?: number;
}

/** Builds an Error shaped like Node's system errors from a native failure record. */
export function systemError(d: SystemErrorDetails): SystemError {
  let code: string;
  try {
    code = getSystemErrorName(-d.errno);
  } catch {
    code = `E${d.errno}`;
  }
  const where =
    d.address === undefined ? '' : ` ${d.address}${d.port === undefined ? '' : `:${d.port}`}`;
  const err = new Error(
    `${d.syscall} failed: ${code}${where}${d.hint ? `. ${d.hint}` : ''}`,
  ) as SystemError;
  err.code = code;
  err.errno = -d.errno;
  err.syscall = d.syscall;
  if (d.address !== undefined) err.address = d.address;
  if (d.port !== undefined) err.port = d.port;
  return err;
}
