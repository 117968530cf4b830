// The command's log lines: go-mmproxy's JSON shape, the rate limit on per-connection lines and its
// "suppressed" line, the events each -v level logs, and the periodic summary of drops.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Logger, formatEndpoint } from '../cli/logger.js';
import { DropSummary, logProxyEvents } from '../cli/proxy-log.js';
import type { ProxyStats, RejectReason } from '../lib/proxy-types.js';

function sink() {
  const lines: Array<Record<string, unknown>> = [];
  return {
    lines,
    write(s: string) {
      assert.ok(s.endsWith('\n'), 'one object a line');
      assert.equal(s.indexOf('\n'), s.length - 1, 'exactly one line');
      lines.push(JSON.parse(s) as Record<string, unknown>);
    },
  };
}

test('a line is one JSON object: time, level, msg first, then the fields', () => {
  const out = sink();
  const log = new Logger(out);
  log.info('listening', {
    listenAddr: '0.0.0.0:8443',
    skipped: undefined,
    error: new Error('boom'),
  });
  const [line] = out.lines;
  assert.deepEqual(Object.keys(line!), ['time', 'level', 'msg', 'listenAddr', 'error']);
  assert.equal(line!.level, 'INFO');
  assert.equal(line!.msg, 'listening');
  assert.equal(line!.error, 'boom');
  assert.ok(!Number.isNaN(Date.parse(line!.time as string)));
});

test('addresses print as Go prints them', () => {
  assert.equal(formatEndpoint({ address: '192.0.2.1', port: 5 }), '192.0.2.1:5');
  assert.equal(formatEndpoint({ address: '2001:db8::1', port: 5 }), '[2001:db8::1]:5');
  assert.equal(formatEndpoint(null), 'UNKNOWN');
});

test('per-connection lines: a burst, then the sustained rate, then one line saying how many were suppressed', () => {
  const out = sink();
  let now = 1_000_000;
  const log = new Logger(out, { ratePerSecond: 10, burst: 5, now: () => now });
  let written = 0;
  for (let i = 0; i < 100; i++) if (log.connection('DEBUG', 'failed', { i })) written++;
  assert.equal(written, 5, 'the burst');
  assert.equal(out.lines.length, 5);
  now += 1000; // one second refills 10 tokens, capped at the burst of 5
  assert.equal(log.connection('DEBUG', 'failed', { i: 100 }), true);
  assert.equal(out.lines.length, 6, 'no "suppressed" line before the interval is up');
  assert.equal(out.lines[5]!.i, 100);
  log.flushSuppressed(); // as the command's timer does
  assert.deepEqual(
    { level: out.lines[6]!.level, msg: out.lines[6]!.msg, suppressed: out.lines[6]!.suppressed },
    { level: 'WARN', msg: 'log lines suppressed by the rate limit', suppressed: 95 },
  );
  assert.equal(out.lines[6]!.seconds, 1);
  // Lifecycle lines are never limited, and flush a pending count first.
  for (let i = 0; i < 10; i++) log.connection('DEBUG', 'failed');
  log.info('stopped');
  const last = out.lines.slice(-2);
  assert.equal(last[0]!.msg, 'log lines suppressed by the rate limit');
  assert.equal(last[0]!.suppressed, 6);
  assert.equal(last[1]!.msg, 'stopped');
  log.flushSuppressed();
  assert.equal(out.lines.at(-1)!.msg, 'stopped', 'nothing more to flush');
  // A long flood at 10 lines a second writes about 10 a second.
  const before = out.lines.length;
  for (let s = 0; s < 100; s++) {
    now += 100;
    for (let i = 0; i < 50; i++) log.connection('DEBUG', 'flood');
  }
  log.flushSuppressed();
  const flood = out.lines.slice(before);
  const floodWritten = flood.filter((l) => l.msg === 'flood').length;
  const suppressed = flood
    .filter((l) => l.msg === 'log lines suppressed by the rate limit')
    .reduce((n, l) => n + (l.suppressed as number), 0);
  assert.equal(floodWritten + suppressed, 5000, 'every line is written or counted');
  assert.ok(floodWritten >= 100 && floodWritten <= 106, `${floodWritten} lines in 10 s`);
  const summaries = flood.filter((l) => l.msg === 'log lines suppressed by the rate limit');
  assert.equal(summaries.length, 1, 'one "suppressed" line for 10 s of flood (the interval)');
});

test('a long flood writes one "suppressed" line per interval, not one per line let through', () => {
  const out = sink();
  let now = 5_000_000;
  const log = new Logger(out, { ratePerSecond: 100, burst: 200, now: () => now });
  // 60 s at 10,000 lines a second, in steps of 1 ms.
  for (let ms = 0; ms < 60_000; ms++) {
    now++;
    for (let i = 0; i < 10; i++) log.connection('DEBUG', 'flood');
  }
  log.flushSuppressed();
  const written = out.lines.filter((l) => l.msg === 'flood').length;
  const summaries = out.lines.filter((l) => l.msg === 'log lines suppressed by the rate limit');
  assert.ok(written >= 6000 && written <= 6201, `${written} lines in 60 s at 100/s`);
  assert.equal(summaries.length, 6, 'one per 10 s');
  const counted = summaries.reduce((n, l) => n + (l.suppressed as number), 0);
  assert.equal(written + counted, 600_000, 'every line is written or counted');
  for (const l of summaries.slice(0, -1)) assert.ok((l.seconds as number) >= 10, `${l.seconds} s`);
});

function stats(
  over: Partial<Omit<ProxyStats, 'rejected'>> & {
    rejected?: Partial<Record<RejectReason, number>>;
  } = {},
): ProxyStats {
  return {
    accepted: 0,
    active: 0,
    admitted: 0,
    upstreamFailures: 0,
    ephemeralPortRetries: 0,
    bytesFromClients: 0,
    bytesFromUpstreams: 0,
    acceptErrors: 0,
    decisions: 0,
    decisionWaitUs: 0,
    udp: {
      datagramsFromClients: 0,
      datagramsToUpstreams: 0,
      datagramsFromUpstreams: 0,
      datagramsToClients: 0,
      datagramsDropped: 0,
      flowTableFull: 0,
      icmpErrors: 0,
      flowsExpired: 0,
    },
    ...over,
    rejected: {
      notAllowed: 0,
      badHeader: 0,
      headerTimeout: 0,
      spoofRefused: 0,
      localRejected: 0,
      routeRejected: 0,
      maxConnections: 0,
      decisionTimeout: 0,
      clientClosed: 0,
      decisionError: 0,
      destinationRefused: 0,
      ...over.rejected,
    },
  };
}

test('the drop summary reports deltas since the last report, and nothing when nothing was dropped', () => {
  const out = sink();
  const log = new Logger(out);
  let current = stats({ accepted: 10, rejected: { badHeader: 2 } });
  let now = 0;
  const summary = new DropSummary(
    () => current,
    () => now,
  );
  now = 60_000;
  current = stats({ accepted: 15, rejected: { badHeader: 2 } });
  assert.equal(summary.report(log), false);
  assert.equal(out.lines.length, 0);
  now = 120_000;
  current = stats({
    accepted: 30,
    upstreamFailures: 3,
    acceptErrors: 0,
    rejected: { badHeader: 5, notAllowed: 1 },
  });
  assert.equal(summary.report(log), true);
  assert.deepEqual(out.lines[0], {
    time: out.lines[0]!.time,
    level: 'WARN',
    msg: 'connections dropped',
    seconds: 60,
    accepted: 15,
    dropped: 7,
    rejected: { badHeader: 3, notAllowed: 1 },
    upstreamFailures: 3,
  });
  now = 130_000;
  current = { ...current, acceptErrors: 2, udp: { ...current.udp, datagramsDropped: 4 } };
  assert.equal(summary.report(log), true);
  assert.deepEqual(
    {
      dropped: out.lines[1]!.dropped,
      a: out.lines[1]!.acceptErrors,
      u: out.lines[1]!.udpDatagramsDropped,
      f: out.lines[1]!.upstreamFailures,
    },
    { dropped: 6, a: 2, u: 4, f: undefined },
  );
  assert.equal(summary.report(log), false, 'the same stats again: no new drops');
});

test('-v 0 logs no connection, -v 1 connection errors, -v 2 state changes too', () => {
  const lb = { address: '127.0.0.1', port: 40000 };
  const fire = (proxy: EventEmitter) => {
    proxy.emit('connection', {
      id: 1,
      protocol: 'tcp',
      loadBalancer: lb,
      client: { address: '203.0.113.7', port: 51000 },
      source: { address: '203.0.113.7', port: 51000 },
      target: { address: '127.0.0.1', port: 443 },
      header: {},
    });
    proxy.emit('reject', {
      protocol: 'tcp',
      reason: 'badHeader',
      loadBalancer: lb,
      error: new Error('bad magic'),
    });
    proxy.emit(
      'connectionError',
      Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
      {
        id: 2,
        source: { address: '2001:db8::7', port: 1 },
        target: { address: '::1', port: 443 },
      },
    );
  };
  const msgs: string[][] = [];
  for (const v of [0, 1, 2] as const) {
    const out = sink();
    const proxy = new EventEmitter();
    const detach = logProxyEvents(proxy, new Logger(out), v, () => '0.0.0.0:8443');
    fire(proxy);
    msgs.push(out.lines.map((l) => l.msg as string));
    if (v === 2) {
      assert.deepEqual(out.lines[0], {
        time: out.lines[0]!.time,
        level: 'DEBUG',
        msg: 'new connection',
        protocol: 'tcp',
        remoteAddr: '127.0.0.1:40000',
        localAddr: '0.0.0.0:8443',
        clientAddr: '203.0.113.7:51000',
        targetAddr: '127.0.0.1:443',
      });
      assert.equal(out.lines[1]!.reason, 'badHeader');
      assert.equal(out.lines[1]!.error, 'bad magic');
      assert.equal(out.lines[1]!.dropConnection, true);
      assert.equal(out.lines[2]!.clientAddr, '[2001:db8::7]:1');
      assert.equal(out.lines[2]!.targetAddr, '[::1]:443');
      assert.equal(out.lines[2]!.error, 'connect ECONNREFUSED');
    }
    detach();
    fire(proxy);
    assert.equal(out.lines.length, msgs.at(-1)!.length, 'detached');
  }
  assert.deepEqual(msgs, [
    [],
    ['failed to parse PROXY header', 'failed to establish upstream connection'],
    ['new connection', 'failed to parse PROXY header', 'failed to establish upstream connection'],
  ]);
});
