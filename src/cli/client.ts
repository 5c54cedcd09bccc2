/**
 * An EPMD client: one request per connection, as OTP's erl_epmd and the C `epmd` client verbs do.
 * Used by the CLI verbs (-names, -kill, -stop, `sdepmd names`) and by the tests.
 */
import { connect, type Socket } from 'node:net';
import {
  encodeAlive2Request,
  encodeNameRequest,
  encodeSimpleRequest,
  type NodeInfo,
} from '../protocol/codec';
import {
  ALIVE2_RESP,
  ALIVE2_X_RESP,
  DUMP_REQ,
  KILL_REQ,
  NAMES_REQ,
  PORT2_RESP,
  PORT_PLEASE2_REQ,
  STOP_REQ,
} from '../protocol/constants';

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** Raised when the daemon cannot be reached at all (as opposed to answering oddly). */
export class CannotConnectError extends Error {
  constructor(readonly endpoint: Endpoint, cause: Error) {
    super(`cannot connect to epmd at ${endpoint.host}:${endpoint.port}: ${cause.message}`);
  }
}

/** Sends one request and collects everything the daemon sends until it closes the connection. */
export function exchange(endpoint: Endpoint, request: Buffer, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let connected = false;
    const socket = connect({ host: endpoint.host, port: endpoint.port }, () => {
      connected = true;
      socket.write(request);
    });
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no reply within ${timeoutMs} ms`)));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (err) => reject(connected ? err : new CannotConnectError(endpoint, err)));
    socket.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

export interface NamesReply {
  readonly epmdPort: number;
  /** The text after the 4-byte port, exactly as sent. */
  readonly text: string;
  readonly nodes: readonly { name: string; port: number }[];
}

export function parseNamesReply(reply: Buffer): NamesReply {
  if (reply.length < 4) throw new Error(`NAMES reply too short (${reply.length} bytes)`);
  const text = reply.subarray(4).toString('utf8');
  const nodes: { name: string; port: number }[] = [];
  for (const line of text.split('\n')) {
    const m = /^name (.*) at port (\d+)$/.exec(line);
    if (m) nodes.push({ name: m[1]!, port: Number(m[2]) });
  }
  return { epmdPort: reply.readUInt32BE(0), text, nodes };
}

/**
 * Sends one request to the local epmd, trying [::1] first and then 127.0.0.1, as the C epmd client does.
 * Throws CannotConnectError when neither answers.
 */
export async function exchangeLocal(port: number, request: Buffer, timeoutMs?: number): Promise<Buffer> {
  try {
    return await exchange({ host: '::1', port }, request, timeoutMs);
  } catch (err) {
    if (!(err instanceof CannotConnectError)) throw err;
    return exchange({ host: '127.0.0.1', port }, request, timeoutMs);
  }
}

export async function names(endpoint: Endpoint): Promise<NamesReply> {
  return parseNamesReply(await exchange(endpoint, encodeSimpleRequest(NAMES_REQ)));
}

export async function dump(endpoint: Endpoint): Promise<Buffer> {
  return exchange(endpoint, encodeSimpleRequest(DUMP_REQ));
}

/** KILL_REQ: the daemon's two-byte answer ("OK" or "NO"), or "" if it closed without one. */
export async function kill(endpoint: Endpoint): Promise<string> {
  return (await exchange(endpoint, encodeSimpleRequest(KILL_REQ))).toString('latin1');
}

/** STOP_REQ: "STOPPED", "NOEXIST", or "" if the daemon closed without answering (no relaxed check). */
export async function stop(endpoint: Endpoint, name: string | Buffer): Promise<string> {
  return (await exchange(endpoint, encodeNameRequest(STOP_REQ, name))).toString('latin1');
}

export type PortPleaseReply = { readonly found: false } | ({ readonly found: true } & NodeInfo);

export function parsePort2Reply(reply: Buffer): PortPleaseReply {
  if (reply.length < 2 || reply[0] !== PORT2_RESP) throw new Error(`not a PORT2_RESP: ${reply.toString('hex')}`);
  if (reply[1] !== 0) return { found: false };
  const nameLength = reply.readUInt16BE(10);
  const extraLength = reply.readUInt16BE(12 + nameLength);
  return {
    found: true,
    port: reply.readUInt16BE(2),
    nodeType: reply[4]!,
    protocol: reply[5]!,
    highestVersion: reply.readUInt16BE(6),
    lowestVersion: reply.readUInt16BE(8),
    name: Buffer.from(reply.subarray(12, 12 + nameLength)),
    extra: Buffer.from(reply.subarray(14 + nameLength, 14 + nameLength + extraLength)),
  };
}

export async function portPlease(endpoint: Endpoint, name: string | Buffer): Promise<PortPleaseReply> {
  return parsePort2Reply(await exchange(endpoint, encodeNameRequest(PORT_PLEASE2_REQ, name)));
}

/** A live registration: it lasts until `close()`, like a node's connection. */
export interface HeldRegistration {
  readonly result: number;
  readonly creation: number;
  readonly socket: Socket;
  close(): Promise<void>;
}

/** Registers a node and keeps the connection open. Resolves once the daemon has answered. */
export function register(
  endpoint: Endpoint,
  node: Omit<NodeInfo, 'name' | 'extra'> & { name: string | Buffer; extra?: Buffer },
): Promise<HeldRegistration> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const socket = connect({ host: endpoint.host, port: endpoint.port }, () => socket.write(encodeAlive2Request(node)));
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const wide = buffered[0] === ALIVE2_X_RESP;
      if (buffered[0] !== ALIVE2_X_RESP && buffered[0] !== ALIVE2_RESP) {
        socket.destroy();
        return reject(new Error(`not an ALIVE2 reply: ${buffered.toString('hex')}`));
      }
      if (buffered.length < (wide ? 6 : 4)) return;
      socket.off('data', onData);
      const closed = new Promise<void>((done) => socket.once('close', () => done()));
      resolve({
        result: buffered[1]!,
        creation: wide ? buffered.readUInt32BE(2) : buffered.readUInt16BE(2),
        socket,
        close: async () => {
          socket.end();
          await closed;
        },
      });
    };
    socket.on('data', onData);
    socket.on('error', reject);
    socket.on('close', () => reject(new Error('connection closed before the ALIVE2 reply')));
  });
}
