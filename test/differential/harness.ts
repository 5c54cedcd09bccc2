/**
 * Helpers for the differential suite: one Session per daemon records what that daemon did ("observations"), with
 * the implementation-dependent parts masked (creation values, DUMP fd numbers, the NAMES/DUMP port header), so that
 * the C epmd's and sdepmd's observation lists can be compared for equality.
 */
import { connect, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { TestDaemon } from '../support/daemons';
import { encodeAlive2Request, frame } from '../../src/protocol/codec';
import { probe, type ProbeOptions, type ProbeResult } from '../support/probe';

export interface Observation {
  readonly label: string;
  readonly text: string;
}

/** Printable ASCII as is, everything else (and the backslash) as \xNN. */
export function show(bytes: Buffer): string {
  let out = '';
  for (const b of bytes) {
    out += b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return `"${out}"`;
}

export type RawResult = ProbeResult;
export type RawOptions = ProbeOptions;

/** test/support/probe.ts with this suite's defaults: short gaps, and a short wait for the close. */
export function rawProbe(port: number, writes: readonly Buffer[], options: RawOptions = {}): Promise<RawResult> {
  return probe(port, writes, { gapMs: 25, waitMs: 400, ...options });
}

/** What a timed probe saw: each chunk with its arrival time, and when the connection ended. */
export interface TimedResult {
  readonly reply: Buffer;
  /** Milliseconds from the last write to each chunk's arrival, and the chunk's size. */
  readonly chunks: readonly { readonly atMs: number; readonly bytes: number }[];
  readonly ended: 'closed' | 'open';
  /** Milliseconds from the last write to the close (or to giving up, when still open). */
  readonly endedAtMs: number;
}

/**
 * Sends `writes` with `gapMs` between them, then waits up to `waitMs` for the server to close, recording when
 * each chunk of the reply arrived. `reset` resets the connection `reset` ms after the last write; `halfClose` sends
 * EOF right after it.
 */
export function timedProbe(
  port: number,
  writes: readonly Buffer[],
  o: { gapMs: number; waitMs: number; reset?: number; halfClose?: boolean },
): Promise<TimedResult> {
  return new Promise((resolve, reject) => {
    const chunks: { atMs: number; bytes: number }[] = [];
    const data: Buffer[] = [];
    let lastWrite = 0;
    let done = false;
    const finish = (ended: 'closed' | 'open') => {
      if (done) return;
      done = true;
      const endedAtMs = Date.now() - lastWrite;
      socket.destroy();
      resolve({ reply: Buffer.concat(data), chunks, ended, endedAtMs });
    };
    const socket: Socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true }, () => void writeAll());
    const writeAll = async (): Promise<void> => {
      socket.setNoDelay(true);
      for (let i = 0; i < writes.length; i++) {
        if (done) return;
        socket.write(writes[i]!);
        lastWrite = Date.now();
        if (i < writes.length - 1) await sleep(o.gapMs);
      }
      if (!writes.length) lastWrite = Date.now();
      if (o.halfClose) socket.end();
      if (o.reset !== undefined)
        setTimeout(() => done || (socket.resetAndDestroy(), finish('closed')), o.reset).unref();
      setTimeout(() => finish('open'), o.waitMs).unref();
    };
    socket.on('data', (d: Buffer) => {
      chunks.push({ atMs: Date.now() - lastWrite, bytes: d.length });
      data.push(d);
    });
    socket.on('end', () => finish('closed'));
    socket.on('close', () => finish('closed'));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') finish('closed');
      else if (!done) reject(err);
    });
  });
}

/**
 * When, in whole seconds after the last write, a close came, as a bucket the C epmd's rule allows: for a packet
 * timeout of T s checked every P s, an idle connection is closed after more than T s and by T + 1 + P s.
 */
export function closeBucket(ms: number, timeoutS: number, sweepS: number, slackMs = 700): string {
  if (ms <= timeoutS * 1000) return `closed within ${timeoutS} s (too early: ${ms} ms)`;
  if (ms <= (timeoutS + 1 + sweepS) * 1000 + slackMs)
    return `closed after more than ${timeoutS} s, by ${timeoutS + 1 + sweepS} s`;
  return `closed after ${timeoutS + 1 + sweepS} s (too late: ${ms} ms)`;
}

/**
 * Waits until the wall clock is `fromMs` to `toMs` into a second: both daemons count idleness in whole seconds of
 * the wall clock, so a gap that starts early in a second and ends early in the next one is never idle for a whole
 * timeout, however long it is.
 */
export async function alignToSecond(fromMs = 50, toMs = 150): Promise<void> {
  for (;;) {
    const into = Date.now() % 1000;
    if (into >= fromMs && into <= toMs) return;
    await sleep(into < fromMs ? fromMs - into : 1000 - into + fromMs);
  }
}

/** A timer that does not keep the process alive (it is often raced against an event). */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export type Mask = 'none' | 'names' | 'dump';

/** An ALIVE2_REQ with defaults: port 5555, type 'M', protocol 0, versions 6/5, no extra. */
export function alive2(
  name: string | Buffer,
  o: { port?: number; type?: number; proto?: number; hi?: number; lo?: number; extra?: Buffer } = {},
): Buffer {
  return encodeAlive2Request({
    name,
    port: o.port ?? 5555,
    nodeType: o.type ?? 77,
    protocol: o.proto ?? 0,
    highestVersion: o.hi ?? 6,
    lowestVersion: o.lo ?? 5,
    extra: o.extra,
  });
}

/** An ALIVE2_REQ whose length fields may lie: nlen and elen are written as given. */
export function alive2Raw(
  nlen: number,
  name: Buffer,
  elen: number | null,
  extra: Buffer = Buffer.alloc(0),
  hi = 6,
): Buffer {
  const head = Buffer.from([0x78, 0x15, 0xb3, 77, 0, hi >> 8, hi & 0xff, 0, 5, nlen >> 8, nlen & 0xff]);
  const e = elen === null ? Buffer.alloc(0) : Buffer.from([elen >> 8, elen & 0xff]);
  return frame(Buffer.concat([head, name, e, extra]));
}

/** Parses the name out of a well-formed framed ALIVE2_REQ (for creation bookkeeping). */
function alive2Name(request: Buffer): string | undefined {
  if (request.length < 13 || request[2] !== 0x78) return undefined;
  const nlen = request.readUInt16BE(11);
  if (13 + nlen > request.length) return undefined;
  return request.subarray(13, 13 + nlen).toString('hex');
}

function alive2Hi(request: Buffer): number | undefined {
  return request.length >= 9 && request[2] === 0x78 ? request.readUInt16BE(7) : undefined;
}

/** A registration connection held open by the test. */
export class Reg {
  #closed = false;
  #after: Buffer[] = [];
  readonly closedP: Promise<void>;
  constructor(
    readonly session: Session,
    readonly socket: Socket,
    readonly label: string,
    alreadyClosed: boolean,
  ) {
    this.#closed = alreadyClosed;
    this.closedP = alreadyClosed
      ? Promise.resolve()
      : new Promise((r) => socket.once('close', () => ((this.#closed = true), r())));
    socket.on('data', (d: Buffer) => this.#after.push(d));
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  /** Waits up to `ms` for the server to have closed this connection and records the outcome. */
  async expectClosed(label: string, ms = 1000): Promise<void> {
    await Promise.race([this.closedP, sleep(ms)]);
    const extra = Buffer.concat(this.#after);
    this.session.record(label, `${this.#closed ? 'closed' : 'open'}${extra.length ? ` then sent ${show(extra)}` : ''}`);
  }

  /** Sends bytes on the registration connection; records whether the server closed it. */
  async stray(label: string, bytes: Buffer, ms = 1000): Promise<void> {
    if (!this.#closed) this.socket.write(bytes);
    await this.expectClosed(label, ms);
  }

  /** Half-closes (EOF) and waits for the server to close in turn. */
  async eof(label: string, ms = 1000): Promise<void> {
    if (!this.#closed) this.socket.end();
    await this.expectClosed(label, ms);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** What one daemon did during a scenario. */
export class Session {
  readonly observations: Observation[] = [];
  readonly regs: Reg[] = [];
  readonly #lastCreation = new Map<string, number>();
  /**
   * Check "differs from the previous creation of this name". Off where the C epmd legitimately repeats one: with
   * -d it recycles old Nodes with their counters, and fresh counters are seeded from time(NULL) in seconds.
   */
  trackCreations = true;

  constructor(readonly daemon: TestDaemon) {}

  get port(): number {
    return this.daemon.port;
  }

  record(label: string, text: string): void {
    this.observations.push({ label, text });
  }

  /** One request (possibly in several writes); records the masked reply and how the connection ended. */
  async send(
    label: string,
    writes: Buffer | readonly Buffer[],
    opts: RawOptions & { mask?: Mask } = {},
  ): Promise<RawResult> {
    const list = Buffer.isBuffer(writes) ? [writes] : writes;
    const r = await rawProbe(this.port, list, opts);
    this.record(label, `${this.mask(r.reply, opts.mask ?? 'none')} [${r.ended}]`);
    return r;
  }

  names(label = 'NAMES'): Promise<RawResult> {
    return this.send(label, frame(Buffer.from('n')), { mask: 'names' });
  }

  dump(label = 'DUMP'): Promise<RawResult> {
    return this.send(label, frame(Buffer.from('d')), { mask: 'dump' });
  }

  /** Masks the port header (after checking it is this daemon's own port) and DUMP fd numbers. */
  mask(reply: Buffer, mask: Mask): string {
    if (mask === 'none' || reply.length < 4) return show(reply);
    const header = reply.readUInt32BE(0);
    const head = header === this.port ? '<OWN PORT>' : `<WRONG PORT ${header}, expected ${this.port}>`;
    let body = show(reply.subarray(4));
    if (mask === 'dump') body = body.replace(/fd = -?\d+/g, 'fd = <FD>');
    return head + body;
  }

  /**
   * Sends an ALIVE2_REQ on a connection that is kept open. Records the reply with a successful creation masked
   * (its properties checked instead: nonzero, 1..3 for 'y', different from the previous creation of that name
   * in this session) and whether the server left the connection open.
   */
  async register(
    label: string,
    request: Buffer,
    opts: { writes?: Buffer[]; gapMs?: number; host?: string; localAddress?: string; replyWaitMs?: number } = {},
  ): Promise<Reg> {
    const socket = connect({ host: opts.host ?? '127.0.0.1', port: this.port, localAddress: opts.localAddress });
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    const chunks: Buffer[] = [];
    let closed = false;
    const onData = (d: Buffer) => chunks.push(d);
    socket.on('data', onData);
    const closedP = new Promise<void>((r) => socket.once('close', () => ((closed = true), r())));
    await Promise.race([new Promise<void>((r) => socket.once('connect', () => r())), closedP]);
    const writes = opts.writes ?? [request];
    for (let i = 0; i < writes.length; i++) {
      if (closed) break;
      socket.write(writes[i]!);
      if (i < writes.length - 1) await sleep(opts.gapMs ?? 25);
    }
    // Wait for a whole reply (or a close), then linger to see whether the server closes the connection.
    const complete = () => {
      const r = Buffer.concat(chunks);
      return (
        (r[0] === 0x76 && r.length >= 6) ||
        (r[0] === 0x79 && r.length >= 4) ||
        (r.length > 0 && r[0] !== 0x76 && r[0] !== 0x79)
      );
    };
    const deadline = Date.now() + (opts.replyWaitMs ?? 1000);
    while (!closed && !complete() && Date.now() < deadline) await sleep(5);
    let reply = Buffer.concat(chunks);
    const ok = reply.length >= 2 && reply[1] === 0;
    await Promise.race([closedP, sleep(ok ? 60 : 300)]);
    reply = Buffer.concat(chunks);
    socket.off('data', onData);
    const reg = new Reg(this, socket, label, closed);
    this.regs.push(reg);
    this.record(label, `${this.maskCreation(request, reply)} [${closed ? 'closed' : 'open'}]`);
    return reg;
  }

  maskCreation(request: Buffer, reply: Buffer): string {
    const name = alive2Name(request);
    const hi = alive2Hi(request);
    let creation: number | undefined;
    let width = 0;
    if (reply[0] === 0x76 && reply.length >= 6 && reply[1] === 0) {
      creation = reply.readUInt32BE(2);
      width = 4;
    } else if (reply[0] === 0x79 && reply.length >= 4 && reply[1] === 0) {
      creation = reply.readUInt16BE(2);
      width = 2;
    }
    if (creation === undefined) return show(reply);
    const problems: string[] = [];
    if (creation === 0) problems.push('zero');
    if (width === 2 && (creation < 1 || creation > 3)) problems.push(`${creation} not in 1..3`);
    if (hi !== undefined && hi >= 6 !== (width === 4)) problems.push(`reply width ${width} for highest version ${hi}`);
    if (name !== undefined && this.trackCreations) {
      const last = this.#lastCreation.get(`${width}:${name}`);
      if (last === creation) problems.push(`same creation ${creation} as the previous registration of this name`);
      this.#lastCreation.set(`${width}:${name}`, creation);
    }
    const prop = problems.length ? `<CREATION BAD: ${problems.join(', ')}>` : `<creation${width * 8} ok>`;
    return show(reply.subarray(0, 2)).slice(0, -1) + prop + show(reply.subarray(2 + width)).slice(1);
  }

  /**
   * One request in pieces with `gapMs` between them; records the masked reply and how the connection ended. With
   * `chunks`, also the reply's chunks: their arrival times rounded to whole seconds, and ('sizes') their sizes.
   * (Only where the writes are seconds apart: the C epmd writes NAMES and DUMP a line at a time, so without a delay
   * a reader sees one chunk or several, by chance.) With `timeout`, a close is recorded as the bucket
   * closeBucket() gives, rather than as a time.
   */
  async timed(
    label: string,
    writes: readonly Buffer[],
    o: {
      gapMs: number;
      waitMs: number;
      mask?: Mask;
      reset?: number;
      halfClose?: boolean;
      timeout?: { seconds: number; sweep: number };
      chunks?: 'sizes' | 'times';
    },
  ): Promise<TimedResult> {
    const r = await timedProbe(this.port, writes, o);
    const chunks = o.chunks
      ? r.chunks
          .map((c) => `${o.chunks === 'sizes' ? `${c.bytes} B ` : ''}at ${Math.round(c.atMs / 1000)} s`)
          .join(', ')
      : '';
    const ended =
      r.ended === 'open'
        ? 'open'
        : o.timeout && r.reply.length === 0
          ? closeBucket(r.endedAtMs, o.timeout.seconds, o.timeout.sweep)
          : 'closed';
    this.record(label, `${this.mask(r.reply, o.mask ?? 'none')} [${ended}]${chunks ? ` chunks: ${chunks}` : ''}`);
    return r;
  }

  /** Waits for the daemon process to exit (up to `ms`) and records its exit code. */
  async exited(label: string, ms = 3000): Promise<void> {
    const code = await Promise.race([this.daemon.exited, sleep(ms).then(() => 'still running' as const)]);
    this.record(label, `exit ${code}`);
  }

  closeAll(): void {
    for (const r of this.regs) r.destroy();
  }
}

/** A non-loopback IPv4 or IPv6 address of this host, if any (for the local-peer checks). */
export function nonLoopbackAddress(family: 'IPv4' | 'IPv6'): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.family === family && !a.internal && !a.address.startsWith('fe80')) return a.address;
    }
  }
  return undefined;
}

/** Registers, waits for the reply, then closes (EOF) and waits for the server to close: for bulk set-ups. */
export function registerAndClose(port: number, request: Buffer, ms = 2000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect({ host: '127.0.0.1', port }, () => socket.write(request));
    const timer = setTimeout(() => socket.destroy(new Error('timeout')), ms);
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      if (Buffer.concat(chunks).length >= 4) socket.end();
    });
    socket.on('error', (e) => (clearTimeout(timer), reject(e)));
    socket.on('close', () => (clearTimeout(timer), resolve(Buffer.concat(chunks))));
  });
}
