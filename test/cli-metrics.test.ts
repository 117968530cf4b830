// --metrics: stats() in Prometheus text format, served on /metrics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatMetrics, startMetricsServer } from '../cli/metrics.js';
import type { ProxyStats } from '../lib/proxy-types.js';

const STATS: ProxyStats = {
  accepted: 12,
  active: 3,
  admitted: 9,
  rejected: {
    notAllowed: 1,
    badHeader: 2,
    headerTimeout: 0,
    spoofRefused: 0,
    localRejected: 0,
    routeRejected: 0,
    maxConnections: 0,
    decisionTimeout: 0,
    clientClosed: 0,
    decisionError: 0,
    destinationRefused: 3,
  },
  upstreamFailures: 4,
  ephemeralPortRetries: 5,
  bytesFromClients: 1000,
  bytesFromUpstreams: 2000,
  acceptErrors: 6,
  decisions: 9,
  decisionWaitUs: 450,
  udp: {
    datagramsFromClients: 21,
    datagramsToUpstreams: 22,
    datagramsFromUpstreams: 23,
    datagramsToClients: 24,
    datagramsDropped: 25,
    flowTableFull: 26,
    icmpErrors: 27,
    flowsExpired: 28,
  },
};

test('the text exposition format: HELP and TYPE once per family, every reason, zeros included', () => {
  const text = formatMetrics(STATS, {
    allowlistReloads: { ok: 2, error: 1 },
    startTimeSeconds: 1700000000,
  });
  assert.ok(text.endsWith('\n'));
  const samples = new Map<string, string>();
  const types = new Map<string, string>();
  for (const line of text.trimEnd().split('\n')) {
    const type = /^# TYPE (\S+) (counter|gauge)$/.exec(line);
    if (type) {
      assert.ok(!types.has(type[1]!), `one TYPE line for ${type[1]}`);
      types.set(type[1]!, type[2]!);
      continue;
    }
    if (line.startsWith('# HELP ')) continue;
    const m = /^([a-z_]+)(\{[a-z]+="[^"]*"(?:,[a-z]+="[^"]*")*\})? (\S+)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    assert.ok(types.has(m[1]!), `TYPE before the samples of ${m[1]}`);
    if (types.get(m[1]!) === 'counter') assert.ok(m[1]!.endsWith('_total'), m[1]);
    samples.set(m[1]! + (m[2] ?? ''), m[3]!);
  }
  assert.deepEqual(Object.fromEntries(samples), {
    mmproxy_connections_accepted_total: '12',
    mmproxy_connections_admitted_total: '9',
    mmproxy_connections_active: '3',
    'mmproxy_rejected_total{reason="badHeader"}': '2',
    'mmproxy_rejected_total{reason="clientClosed"}': '0',
    'mmproxy_rejected_total{reason="decisionError"}': '0',
    'mmproxy_rejected_total{reason="decisionTimeout"}': '0',
    'mmproxy_rejected_total{reason="destinationRefused"}': '3',
    'mmproxy_rejected_total{reason="headerTimeout"}': '0',
    'mmproxy_rejected_total{reason="localRejected"}': '0',
    'mmproxy_rejected_total{reason="maxConnections"}': '0',
    'mmproxy_rejected_total{reason="notAllowed"}': '1',
    'mmproxy_rejected_total{reason="routeRejected"}': '0',
    'mmproxy_rejected_total{reason="spoofRefused"}': '0',
    mmproxy_upstream_failures_total: '4',
    mmproxy_ephemeral_port_retries_total: '5',
    mmproxy_decisions_total: '9',
    mmproxy_decision_wait_seconds_total: '0.00045',
    'mmproxy_received_bytes_total{from="client"}': '1000',
    'mmproxy_received_bytes_total{from="upstream"}': '2000',
    mmproxy_accept_errors_total: '6',
    'mmproxy_udp_datagrams_total{direction="from_client"}': '21',
    'mmproxy_udp_datagrams_total{direction="to_upstream"}': '22',
    'mmproxy_udp_datagrams_total{direction="from_upstream"}': '23',
    'mmproxy_udp_datagrams_total{direction="to_client"}': '24',
    mmproxy_udp_datagrams_dropped_total: '25',
    mmproxy_udp_flow_table_full_total: '26',
    mmproxy_udp_icmp_errors_total: '27',
    mmproxy_udp_flows_expired_total: '28',
    'mmproxy_allowlist_reloads_total{result="ok"}': '2',
    'mmproxy_allowlist_reloads_total{result="error"}': '1',
    mmproxy_start_time_seconds: '1700000000',
  });
  assert.equal(types.get('mmproxy_connections_active'), 'gauge');
});

test('the server answers GET /metrics with the current text, 404 elsewhere, 405 for POST', async () => {
  let calls = 0;
  const server = await startMetricsServer('127.0.0.1', 0, () => `n ${++calls}\n`);
  try {
    const base = `http://127.0.0.1:${server.address.port}`;
    const r1 = await fetch(`${base}/metrics`);
    assert.equal(r1.status, 200);
    assert.equal(r1.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    assert.equal(await r1.text(), 'n 1\n');
    assert.equal(await (await fetch(`${base}/metrics?x=1`)).text(), 'n 2\n');
    const r404 = await fetch(`${base}/`);
    assert.equal(r404.status, 404);
    await r404.arrayBuffer();
    const r405 = await fetch(`${base}/metrics`, { method: 'POST' });
    assert.equal(r405.status, 405);
    await r405.arrayBuffer();
  } finally {
    await server.close();
  }
});

test('a port in use is an error from startMetricsServer', async () => {
  const first = await startMetricsServer('127.0.0.1', 0, () => '');
  try {
    await assert.rejects(
      startMetricsServer('127.0.0.1', first.address.port, () => ''),
      { code: 'EADDRINUSE' },
    );
  } finally {
    await first.close();
  }
});
