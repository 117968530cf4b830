// Closing the UDP proxy while replies stream back: the listening sockets that replies leave from
// are closed by close() as soon as every worker has said it stopped reading them, so a worker
// must send the replies it holds before it says so, never after.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { createProxy } from '../lib/proxy.js';
import { requireNamespace, sleep, until } from './helpers/net.js';
import { v2 } from './helpers/headers.js';

requireNamespace();

const ROUNDS = Number(process.env.MMPROXY_TEST_CLOSE_ROUNDS ?? 60);

test(`close() while replies stream back, ${ROUNDS} times: no crash, no reply lost to a closed listener`, async () => {
  // Every request is answered with a burst, so that the workers' reply batches are full when
  // close() wakes them.
  const upstream = dgram.createSocket('udp4');
  upstream.on('message', (msg, rinfo) => {
    for (let i = 0; i < 16; i++) upstream.send(msg, rinfo.port, rinfo.address);
  });
  upstream.bind(0, '127.0.0.1');
  await once(upstream, 'listening');
  const lb = dgram.createSocket('udp4');
  let replies = 0;
  lb.on('message', () => replies++);
  lb.bind(0, '127.0.0.1');
  await once(lb, 'listening');
  const headers = Array.from({ length: 64 }, (_, i) =>
    Buffer.concat([
      Buffer.from(v2(`198.51.100.${1 + (i % 200)}`, 20000 + i, '127.0.0.1', 8443, 'UDP4')),
      Buffer.from(`request ${i}`),
    ]),
  );
  const dropped: number[] = [];
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const proxy = createProxy({
        protocol: 'udp',
        listen: '127.0.0.1:0',
        target4: `127.0.0.1:${(upstream.address() as { port: number }).port}`,
        listeners: 2,
        workers: 2,
      });
      await proxy.listen();
      const port = proxy.address()!.port;
      let sending = true;
      const pump = async () => {
        while (sending) {
          for (const h of headers) lb.send(h, port, '127.0.0.1');
          await sleep(1);
        }
      };
      const pumping = pump();
      const from = replies;
      await until(() => replies > from + 500, 'replies streaming');
      await proxy.close();
      sending = false;
      await pumping;
      dropped.push(proxy.stats().udp.datagramsDropped);
    }
  } finally {
    lb.close();
    upstream.close();
  }
  assert.deepEqual(
    dropped.filter((d) => d > 0),
    [],
    `replies counted as dropped at close, per round: ${dropped.join(' ')}`,
  );
});
