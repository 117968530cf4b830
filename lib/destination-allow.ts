// The destinations dynamicDestination may connect to: subnets, each with an optional port or port
// range ("127.0.0.1/32:10000-20000", "[::1]/128:443", "10.0.0.0/8" for any port). Parses the list
// (options and the --dynamic-destination-allow flag share it) and answers `contains` for a
// header's destination, once per connection or new UDP flow.
//
// Decisions:
// - An IPv6 entry with ports puts the address in brackets, as endpoints do; an IPv6 entry
//   without brackets must have a prefix length ("2001:db8::/32"), because "::1:443" is an IPv6
//   address and would otherwise silently mean "any port of ::1:443".
// - Subnets follow the allowlist's rules (lib/allowlist.ts): host bits are masked, an
//   IPv4-mapped subnet of /96 or longer is the IPv4 subnet it means, IPv4-mapped destinations
//   match IPv4 entries.
// - Ports are 1-65535: no connection goes to port 0.
import { Allowlist, parseSubnet } from './allowlist.js';

/** Entries shown in error messages as a valid example. */
export const DESTINATION_EXAMPLE = ['127.0.0.1/32:10000-20000', '[::1]/128:443', '10.0.0.0/8'];

interface Entry {
  subnet: Allowlist;
  low: number;
  high: number;
  text: string;
}

function port(text: string): number | null {
  return /^[1-9][0-9]{0,4}$/.test(text) && Number(text) <= 65535 ? Number(text) : null;
}

function parsePorts(text: string): [number, number] | string {
  const dash = text.indexOf('-');
  const low = port(dash < 0 ? text : text.slice(0, dash));
  const high = dash < 0 ? low : port(text.slice(dash + 1));
  if (low === null || high === null) {
    return (
      'after ":" comes a port from 1 to 65535 or a range such as 10000-20000, not ' +
      JSON.stringify(text)
    );
  }
  if (low > high) return `the port range ${text} ends before it starts`;
  return [low, high];
}

/** One entry, or the reason it is not one. */
function parseEntry(text: string): Entry | string {
  if (text === '') return 'an empty entry';
  if (/\s/.test(text)) return 'spaces inside an entry';
  let subnetText: string;
  let portsText: string | null = null;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return 'a "[" without its "]"';
    const address = text.slice(1, close);
    let rest = text.slice(close + 1);
    let prefix = '';
    const slash = rest.match(/^\/[0-9]*/);
    if (slash) {
      prefix = slash[0];
      rest = rest.slice(prefix.length);
    }
    if (rest.startsWith(':')) portsText = rest.slice(1);
    else if (rest !== '') return `${JSON.stringify(rest)} after "]", where ":" and ports belong`;
    if (!address.includes(':')) return 'only an IPv6 address goes in brackets';
    if (address.includes('/')) return 'the prefix length goes after "]": [2001:db8::]/32:443';
    subnetText = address + prefix;
  } else {
    const colons = text.split(':').length - 1;
    if (colons > 1) {
      // IPv6 without brackets: a subnet, any port.
      if (!text.includes('/')) {
        return (
          'an IPv6 address goes in brackets, with or without ports ([::1]:443, [::1]); ' +
          'unbracketed, write a subnet such as 2001:db8::/32'
        );
      }
      subnetText = text;
    } else if (colons === 1) {
      const colon = text.indexOf(':');
      subnetText = text.slice(0, colon);
      portsText = text.slice(colon + 1);
    } else {
      subnetText = text;
    }
  }
  const subnet = parseSubnet(subnetText);
  if (typeof subnet === 'string') return subnet;
  let low = 1;
  let high = 65535;
  if (portsText !== null) {
    const ports = parsePorts(portsText);
    if (typeof ports === 'string') return ports;
    [low, high] = ports;
  }
  const shown = subnet.family === 6 ? subnet.text.replace(/^(.*)(\/\d+)$/, '[$1]$2') : subnet.text;
  const portPart = portsText === null ? '' : low === high ? `:${low}` : `:${low}-${high}`;
  return { subnet: Allowlist.from([subnet.text]), low, high, text: shown + portPart };
}

/** An immutable list of destinations: subnets with port ranges. */
export class DestinationAllowlist {
  /** Normalized entries, e.g. "127.0.0.1/32:10000-20000", "[::1]/128:443", "10.0.0.0/8". */
  readonly entries: readonly string[];
  readonly #entries: readonly Entry[];

  private constructor(entries: Entry[]) {
    this.#entries = entries;
    this.entries = Object.freeze(entries.map((e) => e.text));
    Object.freeze(this);
  }

  /**
   * Parses entries; throws a TypeError whose message says which entry is wrong and why (the
   * caller adds the option or flag and an example).
   */
  static from(entries: readonly unknown[]): DestinationAllowlist {
    if (entries.length === 0) {
      throw new TypeError('the list is empty, which would refuse every destination');
    }
    const parsed = entries.map((value, index) => {
      const entry = typeof value === 'string' ? parseEntry(value) : 'each entry must be a string';
      if (typeof entry === 'string') {
        const shown = typeof value === 'string' ? JSON.stringify(value) : String(value);
        throw new TypeError(`entry ${index} ${shown}: ${entry}`);
      }
      return entry;
    });
    return new DestinationAllowlist(parsed);
  }

  /** Whether the destination (an address as the header gives it, and a port) is in the list. */
  contains(address: string, port: number): boolean {
    for (const e of this.#entries) {
      if (port >= e.low && port <= e.high && e.subnet.contains(address)) return true;
    }
    return false;
  }

  toString(): string {
    return `DestinationAllowlist(${this.entries.join(', ')})`;
  }
}
