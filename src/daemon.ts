/**
 * The daemon's life: choose sockets (systemd's, or bind our own), serve, tell systemd, log, shut down.
 */
import { EpmdServer, describeTarget, type ListenTarget, type ServedSocket } from './server';
import { Logger } from './log';
import type { DaemonConfig } from './config';
import { listenFds } from './systemd/listen';
import { composeStatus, openNotifier, type Notifier } from './systemd/notify';
import { VERSION } from './version';
import { controlSocketPath, describeNodeType, startControlServer, type NodeRecord, type StatusRecord } from './control';
import type { Server } from 'node:net';

export interface RunningDaemon {
  readonly server: EpmdServer;
  readonly log: Logger;
  readonly notifier: Notifier;
  readonly served: readonly ServedSocket[];
  readonly underSystemd: boolean;
  /** Resolves with the exit code once the daemon has stopped (SIGTERM, KILL_REQ, or stop()). */
  readonly stopped: Promise<number>;
  stop(reason: string): Promise<void>;
}

export class StartupError extends Error {}

/** Another epmd already holds the port: the C epmd then exits 0, and so do we (after saying so). */
export class AlreadyRunningError extends StartupError {}

/** How often STATUS= may be refreshed at most. */
const STATUS_INTERVAL_MS = 1000;

export interface DaemonOptions {
  readonly log?: Logger;
  readonly env?: NodeJS.ProcessEnv;
  /** Install SIGTERM/SIGINT/SIGUSR1/SIGUSR2 handlers (the CLI does; in-process tests do not). */
  readonly handleSignals?: boolean;
}

export async function startDaemon(config: DaemonConfig, options: DaemonOptions = {}): Promise<RunningDaemon> {
  const env = options.env ?? process.env;
  const log = options.log ?? new Logger({ level: config.logLevel });
  const notifier = openNotifier(env);

  const passed = listenFds(env);
  if (!passed.ok) throw new StartupError(`socket activation: ${passed.error}`);
  const activated = passed.fds.length > 0;
  if (config.systemd && !activated) {
    throw new StartupError('-systemd: no sockets were passed (LISTEN_FDS is unset); start sdepmd through epmd.socket');
  }

  let resolveStopped!: (code: number) => void;
  const stopped = new Promise<number>((resolve) => (resolveStopped = resolve));
  let stopping = false;
  let statusTimer: NodeJS.Timeout | null = null;

  const server = new EpmdServer(
    {
      relaxedCommandCheck: config.relaxedCommandCheck,
      delayAcceptMs: config.delayAcceptMs,
      delayWriteMs: config.delayWriteMs,
      limits: config.limits,
      epmdPort: activated ? 0 : config.port,
    },
    log,
    {
      change: () => scheduleStatus(),
      kill: () => void stop('KILL_REQ accepted', 0),
    },
  );

  const served = activated
    ? await server.listen(passed.fds.map((p): ListenTarget => ({ kind: 'fd', fd: p.fd, name: p.name })))
    : await bindOwnSockets(server, config, log);

  log.notice(
    `sdepmd ${VERSION} serving ${served.map(describeServed).join(', ')}` +
      `${activated ? ' (socket-activated)' : ''}${config.relaxedCommandCheck ? ', relaxed command check' : ''}, ` +
      `log level ${log.levelName}`,
  );
  const controlPath = config.controlSocket === undefined ? controlSocketPath(server.epmdPort, env) : config.controlSocket;
  const control: Server | null = controlPath
    ? await startControlServer(controlPath, { status: statusRecord, names: nodeRecords }, (m) => log.info(`${m}; sdepmd status will not work`))
    : null;

  notifier.status(composeStatus({ registered: 0, lookups: 0, refused: 0 }));
  notifier.ready();
  const watchdogEvery = notifier.startWatchdog();
  if (watchdogEvery > 0) log.info(`watchdog: pinging systemd every ${watchdogEvery} ms`);

  const onTerm = (signal: NodeJS.Signals) => void stop(`${signal} received`, 0);
  const onUsr1 = () => changeLevel(+1);
  const onUsr2 = () => changeLevel(-1);
  if (options.handleSignals) {
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onTerm);
    process.on('SIGUSR1', onUsr1);
    process.on('SIGUSR2', onUsr2);
    process.on('SIGHUP', () => log.notice('SIGHUP ignored'));
    if (env.SDEPMD_TEST_HOOKS === '1') {
      // Test-only: SIGWINCH blocks the event loop for ever, so that the watchdog can be seen to fire.
      process.on('SIGWINCH', () => {
        log.warning('test hook: stalling the event loop');
        for (;;);
      });
    }
  }

  function changeLevel(delta: number): void {
    const before = log.levelName;
    log.level = log.level + delta;
    // Said at notice, so that the change shows whatever the new level is.
    log.notice(`log level ${before} -> ${log.levelName}`);
  }

  function statusRecord(): StatusRecord {
    const now = Date.now();
    return {
      version: VERSION,
      pid: process.pid,
      startedAt: new Date(server.startedAt).toISOString(),
      uptimeSeconds: Math.round((now - server.startedAt) / 1000),
      underSystemd: notifier.active || activated,
      logLevel: log.levelName,
      sockets: served.map((s) => ({ address: s.address, port: s.port, source: describeTarget(s.target) })),
      registered: server.registry.size,
      openConnections: server.openConnections,
      counts: { ...server.stats },
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

  function scheduleStatus(): void {
    if (statusTimer || !notifier.active) return;
    statusTimer = setTimeout(() => {
      statusTimer = null;
      notifier.status(
        composeStatus({ registered: server.registry.size, lookups: server.stats.lookups, refused: server.stats.refused }),
      );
    }, STATUS_INTERVAL_MS);
    statusTimer.unref();
  }

  async function stop(reason: string, code: number): Promise<void> {
    if (stopping) return stopped.then(() => undefined);
    stopping = true;
    notifier.stopping();
    notifier.stopWatchdog();
    if (statusTimer) clearTimeout(statusTimer);
    log.notice(`shutting down: ${reason}; ${server.registry.size} node(s) were registered`);
    if (options.handleSignals) {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onTerm);
      process.off('SIGUSR1', onUsr1);
      process.off('SIGUSR2', onUsr2);
    }
    await server.close();
    if (control) {
      await new Promise<void>((resolve) => control.close(() => resolve()));
    }
    resolveStopped(code);
  }

  return {
    server,
    log,
    notifier,
    served,
    underSystemd: notifier.active || activated,
    stopped,
    stop: (reason) => stop(reason, 0),
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
