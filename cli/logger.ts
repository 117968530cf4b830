// One JSON object a line, in go-mmproxy's shape (time, level, msg, then fields), with a token bucket
// on per-connection lines so that a flood of bad connections cannot fill a disk — and, at most once
// an interval, a line that says how many were suppressed, so that the flood is still visible.

export type Level = 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';

export interface LogSink {
  write(line: string): unknown;
}

export interface LoggerOptions {
  /** Per-connection lines per second, sustained. */
  ratePerSecond?: number;
  /** Per-connection lines allowed in a burst. */
  burst?: number;
  /** At most one "suppressed" line per this many ms while lines are being suppressed. */
  summaryIntervalMs?: number;
  /** Milliseconds since some epoch; injectable for tests. */
  now?: () => number;
}

export type Fields = Record<string, unknown>;

/** How often, at most, a flood's "suppressed" line is written unless flushed sooner. */
export const DEFAULT_SUMMARY_INTERVAL_MS = 10_000;

export class Logger {
  private readonly sink: LogSink;
  private readonly rate: number;
  private readonly burst: number;
  private readonly now: () => number;
  private readonly summaryInterval: number;
  private tokens: number;
  private lastRefill: number;
  private suppressed = 0;
  private suppressedSince = 0;

  constructor(sink: LogSink, opts: LoggerOptions = {}) {
    this.sink = sink;
    this.rate = opts.ratePerSecond ?? 100;
    this.burst = opts.burst ?? 200;
    this.now = opts.now ?? Date.now;
    this.summaryInterval = opts.summaryIntervalMs ?? DEFAULT_SUMMARY_INTERVAL_MS;
    this.tokens = this.burst;
    this.lastRefill = this.now();
  }

  /** Lifecycle lines (start, stop, listener errors, summaries): never rate-limited. */
  log(level: Level, msg: string, fields: Fields = {}): void {
    this.flushSuppressed();
    this.write(level, msg, fields);
  }

  info(msg: string, fields?: Fields): void {
    this.log('INFO', msg, fields);
  }
  warn(msg: string, fields?: Fields): void {
    this.log('WARN', msg, fields);
  }
  error(msg: string, fields?: Fields): void {
    this.log('ERROR', msg, fields);
  }

  /**
   * A per-connection line: written while the bucket has tokens, otherwise counted. The count is
   * written once the first line it holds is an interval old (or by flushSuppressed()), not each
   * time a token frees up: in a flood that would be one extra line per line written.
   */
  connection(level: Level, msg: string, fields: Fields = {}): boolean {
    this.refill();
    if (this.suppressed > 0 && this.lastRefill - this.suppressedSince >= this.summaryInterval) {
      this.flushSuppressed();
    }
    if (this.tokens < 1) {
      if (this.suppressed === 0) this.suppressedSince = this.lastRefill;
      this.suppressed++;
      return false;
    }
    this.tokens--;
    this.write(level, msg, fields);
    return true;
  }

  /** Writes the "suppressed" line now if any were; call on a timer and before exit. */
  flushSuppressed(): void {
    if (this.suppressed === 0) return;
    const count = this.suppressed;
    const seconds = Math.max(0, (this.now() - this.suppressedSince) / 1000);
    this.suppressed = 0;
    this.write('WARN', 'log lines suppressed by the rate limit', {
      suppressed: count,
      seconds: Math.round(seconds * 10) / 10,
      ratePerSecond: this.rate,
    });
  }

  private refill(): void {
    const t = this.now();
    const elapsed = Math.max(0, t - this.lastRefill) / 1000;
    this.lastRefill = t;
    this.tokens = Math.min(this.burst, this.tokens + elapsed * this.rate);
  }

  private write(level: Level, msg: string, fields: Fields): void {
    const record: Fields = { time: new Date().toISOString(), level, msg };
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined) continue;
      record[k] = v instanceof Error ? v.message : v;
    }
    this.sink.write(JSON.stringify(record) + '\n');
  }
}

/** "1.2.3.4:5" / "[::1]:5", as Go prints addresses. */
export function formatEndpoint(
  e: { address: string; port: number | null } | null | undefined,
): string {
  if (!e) return 'UNKNOWN';
  if (e.port === null) return e.address;
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}
