// Runs mmproxy-native in a process of its own for bench/tcp.ts and bench/udp.ts: one TCP or UDP
// proxy with the given listen address, targets and worker count (UDP: one listener, the flow bound
// and idle timeout); prints "ready <address>" once it listens, and on SIGTERM or SIGINT prints
// "stats <json>" (the proxy's counters), closes and exits.
//   node proxy-server.js [--protocol tcp|udp] --listen 127.0.0.1:9001 --target4 127.0.0.1:9000
//                        [--target6 [::1]:9000] [--workers 1] [--max-flows 1000000] [--close-after 60]
import { parseArgs } from 'node:util';
import { createProxy } from '../lib/proxy.js';

const { values } = parseArgs({
  options: {
    protocol: { type: 'string', default: 'tcp' },
    listen: { type: 'string', default: '127.0.0.1:8443' },
    target4: { type: 'string', default: '127.0.0.1:443' },
    target6: { type: 'string', default: '[::1]:443' },
    workers: { type: 'string', default: '1' },
    'max-flows': { type: 'string', default: '1000000' },
    'close-after': { type: 'string', default: '60' },
  },
});
if (values.protocol !== 'tcp' && values.protocol !== 'udp') {
  console.error(`--protocol must be tcp or udp, not ${values.protocol}`);
  process.exit(2);
}
const udp = values.protocol === 'udp';

const proxy = createProxy({
  listen: values.listen,
  target4: values.target4,
  target6: values.target6,
  workers: Number(values.workers),
  ...(udp
    ? {
        protocol: 'udp',
        listeners: 1,
        maxFlows: Number(values['max-flows']),
        closeAfter: Number(values['close-after']),
      }
    : {}),
});
proxy.on('error', (e) => console.error(`proxy error: ${e.message}`));

await proxy.listen();
const bound = proxy.address();
console.log(`ready ${bound ? `${bound.address}:${bound.port}` : values.listen}`);

let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  const stats = proxy.stats();
  console.log(`stats ${JSON.stringify(stats)}`);
  // The mean hand-off to JavaScript and back, for the bench's notes.
  const { decisions, decisionWaitUs } = stats;
  if (decisions > 0) {
    console.error(`decisions ${decisions} mean wait ${(decisionWaitUs / decisions).toFixed(1)} µs`);
  }
  // TCP: live connections get a moment to end; the bench only stops us between runs.
  setTimeout(() => process.exit(0), 2000).unref();
  proxy.close(udp ? { drainTimeout: 0 } : {}).then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(`close failed: ${(e as Error).message}`);
      process.exit(1);
    },
  );
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
