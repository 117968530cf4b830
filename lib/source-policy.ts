// Which client sources named by a PROXY header may be spoofed (bound with IP_TRANSPARENT).
//
// Why: the upstream socket binds to whatever source the header names. For some sources the
// kernel does not make a spoofed connection at all: binding to an unspecified, multicast or
// broadcast address makes it choose the source itself (toward a local target that is 127.0.0.1
// or ::1), and a loopback or own address is simply a real local address. The application would
// then see a genuine connection from localhost or from this host, and anyone able to reach the
// load balancer could reach every service that trusts local peers. Such headers are refused.
//
// Decisions:
// - 0.0.0.0/8 ("this network", RFC 1122) is refused as 'unspecified': it is never a valid source
//   across a network, and 0.0.0.0 itself binds to "any".
// - 'broadcast' is the limited broadcast 255.255.255.255 only; the directed broadcast and network
//   addresses of this host's own subnets are in localAddresses(), so they are refused as
//   'local-address'. Directed broadcasts of other networks are ordinary addresses here.
// - Link-local sources (169.254.0.0/16, fe80::/10) are allowed: a client on the load balancer's
//   segment is a legitimate client, and nothing makes the kernel treat them as local.
// - IPv4-mapped IPv6 (::ffff:127.0.0.1) is judged as the IPv4 address it carries.
// - Address reasons come before 'port-zero'; 'invalid' (not an address, or a port outside
//   0..65535) before everything, so the function fails closed on input it does not understand.
import os from 'node:os';
import { formatV4, formatV6, isMapped, parseIp } from './allowlist.js';

/** Why a source must not be spoofed. Stable strings: logs and stats may use them. */
export type SpoofRefusal =
  | 'invalid'
  | 'unspecified'
  | 'loopback'
  | 'multicast'
  | 'broadcast'
  | 'local-address'
  | 'port-zero';

const words = new Uint32Array(4);

/**
 * Null when the client source `address`:`port` may be used as the upstream connection's source,
 * otherwise the reason it may not. `localAddresses` holds this host's addresses in the forms
 * Node prints (as `localAddresses()` returns them); IPv4 may be there plain or mapped. Anything
 * with `has()` will do: the proxy passes the kernel's local table (lib/host-addresses.ts).
 */
export function spoofRefusal(
  address: string,
  port: number,
  localAddresses: Pick<ReadonlySet<string>, 'has'>,
): SpoofRefusal | null {
  if (!Number.isInteger(port) || port < 0 || port > 65535) return 'invalid';
  const zone = address.indexOf('%');
  const family = parseIp(zone < 0 ? address : address.slice(0, zone), words);
  if (family === 0) return 'invalid';
  if (family === 4 || isMapped(words)) {
    const v4 = words[3]!;
    const first = v4 >>> 24;
    if (first === 0) return 'unspecified';
    if (first === 127) return 'loopback';
    if (first >= 224 && first <= 239) return 'multicast';
    if (v4 === 0xffffffff) return 'broadcast';
    const dotted = formatV4(v4);
    if (localAddresses.has(dotted) || localAddresses.has(`::ffff:${dotted}`)) {
      return 'local-address';
    }
  } else {
    const high = words[0]!;
    const last = words[3]!;
    if ((high | words[1]! | words[2]!) === 0 && last <= 1) {
      return last === 0 ? 'unspecified' : 'loopback';
    }
    if (high >>> 24 === 0xff) return 'multicast';
    if (localAddresses.has(formatV6(words))) return 'local-address';
  }
  return port === 0 ? 'port-zero' : null;
}

/**
 * This host's addresses, as Node prints them, from os.networkInterfaces(): every IPv4 address
 * both plain and IPv4-mapped, the network and directed broadcast address of each IPv4 subnet
 * (the kernel's local table lists those too), and every IPv6 address without its zone.
 * Interfaces change (DHCP, VPNs): call it again rather than caching it forever.
 */
export function localAddresses(): Set<string> {
  const result = new Set<string>();
  const addV4 = (v4: number): void => {
    const dotted = formatV4(v4 >>> 0);
    result.add(dotted);
    result.add(`::ffff:${dotted}`);
  };
  const mask = new Uint32Array(4);
  for (const infos of Object.values(os.networkInterfaces())) {
    for (const info of infos ?? []) {
      const zone = info.address.indexOf('%');
      const family = parseIp(zone < 0 ? info.address : info.address.slice(0, zone), words);
      if (family === 4) {
        const v4 = words[3]!;
        addV4(v4);
        // A /31 or /32 has neither a network nor a broadcast address (RFC 3021).
        if (parseIp(info.netmask, mask) === 4) {
          const m = mask[3]!;
          if (m >>> 0 !== 0xffffffff && m >>> 0 !== 0xfffffffe) {
            addV4(v4 & m);
            addV4(v4 | ~m);
          }
        }
      } else if (family === 6) {
        if (isMapped(words)) addV4(words[3]!);
        else result.add(formatV6(words));
      }
    }
  }
  return result;
}
