// The least privilege that works: CAP_NET_ADMIN alone, or CAP_NET_RAW alone, is enough to proxy a
// spoofed connection with SO_MARK set; with neither, the proxy refuses to start (tcp-lifecycle).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireNamespace, runWithCapabilities } from './helpers/net.js';

requireNamespace();

const proxyUrl = new URL('../lib/proxy.js', import.meta.url).href;

// A child that starts an upstream and a proxy, sends one PROXY header and reports what the
// upstream saw.
const script = `
import net from 'node:net';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createProxy } from ${JSON.stringify(proxyUrl)};
const up = net.createServer((s) => s.pipe(s)).listen(0, '127.0.0.1');
await once(up, 'listening');
const seen = [];
up.on('connection', (s) => seen.push(s.remoteAddress + ':' + s.remotePort));
const proxy = createProxy({ listen: '127.0.0.1:0', target4: '127.0.0.1:' + up.address().port, mark: 7, workers: 1 });
await proxy.listen();
const c = net.connect(proxy.address().port, '127.0.0.1');
await once(c, 'connect');
c.write('PROXY TCP4 198.51.100.99 127.0.0.1 41000 443\\r\\nhi');
const [data] = await once(c, 'data');
const capEff = readFileSync('/proc/self/status', 'utf8').match(/CapEff:\\s*(\\w+)/)[1];
console.log(JSON.stringify({ echo: data.toString(), seen, capEff }));
c.destroy();
await proxy.close();
up.close();
`;

for (const [cap, bit] of [
  ['net_raw', 13],
  ['net_admin', 12],
] as const) {
  test(`CAP_${cap.toUpperCase()} alone is enough (IP_TRANSPARENT and SO_MARK)`, () => {
    const out = runWithCapabilities(script, [cap]) as {
      echo: string;
      seen: string[];
      capEff: string;
    };
    assert.equal(
      BigInt(`0x${out.capEff}`),
      1n << BigInt(bit),
      'the child holds only that capability',
    );
    assert.equal(out.echo, 'hi');
    assert.deepEqual(out.seen, ['198.51.100.99:41000']);
  });
}
