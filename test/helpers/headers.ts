// PROXY headers for the relay tests, built with the package's own encoder.
import { isIPv4 } from 'node:net';
import { encodeHeader, type ProxyHeader } from '../../lib/codec/index.js';

export function v1(
  source: string,
  sourcePort: number,
  dest = '127.0.0.1',
  destPort = 8443,
): string {
  const family = isIPv4(source) ? 'TCP4' : 'TCP6';
  return `PROXY ${family} ${source} ${dest} ${sourcePort} ${destPort}\r\n`;
}

export function v2(
  source: string,
  sourcePort: number,
  dest = isIPv4(source) ? '127.0.0.1' : '::1',
  destPort = 8443,
  protocol: 'TCP4' | 'TCP6' | 'UDP4' | 'UDP6' = isIPv4(source) ? 'TCP4' : 'TCP6',
): Uint8Array {
  const header: ProxyHeader = {
    version: 2,
    command: 'PROXY',
    protocol,
    source: { address: source, port: sourcePort },
    destination: { address: dest, port: destPort },
    tlvs: [],
  };
  return encodeHeader(header, { version: 2 });
}

export function v2Local(): Uint8Array {
  const header: ProxyHeader = {
    version: 2,
    command: 'LOCAL',
    protocol: 'UNKNOWN',
    source: null,
    destination: null,
    tlvs: [],
  };
  return encodeHeader(header, { version: 2 });
}
