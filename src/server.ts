/**
 * The EPMD server: listening sockets, the connection table, limits, counters and shutdown.
 * What happens on each connection is in connection.ts.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { encodeNamesLine, encodePortHeader } from './protocol/codec';
import { hex, printableName, type Logger } from './log';
import { DEFAULT_LIMITS, isLoopback, normaliseAddress, type Limits } from './policy';
import { Registry } from './registry';
import { serveConnection, type ConnectionContext, type NodeConnection, type NodeRegistration, type ServerStats } from './connection';

/** Where to listen: an address to bind, or a socket systemd passed in. */
export type ListenTarget =
  | { readonly kind: 'address'; readonly host: string; readonly port: number }
  | { readonly kind: 'fd'; readonly fd: number; readonly name: string };

/** A socket being served, as reported in logs and `sdepmd status`. */
export interface ServedSocket {
  readonly target: ListenTarget;
  readonly address: string;
  readonly port: number;
}

export interface ServerOptions {
  readonly relaxedCommandCheck: boolean;
  readonly delayAcceptMs: number;
  readonly delayWriteMs: number;
  readonly limits: Limits;
  /** The port NAMES and DUMP replies report; 0 means "the first socket's port". */
  readonly epmdPort: number;
  /** listen() backlog. Node would otherwise reset a passed socket's Backlog= to 511. */
  readonly backlog: number;
  readonly creationSeed?: number;
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
  /** A node registered or unregistered. */
  change?(registration: NodeRegistration, event: 'registered' | 'unregistered'): void;
  /** An accepted KILL_REQ has been answered: the daemon should exit. */
  kill?(): void;
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
  readonly startedAt = Date.now();
  readonly #options: ServerOptions;
  readonly #log: Logger;
  readonly #events: ServerEvents;
  readonly #servers: Server[] = [];
  readonly #served: ServedSocket[] = [];
  readonly #open = new Set<Socket>();
  readonly #perPeer = new Map<string, number>();
  readonly #context: ConnectionContext;
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
    });
    const server = this;
    this.#context = {
      registry: this.registry,
      log,
      stats: this.stats,
      relaxedCommandCheck: this.#options.relaxedCommandCheck,
      packetTimeoutMs: this.#options.limits.packetTimeoutMs,
      delayWriteMs: this.#options.delayWriteMs,
      get epmdPort() {
        return server.epmdPort;
      },
      namesReply: () => this.#namesReply(),
      registrationChanged: (registration, event, why) => this.#registrationChanged(registration, event, why),
      killRequested: () => this.#events.kill?.(),
      refused: (peer, why, packet) => this.#refused(peer, why, packet),
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
    for (const target of targets) {
      const server = createServer({ noDelay: true }, (socket) => this.#accept(socket));
      server.on('error', (err) => this.#log.error(`listening socket ${describeTarget(target)}: ${err.message}`));
      await new Promise<void>((resolve, reject) => {
        const fail = (err: Error) => reject(new Error(`cannot listen on ${describeTarget(target)}: ${err.message}`));
        server.once('error', fail);
        const done = () => {
          server.off('error', fail);
          resolve();
        };
        if (target.kind === 'fd') server.listen({ fd: target.fd, backlog: this.#options.backlog }, done);
        else {
          const ipv6Only = target.host.includes(':');
          server.listen({ host: target.host, port: target.port, backlog: this.#options.backlog, ipv6Only }, done);
        }
      });
      const address = server.address();
      const served: ServedSocket =
        address && typeof address === 'object'
          ? { target, address: address.address, port: address.port }
          : { target, address: String(address), port: 0 };
      this.#servers.push(server);
      this.#served.push(served);
    }
    return this.#served;
  }

  /** Stops accepting, then closes every connection (registrations end with them). */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    const closed = this.#servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    for (const registration of this.registry.newestFirst()) registration.owner.hangUp('epmd is shutting down');
    for (const socket of this.#open) socket.destroy();
    await Promise.all(closed);
  }

  #accept(socket: Socket): void {
    const limits = this.#options.limits;
    const peer = normaliseAddress(socket.remoteAddress);
    if (this.#closing) {
      socket.destroy();
      return;
    }
    if (limits.maxConnections > 0 && this.#open.size >= limits.maxConnections) {
      return this.#limitHit(socket, peer, `connection limit (${limits.maxConnections}) reached`);
    }
    const fromPeer = (this.#perPeer.get(peer) ?? 0) + 1;
    if (limits.maxConnectionsPerPeer > 0 && fromPeer > limits.maxConnectionsPerPeer && !isLoopback(peer)) {
      return this.#limitHit(socket, peer, `per-peer connection limit (${limits.maxConnectionsPerPeer}) reached`);
    }
    this.#perPeer.set(peer, fromPeer);
    this.#open.add(socket);
    socket.once('close', () => {
      this.#open.delete(socket);
      const left = (this.#perPeer.get(peer) ?? 1) - 1;
      if (left > 0) this.#perPeer.set(peer, left);
      else this.#perPeer.delete(peer);
    });
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

  #registrationChanged(registration: NodeRegistration, event: 'registered' | 'unregistered', why: string): void {
    const r = registration;
    const type = r.nodeType === 72 ? 'hidden' : r.nodeType === 77 ? 'normal' : `type ${r.nodeType}`;
    this.#log.info(
      `${event} ${printableName(r.name)} port ${r.port} (${type}, versions ${r.lowestVersion}-${r.highestVersion}, ` +
        `creation ${r.creation}) ${why}; ${this.registry.size} node(s) registered`,
    );
    this.#events.change?.(registration, event);
  }

  #refused(peer: string, why: string, packet?: Buffer): void {
    this.stats.refused++;
    const log = this.#log;
    if (log.debugEnabled) {
      log.debug(`refused ${peer}: ${why}${packet ? ` [${hex(packet)}]` : ''}`);
      return;
    }
    const second = Math.floor(Date.now() / 1000);
    const window = this.#refusalWindow;
    if (window.second !== second) {
      if (window.suppressed > 0) log.warning(`${window.suppressed} more refusal(s) not logged`);
      this.#refusalWindow = { second, logged: 0, suppressed: 0 };
    }
    if (this.#refusalWindow.logged++ < REFUSALS_LOGGED_PER_SECOND) log.warning(`refused ${peer}: ${why}`);
    else this.#refusalWindow.suppressed++;
  }
}

export function describeTarget(target: ListenTarget): string {
  if (target.kind === 'fd') return `fd ${target.fd}${target.name ? ` (${target.name})` : ''}`;
  return target.host.includes(':') ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
}
