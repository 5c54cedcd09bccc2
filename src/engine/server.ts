/**
 * The EPMD server: listening sockets, the connection table, limits, counters and shutdown.
 * What happens on each connection is in connection.ts.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { encodeNamesLine, encodePortHeader } from '../protocol/codec';
import { hex, printableName, type LogFields, type Logger } from '../daemon/log';
import { DEFAULT_LIMITS, isLoopback, normaliseAddress, type Limits } from '../policy/policy';
import { Registry } from '../registry/registry';
import { recordOf, type RegistrationRecord } from '../registry/registration-record';
import { sweepIntervalSeconds } from '../policy/timeouts';
import { emptyRefusalCounts, refusalReason } from '../daemon/refusals';
import { loadAddon } from '../native/addon';
import { socketFd } from './socket-fd';
import {
  serveConnection,
  type ConnectionContext,
  type IdleWatched,
  type NodeConnection,
  type NodeRegistration,
  type RestoredRegistration,
  type ServerStats,
} from '../policy/connection';

/** Where to listen: an address to bind, or a socket systemd passed in. */
export type ListenTarget =
  | { readonly kind: 'address'; readonly host: string; readonly port: number }
  | { readonly kind: 'fd'; readonly fd: number; readonly name: string }
  /** A listening socket handed over by the previous process in a live upgrade. */
  | { readonly kind: 'inherited'; readonly server: Server; readonly source: string };

/** A socket being served, as reported in logs and `sdepmd status`. */
export interface ServedSocket {
  readonly target: ListenTarget;
  readonly address: string;
  readonly port: number;
  /** The socket's listen backlog as the kernel reports it, or null when it cannot be read. */
  readonly backlog: number | null;
}

export interface ServerOptions {
  readonly relaxedCommandCheck: boolean;
  readonly delayAcceptMs: number;
  readonly delayWriteMs: number;
  readonly limits: Limits;
  /** The port NAMES and DUMP replies report; 0 means "the first socket's port". */
  readonly epmdPort: number;
  /**
   * listen() backlog for the sockets sdepmd binds itself, and for passed sockets whose own backlog cannot be read
   * (a passed socket keeps the backlog it has: systemd's Backlog=).
   */
  readonly backlog: number;
  readonly creationSeed?: number;
  /** Unregistered names DUMP remembers (the C epmd: 1,000, or 5 with -d). */
  readonly maxUnusedNames?: number;
}

export const DEFAULT_SERVER_OPTIONS: ServerOptions = {
  relaxedCommandCheck: false,
  delayAcceptMs: 0,
  delayWriteMs: 0,
  limits: DEFAULT_LIMITS,
  epmdPort: 0,
  backlog: 4096,
};

export interface ServerEvents {
  /**
   * A node registered (called before the node is answered), was restored from an earlier process, or
   * unregistered.
   */
  change?(registration: NodeRegistration, event: 'registered' | 'unregistered' | 'restored'): void;
  /** An accepted KILL_REQ has been answered: the daemon should exit. */
  kill?(): void;
}

/**
 * The clock of the timing rules, in milliseconds: the wall clock as it was when the process started, advanced
 * monotonically since. Its whole seconds fall where the C epmd's time(NULL) seconds fall, so that the same client
 * sees the same outcome from both; unlike time(NULL), a step of the system clock does not move it.
 */
function wallClockMonotonic(): number {
  return performance.timeOrigin + performance.now();
}

/** At most this many refusal lines a second reach the log; the rest are counted and summarised. */
const REFUSALS_LOGGED_PER_SECOND = 20;

export class EpmdServer {
  readonly registry: Registry<NodeConnection>;
  readonly stats: ServerStats = {
    connections: 0,
    lookups: 0,
    lookupsFound: 0,
    namesRequests: 0,
    registrations: 0,
    unregistrations: 0,
    refused: 0,
    limitHits: 0,
  };
  /** stats.refused, by reason. */
  readonly refusals = emptyRefusalCounts();
  readonly startedAt = Date.now();
  readonly #options: ServerOptions;
  readonly #log: Logger;
  readonly #events: ServerEvents;
  readonly #servers: Server[] = [];
  readonly #served: ServedSocket[] = [];
  readonly #open = new Set<Socket>();
  readonly #perPeer = new Map<string, number>();
  readonly #registrationSockets = new Set<Socket>();
  readonly #context: ConnectionContext;
  /** Connections the idle sweep looks at: those still sending a request, or slow to read their reply. */
  readonly #watched = new Set<IdleWatched>();
  #sweepTimer: NodeJS.Timeout | null = null;
  #namesCache: { version: number; reply: Buffer } | null = null;
  #refusalWindow = { second: 0, logged: 0, suppressed: 0 };
  #closing = false;

  constructor(options: Partial<ServerOptions>, log: Logger, events: ServerEvents = {}) {
    this.#options = { ...DEFAULT_SERVER_OPTIONS, ...options };
    this.#log = log;
    this.#events = events;
    this.registry = new Registry<NodeConnection>({
      maxRegistrations: this.#options.limits.maxRegistrations,
      creationSeed: this.#options.creationSeed,
      maxUnused: this.#options.maxUnusedNames,
    });
    const server = this;
    this.#context = {
      registry: this.registry,
      log,
      stats: this.stats,
      relaxedCommandCheck: this.#options.relaxedCommandCheck,
      packetTimeoutSeconds: this.#options.limits.packetTimeoutSeconds,
      requestBudgetMs: this.#options.limits.requestBudgetMs,
      delayWriteMs: this.#options.delayWriteMs,
      now: wallClockMonotonic,
      watch: (connection) => void this.#watched.add(connection),
      unwatch: (connection) => void this.#watched.delete(connection),
      get epmdPort() {
        return server.epmdPort;
      },
      namesReply: () => this.#namesReply(),
      registrationChanged: (registration, event, why) => this.#registrationChanged(registration, event, why),
      killRequested: () => this.#events.kill?.(),
      refused: (peer, why, packet, fields) => this.#refused(peer, why, packet, fields),
    };
  }

  /** The port NAMES and DUMP replies report. */
  get epmdPort(): number {
    return this.#options.epmdPort || this.#served[0]?.port || 0;
  }

  get served(): readonly ServedSocket[] {
    return this.#served;
  }

  get openConnections(): number {
    return this.#open.size;
  }

  /** Starts serving every target; resolves once all of them accept connections. */
  async listen(targets: readonly ListenTarget[]): Promise<readonly ServedSocket[]> {
    this.#startSweep();
    for (const target of targets) {
      if (target.kind === 'inherited') {
        target.server.removeAllListeners('connection');
        target.server.on('connection', (socket: Socket) => this.accept(socket));
        this.#addServed(target.server, target);
        continue;
      }
      // No TCP_NODELAY: every reply is one write followed by close, so Nagle never delays it, and it saves a
      // setsockopt() per connection.
      const server = createServer((socket) => this.accept(socket));
      await new Promise<void>((resolve, reject) => {
        const fail = (err: Error) => reject(new Error(`cannot listen on ${describeTarget(target)}: ${err.message}`));
        server.once('error', fail);
        const done = () => {
          server.off('error', fail);
          // Only once listening: a failure to listen is the caller's to report (another epmd is no error).
          server.on('error', (err) => this.#log.error(`listening socket ${describeTarget(target)}: ${err.message}`));
          resolve();
        };
        // Node listens again on a passed socket, and ignores `backlog` in the options for an fd: given as the second
        // argument, the socket's own backlog (systemd's Backlog=) is what it listens with, so nothing changes.
        if (target.kind === 'fd') server.listen({ fd: target.fd }, listenBacklogOf(target.fd) ?? this.#options.backlog, done);
        else {
          const ipv6Only = target.host.includes(':');
          server.listen({ host: target.host, port: target.port, backlog: this.#options.backlog, ipv6Only }, done);
        }
      });
      this.#addServed(server, target);
    }
    return this.#served;
  }

  /**
   * One timer for every connection, as the C epmd checks its connections when its select() loop wakes: every
   * second when the packet timeout is under 5 s, else every 5 s (timeouts.ts).
   */
  #startSweep(): void {
    if (this.#sweepTimer) return;
    const everyMs = sweepIntervalSeconds(this.#options.limits.packetTimeoutSeconds) * 1000;
    this.#sweepTimer = setInterval(() => {
      const now = wallClockMonotonic();
      for (const connection of this.#watched) connection.sweep(now);
    }, everyMs);
    this.#sweepTimer.unref();
  }

  #addServed(server: Server, target: ListenTarget): void {
    const address = server.address();
    const backlog = listenBacklogOf(socketFd(server));
    const served: ServedSocket =
      address && typeof address === 'object'
        ? { target, address: address.address, port: address.port, backlog }
        : { target, address: String(address), port: 0, backlog };
    this.#servers.push(server);
    this.#served.push(served);
  }

  /**
   * Live upgrade: stops accepting (the listening sockets stay open in the next process), then waits up to
   * `drainMs` for requests in flight to be answered, and closes what is left of them.
   */
  async stopAccepting(drainMs: number): Promise<void> {
    this.#closing = true;
    // close() stops listening at once; its callback would wait for every connection, registrations included.
    for (const s of this.#servers) s.close();
    for (const socket of await this.#drain(drainMs)) socket.destroy();
  }

  /** Waits up to `drainMs` for connections other than registrations to finish; returns those still open. */
  async #drain(drainMs: number): Promise<Socket[]> {
    // Answered connections (end() called) are done; registrations are handled by the caller.
    const busy = () => [...this.#open].filter((s) => !this.#isRegistration(s) && !s.destroyed && !s.writableEnded);
    const deadline = Date.now() + drainMs;
    while (busy().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    return busy();
  }

  /** Live upgrade: lets go of every registration's connection, for the next process to adopt. */
  releaseRegistrations(): { socket: Socket; registration: RegistrationRecord }[] {
    return this.registry.newestFirst().map((r) => ({ registration: recordOf(r), socket: r.owner.detach() }));
  }

  #isRegistration(socket: Socket): boolean {
    return this.#registrationSockets.has(socket);
  }

  /** The listening servers, for a live upgrade to pass on. */
  get listeners(): readonly Server[] {
    return this.#servers;
  }

  /**
   * Stops accepting, then closes every connection.
   * - `hang-up`: every registration ends and its node sees the connection close (KILL_REQ, or no fd store).
   * - `preserve`: registrations are let go without a word: systemd's fd store keeps their connections open for the
   *   next process, which finds them in the journal (SIGTERM under systemd with the fd store).
   */
  async close(mode: 'hang-up' | 'preserve' = 'hang-up', drainMs = 1000): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    const closed = this.#servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    // Requests already accepted are answered first: ending them now would leave their clients with no reply.
    await this.#drain(drainMs);
    for (const registration of this.registry.newestFirst()) {
      if (mode === 'hang-up') registration.owner.hangUp('epmd is shutting down');
      else registration.owner.detach().destroy();
    }
    for (const socket of this.#open) if (!socket.destroyed && !socket.pending) socket.destroySoon();
    await Promise.all(closed);
    for (const socket of this.#open) socket.destroy();
    if (this.#sweepTimer) clearInterval(this.#sweepTimer);
    this.#sweepTimer = null;
  }

  /**
   * Adopts a registration connection carried over from an earlier process. Returns false (and closes the socket)
   * when its name is already registered.
   */
  adopt(socket: Socket, restored: RestoredRegistration): boolean {
    this.#track(socket, this.#options.limits.maxConnectionsPerPeer > 0 ? restored.peer : null);
    if (serveConnection(this.#context, socket, restored)) return true;
    socket.destroy();
    return false;
  }

  /** Serves a freshly accepted connection. */
  accept(socket: Socket): void {
    const limits = this.#options.limits;
    if (this.#closing) {
      socket.destroy();
      return;
    }
    if (limits.maxConnections > 0 && this.#open.size >= limits.maxConnections) {
      return this.#limitHit(socket, normaliseAddress(socket.remoteAddress), `connection limit (${limits.maxConnections}) reached`);
    }
    // Per-peer counting costs a getpeername() per connection: only when the limit is on.
    let peer: string | null = null;
    if (limits.maxConnectionsPerPeer > 0) {
      peer = normaliseAddress(socket.remoteAddress);
      if (!isLoopback(peer) && (this.#perPeer.get(peer) ?? 0) >= limits.maxConnectionsPerPeer) {
        return this.#limitHit(socket, peer, `per-peer connection limit (${limits.maxConnectionsPerPeer}) reached`);
      }
    }
    this.#track(socket, peer);
    if (this.#options.delayAcceptMs > 0) {
      socket.pause();
      setTimeout(() => {
        socket.resume();
        serveConnection(this.#context, socket);
      }, this.#options.delayAcceptMs);
    } else {
      serveConnection(this.#context, socket);
    }
  }

  #track(socket: Socket, peer: string | null): void {
    this.#open.add(socket);
    if (peer === null) {
      socket.once('close', () => this.#open.delete(socket));
      return;
    }
    this.#perPeer.set(peer, (this.#perPeer.get(peer) ?? 0) + 1);
    socket.once('close', () => {
      this.#open.delete(socket);
      const left = (this.#perPeer.get(peer) ?? 1) - 1;
      if (left > 0) this.#perPeer.set(peer, left);
      else this.#perPeer.delete(peer);
    });
  }

  #limitHit(socket: Socket, peer: string, why: string): void {
    this.stats.limitHits++;
    this.#refused(peer, why);
    socket.on('error', () => {});
    socket.destroy();
  }

  #namesReply(): Buffer {
    const version = this.registry.version;
    if (this.#namesCache?.version !== version) {
      const parts = [encodePortHeader(this.epmdPort)];
      for (const node of this.registry.newestFirst()) parts.push(encodeNamesLine(node));
      this.#namesCache = { version, reply: Buffer.concat(parts) };
    }
    return this.#namesCache.reply;
  }

  #registrationChanged(registration: NodeRegistration, event: 'registered' | 'unregistered' | 'restored', why: string): void {
    if (event === 'unregistered') this.#registrationSockets.delete(registration.owner.socket);
    else this.#registrationSockets.add(registration.owner.socket);
    const r = registration;
    const type = r.nodeType === 72 ? 'hidden' : r.nodeType === 77 ? 'normal' : `type ${r.nodeType}`;
    this.#log.info(
      `${event} ${printableName(r.name)} port ${r.port} (${type}, versions ${r.lowestVersion}-${r.highestVersion}, ` +
        `creation ${r.creation}) ${why}; ${this.registry.size} node(s) registered`,
      { event, node: r.displayName, port: r.port, peer: r.owner.peer, creation: r.creation },
    );
    this.#events.change?.(registration, event);
  }

  #refused(peer: string, why: string, packet?: Buffer, fields?: LogFields): void {
    this.stats.refused++;
    this.refusals[refusalReason(why)]++;
    const log = this.#log;
    if (log.debugEnabled) {
      log.debug(`refused ${peer}: ${why}${packet ? ` [${hex(packet)}]` : ''}`, fields ?? { event: 'refused', peer });
      return;
    }
    const second = Math.floor(Date.now() / 1000);
    const window = this.#refusalWindow;
    if (window.second !== second) {
      if (window.suppressed > 0) log.warning(`${window.suppressed} more refusal(s) not logged`);
      this.#refusalWindow = { second, logged: 0, suppressed: 0 };
    }
    if (this.#refusalWindow.logged++ < REFUSALS_LOGGED_PER_SECOND) log.warning(`refused ${peer}: ${why}`, fields ?? { event: 'refused', peer });
    else this.#refusalWindow.suppressed++;
  }
}

/** The backlog a listening socket has, or null when it cannot be read (no addon, not a listening TCP socket). */
export function listenBacklogOf(fd: number): number | null {
  if (fd < 0) return null;
  const addon = loadAddon();
  if (addon instanceof Error) return null;
  const backlog = addon.listenBacklog(fd);
  return backlog > 0 ? backlog : null;
}

export function describeTarget(target: ListenTarget): string {
  if (target.kind === 'fd') return `fd ${target.fd}${target.name ? ` (${target.name})` : ''}`;
  if (target.kind === 'inherited') return `inherited ${target.source}`;
  return target.host.includes(':') ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
}
