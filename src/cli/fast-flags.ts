/**
 * The daemon's own command line, read without yargs: loading yargs costs tens of milliseconds at every start,
 * and a daemon started by systemd (or by `erl`) passes only a few plain flags. Anything this does not recognise
 * exactly (help, a client verb, a repeated flag, `--flag=value`, a missing value) returns null, and the full
 * parser runs instead, so that every error message and corner case stays the parser's.
 */
import type { DaemonFlags } from '../daemon/config';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Flags that take a value, by name (one or two leading dashes). */
const VALUE_FLAGS: ReadonlySet<string> = new Set([
  'port',
  'address',
  'packet_timeout',
  'delay_accept',
  'delay_write',
  'request_budget',
  'max_connections',
  'max_connections_per_peer',
  'max_registrations',
  'fdstore_max',
  'control_socket',
]);
const SWITCHES: ReadonlySet<string> = new Set(['relaxed_command_check', 'systemd']);

/** The daemon's flags from `argv`, or null when the full parser must decide. */
export function parseDaemonFlags(argv: readonly string[]): DaemonFlags | null {
  const flags: Mutable<DaemonFlags> & Record<string, unknown> = {};
  const seen = new Set<string>();
  let debug = 0;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const name = arg.startsWith('--') ? arg.slice(2) : arg.startsWith('-') ? arg.slice(1) : null;
    if (name === null || name === '') return null;
    if (name === 'd' || name === 'debug') {
      debug++;
      continue;
    }
    if (seen.has(name)) return null;
    seen.add(name);
    if (SWITCHES.has(name)) {
      flags[name] = true;
      continue;
    }
    if (!VALUE_FLAGS.has(name)) return null;
    const value = argv[++i];
    if (value === undefined || value.startsWith('-')) return null;
    flags[name] = value;
  }
  if (debug > 0) flags.debug = debug;
  return flags;
}
