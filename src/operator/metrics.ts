/**
 * `sdepmd metrics`: the daemon's counters and gauges in the Prometheus text exposition format (version 0.0.4),
 * from the same control socket as `sdepmd status`: no network port of its own. With --output FILE it writes the
 * file atomically, as node_exporter's textfile collector requires (units/sdepmd-metrics.{service,timer}).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { StatusRecord } from '../daemon/control';

interface Family {
  readonly name: string;
  readonly type: 'counter' | 'gauge';
  readonly help: string;
  readonly samples: readonly { readonly labels?: Readonly<Record<string, string>>; readonly value: number }[];
}

/** A label value, escaped as the exposition format requires (backslash, double quote, newline). */
export function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export function formatMetrics(s: StatusRecord): string {
  const c = s.counts;
  const fd = s.fdStore;
  const families: Family[] = [
    {
      name: 'sdepmd_up',
      type: 'gauge',
      help: 'Whether sdepmd answered on its control socket.',
      samples: [{ value: 1 }],
    },
    {
      name: 'sdepmd_build_info',
      type: 'gauge',
      help: "sdepmd's version; the value is always 1.",
      samples: [{ labels: { version: s.version }, value: 1 }],
    },
    {
      name: 'sdepmd_start_time_seconds',
      type: 'gauge',
      help: 'When the daemon started (a live upgrade keeps it), in seconds since the epoch.',
      samples: [{ value: Math.round(Date.parse(s.startedAt) / 1000) }],
    },
    {
      name: 'sdepmd_uptime_seconds',
      type: 'gauge',
      help: 'Seconds since the daemon started.',
      samples: [{ value: s.uptimeSeconds }],
    },
    {
      name: 'sdepmd_nodes_registered',
      type: 'gauge',
      help: 'Nodes registered now.',
      samples: [{ value: s.registered }],
    },
    {
      name: 'sdepmd_lookups_total',
      type: 'counter',
      help: 'PORT_PLEASE2 lookups, by result.',
      samples: [
        { labels: { result: 'found' }, value: c.lookupsFound },
        { labels: { result: 'not_found' }, value: c.lookups - c.lookupsFound },
      ],
    },
    {
      name: 'sdepmd_names_requests_total',
      type: 'counter',
      help: 'NAMES requests.',
      samples: [{ value: c.namesRequests }],
    },
    {
      name: 'sdepmd_registrations_total',
      type: 'counter',
      help: 'Successful ALIVE2 registrations.',
      samples: [{ value: c.registrations }],
    },
    {
      name: 'sdepmd_unregistrations_total',
      type: 'counter',
      help: 'Registrations that ended.',
      samples: [{ value: c.unregistrations }],
    },
    {
      name: 'sdepmd_refusals_total',
      type: 'counter',
      help: 'Requests and connections refused, by reason.',
      samples: s.refusals
        ? Object.entries(s.refusals).map(([reason, value]) => ({ labels: { reason }, value }))
        : [{ labels: { reason: 'any' }, value: c.refused }],
    },
    {
      name: 'sdepmd_limit_hits_total',
      type: 'counter',
      help: 'Connections refused by --max_connections or --max_connections_per_peer.',
      samples: [{ value: c.limitHits }],
    },
    {
      name: 'sdepmd_connections_open',
      type: 'gauge',
      help: 'Open connections (registrations included).',
      samples: [{ value: s.openConnections }],
    },
    {
      name: 'sdepmd_connections_total',
      type: 'counter',
      help: 'Connections accepted.',
      samples: [{ value: c.connections }],
    },
    {
      name: 'sdepmd_fdstore_enabled',
      type: 'gauge',
      help: "1 when registrations are kept in systemd's fd store.",
      samples: [{ value: fd?.enabled ? 1 : 0 }],
    },
    {
      name: 'sdepmd_fdstore_registrations',
      type: 'gauge',
      help: "Registrations kept in systemd's fd store now.",
      samples: [{ value: fd?.stored ?? 0 }],
    },
    {
      name: 'sdepmd_fdstore_restore_results',
      type: 'gauge',
      help: "Registrations found in the fd store at the daemon's start, by outcome (not_restored: the node went away while epmd was down).",
      samples: [
        { labels: { result: 'restored' }, value: fd?.restored ?? 0 },
        { labels: { result: 'not_restored' }, value: fd?.notRestored ?? 0 },
      ],
    },
  ];
  return exposition(families);
}

/** What --output writes when no sdepmd answers: the textfile collector must not keep serving stale numbers. */
export function formatDown(): string {
  return exposition([
    {
      name: 'sdepmd_up',
      type: 'gauge',
      help: 'Whether sdepmd answered on its control socket.',
      samples: [{ value: 0 }],
    },
  ]);
}

function exposition(families: readonly Family[]): string {
  const lines: string[] = [];
  for (const f of families) {
    lines.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
    for (const sample of f.samples) {
      const labels = sample.labels
        ? `{${Object.entries(sample.labels)
            .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
            .join(',')}}`
        : '';
      lines.push(`${f.name}${labels} ${sample.value}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Writes FILE through a temporary file in the same directory and a rename, so that a reader never sees half of it. */
export function writeAtomically(file: string, text: string): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
    fs.writeFileSync(tmp, text, { mode: 0o644 });
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}
