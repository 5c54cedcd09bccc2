/**
 * The native I/O engine (native/sdepmd/engine.c), typed. It owns every listening socket and every connection in
 * one epoll set that Node's loop watches; JavaScript sees one call per complete request, and one event per
 * registration that ends. The protocol stays in TypeScript (src/policy/connection.ts).
 *
 * Connection ids are opaque numbers that name one connection for its whole life (never a later connection that
 * reuses its fd). Listener ids are small integers.
 */
import { getSystemErrorMap } from 'node:util';
import { loadAddon, type SdepmdAddon } from '../native/addon';
import { INBUF_SIZE } from '../protocol/constants';

/** What onRequest is told about the bytes in the shared buffer. */
export const RequestStatus = {
  /** A whole request: the length prefix and `length - 2` bytes of body. */
  complete: 0,
  /** The length prefix is 0. */
  zeroLength: 1,
  /** The length prefix is over the C epmd's limit. */
  tooLong: 2,
  /** More bytes came than the length prefix announced. */
  excess: 3,
  /** The request is still not whole, and the request budget is spent. */
  budget: 4,
} as const;

/** Events about a connection (id >= 0) or about accepting (id -1). */
export const EngineEvent = {
  /** A kept connection (a registration) reached EOF; the engine has hung up. */
  eof: 1,
  /** A kept connection sent `detail` bytes; the engine has hung up. */
  data: 2,
  /** A connection failed with errno `detail`; the engine has closed it. */
  error: 3,
  /** With delayAccept: a connection was accepted and waits for resume(id). */
  accepted: 7,
  /** A connection from `peer` was refused: the total connection limit. */
  limitTotal: 8,
  /** A connection from `peer` was refused: the per-peer connection limit. */
  limitPeer: 9,
  /** accept() failed with errno `detail` (EMFILE, ENFILE...): accepting pauses for a while. */
  acceptPaused: 10,
  /** accept() failed with an unexpected errno `detail`. */
  acceptError: 11,
} as const;

export const CloseHow = { plain: 0, hangUp: 1, release: 2 } as const;

/** What follows a write: close the connection, keep it as a registration, or more parts to come. */
export const AfterWrite = { close: 0, keep: 1, more: 2 } as const;

/** A connection the timeout rules apply to (see watched()). */
export interface Watched {
  readonly id: number;
  /** Still sending its request, or answered with a reply its peer has not read yet. */
  readonly phase: 'reading' | 'draining';
  /** The accept or the last read (reading), or the reply (draining), on the engine's clock. */
  readonly lastActivityMs: number;
  /** Bytes received so far (reading), or unsent (draining). */
  readonly bytes: number;
}

export interface EngineHandlers {
  /**
   * A request is in `engine.shared[0, length)`, valid only during the call. Return the reply to write before the
   * connection closes; `undefined` to answer later with send() (or close()); null to close without a reply.
   */
  request: (id: number, status: number, length: number) => Buffer | null | undefined;
  event: (id: number, kind: number, detail: number, peer: string | undefined) => void;
}

export interface EngineOptions {
  readonly maxConnections: number;
  readonly maxConnectionsPerPeer: number;
  readonly delayAccept: boolean;
  /** A request not whole this long after the accept is refused at its next read (0: no budget). */
  readonly requestBudgetMs: number;
}

export interface ListenerInfo {
  readonly fd: number;
  readonly address: string;
  readonly port: number;
}

type Handle = object;

/** The engine's native entry points (see engine.c for each). */
export interface EngineAddon {
  engineOpen(
    onRequest: EngineHandlers['request'],
    onEvent: EngineHandlers['event'],
    shared: Buffer,
    options: EngineOptions,
  ): Handle;
  engineListen(engine: Handle, host: string, port: number, backlog: number, v6only: boolean): number;
  engineAdoptListener(engine: Handle, fd: number, backlog: number, dup: boolean): number;
  engineListenerInfo(engine: Handle, id: number): [number, string, number] | null;
  engineCloseListener(engine: Handle, id: number, release: boolean): number;
  engineAccepting(engine: Handle, on: boolean): void;
  engineSend(engine: Handle, id: number, reply: Buffer, after: number): number;
  engineClose(engine: Handle, id: number, how: number): number;
  engineResume(engine: Handle, id: number): void;
  engineAdopt(engine: Handle, fd: number, kept: boolean, dup: boolean): number;
  enginePeer(engine: Handle, id: number, local: boolean): string;
  engineFd(engine: Handle, id: number): number;
  engineWatched(engine: Handle): Float64Array;
  enginePending(engine: Handle, id: number): number;
  engineCounters(engine: Handle): [number, number, number, number];
  engineDestroy(engine: Handle): void;
}

/** An Error for a negative errno, worded like Node's: `listen EADDRINUSE: address already in use 0.0.0.0:4369`. */
export function errnoError(syscall: string, errno: number, detail?: string): Error & { code: string; errno: number } {
  const [code, message] = getSystemErrorMap().get(errno) ?? [`errno ${-errno}`, 'unknown error'];
  const err = new Error(`${syscall} ${code}: ${message}${detail ? ` ${detail}` : ''}`) as Error & {
    code: string;
    errno: number;
  };
  err.code = code;
  err.errno = errno;
  return err;
}

export class NativeEngine {
  /** Where each request is, for the duration of its onRequest call. */
  readonly shared: Buffer = Buffer.alloc(INBUF_SIZE);
  readonly #addon: SdepmdAddon;
  readonly #handle: Handle;
  #closed = false;

  constructor(handlers: EngineHandlers, options: EngineOptions, addon: SdepmdAddon | Error = loadAddon()) {
    if (addon instanceof Error) throw addon;
    this.#addon = addon;
    this.#handle = addon.engineOpen(handlers.request, handlers.event, this.shared, options);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Binds and listens; throws an Error with the errno's code (EADDRINUSE...). */
  listen(host: string, port: number, backlog: number, v6only: boolean): number {
    const id = this.#addon.engineListen(this.#handle, host, port, backlog, v6only);
    if (id < 0) throw errnoError('listen', id, `${host.includes(':') ? `[${host}]` : host}:${port}`);
    return id;
  }

  /** Serves a listening socket passed in: systemd's (it keeps its Backlog=), or a previous process's. */
  adoptListener(fd: number, backlog: number, dup = false): number {
    const id = this.#addon.engineAdoptListener(this.#handle, fd, backlog, dup);
    if (id < 0) throw errnoError('listen', id, `fd ${fd}`);
    return id;
  }

  listenerInfo(id: number): ListenerInfo | null {
    const info = this.#addon.engineListenerInfo(this.#handle, id);
    return info ? { fd: info[0], address: info[1], port: info[2] } : null;
  }

  /** Stops serving a listener: closes it, or with `release` returns its fd (the caller then owns it). */
  closeListener(id: number, release = false): number {
    return this.#addon.engineCloseListener(this.#handle, id, release);
  }

  setAccepting(on: boolean): void {
    this.#addon.engineAccepting(this.#handle, on);
  }

  /**
   * Writes (part of) a reply to a connection whose request is answered later; `after` is an AfterWrite.
   * 1: sent; 0: queued; < 0: -errno, and the connection is closed (or -ENOTCONN: it already was).
   */
  send(id: number, reply: Buffer, after: number): number {
    return this.#closed ? -1 : this.#addon.engineSend(this.#handle, id, reply, after);
  }

  /** Ends a connection; with CloseHow.release, returns its fd, which the caller then owns. */
  close(id: number, how: number): number {
    return this.#closed ? -1 : this.#addon.engineClose(this.#handle, id, how);
  }

  resume(id: number): void {
    this.#addon.engineResume(this.#handle, id);
  }

  /**
   * Takes over a connected socket: a registration's (`kept`), or a fresh one to read a request from. With `dup`
   * the engine works on a duplicate and the caller still owns `fd`. Returns the connection id; throws on failure.
   */
  adopt(fd: number, kept: boolean, dup = false): number {
    const id = this.#addon.engineAdopt(this.#handle, fd, kept, dup);
    if (id < 0) throw errnoError('adopt', id, `fd ${fd}`);
    return id;
  }

  /** The peer's address as getpeername() reports it ('' if the connection is gone). */
  peer(id: number): string {
    return this.#addon.enginePeer(this.#handle, id, false);
  }

  /** The connection's own address (getsockname). */
  local(id: number): string {
    return this.#addon.enginePeer(this.#handle, id, true);
  }

  fd(id: number): number {
    return this.#closed ? -1 : this.#addon.engineFd(this.#handle, id);
  }

  /** The engine's clock (ms), and the connections the timeout rules apply to. */
  watched(): { nowMs: number; connections: Watched[] } {
    if (this.#closed) return { nowMs: 0, connections: [] };
    const raw = this.#addon.engineWatched(this.#handle);
    const connections: Watched[] = [];
    for (let i = 1; i + 3 < raw.length; i += 4) {
      connections.push({
        id: raw[i]!,
        phase: raw[i + 1] ? 'draining' : 'reading',
        lastActivityMs: raw[i + 2]!,
        bytes: raw[i + 3]!,
      });
    }
    return { nowMs: raw[0] ?? 0, connections };
  }

  /** Copies a connection's partial request into `shared` (for a log line); returns its length. */
  pending(id: number): number {
    return this.#closed ? 0 : this.#addon.enginePending(this.#handle, id);
  }

  counters(): { accepted: number; open: number; kept: number; busy: number } {
    if (this.#closed) return { accepted: 0, open: 0, kept: 0, busy: 0 };
    const [accepted, open, kept, busy] = this.#addon.engineCounters(this.#handle);
    return { accepted, open, kept, busy };
  }

  /** Closes everything the engine still holds and stops watching. */
  destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#addon.engineDestroy(this.#handle);
  }
}
