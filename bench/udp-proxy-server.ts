// Runs mmproxy-native as a UDP proxy in a process of its own for bench/udp.ts: one listener, the
// given targets, worker count, flow bound and idle timeout; prints "ready <address>" once it
// listens, and on SIGTERM or SIGINT prints "stats <json>" (the proxy's counters) and exits.
//   node udp-proxy-server.js --listen 127.0.0.1:9001 --target4 127.0.0.1:9000
//                            [--target6 [::1]:9000] [--workers 1] [--max-flows 1000000] [--close-after 60]
import { parseArgs } from 'node:util';
import { createProxy } from '../lib/proxy.js';

const { values } = parseArgs({
  options: {
    listen: { type: 'string', default: '127.0.0.1:8443' },
    target4: { type: 'string', default: '127.0.0.1:443' },
    target6: { type: 'string', default: '[::1]:443' },
    workers: { type: 'string', default: '1' },
    'max-flows': { type: 'string', default: '1000000' },
    'close-after': { type: 'string', default: '60' },
  },
});

const proxy = createProxy({
  protocol: 'udp',
  listen: values.listen,
  target4: values.target4,
  target6: values.target6,
  workers: Number(values.workers),
  listeners: 1,
  maxFlows: Number(values['max-flows']),
  closeAfter: Number(values['close-after']),
});
proxy.on('error', (e) => console.error(`proxy error: ${e.message}`));

await proxy.listen();
const bound = proxy.address();
console.log(`ready ${bound ? `${bound.address}:${bound.port}` : values.listen}`);

let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  console.log(`stats ${JSON.stringify(proxy.stats())}`);
  setTimeout(() => process.exit(0), 2000).unref();
  proxy.close({ drainTimeout: 0 }).then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(`close failed: ${(e as Error).message}`);
      process.exit(1);
    },
  );
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
