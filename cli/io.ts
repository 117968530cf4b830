// What every part of the `mmproxy` command writes to and listens on: its output streams, its
// environment and the signals that bin.ts forwards. Its own module, so that main.ts and the
// commands it runs (check, demo, serve) all import it and nothing imports main.ts back.
import type { EventEmitter } from 'node:events';

export interface Writable {
  write(chunk: string): unknown;
}

/** Signals the command reacts to; bin.ts forwards the process's. */
export type CliSignal = 'SIGTERM' | 'SIGINT' | 'SIGHUP';

export interface CliIo {
  stdout: Writable;
  stderr: Writable;
  env: Readonly<Record<string, string | undefined>>;
  /** Emits 'signal' with a CliSignal. */
  signals?: EventEmitter<{ signal: [CliSignal] }>;
  /**
   * Ends the process now with the signal's default action (bin.ts). For a second stop signal
   * while a start-up step hangs: a thread stuck reading a file would also hang a normal exit.
   */
  exitBySignal?: (signal: CliSignal) => void;
}
