/**
 * The hand-over of raw fds between processes, written once for both ways epmd changes hands:
 *
 * - a live upgrade (upgrade.ts): the daemon execs its new code in the same process; the listening sockets and
 *   every registration's connection stay open across execve, and an `UpgradeState` (validated JSON) says which fd
 *   is what;
 * - an adoption (operator/adopt.ts): a root process copies a running C epmd's registration fds with
 *   pidfd_getfd and sends them to the daemon over its control socket with SCM_RIGHTS, in `AdoptFrame`s.
 *
 * Both carry raw fd numbers only: whatever engine serves them adopts fds, not Node objects.
 */
import type { ServerStats } from '../policy/connection';
import type { NodeInfoRecord, RegistrationRecord } from '../registry/registration-record';

export type { NodeInfoRecord };
import { validateName } from '../registry/registry';
import { MAX_EXTRA_BYTES } from '../protocol/constants';
import { closeFd, recvFds, sendFds } from '../native/fdpass';

/** A listening socket: its fd and its name (systemd's FDNAME, e.g. epmd.socket, or the address it was bound to). */
export interface HandedListener {
  readonly fd: number;
  readonly name: string;
  /** True when systemd passed it in (LISTEN_FDS); false when the daemon bound it itself. */
  readonly fromSystemd: boolean;
}

export interface HandedRegistration {
  readonly fd: number;
  readonly record: RegistrationRecord;
}

/** What the old code leaves for the new code across execve (in a file named by SDEPMD_UPGRADE_STATE). */
export interface UpgradeState {
  readonly format: 1;
  readonly fromVersion: string;
  readonly pid: number;
  /** When the daemon first started (an upgrade does not reset the uptime). */
  readonly startedAt: number;
  /** When the old code began the hand-over (ms since the epoch). */
  readonly handOverAt: number;
  /** Live upgrades so far, this one included. */
  readonly upgrades: number;
  readonly creationCounter: number;
  readonly stats: ServerStats;
  readonly listeners: readonly HandedListener[];
  readonly registrations: readonly HandedRegistration[];
}

type Checked<T> = { ok: true; value: T } | { ok: false; error: string };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isUint = (v: unknown, max: number): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
const isHex = (v: unknown, maxBytes: number): v is string =>
  typeof v === 'string' && v.length % 2 === 0 && v.length <= 2 * maxBytes && /^[0-9a-f]*$/.test(v);
const isFd = (v: unknown): v is number => isUint(v, 0x7fffffff) && v >= 3;

export function checkNodeInfo(v: unknown): Checked<NodeInfoRecord> {
  if (!isObject(v)) return { ok: false, error: 'not an object' };
  if (!isHex(v.name, 1020) || v.name.length === 0) return { ok: false, error: 'name must be 1..1020 bytes, hex' };
  const refusal = validateName(Buffer.from(v.name, 'hex'));
  if (refusal) return { ok: false, error: refusal };
  if (!isHex(v.extra, MAX_EXTRA_BYTES))
    return { ok: false, error: `extra must be at most ${MAX_EXTRA_BYTES} bytes, hex` };
  for (const field of ['port', 'highestVersion', 'lowestVersion'] as const) {
    if (!isUint(v[field], 0xffff)) return { ok: false, error: `${field} must be 0..65535` };
  }
  for (const field of ['nodeType', 'protocol'] as const) {
    if (!isUint(v[field], 0xff)) return { ok: false, error: `${field} must be 0..255` };
  }
  return {
    ok: true,
    value: {
      name: v.name,
      port: v.port as number,
      nodeType: v.nodeType as number,
      protocol: v.protocol as number,
      highestVersion: v.highestVersion as number,
      lowestVersion: v.lowestVersion as number,
      extra: v.extra,
    },
  };
}

export function checkRecord(v: unknown): Checked<RegistrationRecord> {
  const info = checkNodeInfo(v);
  if (!info.ok) return info;
  const r = v as Record<string, unknown>;
  if (!isUint(r.creation, 0xffffffff)) return { ok: false, error: 'creation must be a 32-bit unsigned integer' };
  if (!isUint(r.registeredAt, Number.MAX_SAFE_INTEGER))
    return { ok: false, error: 'registeredAt must be a time in ms' };
  if (typeof r.peer !== 'string' || r.peer.length > 64) return { ok: false, error: 'peer must be an address' };
  if (r.fdName !== null && (typeof r.fdName !== 'string' || r.fdName.length === 0 || r.fdName.length > 255)) {
    return { ok: false, error: 'fdName must be null or a name' };
  }
  return {
    ok: true,
    value: { ...info.value, creation: r.creation, registeredAt: r.registeredAt, peer: r.peer, fdName: r.fdName },
  };
}

const STAT_FIELDS: readonly (keyof ServerStats)[] = [
  'connections',
  'lookups',
  'lookupsFound',
  'namesRequests',
  'registrations',
  'unregistrations',
  'refused',
  'limitHits',
];

/** Parses and validates an UpgradeState; every fd it names must be distinct and above stdio. */
export function parseUpgradeState(text: string): Checked<UpgradeState> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { ok: false, error: 'not JSON' };
  }
  if (!isObject(v) || v.format !== 1) return { ok: false, error: 'not an upgrade state of format 1' };
  if (typeof v.fromVersion !== 'string' || v.fromVersion.length > 64) return { ok: false, error: 'fromVersion' };
  for (const field of ['pid', 'startedAt', 'handOverAt', 'upgrades', 'creationCounter'] as const) {
    if (!isUint(v[field], Number.MAX_SAFE_INTEGER))
      return { ok: false, error: `${field} must be a non-negative integer` };
  }
  if (!isObject(v.stats)) return { ok: false, error: 'stats' };
  const stats = {} as Record<keyof ServerStats, number>;
  for (const field of STAT_FIELDS) {
    const n = v.stats[field];
    if (!isUint(n, Number.MAX_SAFE_INTEGER)) return { ok: false, error: `stats.${field}` };
    stats[field] = n;
  }
  if (!Array.isArray(v.listeners) || !Array.isArray(v.registrations))
    return { ok: false, error: 'listeners and registrations must be arrays' };
  const seen = new Set<number>();
  const fdOnce = (fd: unknown): fd is number => isFd(fd) && !seen.has(fd) && Boolean(seen.add(fd));
  const listeners: HandedListener[] = [];
  for (const l of v.listeners as unknown[]) {
    if (
      !isObject(l) ||
      !fdOnce(l.fd) ||
      typeof l.name !== 'string' ||
      l.name.length > 255 ||
      typeof l.fromSystemd !== 'boolean'
    ) {
      return { ok: false, error: 'a listener is malformed, or its fd is repeated' };
    }
    listeners.push({ fd: l.fd, name: l.name, fromSystemd: l.fromSystemd });
  }
  if (listeners.length === 0) return { ok: false, error: 'no listening socket' };
  const registrations: HandedRegistration[] = [];
  for (const r of v.registrations as unknown[]) {
    if (!isObject(r) || !fdOnce(r.fd)) return { ok: false, error: 'a registration has a malformed or repeated fd' };
    const record = checkRecord(r.record);
    if (!record.ok) return { ok: false, error: `registration: ${record.error}` };
    registrations.push({ fd: r.fd, record: record.value });
  }
  return {
    ok: true,
    value: {
      format: 1,
      fromVersion: v.fromVersion,
      pid: v.pid as number,
      startedAt: v.startedAt as number,
      handOverAt: v.handOverAt as number,
      upgrades: v.upgrades as number,
      creationCounter: v.creationCounter as number,
      stats: stats,
      listeners,
      registrations,
    },
  };
}

/**
 * Adoption over a unix stream socket. After the daemon's "ready" line, the sender writes frames: a 4-byte
 * big-endian length, then that many bytes of JSON `{ "nodes": NodeInfoRecord[], "last": boolean }`, with one fd
 * per node (in order) attached to the frame's first byte. The daemon answers each frame's `last` with one JSON line.
 */
export interface AdoptFrame {
  readonly nodes: readonly NodeInfoRecord[];
  readonly last: boolean;
}

/** The kernel's SCM_MAX_FD is 253: stay below it. */
export const NODES_PER_FRAME = 200;
/** JSON of 200 nodes with 1,020-byte names and extras, hex: well below this. */
const MAX_FRAME_BYTES = 2 * 1024 * 1024;

export function sendAdoptFrames(sock: number, nodes: readonly { info: NodeInfoRecord; fd: number }[]): void {
  for (let i = 0; i === 0 || i < nodes.length; i += NODES_PER_FRAME) {
    const chunk = nodes.slice(i, i + NODES_PER_FRAME);
    const json = Buffer.from(
      JSON.stringify({ nodes: chunk.map((n) => n.info), last: i + NODES_PER_FRAME >= nodes.length }),
    );
    const header = Buffer.alloc(4);
    header.writeUInt32BE(json.length);
    sendFds(
      sock,
      Buffer.concat([header, json]),
      chunk.map((n) => n.fd),
    );
  }
}

/** Reads adoption frames from `sock` (non-blocking; polls) until the last one; fds of a bad frame are closed. */
export async function receiveAdoptFrames(
  sock: number,
  timeoutMs: number,
): Promise<Checked<{ info: NodeInfoRecord; fd: number }[]>> {
  const deadline = Date.now() + timeoutMs;
  const out: { info: NodeInfoRecord; fd: number }[] = [];
  let pending = Buffer.alloc(0);
  let fds: number[] = [];
  const fail = (error: string): Checked<never> => {
    for (const fd of fds) closeFd(fd);
    for (const n of out) closeFd(n.fd);
    return { ok: false, error };
  };
  for (;;) {
    let got: { data: Buffer; fds: number[] } | null;
    try {
      got = recvFds(sock, 256 * 1024, 253);
    } catch (err) {
      return fail((err as Error).message);
    }
    if (got === null) {
      if (Date.now() > deadline) return fail(`no complete frame within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 5));
      continue;
    }
    if (got.data.length === 0) return fail('the sender closed the connection before its last frame');
    fds.push(...got.fds);
    pending = Buffer.concat([pending, got.data]);
    while (pending.length >= 4) {
      const length = pending.readUInt32BE(0);
      if (length === 0 || length > MAX_FRAME_BYTES) return fail(`a frame of ${length} bytes`);
      if (pending.length < 4 + length) break;
      let frame: unknown;
      try {
        frame = JSON.parse(pending.subarray(4, 4 + length).toString('utf8'));
      } catch {
        return fail('a frame is not JSON');
      }
      pending = pending.subarray(4 + length);
      if (!isObject(frame) || !Array.isArray(frame.nodes) || typeof frame.last !== 'boolean')
        return fail('a malformed frame');
      if (frame.nodes.length !== fds.length)
        return fail(`a frame names ${frame.nodes.length} nodes but carried ${fds.length} fds`);
      for (const [i, node] of (frame.nodes as unknown[]).entries()) {
        const info = checkNodeInfo(node);
        if (!info.ok) return fail(`node ${i}: ${info.error}`);
        out.push({ info: info.value, fd: fds[i]! });
      }
      fds = [];
      if (frame.last) {
        if (pending.length > 0) return fail('bytes after the last frame');
        return { ok: true, value: out };
      }
    }
  }
}
