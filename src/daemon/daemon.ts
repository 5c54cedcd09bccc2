/**
 * The daemon's life: choose sockets (systemd's, the previous process's, or our own), rebuild registrations kept
 * across a restart, serve, tell systemd, log, and stop or hand over to new code.
 */
import { Socket, type Server } from 'node:net';
import { EpmdServer, describeTarget, type ListenTarget, type ServedSocket } from '../engine/server';
import { DEFAULT_LOG_LEVEL, Logger } from './log';
import type { DaemonConfig } from './config';
import { listenFds, type PassedFd } from '../systemd/listen';
import { composeStatus, openNotifier, type Notifier } from '../systemd/notify';
import { openFdStore } from '../systemd/fdstore';
import { isRegistrationFd, Persistence } from '../systemd/persistence';
import { recordOf, restoredFrom } from '../registry/registration-record';
import { controlSocketPath, describeNodeType, startControlServer, type NodeRecord, type StatusRecord } from './control';
import { handOver, receiveHandOver, UPGRADE_ENV, type Inherited } from './upgrade';
import { socketFd } from '../engine/socket-fd';
import { VERSION } from '../version';

export interface RunningDaemon {
  readonly server: EpmdServer;
  readonly log: Logger;
  readonly notifier: Notifier;
  readonly served: readonly ServedSocket[];
  readonly underSystemd: boolean;
  /** Resolves with the exit code once the daemon has stopped (SIGTERM, KILL_REQ, a live upgrade, or stop()). */
  readonly stopped: Promise<number>;
  stop(reason: string): Promise<void>;
}

export class StartupError extends Error {}

/** Another epmd already holds the port: the C epmd then exits 0, and so do we (after saying so). */
export class AlreadyRunningError extends StartupError {}

/** How often STATUS= is refreshed (when it changed). */
const STATUS_INTERVAL_MS = 1000;
/** How long restored connections get to show that their peer has gone, before we serve. */
const STALE_CHECK_MS = 50;

export interface DaemonOptions {
  readonly log?: Logger;
  readonly env?: NodeJS.ProcessEnv;
  /** Install the signal handlers (the CLI does; in-process tests do not). */
  readonly handleSignals?: boolean;
  /** The command line that starts this daemon (for a live upgrade): Node's arguments after the binary. */
  readonly command?: readonly string[];
}

export async function startDaemon(config: DaemonConfig, options: DaemonOptions = {}): Promise<RunningDaemon> {
  const env = options.env ?? process.env;
  const log = options.log ?? new Logger({ level: config.logLevel });
  const notifier = openNotifier(env);

  // 1. Where the sockets come from.
  const upgrading = env[UPGRADE_ENV] === '1' && typeof process.send === 'function';
  delete env[UPGRADE_ENV];
  const passed = listenFds(env);
  if (!passed.ok) throw new StartupError(`socket activation: ${passed.error}`);
  const listening = passed.fds.filter((p) => !isRegistrationFd(p.name));
  const activated = listening.length > 0;
  if (config.systemd && !activated && !upgrading) {
    throw new StartupError('-systemd: no sockets were passed (LISTEN_FDS is unset); start sdepmd through epmd.socket');
  }

  let resolveStopped!: (code: number) => void;
  const stopped = new Promise<number>((resolve) => (resolveStopped = resolve));
  let stopping = false;
  const persistence = new Persistence({ store: openFdStore(), runtimeDirectory: env.RUNTIME_DIRECTORY, max: config.fdStoreMax });
  const keepError = (message: string) => log.warning(message);

  const server = new EpmdServer(
    {
      relaxedCommandCheck: config.relaxedCommandCheck,
      delayAcceptMs: config.delayAcceptMs,
      delayWriteMs: config.delayWriteMs,
      limits: config.limits,
      epmdPort: activated || upgrading ? 0 : config.port,
      maxUnusedNames: config.logLevel > DEFAULT_LOG_LEVEL ? 5 : undefined,
    },
    log,
    {
      change: (registration, event) => {
        // Kept before the node is answered, so that a crash right after the reply loses nothing.
        if (event === 'registered' && persistence.enabled) {
          registration.owner.fdName = persistence.added(
            recordOf(registration),
            socketFd(registration.owner.socket),
            server.registry.creationCounter,
            keepError,
          );
        } else if (event === 'unregistered') {
          persistence.removed(registration.owner.fdName, keepError);
        }
      },
      // KILL means now, as in the C epmd: no draining of requests in flight.
      kill: () => void stop('KILL_REQ accepted', 0, 'hang-up', 0),
    },
  );

  // 2. Registrations from before: handed over by the old process, or handed back by systemd's fd store.
  let served: readonly ServedSocket[];
  let inherited: Inherited | null = null;
  if (upgrading) {
    inherited = await receiveHandOver();
    persistence.load();
    persistence.hold();
    server.registry.advanceCreation(Math.max(inherited.creationCounter, persistence.creationCounter));
    Object.assign(server.stats, inherited.stats);
    for (const { socket, restored } of inherited.registrations) server.adopt(socket, restored);
    served = await server.listen(inherited.listeners.map((l): ListenTarget => ({ kind: 'inherited', ...l })));
    for (const socket of inherited.queued) {
      server.accept(socket);
      socket.resume();
    }
  } else {
    recoverFromFdStore(passed.fds);
    // Give restored connections whose peer has gone a moment to say so (EOF) before anyone asks for them.
    if (persistence.stats.restored > 0) await new Promise((r) => setTimeout(r, STALE_CHECK_MS));
    served = activated
      ? await server.listen(listening.map((p): ListenTarget => ({ kind: 'fd', fd: p.fd, name: p.name })))
      : await bindOwnSockets(server, config, log);
  }

  const controlPath = config.controlSocket === undefined ? controlSocketPath(server.epmdPort, env) : config.controlSocket;
  let control: Server | null = controlPath
    ? await startControlServer(controlPath, { status: statusRecord, names: nodeRecords }, (m) => log.info(`${m}; sdepmd status will not work`))
    : null;

  log.notice(
    `sdepmd ${VERSION} serving ${served.map(describeServed).join(', ')}` +
      `${upgrading ? ' (live upgrade)' : activated ? ' (socket-activated)' : ''}` +
      `${config.relaxedCommandCheck ? ', relaxed command check' : ''}, log level ${log.levelName}; ` +
      `fd store: ${persistence.detail}`,
  );

  // 3. Tell systemd.
  if (inherited) {
    inherited.serving();
    await inherited.becameMain.catch(() => undefined);
    persistence.release(keepError);
  } else {
    notifier.status(statusText());
    notifier.ready();
  }
  const watchdogEvery = notifier.startWatchdog();
  if (watchdogEvery > 0) log.info(`watchdog: pinging systemd every ${watchdogEvery} ms`);
  if (inherited) notifier.status(statusText());

  // STATUS= is refreshed at most once a second, when the counts moved.
  let statusShown = '';
  const statusPoll = notifier.active
    ? setInterval(() => {
        const text = statusText();
        if (text !== statusShown && !stopping) notifier.status((statusShown = text));
      }, STATUS_INTERVAL_MS)
    : null;
  statusPoll?.unref();

  const onTerm = (signal: NodeJS.Signals) => void stop(`${signal} received`, 0, persistence.enabled ? 'preserve' : 'hang-up');
  const onUsr1 = () => changeLevel(+1);
  const onUsr2 = () => changeLevel(-1);
  const onHup = () => void upgrade();
  const onStall = () => {
    log.warning('test hook: stalling the event loop');
    for (;;);
  };
  if (options.handleSignals) {
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onTerm);
    process.on('SIGUSR1', onUsr1);
    process.on('SIGUSR2', onUsr2);
    process.on('SIGHUP', onHup);
    // Test-only: SIGWINCH blocks the event loop for ever, so that the watchdog can be seen to fire.
    if (env.SDEPMD_TEST_HOOKS === '1') process.on('SIGWINCH', onStall);
    // A crash would restart every app that requires epmd.service: a bug in one connection's handling is logged
    // and that connection is lost, but the daemon goes on.
    process.on('uncaughtException', onInternalError);
    process.on('unhandledRejection', onInternalError);
  }

  function onInternalError(err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err));
    log.error(`internal error, carrying on: ${e.message} (${(e.stack ?? '').split('\n')[1]?.trim() ?? 'no stack'})`);
  }

  function recoverFromFdStore(fds: readonly PassedFd[]): void {
    const recovery = persistence.recover(fds);
    server.registry.advanceCreation(persistence.creationCounter);
    for (const orphan of recovery.orphans) log.warning(`fd store: dropped ${orphan.name}: no registration record for it`);
    for (const gone of recovery.missing) {
      log.notice(`fd store: ${Buffer.from(gone.name, 'hex').toString('utf8')} did not come back from the fd store; forgotten`);
    }
    for (const { fd, record } of recovery.adopt) {
      server.adopt(new Socket({ fd, readable: true, writable: true }), restoredFrom(record));
    }
    if (recovery.adopt.length > 0) log.notice(`fd store: ${recovery.adopt.length} registration(s) restored`);
  }

  function changeLevel(delta: number): void {
    const before = log.levelName;
    log.level = log.level + delta;
    // Said at notice, so that the change shows whatever the new level is.
    log.notice(`log level ${before} -> ${log.levelName}`);
  }

  function statusText(): string {
    return composeStatus({ registered: server.registry.size, lookups: server.stats.lookups, refused: server.stats.refused });
  }

  function statusRecord(): StatusRecord {
    return {
      version: VERSION,
      pid: process.pid,
      startedAt: new Date(inherited?.startedAt ?? server.startedAt).toISOString(),
      uptimeSeconds: Math.round((Date.now() - (inherited?.startedAt ?? server.startedAt)) / 1000),
      underSystemd: notifier.active || activated,
      logLevel: log.levelName,
      sockets: served.map((s) => ({ address: s.address, port: s.port, source: describeTarget(s.target) })),
      registered: server.registry.size,
      openConnections: server.openConnections,
      counts: { ...server.stats },
      fdStore: { enabled: persistence.enabled, stored: persistence.stats.stored, restored: persistence.stats.restored, detail: persistence.detail },
    };
  }

  function nodeRecords(): NodeRecord[] {
    return server.registry.newestFirst().map((r) => ({
      name: r.displayName,
      port: r.port,
      nodeType: describeNodeType(r.nodeType),
      protocol: r.protocol,
      highestVersion: r.highestVersion,
      lowestVersion: r.lowestVersion,
      extra: r.extra.toString('hex'),
      creation: r.creation,
      registeredAt: new Date(r.registeredAt).toISOString(),
      peer: r.owner.peer,
    }));
  }

  async function closeControl(): Promise<void> {
    const c = control;
    control = null;
    if (c) await new Promise<void>((resolve) => c.close(() => resolve()));
  }

  async function upgrade(): Promise<void> {
    if (stopping) return;
    if (!options.command) {
      log.warning('SIGHUP: live upgrade is not available in this process');
      return;
    }
    stopping = true;
    log.notice('SIGHUP: live upgrade: starting the new code');
    notifier.reloading();
    // The new process opens the control socket under the same name.
    await closeControl();
    const result = await handOver({ server, log, notifier, command: options.command, env });
    if (result.ok) {
      if (statusPoll) clearInterval(statusPoll);
      notifier.stopWatchdog();
      persistence.close();
      detachSignals();
      resolveStopped(0);
      return;
    }
    log.error(`live upgrade failed: ${result.error}`);
    if (!result.recoverable) {
      // Sockets may already be with the dead child: let systemd restart us; the fd store keeps registrations.
      notifier.stopWatchdog();
      detachSignals();
      resolveStopped(1);
      return;
    }
    stopping = false;
    control = controlPath ? await startControlServer(controlPath, { status: statusRecord, names: nodeRecords }, (m) => log.info(m)) : null;
    notifier.ready();
  }

  function detachSignals(): void {
    if (!options.handleSignals) return;
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onTerm);
    process.off('SIGUSR1', onUsr1);
    process.off('SIGUSR2', onUsr2);
    process.off('SIGHUP', onHup);
    process.off('SIGWINCH', onStall);
    process.off('uncaughtException', onInternalError);
    process.off('unhandledRejection', onInternalError);
  }

  async function stop(reason: string, code: number, mode: 'hang-up' | 'preserve', drainMs = 1000): Promise<void> {
    if (stopping) return stopped.then(() => undefined);
    stopping = true;
    notifier.stopping();
    notifier.stopWatchdog();
    if (statusPoll) clearInterval(statusPoll);
    const kept = mode === 'preserve' ? ', kept in the fd store for the next start' : '';
    log.notice(`shutting down: ${reason}; ${server.registry.size} node(s) were registered${kept}`);
    detachSignals();
    await server.close(mode, drainMs);
    persistence.close();
    await closeControl();
    resolveStopped(code);
  }

  return {
    server,
    log,
    notifier,
    served,
    underSystemd: notifier.active || activated,
    stopped,
    stop: (reason) => stop(reason, 0, 'hang-up'),
  };
}

/**
 * Binds the sockets the C epmd would: every address (0.0.0.0 and ::) by default, else the listed addresses
 * (loopback included). IPv6 failing on a host without IPv6 is not fatal when we chose to try it.
 */
async function bindOwnSockets(server: EpmdServer, config: DaemonConfig, log: Logger): Promise<readonly ServedSocket[]> {
  const wanted = config.addresses.length > 0 ? config.addresses : ['0.0.0.0', '::'];
  const optional = new Set(config.addresses.length > 0 ? ['::1'] : ['::']);
  for (const host of wanted) {
    try {
      await server.listen([{ kind: 'address', host, port: config.port }]);
    } catch (err) {
      const message = (err as Error).message;
      if (optional.has(host) && /EAFNOSUPPORT|EADDRNOTAVAIL/.test(message)) {
        log.info(`not listening on ${host}: ${message}`);
        continue;
      }
      await server.close();
      if (/EADDRINUSE/.test(message)) {
        throw new AlreadyRunningError(`another epmd is already listening on ${host} port ${config.port}; exiting`);
      }
      throw new StartupError(message);
    }
  }
  return server.served;
}

function describeServed(s: ServedSocket): string {
  if (s.target.kind === 'address') return describeTarget(s.target);
  const address = s.address.includes(':') ? `[${s.address}]:${s.port}` : `${s.address}:${s.port}`;
  return `${address} (${describeTarget(s.target)})`;
}
