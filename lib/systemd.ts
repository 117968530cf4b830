// systemd's service protocol, for library users and the command alike: the sockets that socket
// activation passes (what sd_listen_fds(3) reads), the watchdog interval (sd_watchdog_enabled(3))
// and notifications over NOTIFY_SOCKET (sd_notify(3): READY=1, STATUS=…, WATCHDOG=1). Nothing
// here changes the environment: LISTEN_* and NOTIFY_SOCKET stay as they came (children that
// inherit them ignore LISTEN_FDS, whose LISTEN_PID is not theirs; the passed fds themselves are
// made close-on-exec when the proxy adopts them).
import { constants } from 'node:os';
import { systemError, type SystemError } from './errors.js';
import { loadNative, type ProbeResult } from './native.js';

/** The first fd systemd passes (SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3;

type Env = Readonly<Record<string, string | undefined>>;

/** The sockets socket activation passed: fds 3, 4, … and their names (LISTEN_FDNAMES). */
export interface PassedSockets {
  fds: number[];
  /** One per fd: FileDescriptorName= of the .socket unit; "unknown" where systemd gave none. */
  names: string[];
}

/** A LISTEN_* or WATCHDOG_* variable that systemd would not have written. */
export class SystemdEnvError extends Error {
  readonly code = 'ERR_MMPROXY_SYSTEMD_ENV';
  readonly variable: string;
  constructor(variable: string, value: string, expected: string) {
    super(`${variable} must be ${expected}; got ${JSON.stringify(value)}`);
    this.name = 'SystemdEnvError';
    this.variable = variable;
  }
}

function decimal(env: Env, name: string, expected: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d{1,15}$/.test(raw)) throw new SystemdEnvError(name, raw, expected);
  return Number(raw);
}

/**
 * The sockets passed to this process by socket activation, or null when there are none for it:
 * LISTEN_FDS unset or 0, or LISTEN_PID unset or another process's (as sd_listen_fds, which
 * ignores variables meant for a parent). Throws SystemdEnvError when they are malformed.
 */
export function listenFdsFromEnv(
  env: Env = process.env,
  pid: number = process.pid,
): PassedSockets | null {
  const listenPid = decimal(env, 'LISTEN_PID', 'a process id');
  if (listenPid === undefined || listenPid !== pid) return null;
  const count = decimal(env, 'LISTEN_FDS', 'a number of file descriptors');
  if (count === undefined || count === 0) return null;
  if (count > 1024) {
    throw new SystemdEnvError('LISTEN_FDS', String(count), 'at most 1024 file descriptors');
  }
  const fds = Array.from({ length: count }, (_, i) => LISTEN_FDS_START + i);
  const given = env.LISTEN_FDNAMES === undefined ? [] : env.LISTEN_FDNAMES.split(':');
  const names = fds.map((_, i) => given[i] || 'unknown');
  return { fds, names };
}

/**
 * WATCHDOG_USEC in microseconds when the watchdog is on for this process (WATCHDOG_PID unset or
 * this process), else null. Feed it (WATCHDOG=1) at half this interval. Throws SystemdEnvError
 * when malformed.
 */
export function watchdogUsecFromEnv(
  env: Env = process.env,
  pid: number = process.pid,
): number | null {
  const usec = decimal(env, 'WATCHDOG_USEC', 'a number of microseconds');
  if (usec === undefined || usec === 0) return null;
  const watchdogPid = decimal(env, 'WATCHDOG_PID', 'a process id');
  if (watchdogPid !== undefined && watchdogPid !== pid) return null;
  return usec;
}

/** CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants it in MONOTONIC_USEC= (systemd ≥ 253). */
export function monotonicUsec(): bigint {
  // libuv's hrtime is CLOCK_MONOTONIC on Linux.
  return process.hrtime.bigint() / 1000n;
}

export interface SystemdNotifierOptions {
  /** A notification that could not be sent (after retries when systemd's queue was full). */
  onError?: (error: SystemError, message: string) => void;
}

/** How long a notification waits for room in a full queue, retried every RETRY_MS. */
const RETRY_MS = 20;
const GIVE_UP_MS = 5000;

/**
 * Sends notifications to the socket NOTIFY_SOCKET names, in order, without ever blocking: when
 * systemd's queue is full (EAGAIN) they wait for room, for up to 5 seconds.
 */
export class SystemdNotifier {
  readonly socketPath: string;
  readonly #send: (path: string, message: string) => ProbeResult;
  readonly #onError: ((error: SystemError, message: string) => void) | undefined;
  readonly #queue: string[] = [];
  #timer: NodeJS.Timeout | null = null;
  #waitingSince = 0;

  /** `socketPath`: a file system path or "@name" for an abstract socket. */
  constructor(socketPath: string, options: SystemdNotifierOptions = {}) {
    this.socketPath = socketPath;
    const addon = loadNative();
    this.#send = (path, message) => addon.notify(path, message);
    this.#onError = options.onError;
  }

  /** A notifier for NOTIFY_SOCKET, or null when it is unset (not run by systemd's Type=notify). */
  static fromEnv(
    env: Env = process.env,
    options: SystemdNotifierOptions = {},
  ): SystemdNotifier | null {
    const path = env.NOTIFY_SOCKET;
    return path ? new SystemdNotifier(path, options) : null;
  }

  /**
   * Sends one notification: `{ READY: 1, STATUS: 'serving' }` becomes "READY=1\nSTATUS=serving".
   * A line break in a value becomes a space (it would end the assignment).
   */
  notify(assignments: Readonly<Record<string, string | number | bigint>>): void {
    const message = Object.entries(assignments)
      .map(([k, v]) => `${k}=${String(v).replace(/[\r\n]+/g, ' ')}`)
      .join('\n');
    this.#queue.push(message);
    if (this.#timer === null) this.#flush();
  }

  /** Whether notifications are still waiting for room in systemd's queue. */
  get pending(): number {
    return this.#queue.length;
  }

  #flush(): void {
    this.#timer = null;
    while (this.#queue.length > 0) {
      const message = this.#queue[0]!;
      const r = this.#send(this.socketPath, message);
      if (!r.ok && r.errno === constants.errno.EAGAIN) {
        const now = Date.now();
        if (this.#waitingSince === 0) this.#waitingSince = now;
        if (now - this.#waitingSince < GIVE_UP_MS) {
          // Unref'ed: a notification never keeps the process alive.
          this.#timer = setTimeout(() => this.#flush(), RETRY_MS).unref();
          return;
        }
      }
      this.#waitingSince = 0;
      this.#queue.shift();
      if (!r.ok) {
        this.#onError?.(systemError({ errno: r.errno ?? 0, syscall: r.syscall ?? '' }), message);
      }
    }
  }
}
