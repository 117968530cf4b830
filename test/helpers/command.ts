// A running `mmproxy` executable for tests: its JSON log lines, its stderr, waiting for a line,
// signals and its exit.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../cli/bin.js', import.meta.url));

export type LogLine = Record<string, unknown> & { level: string; msg: string };

/** A running `mmproxy` whose stdout is parsed line by line as JSON. */
export class Command {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #waiters: Array<() => void> = [];

  /**
   * `via`: a command that runs mmproxy in its turn (systemd-socket-activate, a python3 script
   * that passes sockets), given before `node bin.js args`. With `stdin`, the child's stdin is a
   * pipe (child.stdin) instead of nothing.
   */
  constructor(
    args: string[],
    env: Record<string, string> = {},
    options: { via?: string[]; stdin?: boolean } = {},
  ) {
    const [file, ...rest] = [...(options.via ?? []), process.execPath, BIN, ...args];
    this.child = spawn(file!, rest, {
      stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    let buf = '';
    this.child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        this.lines.push(JSON.parse(line) as LogLine);
      }
      for (const w of this.#waiters.splice(0)) w();
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = once(this.child, 'exit').then(([code, signal]) => ({
      code: code as number | null,
      signal: signal as NodeJS.Signals | null,
    }));
  }

  /** The first log line (from index `from`) matching; fails after the timeout. */
  async waitFor(
    match: (l: LogLine) => boolean,
    what: string,
    from = 0,
    timeoutMs = 10_000,
  ): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.slice(from).find(match);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0 || this.child.exitCode !== null) {
        throw new Error(
          `no log line: ${what}\nstdout: ${JSON.stringify(this.lines, null, 1)}\nstderr: ${this.stderr}`,
        );
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 100));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  msg(msg: string, from = 0): Promise<LogLine> {
    return this.waitFor((l) => l.msg === msg, msg, from);
  }

  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}
