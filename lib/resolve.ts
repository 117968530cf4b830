// One host name to one address of the family an option needs: node:dns lookup (getaddrinfo, so
// /etc/hosts and nsswitch are honoured), bounded by a timeout, with `localhost` answered without
// the resolver. Which of several addresses is used is decided here and nowhere else.
import dns from 'node:dns';
import { formatV4, formatV6, parseIp } from './allowlist.js';
import { ResolveError } from './errors.js';

/** node:dns lookup with `all: true`, the only form used; injectable for tests. */
export type LookupAll = (
  host: string,
  options: { family: 0 | 4 | 6; all: true },
  callback: (err: NodeJS.ErrnoException | null, addresses: dns.LookupAddress[]) => void,
) => void;

export interface ResolveOptions {
  /** Milliseconds to wait for the resolver (default RESOLVE_TIMEOUT_MS). */
  timeoutMs?: number;
  /** Defaults to node:dns lookup. */
  lookup?: LookupAll;
}

export interface Resolved {
  /** The chosen address, in canonical text ("127.0.0.1", "::1"). */
  address: string;
  family: 4 | 6;
  /** Every usable address the resolver gave, in its order; `address` is one of them. */
  addresses: string[];
}

/** How long a lookup may take before it counts as failed. */
export const RESOLVE_TIMEOUT_MS = 5000;

/**
 * `localhost` is this host's loopback for every family (RFC 6761, section 6.3), whatever the
 * hosts file says: many list only `127.0.0.1 localhost`, and then `-6 localhost:443` would not
 * start. Other names, `*.localhost` included, go to the resolver.
 */
export const LOCALHOST = { 4: '127.0.0.1', 6: '::1' } as const;

function isLocalhost(host: string): boolean {
  return /^localhost\.?$/i.test(host);
}

function reasonFor(err: NodeJS.ErrnoException, family: 0 | 4 | 6): string {
  const kind = family === 0 ? 'address' : `IPv${family} address`;
  switch (err.code) {
    case 'ENOTFOUND':
    case 'ENODATA':
      return `no such name, or no ${kind} for it (${err.code})`;
    case 'EAI_AGAIN':
      return 'the resolver could not answer now (EAI_AGAIN)';
    default:
      return err.message;
  }
}

const words = new Uint32Array(4);

/**
 * Resolves `host` for `option`: family 4 or 6 asks for that family only; 0 (the listen address)
 * asks for both and takes the first IPv4 address, else the first IPv6 one, as go-mmproxy (Go's
 * net.Listen) does with a name. Within a family the resolver's first address wins, in
 * getaddrinfo's order (sorted by RFC 6724 and /etc/gai.conf, so not always the hosts file's).
 * Rejects with a ResolveError that names the option.
 */
export async function resolveHost(
  option: string,
  host: string,
  family: 0 | 4 | 6,
  options: ResolveOptions = {},
): Promise<Resolved> {
  if (isLocalhost(host)) {
    const f = family === 6 ? 6 : 4;
    return { address: LOCALHOST[f], family: f, addresses: [LOCALHOST[f]] };
  }
  const timeoutMs = options.timeoutMs ?? RESOLVE_TIMEOUT_MS;
  const lookup: LookupAll = options.lookup ?? (dns.lookup as unknown as LookupAll);
  const found = await new Promise<dns.LookupAddress[]>((resolve, reject) => {
    // getaddrinfo cannot be cancelled; past the deadline its answer is ignored. The timer is
    // cleared by any answer, so it holds the event loop only while the lookup is unanswered.
    const timer = setTimeout(() => {
      reject(new ResolveError(option, host, family, `no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    try {
      lookup(host, { family, all: true }, (err, addresses) => {
        clearTimeout(timer);
        if (err) reject(new ResolveError(option, host, family, reasonFor(err, family), err));
        else resolve(addresses);
      });
    } catch (err) {
      clearTimeout(timer);
      reject(new ResolveError(option, host, family, (err as Error).message, err));
    }
  });
  // Only addresses the addon can connect to or bind (inet_pton's: no zone index), canonical.
  const usable: { address: string; family: 4 | 6 }[] = [];
  for (const a of found) {
    const f = parseIp(a.address, words);
    if (f === 0 || (family !== 0 && f !== family)) continue;
    const address = f === 4 ? formatV4(words[3]!) : formatV6(words);
    if (!usable.some((u) => u.address === address)) usable.push({ address, family: f });
  }
  if (usable.length === 0) {
    const kind = family === 0 ? 'an address' : `an IPv${family} address`;
    throw new ResolveError(
      option,
      host,
      family,
      found.length === 0
        ? `the resolver returned no ${family === 0 ? '' : `IPv${family} `}addresses`
        : `it resolves to ${found.map((a) => a.address).join(', ')}, and none is ${kind} ` +
            'that can be used (zone indexes such as %eth0 are not supported)',
    );
  }
  const chosen = usable.find((u) => u.family === 4) ?? usable[0]!;
  return {
    address: chosen.address,
    family: chosen.family,
    addresses: usable.filter((u) => u.family === chosen.family).map((u) => u.address),
  };
}
