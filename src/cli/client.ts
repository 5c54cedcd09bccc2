/**
 * An EPMD client: one request per connection, as OTP's erl_epmd and the C `epmd` client verbs do.
 * Used by the CLI verbs (-names, -kill, -stop, `sdepmd names`) and by the tests.
 */
import type { Socket } from 'node:net';
import { lazyNet } from '../util/lazy-modules';
import {
  decodeAlive2Reply,
  decodeNamesReply,
  decodePort2Reply,
  encodeAlive2Request,
  encodeNameRequest,
  encodeSimpleRequest,
  type Alive2Reply,
  type NamesReply,
  type NodeInfo,
  type Port2Reply,
} from '../protocol/codec';
import { DUMP_REQ, KILL_REQ, NAMES_REQ, PORT_PLEASE2_REQ, STOP_REQ } from '../protocol/constants';
import { formatEndpoint } from '../policy/policy';

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** Raised when the daemon cannot be reached at all (as opposed to answering oddly). */
export class CannotConnectError extends Error {
  constructor(
    readonly endpoint: Endpoint,
    cause: Error,
  ) {
    super(`cannot connect to epmd at ${formatEndpoint(endpoint.host, endpoint.port)}: ${cause.message}`);
  }
}

/** Sends one request and collects everything the daemon sends until it closes the connection. */
export function exchange(endpoint: Endpoint, request: Buffer, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let connected = false;
    const socket = lazyNet().connect({ host: endpoint.host, port: endpoint.port }, () => {
      connected = true;
      socket.write(request);
    });
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no reply within ${timeoutMs} ms`)));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (err) => reject(connected ? err : new CannotConnectError(endpoint, err)));
    socket.on('close', () => resolve(Buffer.concat(chunks)));
  });
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
  return decodeNamesReply(await exchange(endpoint, encodeSimpleRequest(NAMES_REQ)));
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

export async function portPlease(endpoint: Endpoint, name: string | Buffer): Promise<Port2Reply> {
  return decodePort2Reply(await exchange(endpoint, encodeNameRequest(PORT_PLEASE2_REQ, name)));
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
    const socket = lazyNet().connect({ host: endpoint.host, port: endpoint.port }, () =>
      socket.write(encodeAlive2Request(node)),
    );
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      let reply: Alive2Reply | null;
      try {
        reply = decodeAlive2Reply(buffered);
      } catch (err) {
        socket.destroy();
        return reject(err instanceof Error ? err : new Error(String(err)));
      }
      if (!reply) return;
      socket.off('data', onData);
      const closed = new Promise<void>((done) => socket.once('close', () => done()));
      resolve({
        ...reply,
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
