/**
 * Daemon configuration: the C epmd's flags and environment variables, resolved into one typed value.
 * Pure: argv values and an environment in, a config or an error message out.
 */
import { DEFAULT_PORT } from '../protocol/constants';
import { DEFAULT_LIMITS, type Limits } from '../policy/policy';
import { DEFAULT_LOG_LEVEL } from './log';
import { lazyNet } from '../util/lazy-modules';

export interface DaemonConfig {
  /** The port to bind when no sockets are passed in, and the port NAMES reports. */
  readonly port: number;
  /** Addresses to bind; empty means every address (0.0.0.0 and ::). Loopback is always included otherwise. */
  readonly addresses: readonly string[];
  readonly relaxedCommandCheck: boolean;
  readonly delayAcceptMs: number;
  readonly delayWriteMs: number;
  readonly limits: Limits;
  /** Logger level index (see log.ts): info by default, one more per -d. */
  readonly logLevel: number;
  /** -systemd: sockets must come from systemd (LISTEN_FDS). */
  readonly systemd: boolean;
  /** Most registrations kept in systemd's fd store (FileDescriptorStoreMax= in the unit); 0 turns it off. */
  readonly fdStoreMax: number;
  /** The control socket's path; undefined for the default (see control.ts), null for none. */
  readonly controlSocket?: string | null;
}

/** The raw values the command line gives, before validation. */
export interface DaemonFlags {
  readonly port?: unknown;
  readonly address?: unknown;
  readonly debug?: number;
  readonly relaxed_command_check?: boolean;
  readonly packet_timeout?: unknown;
  readonly delay_accept?: unknown;
  readonly delay_write?: unknown;
  readonly systemd?: boolean;
  readonly max_connections?: unknown;
  readonly max_connections_per_peer?: unknown;
  readonly max_registrations?: unknown;
  readonly control_socket?: string;
  readonly fdstore_max?: unknown;
  readonly request_budget?: unknown;
}

export type Resolved<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

/** Parses a whole number in [min, max], from a flag or an environment variable. */
export function parseInteger(what: string, raw: unknown, min: number, max: number): Resolved<number> {
  const text = typeof raw === 'number' ? String(raw) : typeof raw === 'string' ? raw.trim() : '';
  if (!/^\d+$/.test(text)) return { ok: false, error: `${what} must be a whole number, got ${JSON.stringify(raw)}` };
  const value = Number(text);
  if (value < min || value > max)
    return { ok: false, error: `${what} must be between ${min} and ${max}, got ${value}` };
  return { ok: true, value };
}

/** The port from -port, else ERL_EPMD_PORT, else 4369. */
export function resolvePort(flag: unknown, env: NodeJS.ProcessEnv): Resolved<number> {
  if (flag !== undefined && flag !== null && flag !== false) return parseInteger('-port', flag, 1, 65535);
  if (env.ERL_EPMD_PORT !== undefined && env.ERL_EPMD_PORT !== '') {
    return parseInteger('ERL_EPMD_PORT', env.ERL_EPMD_PORT, 1, 65535);
  }
  return { ok: true, value: DEFAULT_PORT };
}

/**
 * The addresses from -address, else ERL_EPMD_ADDRESS: a list separated by commas or spaces. When a list is given,
 * loopback (127.0.0.1 and ::1) is added, as the C epmd does, so that local nodes can always register.
 */
export function resolveAddresses(flag: unknown, env: NodeJS.ProcessEnv): Resolved<string[]> {
  const raw = typeof flag === 'string' ? flag : env.ERL_EPMD_ADDRESS;
  const source = typeof flag === 'string' ? '-address' : 'ERL_EPMD_ADDRESS';
  if (raw === undefined || raw.trim() === '') return { ok: true, value: [] };
  const list: string[] = [];
  for (const item of raw.split(/[\s,]+/).filter(Boolean)) {
    const address = item.replace(/^\[(.*)\]$/, '$1');
    if (!lazyNet().isIP(address))
      return { ok: false, error: `${source}: ${JSON.stringify(item)} is not an IP address` };
    if (!list.includes(address)) list.push(address);
  }
  for (const loopback of ['127.0.0.1', '::1']) if (!list.includes(loopback)) list.push(loopback);
  return { ok: true, value: list };
}

/** ERL_EPMD_RELAXED_COMMAND_CHECK counts as set whenever it is present in the environment. */
export function relaxedFromEnv(env: NodeJS.ProcessEnv): boolean {
  return env.ERL_EPMD_RELAXED_COMMAND_CHECK !== undefined;
}

export function resolveDaemonConfig(flags: DaemonFlags, env: NodeJS.ProcessEnv): Resolved<DaemonConfig> {
  const port = resolvePort(flags.port, env);
  if (!port.ok) return port;
  const addresses = resolveAddresses(flags.address, env);
  if (!addresses.ok) return addresses;
  const seconds = (what: string, raw: unknown, fallback: number): Resolved<number> =>
    raw === undefined ? { ok: true, value: fallback } : mapOk(parseInteger(what, raw, 0, 86_400), (s) => s * 1000);
  const count = (what: string, raw: unknown, fallback: number): Resolved<number> =>
    raw === undefined ? { ok: true, value: fallback } : parseInteger(what, raw, 0, 100_000_000);

  const packetTimeout =
    flags.packet_timeout === undefined
      ? { ok: true as const, value: DEFAULT_LIMITS.packetTimeoutSeconds }
      : parseInteger('-packet_timeout', flags.packet_timeout, 0, 86_400);
  if (!packetTimeout.ok) return packetTimeout;
  if (packetTimeout.value === 0) return { ok: false, error: '-packet_timeout must be at least 1 second' };
  const budget = seconds('--request_budget', flags.request_budget, DEFAULT_LIMITS.requestBudgetMs);
  if (!budget.ok) return budget;
  if (budget.value === 0) return { ok: false, error: '--request_budget must be at least 1 second' };
  const delayAccept = seconds('-delay_accept', flags.delay_accept, 0);
  if (!delayAccept.ok) return delayAccept;
  const delayWrite = seconds('-delay_write', flags.delay_write, 0);
  if (!delayWrite.ok) return delayWrite;
  const maxConnections = count('--max_connections', flags.max_connections, DEFAULT_LIMITS.maxConnections);
  if (!maxConnections.ok) return maxConnections;
  const maxPerPeer = count(
    '--max_connections_per_peer',
    flags.max_connections_per_peer,
    DEFAULT_LIMITS.maxConnectionsPerPeer,
  );
  if (!maxPerPeer.ok) return maxPerPeer;
  const fdStoreMax = count('--fdstore_max', flags.fdstore_max, 0);
  if (!fdStoreMax.ok) return fdStoreMax;
  const maxRegistrations = count('--max_registrations', flags.max_registrations, DEFAULT_LIMITS.maxRegistrations);
  if (!maxRegistrations.ok) return maxRegistrations;

  return {
    ok: true,
    value: {
      port: port.value,
      addresses: addresses.value,
      relaxedCommandCheck: flags.relaxed_command_check === true || relaxedFromEnv(env),
      delayAcceptMs: delayAccept.value,
      delayWriteMs: delayWrite.value,
      limits: {
        ...DEFAULT_LIMITS,
        packetTimeoutSeconds: packetTimeout.value,
        requestBudgetMs: budget.value,
        maxConnections: maxConnections.value,
        maxConnectionsPerPeer: maxPerPeer.value,
        maxRegistrations: maxRegistrations.value,
      },
      logLevel: DEFAULT_LOG_LEVEL + (flags.debug ?? 0),
      systemd: flags.systemd === true,
      fdStoreMax: fdStoreMax.value,
      controlSocket:
        flags.control_socket === undefined ? undefined : flags.control_socket === 'none' ? null : flags.control_socket,
    },
  };
}

function mapOk<A, B>(r: Resolved<A>, f: (a: A) => B): Resolved<B> {
  return r.ok ? { ok: true, value: f(r.value) } : r;
}

/**
 * Set when a live upgrade runs the new code in check mode (upgrade.ts): it loads everything, prints
 * "sdepmd VERSION" and exits 0, instead of serving.
 */
export const UPGRADE_CHECK_ENV = 'SDEPMD_UPGRADE_CHECK';
