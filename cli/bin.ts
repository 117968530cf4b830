#!/usr/bin/env node
// The `mmproxy` executable: the only place that reads process.argv, sets the exit status and
// listens to signals, which it forwards to main().
import { EventEmitter } from 'node:events';
import type { CliSignal } from './io.js';
import { main } from './main.js';

const signals = new EventEmitter<{ signal: [CliSignal] }>();

function forward(signal: CliSignal): void {
  if (signals.listenerCount('signal') > 0) {
    signals.emit('signal', signal);
    return;
  }
  // Nothing handles signals now (check, demo, start-up): take the default action, as if we had
  // never listened.
  process.removeListener(signal, forward);
  process.kill(process.pid, signal);
}

for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, forward);

function exitBySignal(signal: CliSignal): void {
  for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.removeListener(s, forward);
  process.kill(process.pid, signal);
}

main(process.argv.slice(2), { signals, exitBySignal }).then(
  (code) => {
    process.exitCode = code;
    for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const)
      process.removeListener(signal, forward);
    // Everything main() opened is closed by now; should a handle linger, still exit.
    setTimeout(() => process.exit(), 2000).unref();
  },
  (err: unknown) => {
    process.stderr.write(`mmproxy: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
    setTimeout(() => process.exit(), 2000).unref();
  },
);
