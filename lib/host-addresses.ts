// This host's own addresses for the spoofing check, as the kernel decides them, kept current.
//
// os.networkInterfaces() (libuv) leaves out interfaces that are up without carrier, such as
// docker0 with no container running, yet the kernel still treats their addresses as local: a
// connection bound to one of them comes from this host. So the check reads the kernel's local
// routing table (a netlink dump through the addon) and reads it again when a netlink socket
// subscribed to address and route changes says something changed, looked at every 50 ms at
// most. Exact addresses go in a Set; prefixes (127.0.0.0/8, AnyIP routes) in an Allowlist.
// When the table cannot be read at all, every address counts as local: refused, not risked.
import { Allowlist, formatV4, formatV6, isMapped, parseIp } from './allowlist.js';
import { loadNative, type NativeLocalTableWatch } from './native.js';

/** How often, at most, the change notifications are looked at. */
export const HOST_ADDRESSES_CHECK_MS = 50;

const words = new Uint32Array(4);

/** The address in the form the Set holds (dotted IPv4, mapped ones too; RFC 5952 IPv6), or null. */
function key(address: string): string | null {
  const zone = address.indexOf('%');
  const family = parseIp(zone < 0 ? address : address.slice(0, zone), words);
  if (family === 0) return null;
  return family === 4 || isMapped(words) ? formatV4(words[3]!) : formatV6(words);
}

interface Snapshot {
  exact: Set<string>;
  prefixes: Allowlist | null;
}

export class HostAddresses {
  #snapshot: Snapshot | null = null;
  #checkedAt = -Infinity;
  #stale = true;
  #watch: NativeLocalTableWatch | null = null;
  #closed = false;
  /** Why the last read of the local table failed, or null. */
  lastError: Error | null = null;

  /** Whether `address` is one of this host's (IPv4 plain or mapped, IPv6 with or without zone). */
  has(address: string): boolean {
    this.#refresh();
    const s = this.#snapshot;
    if (s === null) return true; // never read: fail closed
    const k = key(address);
    if (k === null) return false;
    return s.exact.has(k) || (s.prefixes !== null && s.prefixes.contains(k));
  }

  /** The error that keeps the table unread (every address then counts as local), or null. */
  unreadable(): Error | null {
    return this.#snapshot === null ? this.lastError : null;
  }

  /** Closes the change notifications; later checks read the table every 50 ms instead. */
  close(): void {
    this.#closed = true;
    this.#watch?.close();
    this.#watch = null;
  }

  #refresh(): void {
    const now = performance.now();
    if (now - this.#checkedAt < HOST_ADDRESSES_CHECK_MS) return;
    this.#checkedAt = now;
    const addon = loadNative();
    try {
      // Subscribe before the dump, so that no change between the two goes unnoticed.
      if (this.#watch === null && !this.#closed) {
        this.#watch = new addon.LocalTableWatch();
        this.#stale = true;
      }
      const changed = this.#watch === null || this.#watch.changed();
      if (!changed && !this.#stale) return;
      const { prefixes } = addon.localTable();
      const exact = new Set<string>();
      const wide: string[] = [];
      for (const p of prefixes) {
        const slash = p.lastIndexOf('/');
        const bits = Number(p.slice(slash + 1));
        const k = key(p.slice(0, slash));
        if (k === null) continue;
        if (bits === (p.includes(':') ? 128 : 32)) exact.add(k);
        else wide.push(p);
      }
      this.#snapshot = { exact, prefixes: wide.length > 0 ? Allowlist.from(wide) : null };
      this.#stale = false;
      this.lastError = null;
    } catch (e) {
      // Out of descriptors, say. Keep the last table (an address local a moment ago most
      // likely still is) and read again at the next check; with none yet, has() fails closed.
      this.lastError = e as Error;
      this.#stale = true;
    }
  }
}
