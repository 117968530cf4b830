// This host's own addresses for the spoofing check, as the kernel decides them, kept current.
//
// os.networkInterfaces() (libuv) leaves out interfaces that are up without carrier, such as
// docker0 with no container running, yet the kernel still treats their addresses as local: a
// connection bound to one of them comes from this host. So the check reads the kernel's local
// routing table (one netlink dump through the addon) and adds the interfaces' subnet addresses
// that `localAddresses()` lists; a snapshot is used for at most a second.
import { Allowlist } from './allowlist.js';
import { loadNative } from './native.js';
import { localAddresses } from './source-policy.js';

/** How long one snapshot is trusted: an address added to the host is noticed within this. */
export const HOST_ADDRESSES_MAX_AGE_MS = 1000;

export class HostAddresses {
  #at = -Infinity;
  #table: Allowlist | null = null;
  #interfaces: ReadonlySet<string> = new Set();
  /** Why the last read of the local table failed, or null. */
  lastError: Error | null = null;

  /** Whether `address` is one of this host's (IPv4 plain or mapped, IPv6 without a zone). */
  has(address: string): boolean {
    this.#refresh();
    return this.#interfaces.has(address) || this.#table?.contains(address) === true;
  }

  #refresh(): void {
    const now = performance.now();
    if (now - this.#at < HOST_ADDRESSES_MAX_AGE_MS) return;
    this.#at = now;
    this.#interfaces = localAddresses();
    try {
      const prefixes = loadNative().localTable();
      // Empty only in a namespace without even lo up; an Allowlist may not be empty.
      this.#table = prefixes.length > 0 ? Allowlist.from(prefixes) : null;
      this.lastError = null;
    } catch (e) {
      // Keep the previous table: an address the kernel called local a second ago still is,
      // more likely than not; the interfaces' list above is current either way.
      this.lastError = e as Error;
    }
  }
}
