/**
 * Raw TCP probes: send bytes (possibly in several writes), collect the reply, and observe how the connection ends.
 * Used to compare daemons byte for byte.
 */
import { connect, type Socket } from 'node:net';

export interface ProbeResult {
  /** Every byte received. */
  readonly reply: Buffer;
  /** How the connection ended: the peer closed it, or it was still open when we stopped waiting. */
  readonly ended: 'closed' | 'open';
}

export interface ProbeOptions {
  readonly host?: string;
  /** Gap between successive writes, in ms (to split a request across TCP segments). */
  readonly gapMs?: number;
  /** How long to wait for the server to close after the last write. */
  readonly waitMs?: number;
  /** Optional local address to connect from. */
  readonly localAddress?: string;
  /** Half-close (send FIN) after the last write. */
  readonly halfClose?: boolean;
}

/** Sends `writes` one after another and reports what came back. */
export function probe(port: number, writes: readonly Buffer[], options: ProbeOptions = {}): Promise<ProbeResult> {
  const { host = '127.0.0.1', gapMs = 20, waitMs = 1500 } = options;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const socket: Socket = connect(
      { host, port, localAddress: options.localAddress, allowHalfOpen: true },
      () => void writeAll(),
    );
    // Each write its own segment, so that a split request really arrives split.
    const writeAll = async (): Promise<void> => {
      socket.setNoDelay(true);
      for (let i = 0; i < writes.length; i++) {
        if (done || socket.destroyed) break;
        socket.write(writes[i]!);
        if (i < writes.length - 1) await new Promise((r) => setTimeout(r, gapMs).unref());
      }
      if (options.halfClose && !socket.destroyed) socket.end();
      if (!done) timer = setTimeout(() => finish('open'), waitMs);
    };
    const finish = (ended: 'closed' | 'open') => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      socket.destroy();
      resolve({ reply: Buffer.concat(chunks), ended });
    };
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('end', () => finish('closed'));
    socket.on('close', () => finish('closed'));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // A reset after the server closed with unread bytes still counts as "closed".
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') finish('closed');
      else if (!done) reject(err);
    });
  });
}

/** A connection held open, for registrations. */
export interface Held {
  readonly socket: Socket;
  /** Bytes received so far. */
  received(): Buffer;
  /** Resolves when at least `n` bytes have arrived (or rejects after `ms`). */
  waitFor(n: number, ms?: number): Promise<Buffer>;
  readonly closed: Promise<void>;
  close(): Promise<void>;
}

export function hold(port: number, request: Buffer, host = '127.0.0.1'): Promise<Held> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const waiters: (() => void)[] = [];
    const socket = connect({ host, port }, () => {
      socket.write(request);
      resolve(held);
    });
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.on('data', (d: Buffer) => {
      buffered = Buffer.concat([buffered, d]);
      waiters.splice(0).forEach((w) => w());
    });
    socket.on('error', (err) => reject(err));
    const held: Held = {
      socket,
      closed,
      received: () => buffered,
      waitFor(n, ms = 3000) {
        return new Promise((res, rej) => {
          const t = setTimeout(
            () => rej(new Error(`waited ${ms} ms for ${n} bytes, got ${buffered.toString('hex')}`)),
            ms,
          );
          const check = () => {
            if (buffered.length >= n) {
              clearTimeout(t);
              res(buffered);
            } else waiters.push(check);
          };
          check();
          void closed.then(() => {
            if (buffered.length < n) {
              clearTimeout(t);
              rej(new Error(`closed after ${buffered.length} bytes: ${buffered.toString('hex')}`));
            }
          });
        });
      },
      async close() {
        socket.end();
        socket.destroySoon();
        await closed;
      },
    };
  });
}

/** A normal (type 77) OTP node's registration, versions 5-6, for the in-process server tests. */
export const node = (name: string, port = 6000) => ({
  name,
  port,
  nodeType: 77,
  protocol: 0,
  highestVersion: 6,
  lowestVersion: 5,
});
