/**
 * The EPMD server: listening sockets, the connection table, limits, counters and shutdown, over the native I/O
 * engine (native-engine.ts), which owns every socket. What happens on each connection is in connection.ts.
 */
import { closeSync } from 'node:fs';
import type { Socket } from 'node:net';
import { encodeNamesLine, encodePortHeader } from '../protocol/codec';
import { nodeTypeName } from '../protocol/constants';
import { hex, printableName, type LogFields, type Logger } from '../daemon/log';
import { DEFAULT_LIMITS, formatEndpoint, type Limits } from '../policy/policy';
import { Registry } from '../registry/registry';
import { recordOf, type RegistrationRecord } from '../registry/registration-record';
import {
  Connections,
  type ConnectionContext,
  type NodeConnection,
  type NodeRegistration,
  type RegistrationEvent,
  type RestoredRegistration,
  type ServerStats,
} from '../policy/connection';
import { NativeEngine } from './native-engine';
import { loadAddon } from '../native/addon';
import { socketFd } from './socket-fd';
import { sweepIntervalSeconds } from '../policy/timeouts';
import { emptyRefusalCounts, type RefusalReason } from '../daemon/refusals';
import { MemoryRelease } from './release-memory';

/** Where to listen: an address to bind, or a socket systemd passed in. */
export type ListenTarget =
  | { readonly kind: 'address'; readonly host: string; readonly port: number }
  | { readonly kind: 'fd'; readonly fd: number; readonly name: string }
  /** A listening socket handed over by the previous process in a live upgrade, as a raw fd. */
  | { readonly kind: 'raw'; readonly fd: number; readonly source: string };

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
   * listen() backlog for the sockets sdepmd binds itself, and for passed sockets that do not listen yet (a passed
   * socket that listens keeps the backlog it has: systemd's Backlog=; the engine does not listen() on it again).
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
  change?(registration: NodeRegistration, event: RegistrationEvent): void;
  /** An accepted KILL_REQ has been answered (or its reply could not be written): the daemon should exit. */
  kill?(): void;
}

/** At most this many refusal lines a second reach the log; the rest are counted and summarised. */
const REFUSALS_LOGGED_PER_SECOND = 20;

/** A listening socket the engine serves. */
interface Listener {
  readonly id: number;
  readonly served: ServedSocket;
}

export class EpmdServer {
  readonly registry: Registry<NodeConnection>;
  readonly stats: ServerStats;
  /** stats.refused, by reason. */
  readonly refusals = emptyRefusalCounts();
  readonly startedAt = Date.now();
  readonly #options: ServerOptions;
  readonly #log: Logger;
  readonly #events: ServerEvents;
  readonly #memory = new MemoryRelease();
  readonly #engine: NativeEngine;
  readonly #connections: Connections;
  readonly #listeners: Listener[] = [];
  readonly #served: ServedSocket[] = [];
  readonly #sweep: NodeJS.Timeout;
  #namesCache: { version: number; reply: Buffer } | null = null;
  #refusalWindow = { second: 0, logged: 0, suppressed: 0 };
  #acceptTroubleAt = 0;
  #connectionsBefore = 0;
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
    const epmdPort = (): number => this.epmdPort;
    // Connections are counted by the engine (JS never sees one that sends no request).
    const connectionCount = {
      get: (): number => this.#connectionsBefore + this.#engine.counters().accepted,
      set: (value: number): void => {
        this.#connectionsBefore = value - this.#engine.counters().accepted;
      },
    };
    this.stats = {
      get connections() {
        return connectionCount.get();
      },
      set connections(value: number) {
        connectionCount.set(value);
      },
      lookups: 0,
      lookupsFound: 0,
      namesRequests: 0,
      registrations: 0,
      unregistrations: 0,
      refused: 0,
      limitHits: 0,
    };
    const limits = this.#options.limits;
    const context: ConnectionContext = {
      registry: this.registry,
      log,
      stats: this.stats,
      relaxedCommandCheck: this.#options.relaxedCommandCheck,
      limits,
      delayAcceptMs: this.#options.delayAcceptMs,
      delayWriteMs: this.#options.delayWriteMs,
      get epmdPort() {
        return epmdPort();
      },
      namesReply: () => this.#namesReply(),
      registrationChanged: (registration, event, why) => this.#registrationChanged(registration, event, why),
      killRequested: () => this.#events.kill?.(),
      refused: (reason, peer, why, packet, fields) => this.#refused(reason, peer, why, packet, fields),
      acceptTrouble: (why) => this.#acceptTrouble(why),
    };
    let connections: Connections | null = null;
    this.#engine = new NativeEngine(
      {
        request: (id, status, length) => connections!.request(id, status, length),
        event: (id, kind, detail, peer) => connections!.event(id, kind, detail, peer),
      },
      {
        maxConnections: limits.maxConnections,
        maxConnectionsPerPeer: limits.maxConnectionsPerPeer,
        delayAccept: this.#options.delayAcceptMs > 0,
        requestBudgetMs: limits.requestBudgetMs,
      },
    );
    this.#connections = connections = new Connections(context, this.#engine);
    // One timer for every connection, as the C epmd checks its connections when its select() loop wakes: every
    // second when the packet timeout is under 5 s, else every 5 s (timeouts.ts).
    this.#sweep = setInterval(() => connections.sweep(), sweepIntervalSeconds(limits.packetTimeoutSeconds) * 1000);
    this.#sweep.unref();
  }

  /** The port NAMES and DUMP replies report. */
  get epmdPort(): number {
    return this.#options.epmdPort || this.#served[0]?.port || 0;
  }

  get served(): readonly ServedSocket[] {
    return this.#served;
  }

  get openConnections(): number {
    return this.#engine.counters().open;
  }

  /** Starts serving every target. The engine binds at once; a failure still arrives as a rejection. */
  listen(targets: readonly ListenTarget[]): Promise<readonly ServedSocket[]> {
    return new Promise((resolve) => resolve(this.#listenAll(targets)));
  }

  #listenAll(targets: readonly ListenTarget[]): readonly ServedSocket[] {
    for (const target of targets) {
      let id: number;
      try {
        if (target.kind === 'address') {
          id = this.#engine.listen(target.host, target.port, this.#options.backlog, target.host.includes(':'));
        } else {
          id = this.#engine.adoptListener(target.fd, this.#options.backlog);
        }
      } catch (err) {
        throw new Error(`cannot listen on ${describeTarget(target)}: ${(err as Error).message}`);
      }
      const served = this.#describe(id, target);
      this.#listeners.push({ id, served });
      this.#served.push(served);
    }
    return this.#served;
  }

  /** Serves a listening socket passed in as a raw fd (systemd, or a live upgrade); the engine owns it from now. */
  adoptListener(fd: number, source: string): ServedSocket {
    const id = this.#engine.adoptListener(fd, this.#options.backlog);
    const served = this.#describe(id, { kind: 'raw', fd, source });
    this.#listeners.push({ id, served });
    this.#served.push(served);
    return served;
  }

  #describe(id: number, target: ListenTarget): ServedSocket {
    const info = this.#engine.listenerInfo(id);
    return { target, address: info?.address ?? '', port: info?.port ?? 0, backlog: listenBacklogOf(info?.fd ?? -1) };
  }

  /** The listening sockets' fds, with what each serves (for a live upgrade to pass on). */
  listenerFds(): { fd: number; served: ServedSocket }[] {
    return this.#listeners.flatMap((l) => {
      const info = this.#engine.listenerInfo(l.id);
      return info ? [{ fd: info.fd, served: l.served }] : [];
    });
  }

  /** Live upgrade: stops accepting and hands over the listening fds, which the caller then owns. */
  releaseListeners(): { fd: number; source: string }[] {
    this.#engine.setAccepting(false);
    const released = this.#listeners.map((l) => ({
      fd: this.#engine.closeListener(l.id, true),
      source: describeServedAddress(l.served),
    }));
    this.#listeners.length = 0;
    return released.filter((r) => r.fd >= 0);
  }

  /** Live upgrade: lets go of every registration's connection as a raw fd, which the caller then owns. */
  releaseRegistrationFds(): { fd: number; registration: RegistrationRecord }[] {
    return this.registry.newestFirst().map((r) => ({ registration: recordOf(r), fd: r.owner.detach() }));
  }

  /**
   * Adopts a registration's connection carried over from an earlier process, as a raw fd the engine then owns.
   * Returns false (and closes the fd) when its name is already registered.
   */
  adoptRegistration(fd: number, restored: RestoredRegistration): boolean {
    return this.#connections.restore(fd, restored, false);
  }

  /** Serves a connection accepted elsewhere (queued during a live upgrade), as a raw fd the engine then owns. */
  adoptConnection(fd: number): void {
    if (this.#closing) closeSync(fd);
    else this.#engine.adopt(fd, false);
  }

  /**
   * Live upgrade: stops accepting (the listening sockets stay open in the next process), then waits
   * up to `drainMs` for requests in flight to be answered, and closes what is left of them.
   */
  async stopAccepting(drainMs: number): Promise<void> {
    this.#closing = true;
    this.#engine.setAccepting(false);
    await this.#drain(drainMs);
    for (const l of this.#listeners.splice(0)) this.#engine.closeListener(l.id);
  }

  /** Waits up to `drainMs` for connections other than registrations to finish. */
  async #drain(drainMs: number): Promise<void> {
    const deadline = Date.now() + drainMs;
    while (this.#engine.counters().busy > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  }

  /**
   * Stops accepting, then closes every connection.
   * - `hang-up`: every registration ends and its node sees the connection close (KILL_REQ, or no fd store).
   * - `preserve`: registrations are let go without a word: systemd's fd store keeps their connections open for the
   *   next process, which finds them in the journal (SIGTERM under systemd with the fd store).
   */
  async close(mode: 'hang-up' | 'preserve' = 'hang-up', drainMs = 1000): Promise<void> {
    if (this.#engine.closed) return;
    this.#closing = true;
    clearInterval(this.#sweep);
    this.#memory.stop();
    this.#engine.setAccepting(false);
    for (const l of this.#listeners.splice(0)) this.#engine.closeListener(l.id);
    // Requests already accepted are answered first: ending them now would leave their clients with no reply.
    await this.#drain(drainMs);
    if (this.#engine.closed) return;
    for (const registration of this.registry.newestFirst()) {
      if (mode === 'hang-up') registration.owner.hangUp('epmd is shutting down');
      else {
        const fd = registration.owner.detach();
        if (fd >= 0) closeSync(fd);
      }
    }
    this.#connectionsBefore = this.stats.connections;
    this.#engine.destroy();
  }

  /**
   * Adopts a registration connection carried over from an earlier process as a Node socket (a live upgrade that
   * passes Node handles). Returns false (and closes the socket) when its name is already registered.
   */
  adopt(socket: Socket, restored: RestoredRegistration): boolean {
    const fd = socketFd(socket);
    let adopted = false;
    try {
      adopted = fd >= 0 && this.#connections.restore(fd, restored, true);
    } finally {
      socket.destroy();
    }
    return adopted;
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

  #registrationChanged(registration: NodeRegistration, event: RegistrationEvent, why: string): void {
    const r = registration;
    const type = nodeTypeName(r.nodeType) ?? `type ${r.nodeType}`;
    this.#log.info(
      `${event} ${printableName(r.name)} port ${r.port} (${type}, versions ${r.lowestVersion}-${r.highestVersion}, ` +
        `creation ${r.creation}) ${why}; ${this.registry.size} node(s) registered`,
      { event, node: r.displayName, port: r.port, peer: r.owner.peer, creation: r.creation },
    );
    this.#memory.sizeChanged(this.registry.size);
    this.#events.change?.(registration, event);
  }

  #refused(reason: RefusalReason, peer: string, why: string, packet?: Buffer, fields?: LogFields): void {
    this.stats.refused++;
    this.refusals[reason]++;
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
    if (this.#refusalWindow.logged++ < REFUSALS_LOGGED_PER_SECOND)
      log.warning(`refused ${peer}: ${why}`, fields ?? { event: 'refused', peer });
    else this.#refusalWindow.suppressed++;
  }

  /** Out of fds: said at most once every 10 s (the engine backs off between 100 ms and 1 s each time). */
  #acceptTrouble(why: string): void {
    const now = Date.now();
    if (now - this.#acceptTroubleAt < 10_000) return;
    this.#acceptTroubleAt = now;
    this.#log.warning(why);
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
  if (target.kind === 'raw') return `inherited ${target.source}`;
  return formatEndpoint(target.host, target.port);
}

function describeServedAddress(s: ServedSocket): string {
  return formatEndpoint(s.address, s.port);
}
