/**
 * The local control channel: what the EPMD protocol cannot carry (creation numbers, counters, log level, sockets),
 * for `sdepmd status` and `sdepmd names --json`.
 *
 * It is a unix stream socket, by default `$RUNTIME_DIRECTORY/control-PORT.sock` (under systemd, RuntimeDirectory=
 * makes that /run/sdepmd), mode 0600: only the daemon's user and root can reach it, and it leaves the
 * C-epmd-compatible TCP protocol untouched. A client writes one command line and reads one JSON document; the
 * daemon then closes the connection:
 *   status, names   the daemon's state (`sdepmd status`, `sdepmd names --json`)
 *   upgrade         a live upgrade (`sdepmd reload`, the unit's ExecReload=): the answer says whether the new code
 *                   passed its check; on success the daemon then execs it, and the connection closes
 *   adopt           registrations taken over from another epmd (`sdepmd adopt`, as root): the daemon answers
 *                   "ready", then reads AdoptFrames with their fds (SCM_RIGHTS, handover.ts), and answers an AdoptReply
 */
import type { Server, Socket } from 'node:net';
import { lazyNet } from '../util/lazy-modules';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ServerStats } from '../policy/connection';
import { socketFd } from '../engine/socket-fd';
import { receiveAdoptFrames, type NodeInfoRecord } from './handover';
import { MAX_EXTRA_BYTES, nodeTypeName } from '../protocol/constants';
import { runtimeDirectory } from '../systemd/runtime-directory';
import { COUNT, hexBytes, PORT, SERVER_STATS, UINT16, UINT32, UINT8 } from '../protocol/record-shapes';
import {
  array,
  boolean,
  dictionary,
  either,
  integer,
  literal,
  nullable,
  object,
  optional,
  parseJson,
  string,
  type FieldsOf,
  type Shape,
} from '../util/shape';

/** One registered node, as `sdepmd names --json` prints it. */
export interface NodeRecord {
  readonly name: string;
  readonly port: number;
  readonly nodeType: 'normal' | 'hidden' | number;
  readonly protocol: number;
  readonly highestVersion: number;
  readonly lowestVersion: number;
  /** The extra field, hex-encoded. */
  readonly extra: string;
  /** null when the daemon cannot tell (a C epmd answered through the EPMD protocol). */
  readonly creation: number | null;
  readonly registeredAt?: string;
  readonly peer?: string;
}

export interface StatusRecord {
  readonly version: string;
  readonly pid: number;
  readonly startedAt: string;
  readonly uptimeSeconds: number;
  readonly underSystemd: boolean;
  readonly logLevel: string;
  readonly sockets: readonly { readonly address: string; readonly port: number; readonly source: string }[];
  /** Live upgrades since the daemon started (the pid stays the same across them). */
  readonly upgrades?: number;
  readonly registered: number;
  readonly openConnections: number;
  readonly counts: Readonly<ServerStats>;
  /** Refusals by reason (see refusals.ts); their sum is counts.refused. Absent from daemons before 0.2. */
  readonly refusals?: Readonly<Record<string, number>>;
  /** Present when registrations are kept in systemd's fd store. `notRestored`: found in the store at start, but
   * their node had gone while epmd was down. */
  readonly fdStore?: {
    readonly enabled: boolean;
    readonly stored: number;
    readonly restored: number;
    readonly notRestored?: number;
    readonly detail?: string;
  };
}

export type ControlCommand = 'status' | 'names';

export type UpgradeReply =
  | { readonly ok: true; readonly fromVersion: string; readonly toVersion: string; readonly pid: number }
  | { readonly ok: false; readonly error: string };

export interface AdoptReply {
  readonly adopted: readonly string[];
  readonly refused: readonly { readonly name: string; readonly reason: string }[];
}

export interface ControlProvider {
  status(): StatusRecord;
  names(): NodeRecord[];
  /** Starts a live upgrade; `tell` sends the answer (and resolves once it is written). */
  upgrade?(tell: (reply: UpgradeReply) => Promise<void>): Promise<void>;
  adopt?(nodes: readonly { info: NodeInfoRecord; fd: number }[]): AdoptReply;
}

/** How long `adopt` waits for the sender's frames. */
const ADOPT_TIMEOUT_MS = 10_000;

/** Where the control socket for an epmd port lives. */
export function controlSocketPath(port: number, env: NodeJS.ProcessEnv = process.env): string {
  const dir = runtimeDirectory(env.RUNTIME_DIRECTORY) ?? '/run/sdepmd';
  return path.join(dir, `control-${port}.sock`);
}

/** Starts serving the control socket. Resolves to null (after saying why) if it cannot be created. */
export async function startControlServer(
  socketPath: string,
  provider: ControlProvider,
  onError: (message: string) => void,
): Promise<Server | null> {
  try {
    fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o755 });
    // A socket left by a previous run (a crash) would make listen() fail with EADDRINUSE.
    if (fs.existsSync(socketPath) && fs.lstatSync(socketPath).isSocket()) fs.unlinkSync(socketPath);
  } catch (err) {
    onError(`control socket ${socketPath}: ${(err as Error).message}`);
    return null;
  }
  const server = lazyNet().createServer((socket) => {
    let input = '';
    socket.setTimeout(5000, () => socket.destroy());
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      input += chunk.toString('utf8');
      if (input.length > 256) return void socket.destroy();
      const newline = input.indexOf('\n');
      if (newline < 0) return;
      const command = input.slice(0, newline).trim();
      let reply: unknown;
      if (command === 'status') reply = provider.status();
      else if (command === 'names') reply = provider.names();
      else if (command === 'upgrade' && provider.upgrade) {
        socket.removeAllListeners('data');
        socket.setTimeout(0);
        const tell = (r: UpgradeReply) =>
          new Promise<void>((resolve) => socket.end(`${JSON.stringify(r)}\n`, () => resolve()));
        void provider.upgrade(tell);
        return;
      } else if (command === 'adopt' && provider.adopt) {
        if (newline !== input.length - 1) return void socket.destroy();
        return void adopt(socket, (nodes) => provider.adopt?.(nodes) ?? { adopted: [], refused: [] });
      } else reply = { error: `unknown command ${JSON.stringify(command)}; try "status" or "names"` };
      socket.end(`${JSON.stringify(reply)}\n`);
    });
  });
  return new Promise((resolve) => {
    server.once('error', (err) => {
      onError(`control socket ${socketPath}: ${err.message}`);
      resolve(null);
    });
    // bind() creates the socket file inside listen(), before it returns: mode 0600 comes from this umask, which is
    // restored whether the bind worked or not (an error is only reported later, on the next tick).
    const umask = process.umask(0o177);
    try {
      server.listen(socketPath, () => {
        server.on('error', (err) => onError(`control socket: ${err.message}`));
        resolve(server);
      });
    } finally {
      process.umask(umask);
    }
  });
}

/**
 * `adopt`: from here on the fds travel with the bytes (SCM_RIGHTS), which Node's stream would drop: stop Node
 * reading this connection before saying "ready", and read the frames natively.
 */
async function adopt(socket: Socket, accept: NonNullable<ControlProvider['adopt']>): Promise<void> {
  socket.removeAllListeners('data');
  socket.pause();
  const handle = (socket as unknown as { _handle?: { readStop?: () => number } })._handle;
  const fd = socketFd(socket);
  if (!handle?.readStop || fd < 0) return void socket.destroy();
  handle.readStop();
  socket.setTimeout(ADOPT_TIMEOUT_MS + 5000);
  socket.write('ready\n');
  const frames = await receiveAdoptFrames(fd, ADOPT_TIMEOUT_MS);
  const reply = frames.ok ? accept(frames.value) : { error: `adopt: ${frames.error}` };
  socket.end(`${JSON.stringify(reply)}\n`);
}

const NODE_RECORD: Shape<NodeRecord> = object({
  name: string,
  port: PORT,
  nodeType: either(literal('normal', 'hidden'), UINT8, '"normal", "hidden" or a number from 0 to 255'),
  protocol: UINT8,
  highestVersion: UINT16,
  lowestVersion: UINT16,
  extra: hexBytes(MAX_EXTRA_BYTES),
  creation: nullable(UINT32),
  registeredAt: optional(string),
  peer: optional(string),
} satisfies FieldsOf<NodeRecord>);
// Every field: a field the shape left out would be dropped from the answer (`satisfies` keeps them in step).
const STATUS_RECORD: Shape<StatusRecord> = object({
  version: string,
  pid: integer(1),
  startedAt: string,
  uptimeSeconds: COUNT,
  underSystemd: boolean,
  logLevel: string,
  sockets: array(object({ address: string, port: PORT, source: string })),
  upgrades: optional(COUNT),
  registered: COUNT,
  openConnections: COUNT,
  refusals: optional(dictionary(COUNT)),
  counts: SERVER_STATS,
  fdStore: optional(
    object({
      enabled: boolean,
      stored: COUNT,
      restored: COUNT,
      notRestored: optional(COUNT),
      detail: optional(string),
    }),
  ),
} satisfies FieldsOf<StatusRecord>);
const ERROR_REPLY = object({ error: string });
const UPGRADE_REPLY: Shape<UpgradeReply> = either(
  object({ ok: literal(true), fromVersion: string, toVersion: string, pid: integer(1) }),
  object({ ok: literal(false), error: string }),
  '{"ok":true,"fromVersion","toVersion","pid"} or {"ok":false,"error"}',
);
const ADOPT_REPLY: Shape<AdoptReply> = object({
  adopted: array(string),
  refused: array(object({ name: string, reason: string })),
} satisfies FieldsOf<AdoptReply>);

/** What the daemon answers to each command (`upgrade` and `adopt` have their own transports: reload.ts, adopt.ts). */
interface ControlReplies {
  status: StatusRecord;
  names: NodeRecord[];
  upgrade: UpgradeReply;
  adopt: AdoptReply;
}
export type ControlReply<T extends keyof ControlReplies> = ControlReplies[T];
const REPLY_SHAPES: { readonly [C in keyof ControlReplies]: Shape<ControlReplies[C]> } = {
  status: STATUS_RECORD,
  names: array(NODE_RECORD),
  upgrade: UPGRADE_REPLY,
  adopt: ADOPT_REPLY,
};

/** The daemon's own error answer (`{"error": ...}`): it understood the request and refused it. */
export class ControlRefusal extends Error {}

/** The most a control reply may hold (the names of 100,000 nodes take about 25 MiB). */
const MAX_REPLY_BYTES = 64 * 1024 * 1024;

/**
 * Reads the daemon's answer to `command`: the record, checked field by field, or an Error with the daemon's own
 * error text, or one that says what is wrong with the answer.
 */
export function decodeControlReply<T extends keyof ControlReplies>(
  command: T,
  text: string,
  from: string,
): ControlReply<T> {
  const what = `malformed answer to "${command}" on ${from}`;
  const value = parseJson(text, (v) => v, what);
  // An UpgradeReply that failed has an `error` too, beside its `ok`.
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && 'error' in value && !('ok' in value)) {
    throw new ControlRefusal(parseJson(text, ERROR_REPLY, what).error);
  }
  return parseJson(text, REPLY_SHAPES[command], what);
}

/** Asks the daemon behind a control socket; rejects when there is none, or when its answer is not what it should be. */
export function queryControl<T extends ControlCommand>(
  socketPath: string,
  command: T,
  timeoutMs = 5000,
): Promise<ControlReply<T>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const socket = lazyNet().createConnection(socketPath, () => socket.write(`${command}\n`));
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no answer on ${socketPath} within ${timeoutMs} ms`)));
    socket.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_REPLY_BYTES)
        socket.destroy(new Error(`answer on ${socketPath} is larger than ${MAX_REPLY_BYTES} bytes`));
      else chunks.push(chunk);
    });
    socket.on('error', reject);
    socket.on('end', () => {
      try {
        resolve(decodeControlReply(command, Buffer.concat(chunks).toString('utf8'), socketPath));
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

export function describeNodeType(nodeType: number): NodeRecord['nodeType'] {
  return nodeTypeName(nodeType) ?? nodeType;
}
