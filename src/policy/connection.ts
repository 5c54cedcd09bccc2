/**
 * One EPMD connection, from the first byte to the reply. Read top to bottom, this file is the whole life of a
 * packet:
 *
 *   socket bytes ─► frameRequest ─► decodeRequest ─► policy (local-only?) ─► registry ─► encode reply ─► socket.end
 *
 * A connection carries exactly one request, as with the C epmd. Every request but ALIVE2_REQ is answered and the
 * connection closed; a successful ALIVE2_REQ keeps the connection open, and the registration lives exactly as long
 * as it does: EOF, an error or any further byte from the node unregisters it.
 */
import type { Socket } from 'node:net';
import {
  decodeRequest,
  encodeAlive2Reply,
  encodeDumpActiveLine,
  encodeDumpUnusedLine,
  encodeNamesLine,
  encodePortHeader,
  encodePort2Reply,
  frameRequest,
  KILL_OK,
  KILL_REFUSED,
  PORT2_NOT_FOUND,
  STOP_NOT_FOUND,
  STOP_OK,
  type Alive2Request,
  type NodeInfo,
  type Request,
} from '../protocol/codec';
import { hex, printableName, type LogFields, type Logger } from '../daemon/log';
import { isLocalOnly, isLocalPeer, normaliseAddress } from './policy';
import type { Registration, Registry } from '../registry/registry';
import { INBUF_SIZE } from '../protocol/constants';
import { socketFd } from '../engine/socket-fd';
import { connectionTimedOut, requestBudgetExceeded, wholeSeconds, type ConnectionPhase } from './timeouts';

/** What the registry holds for each node: the connection that keeps it registered. */
export interface NodeConnection {
  readonly socket: Socket;
  /** The peer's address, normalised. */
  readonly peer: string;
  /** PORT2_RESP for this node, built once at registration. */
  readonly port2Reply: Buffer;
  /** The connection's name in systemd's fd store, when it is kept there. */
  fdName: string | null;
  /** Ends the registration at once and hangs up on the node (STOP_REQ, KILL_REQ). */
  hangUp(why: string): void;
  /**
   * Lets go of the connection without ending the registration (shutdown with the fd store, or a live upgrade):
   * stops reading, and returns the socket for the caller to close or pass on.
   */
  detach(): Socket;
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

/** A connection the server's idle sweep looks at (see timeouts.ts for the rules). */
export interface IdleWatched {
  /** Applies the timing rules at `nowMs` (the server's clock); closes the connection if it has timed out. */
  sweep(nowMs: number): void;
}

/** What a connection needs from the server around it. */
export interface ConnectionContext {
  readonly registry: Registry<NodeConnection>;
  readonly log: Logger;
  readonly stats: ServerStats;
  readonly relaxedCommandCheck: boolean;
  readonly packetTimeoutSeconds: number;
  readonly requestBudgetMs: number;
  readonly delayWriteMs: number;
  /** The clock of the timing rules, in milliseconds (monotonic; see server.ts). */
  now(): number;
  /** Puts a connection under the idle sweep, or takes it off. */
  watch(connection: IdleWatched): void;
  unwatch(connection: IdleWatched): void;
  /** The NAMES reply for the current table (cached by the server). */
  namesReply(): Buffer;
  /** The port NAMES and DUMP replies start with. */
  readonly epmdPort: number;
  /** A node registered (before it is answered: this is where the fd store keeps it) or unregistered. */
  registrationChanged(registration: NodeRegistration, event: 'registered' | 'unregistered' | 'restored', why: string): void;
  /** Called once the reply to an accepted KILL_REQ has been written, or has failed to be: the daemon must exit. */
  killRequested(): void;
  /** Rate-limited warning for refusals, so that a flood of bad peers cannot flood the journal. */
  refused(peer: string, why: string, packet?: Buffer, fields?: LogFields): void;
}

/** A registration carried over from an earlier process (fd store, or a live upgrade). */
export interface RestoredRegistration {
  readonly info: NodeInfo;
  readonly creation: number;
  readonly registeredAt: number;
  readonly fdName: string | null;
  readonly peer: string;
}

/**
 * Takes over a socket: a fresh connection (which will send one request), or, with `restored`, a node's
 * registration connection adopted from an earlier process. Returns false if a restored registration clashes
 * with one already in the table (the caller then closes the socket).
 */
export function serveConnection(ctx: ConnectionContext, socket: Socket, restored?: RestoredRegistration): boolean {
  // The peer's address costs a getpeername() call: ask for it only when a log line or a registration needs it.
  let peerAddress = restored?.peer;
  const peer = () => (peerAddress ??= normaliseAddress(socket.remoteAddress));
  let received: Buffer | null = null;
  let registration: NodeRegistration | null = null;
  let answered = false;
  let acceptedAt = 0;
  let phase: ConnectionPhase = 'reading';
  let lastActivitySeconds = 0;
  const watched: IdleWatched = { sweep };

  if (restored) {
    const owner = nodeConnection(encodePort2Reply(restored.info), restored.fdName);
    const result = ctx.registry.restore({
      ...restored.info,
      creation: restored.creation,
      displayName: restored.info.name.toString('utf8'),
      registeredAt: restored.registeredAt,
      owner,
    });
    if (!result.ok) return false;
    registration = result.registration;
    answered = true;
    phase = 'registered';
    ctx.registrationChanged(registration, 'restored', `from ${peer()}`);
  } else {
    ctx.stats.connections++;
    // Whether the peer is local is known from the accept on, as in the C epmd (which asks at accept): Node keeps
    // the address once asked, and a peer that resets the connection right after its request (KILL_REQ, say)
    // has none to ask for any more.
    void socket.remoteAddress;
    acceptedAt = ctx.now();
    lastActivitySeconds = wholeSeconds(acceptedAt);
    ctx.watch(watched);
  }

  const onError = (err: Error) => {
    if (ctx.log.debugEnabled) ctx.log.debug(`connection from ${peer()}: ${err.message}`);
  };
  const onClose = () => {
    ctx.unwatch(watched);
    if (registration) endRegistration('connection closed');
  };
  socket.on('error', onError);
  // EOF needs no handler: with allowHalfOpen off, Node ends and destroys the socket, and 'close' follows.
  socket.on('close', onClose);
  socket.on('data', onData);
  return true;

  function onData(chunk: Buffer): void {
    if (registration) {
      // The C epmd unregisters a node that sends anything after ALIVE2_REQ.
      endRegistration(`node sent ${chunk.length} unexpected byte(s)`);
      socket.destroySoon();
      return;
    }
    if (answered) {
      // One request per connection: anything after it is dropped with the connection.
      socket.destroy();
      return;
    }
    received = received === null ? chunk : Buffer.concat([received, chunk]);
    const frame = frameRequest(received);
    if (frame.status === 'incomplete') {
      const now = ctx.now();
      lastActivitySeconds = wholeSeconds(now);
      if (received.length >= INBUF_SIZE) dropConnection('request exceeds the input buffer', received);
      else if (requestBudgetExceeded(acceptedAt, ctx.requestBudgetMs, now)) {
        dropConnection(`request not complete within ${ctx.requestBudgetMs} ms`, received);
      }
      return;
    }
    if (frame.status === 'invalid') return dropConnection(frame.reason, received);
    if (frame.excess > 0) return dropConnection('bytes after the request', received);
    answered = true;
    received = null; // a registration's connection lives long: do not keep its request buffer
    const decoded = decodeRequest(frame.body);
    if (!decoded.ok) return dropConnection(decoded.reason, frame.body);
    if (ctx.log.traceEnabled) ctx.log.trace(`request from ${peer()}: ${hex(frame.body)}`);
    handleRequest(decoded.request);
  }

  function handleRequest(request: Request): void {
    if (isLocalOnly(request.kind) && !isLocalPeer(socket.remoteAddress, socket.localAddress)) {
      return dropConnection(`${request.kind} request from a non-local peer`);
    }
    switch (request.kind) {
      case 'port_please2': {
        ctx.stats.lookups++;
        const found = ctx.registry.lookup(request.name);
        if (found) ctx.stats.lookupsFound++;
        if (ctx.log.debugEnabled) {
          ctx.log.debug(`PORT_PLEASE2 ${printableName(request.name)} from ${peer()}: ${found ? `port ${found.port}` : 'not registered'}`, {
            event: 'lookup',
            node: request.name.toString('utf8'),
            peer: peer(),
            ...(found ? { port: found.port, creation: found.creation } : {}),
          });
        }
        return replyAndClose(found ? found.owner.port2Reply : PORT2_NOT_FOUND);
      }
      case 'alive2':
        return register(request);
      case 'names':
        ctx.stats.namesRequests++;
        if (ctx.log.debugEnabled) ctx.log.debug(`NAMES from ${peer()}`);
        // With -delay_write, each line is a write of its own, as in the C epmd; otherwise one cached buffer.
        return replyAndClose(ctx.delayWriteMs > 0 ? namesParts() : ctx.namesReply());
      case 'dump':
        if (ctx.log.debugEnabled) ctx.log.debug(`DUMP from ${peer()}`);
        return replyAndClose(dumpParts());
      case 'kill': {
        const allowed = ctx.relaxedCommandCheck || ctx.registry.size === 0;
        ctx.log.notice(`KILL from ${peer()}: ${allowed ? 'exiting' : `refused, ${ctx.registry.size} node(s) registered`}`, { event: 'kill', peer: peer() });
        return replyAndClose(allowed ? KILL_OK : KILL_REFUSED, allowed ? () => ctx.killRequested() : undefined);
      }
      case 'stop': {
        if (!ctx.relaxedCommandCheck) return dropConnection('STOP_REQ needs -relaxed_command_check');
        const target = ctx.registry.lookup(request.name);
        if (!target) return replyAndClose(STOP_NOT_FOUND);
        ctx.log.notice(`STOP ${target.displayName} from ${peer()}: closing its registration`, {
          event: 'node_stopped',
          node: target.displayName,
          port: target.port,
          peer: peer(),
          creation: target.creation,
        });
        target.owner.hangUp(`stopped by ${peer()}`);
        return replyAndClose(STOP_OK);
      }
    }
  }

  function register(request: Alive2Request): void {
    // Never timed out from here on, whether the registration succeeds or not.
    phase = 'registered';
    ctx.unwatch(watched);
    const result = ctx.registry.register(request, nodeConnection(encodePort2Reply(request), null));
    if (!result.ok) {
      // Like the C epmd, answer "result 1" and leave the connection open, with no timeout: the node closes it,
      // and any further byte closes it too. (Only local peers get here; --max_connections bounds them.)
      ctx.refused(peer(), `ALIVE2 ${printableName(request.name)} refused: ${result.reason}`, undefined, {
        event: 'registration_refused',
        node: request.name.toString('utf8'),
        port: request.port,
        peer: peer(),
      });
      return write(encodeAlive2Reply(1, 99, request.highestVersion));
    }
    registration = result.registration;
    ctx.stats.registrations++;
    ctx.registrationChanged(registration, 'registered', `from ${peer()}`);
    write(encodeAlive2Reply(0, registration.creation, request.highestVersion));
  }

  function nodeConnection(port2Reply: Buffer, fdName: string | null): NodeConnection {
    return {
      socket,
      peer: peer(),
      port2Reply,
      fdName,
      hangUp(why) {
        endRegistration(why);
        // Shut down, not just close: systemd's fd store may hold a copy of this connection.
        socket.destroySoon();
      },
      detach() {
        registration = null;
        socket.off('data', onData);
        socket.off('close', onClose);
        socket.pause();
        return socket;
      },
    };
  }

  function endRegistration(why: string): void {
    const ended = registration;
    registration = null;
    if (ended && ctx.registry.unregister(ended)) {
      ctx.stats.unregistrations++;
      ctx.registrationChanged(ended, 'unregistered', why);
    }
  }

  /** NAMES as the C epmd writes it: the port, then one write per node. */
  function namesParts(): Buffer[] {
    const parts = [encodePortHeader(ctx.epmdPort)];
    for (const node of ctx.registry.newestFirst()) parts.push(encodeNamesLine(node));
    return parts;
  }

  /** DUMP as the C epmd writes it: the port, then one write per node, live ones first. */
  function dumpParts(): Buffer[] {
    const parts = [encodePortHeader(ctx.epmdPort)];
    for (const node of ctx.registry.newestFirst()) parts.push(encodeDumpActiveLine(node, socketFd(node.owner.socket)));
    for (const old of ctx.registry.unused()) parts.push(encodeDumpUnusedLine(old, -1));
    return parts;
  }

  /** The ALIVE2 reply, on a connection that stays open. */
  function write(reply: Buffer): void {
    if (ctx.delayWriteMs > 0) setTimeout(() => socket.destroyed || socket.write(reply), ctx.delayWriteMs);
    else socket.write(reply);
  }

  /**
   * Writes a reply and closes the connection. With -delay_write, each part waits that long before its write, as
   * the C epmd sleeps before each write(); meanwhile the request is complete and its reply pending, so the
   * connection is not idle. `then` runs once the reply has been written, or could not be (the peer reset the
   * connection): an accepted KILL exits either way.
   */
  function replyAndClose(reply: Buffer | readonly Buffer[], then?: () => void): void {
    if (ctx.delayWriteMs <= 0) return finish(Buffer.isBuffer(reply) ? reply : Buffer.concat(reply), then);
    phase = 'replying';
    // Read nothing more meanwhile, as the C epmd (asleep in its write) reads nothing: a client that half-closes
    // or sends more while it waits still gets its reply (Node would otherwise end the socket on the client's EOF).
    socket.pause();
    socket.allowHalfOpen = true;
    const parts = Buffer.isBuffer(reply) ? [reply] : reply;
    const next = (i: number) => {
      setTimeout(() => {
        if (socket.destroyed) return then?.();
        if (i === parts.length - 1) return finish(parts[i]!, then);
        socket.write(parts[i]!);
        next(i + 1);
      }, ctx.delayWriteMs);
    };
    next(0);
  }

  function finish(reply: Buffer, then?: () => void): void {
    if (!socket.destroyed) {
      socket.write(reply);
      // The whole reply is in the kernel (the usual case, for replies this small): close now, and the kernel
      // sends the FIN right behind it. A graceful end() would cost another trip round the event loop per request.
      if (socket.writableLength === 0) socket.destroy();
      else {
        // The peer is slow to read: the idle rule applies again, counted from now.
        phase = 'draining';
        lastActivitySeconds = wholeSeconds(ctx.now());
        socket.end();
      }
    }
    then?.();
  }

  /** The idle sweep: the C epmd's packet-timeout rule (timeouts.ts). */
  function sweep(nowMs: number): void {
    if (!connectionTimedOut(phase, lastActivitySeconds, ctx.packetTimeoutSeconds, wholeSeconds(nowMs))) return;
    const idle = `idle for more than ${ctx.packetTimeoutSeconds} s`;
    if (phase === 'reading') ctx.refused(peer(), `no complete request, ${idle}`, received ?? undefined);
    else if (socket.writableLength > 0) ctx.refused(peer(), `reply not read, ${idle} (${socket.writableLength} bytes unsent)`);
    socket.destroy();
  }

  function dropConnection(why: string, packet?: Buffer): void {
    answered = true;
    ctx.refused(peer(), why, packet);
    socket.destroy();
  }
}
