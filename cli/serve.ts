// Runs the proxy for `mmproxy [flags]` until a signal or a fatal error: routing setup, listen
// (on sockets systemd passed, if any), event logging, the start-up self-check, metrics, SIGHUP
// reloads, systemd notifications, graceful then immediate stop, and the exit status (0 clean
// stop, 1 runtime failure, 2 an option the library refused).
import { AllowlistError, InvalidOptionError, ListenFdError, ResolveError } from '../lib/errors.js';
import { ENDPOINT_RULES, type EndpointOption } from '../lib/options.js';
import type { Proxy } from '../lib/proxy.js';
import { routingCommands, selfCheck } from '../lib/self-check.js';
import type { TargetResolution } from '../lib/targets.js';
import {
  listenFdsFromEnv,
  SystemdEnvError,
  watchdogUsecFromEnv,
  type PassedSockets,
} from '../lib/systemd.js';
import { DEFAULT_ROUTE_TABLE, flagForOption, toProxyOptions, type CliFlags } from './flags.js';
import { Logger, formatEndpoint } from './logger.js';
import type { CliIo, CliSignal } from './io.js';
import {
  formatMetrics,
  startMetricsServer,
  type CommandCounters,
  type MetricsServer,
} from './metrics.js';
import { DropSummary, logProxyEvents } from './proxy-log.js';
import { setupRoutes, type RouteSetup } from './routes.js';
import { ServiceNotifications } from './systemd.js';

/** How often the drop summary is written (with any "suppressed" count the logger still holds). */
export const SUMMARY_INTERVAL_MS = 60_000;

export interface ServeHooks {
  /** Overrides SUMMARY_INTERVAL_MS (tests). */
  summaryIntervalMs?: number;
  /** Signals that arrived before serve() was called (main.ts keeps them while serve.js loads). */
  earlySignals?: readonly CliSignal[];
}

/**
 * Signals from the first line of serve() to its last. Until the proxy runs, a stop is remembered
 * (start-up goes no further and cleans up) and so is a reload (done once running); a second stop
 * stops at once, even while a start-up step hangs. Then run() takes them over.
 */
class SignalState {
  stop: CliSignal | null = null;
  reload = false;
  handler: ((signal: CliSignal) => void) | null = null;
  #force!: (signal: CliSignal) => void;
  /** Settles, with the signal, on a second stop signal during start-up. */
  readonly forced = new Promise<CliSignal>((resolve) => (this.#force = resolve));

  constructor(private readonly logger: Logger) {}

  readonly listener = (signal: CliSignal): void => {
    if (this.handler) return this.handler(signal);
    if (signal === 'SIGHUP') {
      this.reload = true;
      this.logger.info('SIGHUP during start-up: reloading once listening', { signal });
    } else if (this.stop === null) {
      this.stop = signal;
      this.logger.info('stop requested during start-up', { signal });
    } else {
      this.logger.info('stopping now, during start-up', { signal });
      this.#force(signal);
    }
  };
}

export async function serve(flags: CliFlags, io: CliIo, hooks: ServeHooks = {}): Promise<number> {
  const logger = new Logger(io.stdout);
  const signals = new SignalState(logger);
  io.signals?.on('signal', signals.listener);
  for (const signal of hooks.earlySignals ?? []) signals.listener(signal);
  const routes = new Routes(logger);
  try {
    return await Promise.race([
      serveWithSignals(flags, io, hooks, logger, signals, routes),
      // A start-up step that hangs (an allowlist on a stuck mount) must not keep the command
      // alive: the routes go now, and the rest ends with the process.
      signals.forced.then(async (signal) => {
        await routes.teardown();
        logger.info('stopped', {
          ...{ protocol: flags.protocol, listenAddr: flags.listen },
          signal,
        });
        io.exitBySignal?.(signal);
        return 0;
      }),
    ]);
  } finally {
    io.signals?.off('signal', signals.listener);
  }
}

/** The --setup-routes entries this run added; teardown() removes them once, whoever asks. */
class Routes {
  current: RouteSetup | undefined;
  constructor(private readonly logger: Logger) {}

  async teardown(): Promise<void> {
    const routes = this.current;
    if (!routes) return;
    this.current = undefined;
    const added = routes.added.map((c) => c.text);
    const failed = await routes.teardown();
    for (const f of failed) this.logger.error('failed to remove a routing entry', { error: f });
    if (added.length > 0)
      this.logger.info('routing entries removed', { removed: added.length - failed.length });
  }
}

async function serveWithSignals(
  flags: CliFlags,
  io: CliIo,
  hooks: ServeHooks,
  logger: Logger,
  signals: SignalState,
  routes: Routes,
): Promise<number> {
  // Socket activation: the sockets systemd passed are the listeners, when they are meant for us.
  let passed: PassedSockets | null;
  try {
    passed = listenFdsFromEnv(io.env, process.pid);
    watchdogUsecFromEnv(io.env, process.pid);
  } catch (err) {
    if (!(err instanceof SystemdEnvError)) throw err;
    io.stderr.write(`mmproxy: ${err.message}\n`);
    return 2;
  }
  const listenAddr = passed ? describePassed(passed) : flags.listen;
  const base = { protocol: flags.protocol, listenAddr };
  const options = toProxyOptions(flags);
  if (passed) {
    delete options.listen;
    delete options.listeners;
    options.listenFds = passed.fds;
    logger.info('listening on the sockets systemd passed; -l and --listeners are not used', {
      protocol: flags.protocol,
      listenFds: passed.fds.join(','),
      fdNames: passed.names.join(','),
    });
  }

  // Loaded here rather than at the top so that --help and usage errors work where the proxy
  // cannot (no addon, another OS).
  let proxy: Proxy;
  try {
    const { createProxy } = await import('../lib/proxy.js');
    proxy = createProxy(options);
  } catch (err) {
    if (err instanceof InvalidOptionError) {
      io.stderr.write(`mmproxy: ${flagForOption(err.option)}: ${err.message}\n`);
      return 2;
    }
    logger.error('failed to start', { ...base, error: err as Error });
    return 1;
  }

  if (signals.stop !== null) return 0;
  // Target names are resolved before anything else is set up: the routes are for their addresses.
  if (proxy.targets.target4 === null || proxy.targets.target6 === null) {
    const results = await proxy.resolveTargets();
    const failed = results.find((r) => r.error !== null);
    if (failed) {
      io.stderr.write(resolveFailure(failed.error!, flags) + '\n');
      return 2;
    }
    for (const r of results) {
      logger.info('resolved host name', {
        flag: flagForOption(r.option),
        name: r.host,
        address: r.address,
      });
    }
    if (signals.stop !== null) return 0;
  }
  if (flags.setupRoutes !== undefined) {
    try {
      const added = await setupRoutes(
        [
          { family: 4, address: proxy.targets.target4!.address },
          { family: 6, address: proxy.targets.target6!.address },
        ],
        flags.setupRoutes,
      );
      routes.current = added;
      logger.info('routing entries set up', {
        table: flags.setupRoutes,
        added: added.added.map((c) => c.text),
        alreadyPresent: added.present.map((c) => c.text),
      });
    } catch (err) {
      logger.error('failed to set up routing entries', {
        table: flags.setupRoutes,
        error: err as Error,
      });
      return 1;
    }
  }

  try {
    if (signals.stop !== null) return 0;
    return await run(proxy, flags, io, logger, hooks, signals, passed);
  } finally {
    await routes.teardown();
  }
}

async function run(
  proxy: Proxy,
  flags: CliFlags,
  io: CliIo,
  logger: Logger,
  hooks: ServeHooks,
  signals: SignalState,
  passed: PassedSockets | null,
): Promise<number> {
  const listenAddr = passed ? describePassed(passed) : flags.listen;
  const base = { protocol: flags.protocol, listenAddr };
  const localAddr = (): string => {
    const bound = proxy.address();
    return bound ? formatEndpoint(bound) : listenAddr;
  };
  const service = new ServiceNotifications(io.env, logger, proxy, () =>
    passed && passed.fds.length > 1
      ? `${localAddr()} and ${passed.fds.length - 1} more`
      : localAddr(),
  );
  const detach = logProxyEvents(proxy, logger, flags.verbosity, localAddr);

  // Settles the run: the first outcome wins.
  let finish!: (code: number) => void;
  const finished = new Promise<number>((resolve) => (finish = resolve));
  let fatal = false;
  proxy.on('error', (err) => {
    logger.error('listener failed', { ...base, error: err });
    fatal = true;
    service.stopping(0);
    void proxy.close({ drainTimeout: 0 }).then(
      () => finish(1),
      () => finish(1),
    );
  });

  try {
    await proxy.listen();
  } catch (err) {
    const e = err as Error & { code?: string };
    if (err instanceof ResolveError) {
      // The -l name (target names were resolved before): as a bad flag is, exit 2.
      io.stderr.write(resolveFailure(err, flags) + '\n');
      detach();
      return 2;
    }
    if (err instanceof ListenFdError && passed) {
      const name = passed.names[passed.fds.indexOf(err.fd)] ?? 'unknown';
      const directive = flags.protocol === 'tcp' ? 'ListenStream=' : 'ListenDatagram=';
      logger.error('a socket systemd passed cannot be used', {
        ...base,
        fd: err.fd,
        fdName: name,
        found: err.found,
        expected: err.expected,
        error:
          `fd ${err.fd} (${JSON.stringify(name)}) is ${err.found}; -p ${flags.protocol} needs ` +
          `${err.expected} (${directive} in the .socket unit)`,
      });
    } else if (err instanceof AllowlistError) {
      logger.error('failed to load allowed subnets file', {
        path: flags.allowedSubnetsFile,
        error: e,
      });
    } else {
      logger.error('failed to bind listener', { ...base, error: e, code: e.code });
    }
    detach();
    return 1;
  }

  const bound = proxy.address();
  if ('host' in proxy.options.listen && bound) {
    logger.info('resolved host name', {
      flag: '-l',
      name: proxy.options.listen.host,
      address: bound.address,
    });
  }

  const counters: CommandCounters = {
    allowlistReloads: { ok: 0, error: 0 },
    startTimeSeconds: Math.floor(Date.now() / 1000),
  };

  // SIGHUP reloads run one after another, so the last file read is the list in force.
  let reloading = Promise.resolve();
  const reload = (): void => {
    reloading = reloading.then(async () => {
      service.reloading();
      const names = 'host' in proxy.options.target4 || 'host' in proxy.options.target6;
      if (names) logResolutions(await proxy.resolveTargets(), flags, logger);
      if (names && flags.allowedSubnetsFile === undefined) {
        service.reloaded();
        return;
      }
      try {
        await reloadAllowlist();
      } finally {
        service.reloaded();
      }
    });
  };
  const reloadAllowlist = async (): Promise<void> => {
    const file = flags.allowedSubnetsFile;
    if (file === undefined) {
      logger.warn('SIGHUP ignored: there is no --allowed-subnets file to reload');
      return;
    }
    try {
      const { Allowlist } = await import('../lib/allowlist.js');
      const list = await Allowlist.fromFile(file);
      proxy.setAllowlist(list);
      counters.allowlistReloads.ok++;
      logger.info('allowed subnets reloaded', { path: file, subnets: list.size });
    } catch (err) {
      counters.allowlistReloads.error++;
      logger.error('failed to reload allowed subnets; keeping the previous list', {
        path: file,
        error: err as Error,
      });
    }
  };

  let stopping = false;
  const onSignal = (signal: CliSignal): void => {
    if (signal === 'SIGHUP') return reload();
    if (!stopping) {
      stopping = true;
      const drainTimeout = flags.drainTimeout ?? proxy.options.drainTimeout;
      service.stopping(drainTimeout);
      logger.info('shutting down: draining connections', {
        signal,
        active: proxy.stats().active,
        drainTimeoutSeconds: drainTimeout / 1000,
      });
      void proxy.close({ drainTimeout }).then(
        () => finish(fatal ? 1 : 0),
        (err: Error) => {
          logger.error('failed to close', { error: err });
          finish(1);
        },
      );
    } else {
      logger.info('stopping now', { signal, active: proxy.stats().active });
      void proxy.close({ drainTimeout: 0 });
    }
  };
  if (
    flags.dynamicDestination &&
    flags.allowedSubnetsFile === undefined &&
    flags.dynamicDestinationAllow === undefined
  ) {
    logger.warn(
      '--dynamic-destination without --allowed-subnets or --dynamic-destination-allow: anyone ' +
        'who reaches the listener can connect from any address to any port of this host',
      {
        fix:
          'limit the load balancers with --allowed-subnets FILE, or the destinations with ' +
          '--dynamic-destination-allow LIST such as 127.0.0.1/32:10000-20000',
      },
    );
  }
  logger.info('listening', {
    ...base,
    localAddr: localAddr(),
    listenFds: passed?.fds.join(','),
    targetAddr4: flags.target4,
    targetAddr6: flags.target6,
    listeners: passed ? passed.fds.length : flags.listeners,
    allowedSubnets: flags.allowedSubnetsFile,
    dynamicDestination: flags.dynamicDestination || undefined,
    dynamicDestinationAllow: flags.dynamicDestinationAllow?.join(','),
    mark: flags.mark,
    verbosity: flags.verbosity,
  });

  // From here on run() handles signals; what came during start-up is done now.
  signals.handler = onSignal;
  if (signals.reload) reload();
  if (signals.stop !== null) onSignal(signals.stop);

  let metrics: MetricsServer | undefined;
  if (flags.metrics) {
    try {
      metrics = await startMetricsServer(flags.metrics.host, flags.metrics.port, () =>
        formatMetrics(proxy.stats(), counters),
      );
      logger.info('serving metrics', {
        metricsAddr: formatEndpoint(metrics.address) + '/metrics',
      });
    } catch (err) {
      logger.error('failed to serve metrics', {
        metricsAddr: formatEndpoint({ address: flags.metrics.host, port: flags.metrics.port }),
        error: err as Error,
      });
      await proxy.close({ drainTimeout: 0 });
      detach();
      return 1;
    }
  }
  // Listening, and the metrics served: the service is up.
  service.ready();

  // The start-up self-check only warns: the proxy may be right where the check cannot tell.
  void selfCheck({
    target4: proxy.targets.target4 ?? flags.target4,
    target6: proxy.targets.target6 ?? flags.target6,
    protocol: flags.protocol,
    mark: flags.mark,
    table: flags.setupRoutes ?? DEFAULT_ROUTE_TABLE,
    timeoutMs: 1000,
  }).then(
    (items) => {
      const failed = items.filter((i) => i.status === 'fail');
      for (const item of failed) {
        logger.warn('self-check failed', {
          check: item.id,
          what: item.title,
          detail: item.detail,
          fix: item.fix.join('; '),
        });
      }
      if (failed.length === 0) logger.info('self-check passed', { checks: items.length });
    },
    (err: Error) => logger.warn('self-check could not run', { error: err }),
  );

  const summary = new DropSummary(() => proxy.stats());
  // This timer also keeps the process alive while the proxy runs.
  const timer = setInterval(() => {
    summary.report(logger);
    logger.flushSuppressed();
  }, hooks.summaryIntervalMs ?? SUMMARY_INTERVAL_MS);

  // The library closed without us asking (a listener died): that is a failure.
  proxy.on('close', () => {
    if (!stopping) finish(1);
  });

  const code = await finished;
  // Until serve() returns, a signal neither kills the process nor reloads a closed proxy.
  signals.handler = (signal) => logger.info('signal ignored: already stopped', { signal });
  clearInterval(timer);
  service.close();
  await reloading;
  summary.report(logger);
  detach();
  await metrics?.close();
  logger.info('stopped', { ...base, exitCode: code });
  logger.flushSuppressed();
  return code;
}

/** The usage-style message for a name that did not resolve at start: flag, name, an example. */
function resolveFailure(err: ResolveError, flags: CliFlags): string {
  const option = err.option as EndpointOption;
  const flag = flagForOption(option);
  const given = flags[option] as string;
  return (
    `mmproxy: ${flag} ${given}: cannot resolve ${JSON.stringify(err.host)} to ` +
    `${err.family === 0 ? 'an IP address' : `an IPv${err.family} address`}: ${err.reason}; ` +
    `give a name that resolves, or an address, e.g. ${flag} ${ENDPOINT_RULES[option].example}`
  );
}

/** SIGHUP: what resolving the target names again did, one line each. */
function logResolutions(
  results: readonly TargetResolution[],
  flags: CliFlags,
  logger: Logger,
): void {
  for (const r of results) {
    const fields = { flag: flagForOption(r.option), name: r.host, address: r.address };
    if (r.error) {
      logger.warn('failed to resolve host name; keeping the previous address', {
        ...fields,
        error: r.error.reason,
      });
    } else if (!r.changed) {
      logger.info('host name resolved again; same address', fields);
    } else {
      logger.info('host name resolved to a new address; new connections go there', {
        ...fields,
        previous: r.previous,
      });
      const family = r.option === 'target4' ? 4 : 6;
      const table = flags.setupRoutes;
      if (
        table !== undefined &&
        r.previous !== null &&
        routingCommands(family, table, r.previous)[0]!.text !==
          routingCommands(family, table, r.address!)[0]!.text
      ) {
        logger.warn('the routing entries --setup-routes added are for the previous address', {
          ...fields,
          fix: `restart to set them up for the new one, or add: ${routingCommands(
            family,
            table,
            r.address!,
          )
            .map((c) => c.text)
            .join('; ')}`,
        });
      }
    }
  }
}

/** `fd 3 "web"`, `fd 3 "web", fd 4 "web-v6"`: the passed sockets, for log lines. */
function describePassed(passed: PassedSockets): string {
  return passed.fds.map((fd, i) => `fd ${fd} ${JSON.stringify(passed.names[i])}`).join(', ');
}

function hostOf(hostPort: string): string {
  const m = /^\[?(.*?)\]?:\d+$/.exec(hostPort);
  return m ? m[1]! : hostPort;
}
