/**
 * One EPMD connection, from the first byte to the reply. Read top to bottom, this file is the whole life of a
 * packet:
 *
 *   engine (C): accept, read, 2-byte framing ─► request() ─► decodeRequest ─► policy (local-only?) ─► registry
 *                                                          ─► the reply, which the engine writes before it closes
 *
 * The native engine (src/engine/native-engine.ts) moves the bytes and calls request() once per whole request;
 * everything the protocol decides is here. A connection carries exactly one request, as with the C epmd. Every
 * request but ALIVE2_REQ is answered and the connection closed; a successful ALIVE2_REQ keeps the connection open,
 * and the registration lives exactly as long as it does: EOF, an error or any further byte from the node
 * unregisters it (event()).
 */
import { getSystemErrorMap } from 'node:util';
import type { RefusalReason } from '../daemon/refusals';
import {
  decodeRequest,
  encodeAlive2Reply,
  encodeDumpActiveLine,
  encodeDumpUnusedLine,
  encodeNamesLine,
  encodePortHeader,
  encodePort2Reply,
  KILL_OK,
  KILL_REFUSED,
  MAX_BODY_BYTES,
  PORT2_NOT_FOUND,
  STOP_NOT_FOUND,
  STOP_OK,
  type Alive2Request,
  type NodeInfo,
  type Request,
} from '../protocol/codec';
import { PORT_PLEASE2_REQ } from '../protocol/constants';
import { hex, printableName, type LogFields, type Logger } from '../daemon/log';
import { isLocalOnly, isLoopback, normaliseAddress, type Limits } from './policy';
import type { Registration, Registry } from '../registry/registry';
import { AfterWrite, CloseHow, EngineEvent, RequestStatus, type NativeEngine } from '../engine/native-engine';
import { connectionTimedOut, wholeSeconds } from './timeouts';

/** What the registry holds for each node: the connection that keeps it registered. */
export interface NodeConnection {
  /** The engine's id for the connection. */
  readonly id: number;
  /** The peer's address, normalised. */
  readonly peer: string;
  /** PORT2_RESP for this node, built once at registration; the registration's name and extra are views into it. */
  readonly port2Reply: Buffer;
  /** The connection's name in systemd's fd store, when it is kept there. */
  fdName: string | null;
  /** The connection's fd (for the fd store and DUMP), or -1. */
  readonly fd: number;
  /** Ends the registration at once and hangs up on the node (STOP_REQ, KILL_REQ). */
  hangUp(why: string): void;
  /**
   * Lets go of the connection without ending the registration (shutdown with the fd store, or a live upgrade):
   * the engine stops watching it, and returns its fd for the caller to close or pass on.
   */
  detach(): number;
}

export type NodeRegistration = Registration<NodeConnection>;

/** Running totals, reported by STATUS= and `sdepmd status`. */
export interface ServerStats {
  connections: number;
  lookups: number;
  lookupsFound: number;
  namesRequests: number;
  registrations: number;
  unregistrations: number;
  refused: number;
  limitHits: number;
}

/** What happened to a registration: a node registered, one was carried over from an earlier process, or one ended. */
export type RegistrationEvent = 'registered' | 'unregistered' | 'restored';

/** What a connection needs from the server around it. */
export interface ConnectionContext {
  readonly registry: Registry<NodeConnection>;
  readonly log: Logger;
  readonly stats: ServerStats;
  readonly relaxedCommandCheck: boolean;
  readonly limits: Limits;
  readonly delayAcceptMs: number;
  readonly delayWriteMs: number;
  /** The NAMES reply for the current table (cached by the server). */
  namesReply(): Buffer;
  /** The port NAMES and DUMP replies start with. */
  readonly epmdPort: number;
  /** A node registered (before it is answered: this is where the fd store keeps it) or unregistered. */
  registrationChanged(registration: NodeRegistration, event: RegistrationEvent, why: string): void;
  /** Called once the reply to an accepted KILL_REQ has been written, or has failed to be: the daemon must exit. */
  killRequested(): void;
  /** Rate-limited warning for refusals, so that a flood of bad peers cannot flood the journal. */
  refused(reason: RefusalReason, peer: string, why: string, packet?: Buffer, fields?: LogFields): void;
  /** Rate-limited warning for trouble accepting connections (out of fds). */
  acceptTrouble(why: string): void;
}

/** A registration carried over from an earlier process (fd store, or a live upgrade). */
export interface RestoredRegistration {
  readonly info: NodeInfo;
  readonly creation: number;
  readonly registeredAt: number;
  readonly fdName: string | null;
  readonly peer: string;
}

/** Offsets in PORT2_RESP: 'w' result port(2) type proto hi(2) lo(2) nlen(2) name elen(2) extra. */
const PORT2_NAME_AT = 12;
/** The extra of the nodes that send none (OTP's): one shared empty Buffer instead of a 96-byte view each. */
const NO_EXTRA = Buffer.alloc(0);

/** A registration's connection: plain fields and prototype methods, so that a registration costs no closures. */
class RegistrationConnection implements NodeConnection {
  registration: NodeRegistration | null = null;
  constructor(
    readonly connections: Connections,
    readonly id: number,
    readonly peer: string,
    readonly port2Reply: Buffer,
    public fdName: string | null,
  ) {}

  get fd(): number {
    return this.connections.engine.fd(this.id);
  }

  hangUp(why: string): void {
    this.connections.end(this, why);
    // Shut down, not just close: systemd's fd store may hold a copy of this connection.
    this.connections.engine.close(this.id, CloseHow.hangUp);
  }

  detach(): number {
    this.connections.forget(this);
    return this.connections.engine.close(this.id, CloseHow.release);
  }

  /** The node's name and extra, as views into the PORT2 reply (an empty extra is shared). */
  info(request: Omit<NodeInfo, 'name' | 'extra'>): NodeInfo {
    const reply = this.port2Reply;
    const nameLength = reply.readUInt16BE(PORT2_NAME_AT - 2);
    const extraAt = PORT2_NAME_AT + nameLength + 2;
    return {
      port: request.port,
      nodeType: request.nodeType,
      protocol: request.protocol,
      highestVersion: request.highestVersion,
      lowestVersion: request.lowestVersion,
      name: reply.subarray(PORT2_NAME_AT, PORT2_NAME_AT + nameLength),
      extra: extraAt === reply.length ? NO_EXTRA : reply.subarray(extraAt),
    };
  }
}

/** Every connection's protocol side: the engine calls request() and event(). */
export class Connections {
  readonly engine: NativeEngine;
  readonly #ctx: ConnectionContext;
  /** Connections the engine keeps open: a registration's, or null for a refused ALIVE2 the node keeps open. */
  readonly #kept = new Map<number, RegistrationConnection | null>();
  /** The last peer address seen, so that the same text is one string however many nodes share it. */
  #lastPeer = '';

  constructor(ctx: ConnectionContext, engine: NativeEngine) {
    this.#ctx = ctx;
    this.engine = engine;
  }

  /** The peer's address, normalised; a getpeername() call, so asked only when a log line or a rule needs it. */
  peer(id: number): string {
    const peer = normaliseAddress(this.engine.peer(id));
    if (peer === this.#lastPeer) return this.#lastPeer;
    return (this.#lastPeer = peer);
  }

  /** A whole request (or a bad frame) is in the engine's shared buffer: the reply, undefined (later) or null. */
  request(id: number, status: number, length: number): Buffer | null | undefined {
    const ctx = this.#ctx;
    const received = this.engine.shared;
    if (status !== RequestStatus.complete) {
      return this.#drop(
        id,
        ...frameProblem(status, received, ctx.limits.requestBudgetMs),
        received.subarray(0, length),
      );
    }
    // The hot path: a lookup of a registered name. Any name in the table is a valid one, so the full decoding
    // below is needed only for names that are not there (to tell "not registered" from a malformed request).
    const end = received[length - 1] === 0 ? length - 1 : length;
    if (received[2] === PORT_PLEASE2_REQ && end > 3) {
      const found = ctx.registry.lookupKey(received.toString('latin1', 3, end));
      if (found) {
        ctx.stats.lookups++;
        ctx.stats.lookupsFound++;
        if (ctx.log.debugEnabled) this.#logLookup(id, found.name, found);
        return this.#reply(id, found.owner.port2Reply);
      }
    }
    const body = received.subarray(2, length);
    const decoded = decodeRequest(body);
    if (!decoded.ok) return this.#drop(id, 'malformed', decoded.reason, body);
    if (ctx.log.traceEnabled) ctx.log.trace(`request from ${this.peer(id)}: ${hex(body)}`);
    return this.#handle(id, decoded.request);
  }

  #handle(id: number, request: Request): Buffer | null | undefined {
    const ctx = this.#ctx;
    if (isLocalOnly(request.kind) && !this.#isLocal(id))
      return this.#drop(id, 'not_local', `${request.kind} request from a non-local peer`);
    switch (request.kind) {
      case 'port_please2': {
        ctx.stats.lookups++;
        const found = ctx.registry.lookup(request.name);
        if (found) ctx.stats.lookupsFound++;
        if (ctx.log.debugEnabled) this.#logLookup(id, request.name, found);
        return this.#reply(id, found ? found.owner.port2Reply : PORT2_NOT_FOUND);
      }
      case 'alive2':
        return this.#register(id, request);
      case 'names':
        ctx.stats.namesRequests++;
        if (ctx.log.debugEnabled) ctx.log.debug(`NAMES from ${this.peer(id)}`);
        // With -delay_write, each line is a write of its own, as in the C epmd; otherwise one cached buffer.
        return this.#reply(id, ctx.delayWriteMs > 0 ? this.#namesParts() : ctx.namesReply());
      case 'dump':
        if (ctx.log.debugEnabled) ctx.log.debug(`DUMP from ${this.peer(id)}`);
        return this.#reply(id, this.#dumpParts());
      case 'kill': {
        const allowed = ctx.relaxedCommandCheck || ctx.registry.size === 0;
        ctx.log.notice(
          `KILL from ${this.peer(id)}: ${allowed ? 'exiting' : `refused, ${ctx.registry.size} node(s) registered`}`,
          {
            event: 'kill',
            peer: this.peer(id),
          },
        );
        // An accepted KILL exits whether or not its reply could be written, as the C epmd does.
        return allowed ? this.#reply(id, KILL_OK, () => ctx.killRequested()) : this.#reply(id, KILL_REFUSED);
      }
      case 'stop': {
        if (!ctx.relaxedCommandCheck)
          return this.#drop(id, 'stop_not_relaxed', 'STOP_REQ needs -relaxed_command_check');
        const target = ctx.registry.lookup(request.name);
        if (!target) return this.#reply(id, STOP_NOT_FOUND);
        ctx.log.notice(`STOP ${target.displayName} from ${this.peer(id)}: closing its registration`, {
          event: 'node_stopped',
          node: target.displayName,
          port: target.port,
          peer: this.peer(id),
          creation: target.creation,
        });
        target.owner.hangUp(`stopped by ${this.peer(id)}`);
        return this.#reply(id, STOP_OK);
      }
    }
  }

  #logLookup(id: number, name: Buffer, found: NodeRegistration | undefined): void {
    const peer = this.peer(id);
    this.#ctx.log.debug(
      `PORT_PLEASE2 ${printableName(name)} from ${peer}: ${found ? `port ${found.port}` : 'not registered'}`,
      {
        event: 'lookup',
        node: name.toString('utf8'),
        peer,
        ...(found ? { port: found.port, creation: found.creation } : {}),
      },
    );
  }

  /** The C epmd's notion of a local peer: loopback, or a peer whose address is the one it connected to. */
  #isLocal(id: number): boolean {
    const peer = this.peer(id);
    if (isLoopback(peer)) return true;
    return peer !== '' && peer === normaliseAddress(this.engine.local(id));
  }

  #register(id: number, request: Alive2Request): undefined {
    const ctx = this.#ctx;
    const peer = this.peer(id);
    const owner = new RegistrationConnection(this, id, peer, encodePort2Reply(request), null);
    const result = ctx.registry.register(owner.info(request), owner);
    if (!result.ok) {
      // Like the C epmd, answer "result 1" and leave the connection open, with no timeout: the node closes it,
      // and any further byte closes it too. (Only local peers get here; --max_connections bounds them.)
      ctx.refused('registration', peer, `ALIVE2 ${printableName(request.name)} refused: ${result.reason}`, undefined, {
        event: 'registration_refused',
        node: request.name.toString('utf8'),
        port: request.port,
        peer,
      });
      this.#kept.set(id, null);
      this.#write(id, encodeAlive2Reply(1, 99, request.highestVersion), true);
      return undefined;
    }
    const registration = result.registration;
    owner.registration = registration;
    this.#kept.set(id, owner);
    ctx.stats.registrations++;
    ctx.registrationChanged(registration, 'registered', `from ${peer}`);
    this.#write(id, encodeAlive2Reply(0, registration.creation, request.highestVersion), true);
    return undefined;
  }

  /** Takes over a registration's connection from an earlier process. False (fd closed) if its name is taken. */
  restore(fd: number, restored: RestoredRegistration, dup: boolean): boolean {
    const ctx = this.#ctx;
    const id = this.engine.adopt(fd, true, dup);
    const owner = new RegistrationConnection(this, id, restored.peer, encodePort2Reply(restored.info), restored.fdName);
    const result = ctx.registry.restore({
      ...owner.info(restored.info),
      creation: restored.creation,
      displayName: restored.info.name.toString('utf8'),
      registeredAt: restored.registeredAt,
      owner,
    });
    if (!result.ok) {
      this.engine.close(id, CloseHow.plain);
      return false;
    }
    owner.registration = result.registration;
    this.#kept.set(id, owner);
    ctx.registrationChanged(result.registration, 'restored', `from ${restored.peer}`);
    return true;
  }

  /** Something happened on a connection the engine has already closed (or on the listening side). */
  event(id: number, kind: number, detail: number, peer: string | undefined): void {
    const ctx = this.#ctx;
    switch (kind) {
      case EngineEvent.eof:
      case EngineEvent.data:
      case EngineEvent.error: {
        if (kind === EngineEvent.error && ctx.log.debugEnabled) ctx.log.debug(`connection ${id}: ${errnoName(detail)}`);
        const owner = this.#kept.get(id);
        if (owner === undefined) return;
        this.#kept.delete(id);
        // The C epmd unregisters a node that sends anything after ALIVE2_REQ.
        if (owner)
          this.end(owner, kind === EngineEvent.data ? `node sent ${detail} unexpected byte(s)` : 'connection closed');
        return;
      }
      case EngineEvent.accepted:
        setTimeout(() => this.engine.closed || this.engine.resume(id), ctx.delayAcceptMs);
        return;
      case EngineEvent.limitTotal:
        ctx.stats.limitHits++;
        return ctx.refused(
          'connection_limit',
          normaliseAddress(peer),
          `connection limit (${ctx.limits.maxConnections}) reached`,
        );
      case EngineEvent.limitPeer:
        ctx.stats.limitHits++;
        return ctx.refused(
          'peer_limit',
          normaliseAddress(peer),
          `per-peer connection limit (${ctx.limits.maxConnectionsPerPeer}) reached`,
        );
      case EngineEvent.acceptPaused:
        return ctx.acceptTrouble(
          `cannot accept connections (${errnoName(detail)}): pausing accepts, connections wait in the backlog`,
        );
      case EngineEvent.acceptError:
        return ctx.acceptTrouble(`accept failed: ${errnoName(detail)}`);
    }
  }

  /** Ends a registration (its connection is closed by the caller or already by the engine). */
  end(owner: RegistrationConnection, why: string): void {
    const ctx = this.#ctx;
    const ended = owner.registration;
    owner.registration = null;
    this.#kept.delete(owner.id);
    if (ended && ctx.registry.unregister(ended)) {
      ctx.stats.unregistrations++;
      ctx.registrationChanged(ended, 'unregistered', why);
    }
  }

  /** Stops tracking a registration's connection without ending the registration. */
  forget(owner: RegistrationConnection): void {
    owner.registration = null;
    this.#kept.delete(owner.id);
  }

  /**
   * The idle sweep: the C epmd's packet-timeout rule (timeouts.ts), applied to what the engine reports. Run every
   * sweepIntervalSeconds(); connections whose reply is pending, and registrations, are never reported.
   */
  sweep(): void {
    const ctx = this.#ctx;
    const timeout = ctx.limits.packetTimeoutSeconds;
    const { nowMs, connections } = this.engine.watched();
    // The engine's clock is monotonic; the rule counts the whole seconds of the wall clock as it was at start.
    const wallNow = wallClockMonotonic();
    const toWall = wallNow - nowMs;
    const now = wholeSeconds(wallNow);
    for (const c of connections) {
      if (!connectionTimedOut(c.phase, wholeSeconds(c.lastActivityMs + toWall), timeout, now)) continue;
      const peer = this.peer(c.id);
      const idle = `idle for more than ${timeout} s`;
      if (c.phase === 'reading') {
        const received = this.engine.pending(c.id);
        this.engine.close(c.id, CloseHow.plain);
        ctx.refused(
          'timeout',
          peer,
          `no complete request, ${idle}`,
          received > 0 ? this.engine.shared.subarray(0, received) : undefined,
        );
      } else {
        this.engine.close(c.id, CloseHow.plain);
        ctx.refused('unread_reply', peer, `reply not read, ${idle} (${c.bytes} bytes unsent)`);
      }
    }
  }

  /** NAMES as the C epmd writes it: the port, then one write per node. */
  #namesParts(): Buffer[] {
    const ctx = this.#ctx;
    const parts = [encodePortHeader(ctx.epmdPort)];
    for (const node of ctx.registry.newestFirst()) parts.push(encodeNamesLine(node));
    return parts;
  }

  /** DUMP as the C epmd writes it: the port, then one write per node, live ones first. */
  #dumpParts(): Buffer[] {
    const ctx = this.#ctx;
    const parts = [encodePortHeader(ctx.epmdPort)];
    for (const node of ctx.registry.newestFirst()) parts.push(encodeDumpActiveLine(node, node.owner.fd));
    for (const old of ctx.registry.unused()) parts.push(encodeDumpUnusedLine(old, -1));
    return parts;
  }

  /** Writes a reply and keeps the connection (an ALIVE2 answer), after -delay_write if set. */
  #write(id: number, reply: Buffer, keep: boolean): void {
    const send = () => {
      if (this.engine.send(id, reply, keep ? AfterWrite.keep : AfterWrite.close) < 0 && keep) this.#lost(id);
    };
    if (this.#ctx.delayWriteMs > 0) setTimeout(send, this.#ctx.delayWriteMs);
    else send();
  }

  /** A kept connection failed before its reply went out: the registration ends. */
  #lost(id: number): void {
    const owner = this.#kept.get(id);
    this.#kept.delete(id);
    if (owner) this.end(owner, 'connection closed');
  }

  /**
   * The reply, to be written before the connection closes: now (returned to the engine), or with -delay_write
   * one part at a time, each after the delay, as the C epmd sleeps before each write(). Meanwhile the request is
   * complete and its reply pending, so the connection is not idle. `then` runs once the reply has been written,
   * or could not be (the peer reset the connection).
   */
  #reply(id: number, reply: Buffer | readonly Buffer[], then?: () => void): Buffer | undefined {
    const delay = this.#ctx.delayWriteMs;
    if (delay <= 0 && !then) return Buffer.isBuffer(reply) ? reply : Buffer.concat(reply);
    const parts = Buffer.isBuffer(reply) ? [reply] : delay > 0 ? reply : [Buffer.concat(reply)];
    const next = (i: number): void => {
      const last = i === parts.length - 1;
      const sent = this.engine.send(id, parts[i]!, last ? AfterWrite.close : AfterWrite.more);
      if (last || sent < 0) return then?.();
      setTimeout(() => next(i + 1), delay);
    };
    if (delay > 0) setTimeout(() => next(0), delay);
    else next(0);
    return undefined;
  }

  #drop(id: number, reason: RefusalReason, why: string, packet?: Buffer): null {
    this.#ctx.refused(reason, this.peer(id), why, packet);
    return null;
  }
}

function frameProblem(status: number, received: Buffer, budgetMs: number): [RefusalReason, string] {
  if (status === RequestStatus.zeroLength) return ['malformed', 'zero-length request'];
  if (status === RequestStatus.tooLong)
    return ['too_large', `request length ${received.readUInt16BE(0)} exceeds ${MAX_BODY_BYTES}`];
  if (status === RequestStatus.budget) return ['budget', `request not complete within ${budgetMs} ms`];
  return ['malformed', 'bytes after the request'];
}

/**
 * The clock of the timing rules, in milliseconds: the wall clock as it was when the process started, advanced
 * monotonically since. Its whole seconds fall where the C epmd's time(NULL) seconds fall, so that the same client
 * sees the same outcome from both; unlike time(NULL), a step of the system clock does not move it.
 */
function wallClockMonotonic(): number {
  return performance.timeOrigin + performance.now();
}

/** EMFILE for 24: the name of a (positive) errno, for log lines. */
function errnoName(errno: number): string {
  return getSystemErrorMap().get(-errno)?.[0] ?? `errno ${errno}`;
}
