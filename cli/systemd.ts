// What the command tells systemd, and when: READY=1 once every listener accepts, RELOADING=1 and
// READY=1 around a SIGHUP reload, STOPPING=1 when a drain begins, a STATUS= line with each of
// those and every STATUS_INTERVAL_MS when the count of live connections changed, and WATCHDOG=1
// at half WATCHDOG_USEC while every relay worker answers. Without NOTIFY_SOCKET it does nothing.
import type { Proxy } from '../lib/proxy.js';
import { monotonicUsec, SystemdNotifier, watchdogUsecFromEnv } from '../lib/systemd.js';
import type { Logger } from './logger.js';

/** How often the STATUS= line is brought up to date (sent only when it changed). */
export const STATUS_INTERVAL_MS = 5000;

type Env = Readonly<Record<string, string | undefined>>;

export class ServiceNotifications {
  readonly #notifier: SystemdNotifier | null;
  readonly #watchdogUsec: number | null;
  #state: 'starting' | 'ready' | 'reloading' | 'stopping' = 'starting';
  #status = '';
  #statusTimer: NodeJS.Timeout | null = null;
  #watchdogTimer: NodeJS.Timeout | null = null;
  #workersAnswer = true;
  readonly #failures = new Set<string>();

  /** Throws SystemdEnvError when WATCHDOG_USEC or WATCHDOG_PID is malformed. */
  constructor(
    env: Env,
    private readonly logger: Logger,
    private readonly proxy: Proxy,
    private readonly where: () => string,
  ) {
    this.#notifier = SystemdNotifier.fromEnv(env, {
      onError: (error, message) => {
        // Once per kind of failure: a missing socket would otherwise log every few seconds.
        if (this.#failures.has(error.code)) return;
        this.#failures.add(error.code);
        logger.warn('failed to notify systemd', {
          notifySocket: env.NOTIFY_SOCKET,
          message: message.split('\n')[0],
          error,
        });
      },
    });
    this.#watchdogUsec = this.#notifier ? watchdogUsecFromEnv(env) : null;
  }

  /** Every listener accepts: READY=1, then STATUS= updates and the watchdog. */
  ready(): void {
    if (!this.#notifier || this.#state !== 'starting') return;
    this.#state = 'ready';
    this.#notify({ READY: 1, STATUS: this.#statusText() });
    this.#statusTimer = setInterval(() => this.#updateStatus(), STATUS_INTERVAL_MS).unref();
    if (this.#watchdogUsec !== null) {
      this.#feedWatchdog();
      const ms = Math.max(1, Math.floor(this.#watchdogUsec / 2000));
      this.#watchdogTimer = setInterval(() => this.#feedWatchdog(), ms).unref();
    }
  }

  /** A SIGHUP reload begins (before READY=1 there is nothing to announce). */
  reloading(): void {
    if (!this.#notifier || this.#state !== 'ready') return;
    this.#state = 'reloading';
    this.#notify({
      RELOADING: 1,
      MONOTONIC_USEC: monotonicUsec(),
      STATUS: this.#statusText(),
    });
  }

  /** The reload is done, whether it succeeded. */
  reloaded(): void {
    if (!this.#notifier || this.#state !== 'reloading') return;
    this.#state = 'ready';
    this.#notify({ READY: 1, STATUS: this.#statusText() });
  }

  /** A drain begins. systemd stops watching the watchdog here, and so do we. */
  stopping(drainTimeoutMs: number): void {
    if (!this.#notifier || this.#state === 'stopping') return;
    this.#state = 'stopping';
    this.#stopTimers();
    const active = this.proxy.stats().active;
    this.#notify({
      STOPPING: 1,
      STATUS: `Draining ${this.#count(active)} (at most ${drainTimeoutMs / 1000} s)`,
    });
  }

  /** The command is done: no more notifications. */
  close(): void {
    this.#stopTimers();
  }

  #stopTimers(): void {
    if (this.#statusTimer) clearInterval(this.#statusTimer);
    if (this.#watchdogTimer) clearInterval(this.#watchdogTimer);
    this.#statusTimer = this.#watchdogTimer = null;
  }

  #count(active: number): string {
    const noun = this.proxy.options.protocol === 'udp' ? 'flow' : 'connection';
    return `${active} ${noun}${active === 1 ? '' : 's'}`;
  }

  #statusText(): string {
    const active = this.#count(this.proxy.stats().active);
    const what = `${this.proxy.options.protocol} on ${this.where()}`;
    return this.#state === 'reloading'
      ? `Reloading; ${active} active (${what})`
      : `Serving ${active} (${what})`;
  }

  #updateStatus(): void {
    const text = this.#statusText();
    if (text !== this.#status) this.#notify({ STATUS: text });
  }

  #notify(assignments: Record<string, string | number | bigint>): void {
    if (typeof assignments.STATUS === 'string') this.#status = assignments.STATUS;
    this.#notifier?.notify(assignments);
  }

  #feedWatchdog(): void {
    const answered = this.proxy.heartbeat();
    if (answered) this.#notify({ WATCHDOG: 1 });
    if (answered === this.#workersAnswer) return;
    this.#workersAnswer = answered;
    if (answered) this.logger.info('every relay worker answers again: feeding the watchdog');
    else
      this.logger.warn('a relay worker did not answer: not feeding the systemd watchdog', {
        watchdogSeconds: this.#watchdogUsec! / 1e6,
      });
  }
}
