// --metrics: the proxy's stats() in Prometheus text exposition format (0.0.4) on /metrics.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ProxyStats } from '../lib/proxy-types.js';

/** Counters the command keeps itself, next to the library's stats. */
export interface CommandCounters {
  allowlistReloads: { ok: number; error: number };
  /** Seconds since the epoch when the proxy started listening. */
  startTimeSeconds: number;
}

interface Family {
  name: string;
  type: 'counter' | 'gauge';
  help: string;
  samples: Array<{ labels?: Record<string, string>; value: number }>;
}

/** The text a scrape returns. Every reject reason appears, zeros included, so rates start at 0. */
export function formatMetrics(stats: ProxyStats, extra?: CommandCounters): string {
  const families: Family[] = [
    {
      name: 'mmproxy_connections_accepted_total',
      type: 'counter',
      help: 'TCP connections accepted and UDP flows opened.',
      samples: [{ value: stats.accepted }],
    },
    {
      name: 'mmproxy_connections_admitted_total',
      type: 'counter',
      help: 'Connections and flows whose header was accepted and that were handed to the relay.',
      samples: [{ value: stats.admitted }],
    },
    {
      name: 'mmproxy_connections_active',
      type: 'gauge',
      help: 'TCP connections and UDP flows alive now.',
      samples: [{ value: stats.active }],
    },
    {
      name: 'mmproxy_rejected_total',
      type: 'counter',
      help: 'Connections and flows turned away, by reason.',
      samples: Object.entries(stats.rejected)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([reason, value]) => ({ labels: { reason }, value })),
    },
    {
      name: 'mmproxy_upstream_failures_total',
      type: 'counter',
      help: 'Upstream connections that failed (refused, unreachable, timed out, bind failed).',
      samples: [{ value: stats.upstreamFailures }],
    },
    {
      name: 'mmproxy_ephemeral_port_retries_total',
      type: 'counter',
      help: "Upstream connections made from an ephemeral port because the client's was in use.",
      samples: [{ value: stats.ephemeralPortRetries }],
    },
    {
      name: 'mmproxy_received_bytes_total',
      type: 'counter',
      help: 'Payload bytes relayed, by the side they came from.',
      samples: [
        { labels: { from: 'client' }, value: stats.bytesFromClients },
        { labels: { from: 'upstream' }, value: stats.bytesFromUpstreams },
      ],
    },
    {
      name: 'mmproxy_accept_errors_total',
      type: 'counter',
      help: 'Connections the kernel handed over with an error, and accept() failures (EMFILE…).',
      samples: [{ value: stats.acceptErrors }],
    },
    {
      name: 'mmproxy_decisions_total',
      type: 'counter',
      help: 'TCP connections decided in JavaScript (header decoded, policy applied).',
      samples: [{ value: stats.decisions }],
    },
    {
      name: 'mmproxy_decision_wait_seconds_total',
      type: 'counter',
      help: 'Time from a worker handing a header to JavaScript to the decision reaching it, summed.',
      samples: [{ value: stats.decisionWaitUs / 1e6 }],
    },
    {
      name: 'mmproxy_udp_datagrams_total',
      type: 'counter',
      help: 'UDP datagrams, by direction.',
      samples: [
        { labels: { direction: 'from_client' }, value: stats.udp.datagramsFromClients },
        { labels: { direction: 'to_upstream' }, value: stats.udp.datagramsToUpstreams },
        { labels: { direction: 'from_upstream' }, value: stats.udp.datagramsFromUpstreams },
        { labels: { direction: 'to_client' }, value: stats.udp.datagramsToClients },
      ],
    },
    {
      name: 'mmproxy_udp_datagrams_dropped_total',
      type: 'counter',
      help: 'UDP datagrams dropped: refused flow, pending queue full, or a send the kernel refused.',
      samples: [{ value: stats.udp.datagramsDropped }],
    },
    {
      name: 'mmproxy_udp_flow_table_full_total',
      type: 'counter',
      help: 'New UDP flows refused because --max-flows flows were open.',
      samples: [{ value: stats.udp.flowTableFull }],
    },
    {
      name: 'mmproxy_udp_icmp_errors_total',
      type: 'counter',
      help: "ICMP errors a target's host reported on a UDP flow.",
      samples: [{ value: stats.udp.icmpErrors }],
    },
    {
      name: 'mmproxy_udp_flows_expired_total',
      type: 'counter',
      help: 'UDP flows closed after --close-after seconds without a datagram.',
      samples: [{ value: stats.udp.flowsExpired }],
    },
  ];
  if (extra) {
    families.push(
      {
        name: 'mmproxy_allowlist_reloads_total',
        type: 'counter',
        help: 'SIGHUP reloads of --allowed-subnets, by result (a failed one keeps the old list).',
        samples: [
          { labels: { result: 'ok' }, value: extra.allowlistReloads.ok },
          { labels: { result: 'error' }, value: extra.allowlistReloads.error },
        ],
      },
      {
        name: 'mmproxy_start_time_seconds',
        type: 'gauge',
        help: 'When the proxy started listening, in seconds since the Unix epoch.',
        samples: [{ value: extra.startTimeSeconds }],
      },
    );
  }
  let out = '';
  for (const f of families) {
    out += `# HELP ${f.name} ${f.help}\n# TYPE ${f.name} ${f.type}\n`;
    for (const s of f.samples) {
      const labels = s.labels
        ? '{' +
          Object.entries(s.labels)
            .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
            .join(',') +
          '}'
        : '';
      out += `${f.name}${labels} ${formatValue(s.value)}\n`;
    }
  }
  return out;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

export interface MetricsServer {
  address: AddressInfo;
  close(): Promise<void>;
}

/** Serves GET /metrics; anything else is 404 (or 405 for other methods). */
export async function startMetricsServer(
  host: string,
  port: number,
  render: () => string,
): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Not found: try /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    let body: string;
    try {
      body = render();
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`);
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/plain; version=0.0.4; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  // A scraper's keep-alive connection must not hold the process open at shutdown.
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host === '' ? undefined : host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    address: server.address() as AddressInfo,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
