// The library API used the way the README (docs/API.md) shows it, compiled by
// test/package-install.test.ts against the .d.ts files of the installed package, so an example
// that stops matching the published types fails a test. Compiled only, never run: it would listen
// on port 8443. The @ts-expect-error lines prove the types are strict, not `any`.
import {
  Allowlist,
  AllowlistError,
  createProxy,
  decodeHeader,
  DEFAULTS,
  encodeHeader,
  InvalidOptionError,
  normalizeOptions,
  Proxy,
  ProxyProtocolError,
  ResolveError,
  selfCheck,
  type CheckItem,
  type ConnectionInfo,
  type ProxyHeader,
  type ProxyOptions,
  type ProxyStats,
  type RejectInfo,
  type RouteHook,
  type SystemError,
  type TargetResolution,
} from 'mmproxy-native';
import { decodeHeader as decodeFromCodecEntry } from 'mmproxy-native/codec';

// --- Quick start ---------------------------------------------------------------------------
const proxy = createProxy({
  listen: '0.0.0.0:8443',
  target4: '127.0.0.1:443',
  target6: '[::1]:443',
  allowedSubnets: ['192.0.2.0/24', '2001:db8::/32'],
});

proxy.on('listening', () => console.log('listening on', proxy.address()));
proxy.on('connection', (c) => {
  console.log(
    `${c.client?.address}:${c.client?.port} via ${c.loadBalancer.address} -> ${c.target.address}:${c.target.port}`,
  );
});
proxy.on('reject', (r) =>
  console.warn(`rejected (${r.reason}) from ${r.loadBalancer.address}`, r.error?.message),
);
proxy.on('connectionError', (err, info) => {
  console.warn(
    `${err.syscall} failed: ${err.code} (${info.source.address} -> ${info.target.address})`,
  );
});
proxy.on('close', () => console.log('closed'));

await proxy.listen();
process.once('SIGTERM', () => void proxy.close({ drainTimeout: 10_000 }));

// --- Every option --------------------------------------------------------------------------
const route: RouteHook = ({ header, client, target }) => {
  if (header.authority === 'admin.example.com') return { address: '127.0.0.1', port: 8444 };
  if (client?.address.startsWith('198.51.100.')) return false;
  return target.port === 443 ? undefined : true;
};
const asyncRoute: RouteHook = async ({ client }) => (client ? undefined : null);

const options: ProxyOptions = {
  listen: { address: '::', port: 0 },
  target4: { address: '127.0.0.1', port: 443 },
  target6: '[::1]:443',
  protocol: 'udp',
  allowedSubnetsFile: '/etc/mmproxy/allowed-subnets.txt',
  mark: 123,
  listeners: 4,
  workers: 4,
  closeAfter: 60,
  headerTimeout: 10_000,
  drainTimeout: 30_000,
  maxConnections: Infinity,
  maxFlows: 65_536,
  dynamicDestination: false,
  local: 'reject',
  route,
  verbosity: 1,
};
const udpProxy = new Proxy({ ...options, route: asyncRoute });
udpProxy.unref().ref();
const normalized = normalizeOptions(options);
const workers: number = normalized.workers;
const defaultListen: string = DEFAULTS.listen;

// --- Stats ---------------------------------------------------------------------------------
const s: ProxyStats = proxy.stats();
console.log(s.accepted, s.active, s.admitted, s.rejected.notAllowed, s.rejected.badHeader);
console.log(s.upstreamFailures, s.ephemeralPortRetries, s.bytesFromClients, s.bytesFromUpstreams);
console.log(s.acceptErrors, s.udp.datagramsFromClients, s.udp.flowTableFull, s.udp.flowsExpired);
console.log(s.decisions, s.decisionWaitUs / Math.max(1, s.decisions));

// --- Allowlist reload ----------------------------------------------------------------------
process.on('SIGHUP', async () => {
  try {
    proxy.setAllowlist(await Allowlist.fromFile('/etc/mmproxy/allowed-subnets.txt'));
  } catch (err) {
    if (err instanceof AllowlistError) console.error(`${err.file}:${err.line}: ${err.message}`);
  }
});
const list = Allowlist.from(['192.0.2.0/24', '2001:db8::/32']);
const allowed: boolean = list.contains('192.0.2.7');
const entries: number = list.size;
const current: Allowlist | null = proxy.allowlist;
proxy.setAllowlist(null);

// --- Errors --------------------------------------------------------------------------------
try {
  createProxy({ listen: '0.0.0.0:80', target4: '127.0.0.1:8080' });
} catch (err) {
  if (err instanceof InvalidOptionError) console.error(err.option, err.code, err.message);
  else if ((err as NodeJS.ErrnoException).code === 'ERR_MMPROXY_NATIVE_UNAVAILABLE')
    console.error('the proxy needs Linux');
  else throw err;
}
await udpProxy.listen().catch((err: SystemError) => {
  console.error(err.code, err.errno, err.syscall, err.address, err.port);
});
await Promise.all([proxy.close(), proxy.close({ drainTimeout: 0 })]);

// --- Header codec --------------------------------------------------------------------------
const bytes = encodeHeader(
  {
    command: 'PROXY',
    protocol: 'TCP4',
    source: { address: '203.0.113.7', port: 51000 },
    destination: { address: '192.0.2.1', port: 443 },
    authority: 'example.com',
  },
  { version: 2, crc32c: true },
);
const decoded = decodeHeader(bytes, { transport: 'stream' });
if (decoded !== null) {
  const h: ProxyHeader = decoded.header;
  console.log(
    h.version,
    h.command,
    h.protocol,
    h.source?.address,
    h.authority,
    h.crc32c,
    decoded.length,
  );
  for (const tlv of h.tlvs) console.log(tlv.type, tlv.value.byteLength);
  const payload: Buffer = bytes.subarray(decoded.length);
  console.log(payload.byteLength);
}
try {
  decodeFromCodecEntry(Buffer.from('PROXY TCP4 nonsense\r\n'));
} catch (err) {
  if (err instanceof ProxyProtocolError) console.error(err.code, err.message);
}

// --- Host names ----------------------------------------------------------------------------
const named = createProxy({ listen: 'localhost:0', target4: 'app.internal:443' });
try {
  await named.listen();
} catch (err) {
  if (err instanceof ResolveError) console.error(err.option, err.host, err.family, err.reason);
}
const resolutions: TargetResolution[] = await named.resolveTargets();
const inForce: string | undefined = named.targets.target4?.address;
console.log(
  resolutions.map((r) => [r.option, r.host, r.address, r.previous, r.changed]),
  inForce,
);

// --- Self-check ----------------------------------------------------------------------------
for (const item of await selfCheck({ target4: '127.0.0.1:443', target6: '[::1]:443' })) {
  console.log(item.status, item.title, item.detail, ...item.fix);
}
const items: CheckItem[] = await selfCheck({ target4: { address: '127.0.0.1', port: 443 } });

// --- The types are strict ------------------------------------------------------------------
// @ts-expect-error: unknown option
createProxy({ lisen: '0.0.0.0:8443' });
// @ts-expect-error: protocol is 'tcp' | 'udp'
createProxy({ protocol: 'sctp' });
// @ts-expect-error: 'connection' listeners get a ConnectionInfo, not a string
proxy.on('connection', (c: string) => c);
// @ts-expect-error: no such event
proxy.on('conection', () => {});
// @ts-expect-error: encodeHeader needs a version
encodeHeader({ command: 'LOCAL', protocol: 'UNKNOWN', source: null, destination: null }, {});
const typedConnection = (c: ConnectionInfo): string => c.header.protocol;
const typedReject = (r: RejectInfo): string => r.reason;
console.log(workers, defaultListen, allowed, entries, current, items, typedConnection, typedReject);
