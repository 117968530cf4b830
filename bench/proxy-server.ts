// Runs mmproxy-native in a process of its own for bench/tcp.ts: one proxy with the given listen
// address, targets and worker count; prints "ready <address>" once it accepts, and closes and
// exits on SIGTERM or SIGINT.
//   node proxy-server.js --listen 127.0.0.1:9001 --target4 127.0.0.1:9000 [--target6 [::1]:9000] [--workers 1]
import { parseArgs } from 'node:util';
import { createProxy } from '../lib/proxy.js';

const { values } = parseArgs({
  options: {
    listen: { type: 'string', default: '127.0.0.1:8443' },
    target4: { type: 'string', default: '127.0.0.1:443' },
    target6: { type: 'string', default: '[::1]:443' },
    workers: { type: 'string', default: '1' },
  },
});

const proxy = createProxy({
  listen: values.listen,
  target4: values.target4,
  target6: values.target6,
  workers: Number(values.workers),
});
proxy.on('error', (e) => console.error(`proxy error: ${e.message}`));

await proxy.listen();
const bound = proxy.address();
console.log(`ready ${bound ? `${bound.address}:${bound.port}` : values.listen}`);

let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  // The mean hand-off to JavaScript and back, for the bench's notes.
  const { decisions, decisionWaitUs } = proxy.stats();
  if (decisions > 0) {
    console.error(`decisions ${decisions} mean wait ${(decisionWaitUs / decisions).toFixed(1)} µs`);
  }
  // Live connections get a moment to end; the bench only stops us between runs.
  setTimeout(() => process.exit(0), 2000).unref();
  proxy.close().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(`close failed: ${(e as Error).message}`);
      process.exit(1);
    },
  );
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
