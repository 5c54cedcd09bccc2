/**
 * `sdepmd metrics`: the daemon's counters and gauges in the Prometheus text exposition format (version 0.0.4),
 * from the same control socket as `sdepmd status`: no network port of its own. With --output FILE it writes the
 * file atomically, as node_exporter's textfile collector requires (units/sdepmd-metrics.{service,timer}).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { StatusRecord } from '../daemon/control';

type Sample = { readonly labels?: Readonly<Record<string, string>>; readonly value: number };

interface Family {
  readonly name: string;
  readonly type: 'counter' | 'gauge';
  readonly help: string;
  readonly samples: readonly Sample[];
}

/** A metric family: one unlabelled value, or labelled samples. */
function family(type: Family['type'], name: string, help: string, samples: number | readonly Sample[]): Family {
  return { name, type, help, samples: typeof samples === 'number' ? [{ value: samples }] : samples };
}
const gauge = (name: string, help: string, samples: number | readonly Sample[]) => family('gauge', name, help, samples);
const counter = (name: string, help: string, samples: number | readonly Sample[]) =>
  family('counter', name, help, samples);

/** Whether sdepmd answered: 1 in every exposition from the daemon, 0 in the one written when none answers. */
const up = (value: 0 | 1) => gauge('sdepmd_up', 'Whether sdepmd answered on its control socket.', value);

/** A label value, escaped as the exposition format requires (backslash, double quote, newline). */
export function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export function formatMetrics(s: StatusRecord): string {
  const c = s.counts;
  const fd = s.fdStore;
  return exposition([
    up(1),
    gauge('sdepmd_build_info', "sdepmd's version; the value is always 1.", [
      { labels: { version: s.version }, value: 1 },
    ]),
    gauge(
      'sdepmd_start_time_seconds',
      'When the daemon started (a live upgrade keeps it), in seconds since the epoch.',
      Math.round(Date.parse(s.startedAt) / 1000),
    ),
    gauge('sdepmd_uptime_seconds', 'Seconds since the daemon started.', s.uptimeSeconds),
    gauge('sdepmd_nodes_registered', 'Nodes registered now.', s.registered),
    counter('sdepmd_lookups_total', 'PORT_PLEASE2 lookups, by result.', [
      { labels: { result: 'found' }, value: c.lookupsFound },
      { labels: { result: 'not_found' }, value: c.lookups - c.lookupsFound },
    ]),
    counter('sdepmd_names_requests_total', 'NAMES requests.', c.namesRequests),
    counter('sdepmd_registrations_total', 'Successful ALIVE2 registrations.', c.registrations),
    counter('sdepmd_unregistrations_total', 'Registrations that ended.', c.unregistrations),
    counter(
      'sdepmd_refusals_total',
      'Requests and connections refused, by reason.',
      s.refusals
        ? Object.entries(s.refusals).map(([reason, value]) => ({ labels: { reason }, value }))
        : [{ labels: { reason: 'any' }, value: c.refused }],
    ),
    counter(
      'sdepmd_limit_hits_total',
      'Connections refused by --max_connections or --max_connections_per_peer.',
      c.limitHits,
    ),
    gauge('sdepmd_connections_open', 'Open connections (registrations included).', s.openConnections),
    counter('sdepmd_connections_total', 'Connections accepted.', c.connections),
    gauge('sdepmd_fdstore_enabled', "1 when registrations are kept in systemd's fd store.", fd?.enabled ? 1 : 0),
    gauge('sdepmd_fdstore_registrations', "Registrations kept in systemd's fd store now.", fd?.stored ?? 0),
    gauge(
      'sdepmd_fdstore_restore_results',
      "Registrations found in the fd store at the daemon's start, by outcome (not_restored: the node went away while epmd was down).",
      [
        { labels: { result: 'restored' }, value: fd?.restored ?? 0 },
        { labels: { result: 'not_restored' }, value: fd?.notRestored ?? 0 },
      ],
    ),
  ]);
}

/** What --output writes when no sdepmd answers: the textfile collector must not keep serving stale numbers. */
export function formatDown(): string {
  return exposition([up(0)]);
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
