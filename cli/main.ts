// The `mmproxy` command as a function: parses the command line and runs the proxy, `check` or
// `demo`, and returns the exit status (0 clean stop, 1 runtime failure, 2 usage error). It owns
// all output; signals arrive through `io.signals` so that tests need no child process.
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { helpText, parseCommandLine, UsageError } from './flags.js';
import type { CliIo, CliSignal } from './io.js';

/** Runs the command; resolves to the exit status. */
export async function main(argv: readonly string[], io?: Partial<CliIo>): Promise<number> {
  const full: CliIo = {
    stdout: io?.stdout ?? process.stdout,
    stderr: io?.stderr ?? process.stderr,
    env: io?.env ?? process.env,
    signals: io?.signals ?? new EventEmitter(),
    ...(io?.exitBySignal ? { exitBySignal: io.exitBySignal } : {}),
  };
  let command;
  try {
    command = parseCommandLine(argv, full.env);
  } catch (err) {
    if (err instanceof UsageError) {
      full.stderr.write(err.message + '\n');
      return 2;
    }
    throw err;
  }
  switch (command.command) {
    case 'help':
      full.stdout.write(helpText(packageVersion()));
      return 0;
    case 'version':
      full.stdout.write(`mmproxy ${packageVersion()}\n`);
      return 0;
    case 'check': {
      const { runCheck } = await import('./check.js');
      return runCheck(command.flags, full);
    }
    case 'demo': {
      const { runDemo } = await import('./demo.js');
      return runDemo(full);
    }
    case 'proxy': {
      // Signals that come while serve.js loads are kept for it: with no listener, bin.ts would
      // take the default action, and SIGHUP would end the process.
      const early: CliSignal[] = [];
      const keep = (signal: CliSignal): number => early.push(signal);
      full.signals!.on('signal', keep);
      let serve;
      try {
        ({ serve } = await import('./serve.js'));
      } finally {
        full.signals!.off('signal', keep);
      }
      return serve(command.flags, full, { earlySignals: early });
    }
  }
}

let version: string | undefined;

/** The package's version, from the nearest package.json named mmproxy-native. */
export function packageVersion(): string {
  if (version) return version;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'mmproxy-native' && pkg.version) return (version = pkg.version);
    } catch {
      // Not here; look one directory up.
    }
    const up = path.dirname(dir);
    if (up === dir) return (version = 'unknown');
    dir = up;
  }
}
