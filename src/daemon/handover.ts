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
import type { NodeInfoRecord } from '../registry/registration-record';

export type { NodeInfoRecord };
import { COUNT, NODE_INFO, REGISTRATION, SERVER_STATS, UINT32 } from '../protocol/record-shapes';
import {
  array,
  boolean,
  integer,
  literal,
  matching,
  object,
  parseJson,
  type FieldsOf,
  type Shape,
  type ShapeOf,
} from '../util/shape';
import { closeFd, recvFds, sendFds } from '../native/fdpass';

type Checked<T> = { ok: true; value: T } | { ok: false; error: string };

/** An fd handed over: above stdio. */
const FD = integer(3, 0x7fffffff);

/** A listening socket: its fd and its name (systemd's FDNAME, e.g. epmd.socket, or the address it was bound to). */
const HANDED_LISTENER = object({
  fd: FD,
  name: matching(/^[^\n]{1,255}$/, 'a socket name'),
  /** True when systemd passed it in (LISTEN_FDS); false when the daemon bound it itself. */
  fromSystemd: boolean,
});
export type HandedListener = Readonly<ShapeOf<typeof HANDED_LISTENER>>;

const HANDED_REGISTRATION = object({ fd: FD, record: REGISTRATION });
export type HandedRegistration = Readonly<ShapeOf<typeof HANDED_REGISTRATION>>;

/**
 * What the old code leaves for the new code across execve (in a file named by SDEPMD_UPGRADE_STATE). The type is
 * read off its checker, so that the two cannot drift apart.
 */
const UPGRADE_STATE = object({
  format: literal(1),
  fromVersion: matching(/^[^\n]{1,64}$/, 'a version'),
  pid: integer(1),
  /** When the daemon first started (an upgrade does not reset the uptime). */
  startedAt: COUNT,
  /** When the old code began the hand-over (ms since the epoch). */
  handOverAt: COUNT,
  /** Live upgrades so far, this one included. */
  upgrades: COUNT,
  creationCounter: UINT32,
  stats: SERVER_STATS,
  listeners: array(HANDED_LISTENER),
  registrations: array(HANDED_REGISTRATION),
});
export type UpgradeState = Readonly<ShapeOf<typeof UPGRADE_STATE>>;

/**
 * Parses and checks an UpgradeState: its shape (the error names the first wrong field), at least one listening
 * socket, and every fd distinct.
 */
export function parseUpgradeState(text: string): Checked<UpgradeState> {
  let state: UpgradeState;
  try {
    state = parseJson(text, UPGRADE_STATE, 'an invalid upgrade state');
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
  if (state.listeners.length === 0) return { ok: false, error: 'no listening socket' };
  const fds = [...state.listeners, ...state.registrations].map((x) => x.fd);
  const repeated = fds.find((fd, i) => fds.indexOf(fd) !== i);
  if (repeated !== undefined) return { ok: false, error: `fd ${repeated} is handed over twice` };
  return { ok: true, value: state };
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

const ADOPT_FRAME: Shape<AdoptFrame> = object({
  nodes: array(NODE_INFO),
  last: boolean,
} satisfies FieldsOf<AdoptFrame>);

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
      let frame: AdoptFrame;
      try {
        frame = parseJson(pending.subarray(4, 4 + length).toString('utf8'), ADOPT_FRAME, 'a malformed frame');
      } catch (err) {
        return fail((err as Error).message);
      }
      pending = pending.subarray(4 + length);
      if (frame.nodes.length !== fds.length)
        return fail(`a frame names ${frame.nodes.length} nodes but carried ${fds.length} fds`);
      frame.nodes.forEach((info, i) => out.push({ info, fd: fds[i]! }));
      fds = [];
      if (frame.last) {
        if (pending.length > 0) return fail('bytes after the last frame');
        return { ok: true, value: out };
      }
    }
  }
}
