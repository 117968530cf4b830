// The addresses that the listen, target4 and target6 options stand for: an address as given, a
// host name as lib/resolve last resolved it. Names are resolved at listen() and the target names
// again on demand (SIGHUP); a new pair replaces the old one whole, so each new connection reads
// one consistent pair and live connections keep the target they were given.
import { ResolveError } from './errors.js';
import type { Endpoint, HostEndpoint, NormalizedOptions } from './options.js';
import { resolveHost, type ResolveOptions } from './resolve.js';

/** An address in force; `host` is the name it was resolved from, when it was given as one. */
export interface ResolvedEndpoint extends Endpoint {
  host?: string;
}

export type TargetOption = 'target4' | 'target6';

/** What resolveTargets() did for one target given by name. */
export interface TargetResolution {
  option: TargetOption;
  /** The name as given. */
  host: string;
  /** The address in force now; null when the name has never resolved. */
  address: string | null;
  /** The address before this resolution; null when there was none. */
  previous: string | null;
  /** Whether the address in force changed. */
  changed: boolean;
  /** Why the name did not resolve this time (the previous address stays); null when it did. */
  error: ResolveError | null;
}

export interface ResolvedTargets {
  target4: ResolvedEndpoint | null;
  target6: ResolvedEndpoint | null;
}

function isName(e: Endpoint | HostEndpoint): e is HostEndpoint {
  return 'host' in e;
}

export class Targets {
  readonly #given: Pick<NormalizedOptions, 'listen' | 'target4' | 'target6'>;
  readonly #resolve: ResolveOptions;
  /** Replaced whole, never changed in place. */
  #current: Readonly<ResolvedTargets>;
  /** Resolutions run one after another, so that the last one started is the one in force. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    given: Pick<NormalizedOptions, 'listen' | 'target4' | 'target6'>,
    resolve: ResolveOptions = {},
  ) {
    this.#given = given;
    this.#resolve = resolve;
    const fixed = (e: Endpoint | HostEndpoint): ResolvedEndpoint | null =>
      isName(e) ? null : { address: e.address, port: e.port, family: e.family };
    this.#current = Object.freeze({ target4: fixed(given.target4), target6: fixed(given.target6) });
  }

  /** The targets in force (null: a name not resolved yet). */
  get current(): Readonly<ResolvedTargets> {
    return this.#current;
  }

  /** Whether a target is given by name, so that resolving again can change it. */
  get hasNames(): boolean {
    return isName(this.#given.target4) || isName(this.#given.target6);
  }

  /** The target for a client of this family; listen() has resolved both by the time it is asked. */
  for(family: 4 | 6): ResolvedEndpoint {
    const t = family === 4 ? this.#current.target4 : this.#current.target6;
    if (t === null) throw new Error(`target${family} has not been resolved`);
    return t;
  }

  #serially<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(work, work);
    this.#queue = run.catch(() => {});
    return run;
  }

  async #lookup(option: 'listen' | TargetOption, e: HostEndpoint): Promise<ResolvedEndpoint> {
    const r = await resolveHost(option, e.host, e.family, this.#resolve);
    return { address: r.address, port: e.port, family: r.family, host: e.host };
  }

  /**
   * For listen(): the listen address (its name resolved now) and every target name that has not
   * resolved yet. Rejects with the first ResolveError, in the order listen, target4, target6.
   */
  forListen(): Promise<ResolvedEndpoint> {
    return this.#serially(async () => {
      const { listen, target4, target6 } = this.#given;
      const current = this.#current;
      const [l, t4, t6] = await Promise.allSettled([
        isName(listen) ? this.#lookup('listen', listen) : Promise.resolve(listen),
        current.target4 ?? this.#lookup('target4', target4 as HostEndpoint),
        current.target6 ?? this.#lookup('target6', target6 as HostEndpoint),
      ]);
      for (const r of [l, t4, t6]) if (r.status === 'rejected') throw r.reason;
      const value = <T>(r: PromiseSettledResult<T>): T => (r as PromiseFulfilledResult<T>).value;
      this.#current = Object.freeze({ target4: value(t4), target6: value(t6) });
      return value(l);
    });
  }

  /**
   * Resolves every target name again and puts the results in force at once. A name that fails
   * keeps the address it had (its entry says why); the listen address is never resolved again,
   * its socket being bound. One entry per target given by name, none for addresses.
   */
  refresh(): Promise<TargetResolution[]> {
    return this.#serially(async () => {
      const options = (['target4', 'target6'] as const).filter((o) => isName(this.#given[o]));
      const settled = await Promise.allSettled(
        options.map((o) => this.#lookup(o, this.#given[o] as HostEndpoint)),
      );
      const next: ResolvedTargets = { ...this.#current };
      const results = options.map((option, i): TargetResolution => {
        const before = this.#current[option];
        const r = settled[i]!;
        const host = (this.#given[option] as HostEndpoint).host;
        if (r.status === 'rejected') {
          const error =
            r.reason instanceof ResolveError
              ? r.reason
              : new ResolveError(option, host, option === 'target4' ? 4 : 6, String(r.reason));
          const address = before?.address ?? null;
          return { option, host, address, previous: address, changed: false, error };
        }
        next[option] = r.value;
        const previous = before?.address ?? null;
        const changed = previous !== r.value.address;
        return { option, host, address: r.value.address, previous, changed, error: null };
      });
      this.#current = Object.freeze(next);
      return results;
    });
  }
}
