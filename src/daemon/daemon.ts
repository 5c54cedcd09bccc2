/**
 * The daemon's life: choose sockets (systemd's, the previous process's, or our own), rebuild registrations kept
 * across a restart, serve, tell systemd, log, and stop or hand over to new code.
 */
import { closeSync } from 'node:fs';
import type { Server, Socket } from 'node:net';
import { lazyNet } from '../util/lazy-modules';
import { EpmdServer, describeTarget, type ListenTarget, type ServedSocket } from '../engine/server';
import { DEFAULT_LOG_LEVEL, Logger, printableName } from './log';
import type { DaemonConfig } from './config';
import { listenFds, type PassedFd } from '../systemd/listen';
import { composeStatus, openNotifier, type Notifier } from '../systemd/notify';
import { openFdStore } from '../systemd/fdstore';
import { requiringUnits } from '../systemd/dependents';
import { isRegistrationFd, Persistence, type Recovery, type StoredRecord } from '../systemd/persistence';
import { recordOf, restoredFrom } from '../registry/registration-record';
import type { NodeRegistration, RegistrationEvent } from '../policy/connection';
import {
  controlSocketPath,
  describeNodeType,
  startControlServer,
  type AdoptReply,
  type NodeRecord,
  type StatusRecord,
  type UpgradeReply,
} from './control';
import {
  checkNewCode,
  execNewCode,
  handOverState,
  readUpgradeState,
  upgradeStateDirectory,
  UPGRADE_STATE_ENV,
} from './upgrade';
import type { NodeInfoRecord, UpgradeState } from './handover';
import { formatEndpoint, normaliseAddress } from '../policy/policy';
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

/**
 * Starts the daemon, one phase after the other:
 *
 *   1. config   where the sockets come from (LISTEN_FDS, the previous code of this process, or our own), the
 *               server, the fd store
 *   2. restore  registrations from before: left by the previous code (a live upgrade), or handed back by the fd store
 *   3. listen   the listening sockets: passed by systemd, inherited across execve, or bound here
 *   4. serve    the control socket, and the line that says what is served
 *   5. signals  SIGTERM/SIGINT stop, SIGUSR1/2 change the log level, SIGHUP upgrades
 *   6. notify   READY (after a live upgrade, this ends the reload), the watchdog, STATUS= refreshes
 *
 * Signals come before READY=1: systemd may send SIGHUP (ExecReload=) or SIGTERM as soon as it hears it, and the
 * scheduler may run systemd before this process's next line; without a handler, either signal would kill it.
 */
export async function startDaemon(config: DaemonConfig, options: DaemonOptions = {}): Promise<RunningDaemon> {
  const daemon = new Daemon(config, options);
  await daemon.restore();
  await daemon.listen();
  await daemon.serve();
  daemon.handleSignals();
  daemon.notify();
  return daemon.running();
}

function notifierOrStartupError(env: NodeJS.ProcessEnv, log: Logger): Notifier {
  try {
    return openNotifier(env, { onError: (m) => log.warning(m) });
  } catch (err) {
    throw new StartupError((err as Error).message);
  }
}

/** Where this process's sockets come from (phase 1). */
type SocketOrigin =
  /** The previous code of this process left everything (live upgrade, across execve). */
  | { readonly kind: 'upgrade'; readonly state: UpgradeState }
  /** systemd passed listening sockets (socket activation), and maybe registrations from its fd store. */
  | { readonly kind: 'activated'; readonly passed: readonly PassedFd[]; readonly listening: readonly PassedFd[] }
  /** We bind our own (registrations may still come back from the fd store). */
  | { readonly kind: 'own'; readonly passed: readonly PassedFd[] };

/** Phase 1: reads (and clears) the environment that says where the sockets come from. */
function socketOrigin(config: DaemonConfig, env: NodeJS.ProcessEnv): SocketOrigin {
  const stateFile = env[UPGRADE_STATE_ENV];
  delete env[UPGRADE_STATE_ENV];
  if (stateFile) {
    try {
      return { kind: 'upgrade', state: readUpgradeState(stateFile) };
    } catch (err) {
      throw new StartupError((err as Error).message);
    }
  }
  const passed = listenFds(env);
  if (!passed.ok) throw new StartupError(`socket activation: ${passed.error}`);
  const listening = passed.fds.filter((p) => !isRegistrationFd(p.name));
  if (listening.length > 0) return { kind: 'activated', passed: passed.fds, listening };
  if (config.systemd) {
    throw new StartupError('-systemd: no sockets were passed (LISTEN_FDS is unset); start sdepmd through epmd.socket');
  }
  return { kind: 'own', passed: passed.fds };
}

/** One daemon's state, shared by its phases and by what runs later (signals, stop, upgrade). */
class Daemon {
  readonly #config: DaemonConfig;
  readonly #options: DaemonOptions;
  readonly #env: NodeJS.ProcessEnv;
  readonly #log: Logger;
  readonly #notifier: Notifier;
  readonly #origin: SocketOrigin;
  readonly #persistence: Persistence;
  readonly #server: EpmdServer;
  readonly #stopped: Promise<number>;
  #resolveStopped!: (code: number) => void;
  #stopping = false;
  #inherited: UpgradeState | null = null;
  /** Listening sockets systemd passed in, by fd (kept for the next live upgrade). */
  readonly #fromSystemd = new Set<number>();
  #served: readonly ServedSocket[] = [];
  #controlPath: string | null = null;
  #control: Server | null = null;
  #statusPoll: NodeJS.Timeout | null = null;

  /** Phase 1, config: the sockets' origin, the fd store, and the server (not listening yet). */
  constructor(config: DaemonConfig, options: DaemonOptions) {
    this.#config = config;
    this.#options = options;
    this.#env = options.env ?? process.env;
    this.#log = options.log ?? new Logger({ level: config.logLevel });
    this.#notifier = notifierOrStartupError(this.#env, this.#log);
    this.#origin = socketOrigin(config, this.#env);
    this.#stopped = new Promise<number>((resolve) => (this.#resolveStopped = resolve));
    this.#persistence = new Persistence({
      store: openFdStore(),
      runtimeDirectory: this.#env.RUNTIME_DIRECTORY,
      max: config.fdStoreMax,
    });
    this.#server = new EpmdServer(
      {
        relaxedCommandCheck: config.relaxedCommandCheck,
        delayAcceptMs: config.delayAcceptMs,
        delayWriteMs: config.delayWriteMs,
        limits: config.limits,
        epmdPort: this.#origin.kind === 'own' ? config.port : 0,
        maxUnusedNames: config.logLevel > DEFAULT_LOG_LEVEL ? 5 : undefined,
      },
      this.#log,
      {
        change: (registration, event) => this.#registrationChanged(registration, event),
        // KILL means now, as in the C epmd: no draining of requests in flight.
        kill: () => void this.#stop('KILL_REQ accepted', 0, 'hang-up', 0),
      },
    );
  }

  /** Phase 2, restore: registrations from before, adopted before anything listens. */
  async restore(): Promise<void> {
    const persistence = this.#persistence;
    const server = this.#server;
    if (this.#origin.kind === 'upgrade') {
      // The same process, so the same fd store and journal: carry on with them.
      const inherited = (this.#inherited = this.#origin.state);
      persistence.load();
      server.registry.advanceCreation(Math.max(inherited.creationCounter, persistence.creationCounter));
      Object.assign(server.stats, inherited.stats);
      for (const { fd, record } of inherited.registrations) {
        server.adoptRegistration(fd, restoredFrom(record));
      }
      return;
    }
    const recovery = persistence.recover(this.#origin.passed);
    this.#reportJournalProblems();
    await this.#recoverFromFdStore(recovery);
  }

  /**
   * Rebuilds the registrations systemd handed back. A node that went away while epmd was down has left an EOF on
   * its connection: each connection is watched for a moment first, and those whose node has gone are reported once
   * as not restored (and counted apart), never as restored and then unregistered at once.
   */
  async #recoverFromFdStore(recovery: Recovery): Promise<void> {
    const log = this.#log;
    const server = this.#server;
    const persistence = this.#persistence;
    server.registry.advanceCreation(persistence.creationCounter);
    for (const orphan of recovery.orphans)
      log.warning(`fd store: dropped ${orphan.name}: no registration record for it`);
    const gone = recovery.missing.map((record) => ({
      record,
      why: 'its connection did not come back from the fd store',
    }));
    const watched = recovery.adopt.map(({ fd, record }) =>
      watchRestored(new (lazyNet().Socket)({ fd, readable: true, writable: true }), record),
    );
    if (watched.length > 0) await new Promise((r) => setTimeout(r, STALE_CHECK_MS));
    let restored = 0;
    for (const w of watched) {
      const why = w.stop();
      if (why === null) {
        // Adopted in the same tick as the watch ends: no data can be missed in between.
        if (server.adopt(w.socket, restoredFrom(w.record))) restored++;
        continue;
      }
      w.socket.destroy();
      persistence.notRestored(w.record.fdName, this.#keepError);
      gone.push({ record: w.record, why });
    }
    for (const { record, why } of gone) {
      const name = Buffer.from(record.name, 'hex');
      log.notice(
        `not restored ${printableName(name)} port ${record.port} (creation ${record.creation}): ${why}; its node went away while epmd was down`,
        {
          event: 'not_restored',
          node: name.toString('utf8'),
          port: record.port,
          peer: record.peer,
          creation: record.creation,
        },
      );
    }
    if (restored > 0 || gone.length > 0) {
      log.notice(
        `fd store: ${restored} registration(s) restored${gone.length > 0 ? `, ${gone.length} not restored (their nodes went away while epmd was down)` : ''}`,
      );
    }
  }

  /** Phase 3, listen: the sockets systemd passed, the old process's, or our own. */
  async listen(): Promise<void> {
    const server = this.#server;
    const origin = this.#origin;
    if (this.#inherited) {
      const inherited = this.#inherited;
      for (const l of inherited.listeners) if (l.fromSystemd) this.#fromSystemd.add(l.fd);
      this.#served = await server.listen(
        inherited.listeners.map((l): ListenTarget => ({ kind: 'fd', fd: l.fd, name: l.name })),
      );
    } else if (origin.kind === 'activated') {
      for (const p of origin.listening) this.#fromSystemd.add(p.fd);
      this.#served = await server.listen(
        origin.listening.map((p): ListenTarget => ({ kind: 'fd', fd: p.fd, name: p.name })),
      );
    } else {
      this.#served = await bindOwnSockets(server, this.#config, this.#log);
    }
  }

  /**
   * Phase 4, serve: the control socket, and the log line that says what is served. The EPMD sockets already serve:
   * one turn of the event loop first answers the connections already waiting (under socket activation, the one that
   * started the daemon) before node:net is loaded for the control socket. READY=1 still waits for all of it.
   */
  async serve(): Promise<void> {
    const config = this.#config;
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (this.#stopping) return; // a KILL_REQ among those connections
    this.#controlPath =
      config.controlSocket === undefined ? controlSocketPath(this.#server.epmdPort, this.#env) : config.controlSocket;
    await this.#openControl((m) => this.#log.info(`${m}; sdepmd status will not work`));
    const origin = this.#origin.kind;
    this.#log.notice(
      `sdepmd ${VERSION} serving ${this.#served.map(describeServed).join(', ')}` +
        `${origin === 'upgrade' ? ' (live upgrade)' : origin === 'activated' ? ' (socket-activated)' : ''}` +
        `${config.relaxedCommandCheck ? ', relaxed command check' : ''}, log level ${this.#log.levelName}; ` +
        `fd store: ${this.#persistence.detail}`,
      { event: 'started' },
    );
    const inherited = this.#inherited;
    if (inherited) {
      this.#log.notice(
        `live upgrade: ${inherited.fromVersion} (pid ${inherited.pid}) → ${VERSION} (pid ${process.pid}): ` +
          `${this.#server.registry.size} registration(s) and ${this.#served.length} socket(s) kept; ` +
          `${Date.now() - inherited.handOverAt} ms without accepting`,
      );
    }
  }

  /** Phase 6, notify: READY=1 (after a live upgrade, this ends the reload), the watchdog, STATUS= refreshes. */
  notify(): void {
    // Stopped while starting (a KILL_REQ among the first requests): STOPPING=1 was sent; no READY=1 or watchdog now.
    if (this.#stopping) return;
    const notifier = this.#notifier;
    notifier.status(this.#statusText());
    notifier.ready();
    const watchdogEvery = notifier.startWatchdog();
    if (watchdogEvery > 0) this.#log.info(`watchdog: pinging systemd every ${watchdogEvery} ms`);
    // STATUS= is refreshed at most once a second, when the counts moved.
    let statusShown = '';
    if (notifier.active) {
      this.#statusPoll = setInterval(() => {
        const text = this.#statusText();
        if (text !== statusShown && !this.#stopping) notifier.status((statusShown = text));
      }, STATUS_INTERVAL_MS);
      this.#statusPoll.unref();
    }
  }

  /** Phase 5, signals (when asked to: the CLI does, in-process tests do not). */
  handleSignals(): void {
    // Stopped while starting (a KILL_REQ among the first requests): its stop has already run, and would not undo them.
    if (!this.#options.handleSignals || this.#stopping) return;
    for (const [event, handler] of this.#processHandlers()) process.on(event, handler as () => void);
  }

  /** The process events the daemon handles (signals, and errors no one caught), with their handlers. */
  #processHandlers(): (readonly [string, (arg: never) => void])[] {
    return [
      ['SIGTERM', this.#onTerm],
      ['SIGINT', this.#onTerm],
      ['SIGUSR1', this.#onUsr1],
      ['SIGUSR2', this.#onUsr2],
      ['SIGHUP', this.#onHup],
      // Test-only: SIGWINCH blocks the event loop for ever, so that the watchdog can be seen to fire.
      ...(this.#env.SDEPMD_TEST_HOOKS === '1' ? [['SIGWINCH', this.#onStall] as const] : []),
      // A crash would restart every app that requires epmd.service: a bug in one connection's handling is logged
      // and that connection is lost, but the daemon goes on.
      ['uncaughtException', this.#onInternalError],
      ['unhandledRejection', this.#onInternalError],
    ];
  }

  running(): RunningDaemon {
    return {
      server: this.#server,
      log: this.#log,
      notifier: this.#notifier,
      served: this.#served,
      underSystemd: this.#underSystemd,
      stopped: this.#stopped,
      stop: (reason) => this.#stop(reason, 0, 'hang-up'),
    };
  }

  #reportJournalProblems(): void {
    for (const problem of this.#persistence.journalProblems) this.#log.warning(`fd store journal: skipped ${problem}`);
  }

  // ---- What runs while serving ----------------------------------------------------------------------------------

  readonly #keepError = (message: string): void => this.#log.warning(message);

  get #underSystemd(): boolean {
    return this.#notifier.active || this.#origin.kind === 'activated';
  }

  #registrationChanged(registration: NodeRegistration, event: RegistrationEvent): void {
    const persistence = this.#persistence;
    // Kept before the node is answered, so that a crash right after the reply loses nothing.
    if (event === 'registered' && persistence.enabled) {
      registration.owner.fdName = persistence.added(
        recordOf(registration),
        registration.owner.fd,
        this.#server.registry.creationCounter,
        this.#keepError,
      );
    } else if (event === 'unregistered') {
      persistence.removed(registration.owner.fdName, this.#keepError);
    }
  }

  async #openControl(onError: (message: string) => void): Promise<void> {
    const path = this.#controlPath;
    const provider = {
      status: () => this.#statusRecord(),
      names: () => this.#nodeRecords(),
      upgrade: (tell: (reply: UpgradeReply) => Promise<void>) => this.#upgrade(tell),
      adopt: (nodes: readonly { info: NodeInfoRecord; fd: number }[]) => this.#adopt(nodes),
    };
    const control = path ? await startControlServer(path, provider, onError) : null;
    // Stopped meanwhile (a KILL_REQ among the first requests): #stop found no control socket to close.
    if (control && this.#stopping) control.close();
    else this.#control = control;
  }

  async #closeControl(): Promise<void> {
    const c = this.#control;
    this.#control = null;
    if (c) await new Promise<void>((resolve) => c.close(() => resolve()));
  }

  #statusText(): string {
    const server = this.#server;
    return composeStatus({
      registered: server.registry.size,
      lookups: server.stats.lookups,
      refused: server.stats.refused,
    });
  }

  #statusRecord(): StatusRecord {
    const server = this.#server;
    const persistence = this.#persistence;
    const startedAt = this.#inherited?.startedAt ?? server.startedAt;
    return {
      version: VERSION,
      pid: process.pid,
      startedAt: new Date(startedAt).toISOString(),
      uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
      underSystemd: this.#underSystemd,
      logLevel: this.#log.levelName,
      sockets: this.#served.map((s) => ({ address: s.address, port: s.port, source: describeTarget(s.target) })),
      upgrades: this.#inherited?.upgrades ?? 0,
      registered: server.registry.size,
      openConnections: server.openConnections,
      counts: { ...server.stats },
      refusals: { ...server.refusals },
      fdStore: {
        enabled: persistence.enabled,
        stored: persistence.stats.stored,
        restored: persistence.stats.restored,
        notRestored: persistence.stats.notRestored,
        detail: persistence.detail,
      },
    };
  }

  #nodeRecords(): NodeRecord[] {
    return this.#server.registry.newestFirst().map((r) => ({
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

  /**
   * SIGTERM (systemd's stop, or a restart): registrations stay in the fd store for the next start. SIGINT (the
   * uninstaller, or Ctrl-C): stop for good, hanging up on every node so that it registers elsewhere.
   */
  readonly #onTerm = (signal: NodeJS.Signals): void => {
    if (signal === 'SIGTERM' && this.#notifier.active) this.#sayWhoRestarts();
    void this.#stop(
      `${signal} received`,
      0,
      this.#persistence.enabled && signal === 'SIGTERM' ? 'preserve' : 'hang-up',
    );
  };
  readonly #onUsr1 = (): void => this.#changeLevel(+1);
  readonly #onUsr2 = (): void => this.#changeLevel(-1);
  readonly #onHup = (): void => void this.#upgrade();
  readonly #onStall = (): void => {
    this.#log.warning('test hook: stalling the event loop');
    for (;;);
  };
  readonly #onInternalError = (err: unknown): void => {
    const e = err instanceof Error ? err : new Error(String(err));
    this.#log.error(
      `internal error, carrying on: ${e.message} (${(e.stack ?? '').split('\n')[1]?.trim() ?? 'no stack'})`,
      { event: 'internal_error' },
    );
  };

  #detachSignals(): void {
    if (!this.#options.handleSignals) return;
    for (const [event, handler] of this.#processHandlers()) process.off(event, handler as () => void);
  }

  /** At a stop: if it is `systemctl restart epmd`, systemd restarts these units too. */
  #sayWhoRestarts(): void {
    const units = requiringUnits();
    if (units.length === 0) return;
    this.#log.notice(
      `if this is a restart, systemd restarts with epmd.service the units that require it: ${units.join(', ')}; ` +
        '`systemctl reload epmd` upgrades sdepmd without restarting them',
    );
  }

  #changeLevel(delta: number): void {
    const log = this.#log;
    const before = log.levelName;
    log.level = log.level + delta;
    // Said at notice, so that the change shows whatever the new level is.
    log.notice(`log level ${before} -> ${log.levelName}`);
  }

  #stopTimers(): void {
    if (this.#statusPoll) clearInterval(this.#statusPoll);
    this.#notifier.stopWatchdog();
  }

  // ---- The end: a live upgrade (SIGHUP), or a stop ----------------------------------------------------------------

  /**
   * A live upgrade (SIGHUP, or `sdepmd reload` over the control socket, which `tell` answers): check the new code,
   * then exec it in this process. On success this never returns (execve).
   */
  async #upgrade(tell?: (reply: UpgradeReply) => Promise<void>): Promise<void> {
    const answer = (reply: UpgradeReply): Promise<void> => tell?.(reply).catch(() => undefined) ?? Promise.resolve();
    const log = this.#log;
    const command = this.#options.command;
    if (this.#stopping) return answer({ ok: false, error: 'the daemon is stopping or already upgrading' });
    if (!command) {
      log.warning('live upgrade is not available in this process');
      return answer({ ok: false, error: 'live upgrade is not available in this process' });
    }
    this.#stopping = true;
    this.#notifier.reloading();
    log.notice(`live upgrade: checking the new code (${VERSION} is running)`);
    const server = this.#server;
    const listeners = server.listenerFds().map(({ fd, served }) => {
      const target = served.target;
      const passed = target.kind === 'fd' ? target.fd : -1;
      return { fd, name: describeName(target), fromSystemd: this.#fromSystemd.has(passed) };
    });
    const handOver = {
      server,
      startedAt: this.#inherited?.startedAt ?? server.startedAt,
      upgrades: this.#inherited?.upgrades ?? 0,
    };
    const stateDirectory = upgradeStateDirectory(this.#env);
    const preview = handOverState(handOver, listeners, Date.now());
    const check = await checkNewCode(command, this.#env, preview, stateDirectory);
    if (!check.ok) {
      log.error(`live upgrade failed, still serving ${VERSION}: ${check.error}`);
      this.#stopping = false;
      this.#notifier.ready();
      return answer({ ok: false, error: check.error });
    }
    await answer({ ok: true, fromVersion: VERSION, toVersion: check.version, pid: process.pid });
    log.notice(`live upgrade: ${VERSION} → ${check.version}: handing over ${server.registry.size} registration(s)`);
    if (this.#statusPoll) clearInterval(this.#statusPoll);
    await this.#closeControl();
    this.#persistence.close();
    const error = await execNewCode({ ...handOver, listeners, command, env: this.#env, stateDirectory, drainMs: 1000 });
    // Only when execve failed: the sockets are no longer served here; systemd restarts us, and the fd store keeps
    // the registrations.
    log.error(`live upgrade failed after the hand-over began: ${error}; exiting so that systemd restarts epmd`);
    this.#notifier.stopWatchdog();
    this.#detachSignals();
    this.#resolveStopped(1);
  }

  /** Adopts registrations taken over from another epmd (`sdepmd adopt`): new creations, kept in the fd store. */
  #adopt(nodes: readonly { info: NodeInfoRecord; fd: number }[]): AdoptReply {
    const server = this.#server;
    const persistence = this.#persistence;
    const adopted: string[] = [];
    const refused: { name: string; reason: string }[] = [];
    for (const { info, fd } of nodes) {
      const name = Buffer.from(info.name, 'hex');
      const display = name.toString('utf8');
      if (this.#stopping || server.registry.lookup(name)) {
        refused.push({ name: display, reason: this.#stopping ? 'the daemon is stopping' : 'already registered here' });
        closeFdQuietly(fd);
        continue;
      }
      const socket = new (lazyNet().Socket)({ fd, readable: true, writable: true });
      const restored = {
        info: { ...info, name, extra: Buffer.from(info.extra, 'hex') },
        creation: server.registry.issueCreation(info.highestVersion),
        registeredAt: Date.now(),
        fdName: null,
        peer: normaliseAddress(socket.remoteAddress),
      };
      if (!server.adopt(socket, restored)) {
        refused.push({ name: display, reason: 'could not be adopted' });
        continue;
      }
      const registration = server.registry.lookup(name);
      if (registration && persistence.enabled) {
        registration.owner.fdName = persistence.added(
          recordOf(registration),
          registration.owner.fd,
          server.registry.creationCounter,
          this.#keepError,
        );
      }
      adopted.push(display);
    }
    this.#log.notice(
      `adopted ${adopted.length} registration(s) from another epmd${adopted.length ? `: ${adopted.join(', ')}` : ''}` +
        `${refused.length ? `; refused ${refused.map((r) => `${r.name} (${r.reason})`).join(', ')}` : ''}`,
    );
    return { adopted, refused };
  }

  async #stop(reason: string, code: number, mode: 'hang-up' | 'preserve', drainMs = 1000): Promise<void> {
    if (this.#stopping) return this.#stopped.then(() => undefined);
    this.#stopping = true;
    this.#notifier.stopping();
    this.#stopTimers();
    const kept = mode === 'preserve' ? ', kept in the fd store for the next start' : '';
    this.#log.notice(`shutting down: ${reason}; ${this.#server.registry.size} node(s) were registered${kept}`, {
      event: 'stopping',
    });
    this.#detachSignals();
    await this.#server.close(mode, drainMs);
    this.#persistence.close();
    await this.#closeControl();
    this.#resolveStopped(code);
  }
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

/**
 * Watches a connection handed back by the fd store until stop(): stop() says why its node is gone (EOF, bytes, an
 * error), or null when it is still there. Bytes count as gone: the node would be unregistered for them anyway.
 */
function watchRestored(
  socket: Socket,
  record: StoredRecord,
): { socket: Socket; record: StoredRecord; stop(): string | null } {
  let gone: string | null = null;
  const onData = (chunk: Buffer) => (gone ??= `its node sent ${chunk.length} byte(s)`);
  const onEnd = () => (gone ??= 'its connection was closed');
  const onError = (err: Error) => (gone ??= `its connection failed: ${err.message}`);
  socket.on('data', onData);
  socket.on('end', onEnd);
  socket.on('close', onEnd);
  socket.on('error', onError);
  return {
    socket,
    record,
    stop() {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
      return gone;
    },
  };
}

/** A listening socket's name for the next code: systemd's FDNAME, else where it was bound. */
function describeName(target: ListenTarget): string {
  return target.kind === 'fd' ? target.name || `fd ${target.fd}` : describeTarget(target);
}

function closeFdQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

function describeServed(s: ServedSocket): string {
  if (s.target.kind === 'address') return describeTarget(s.target);
  return `${formatEndpoint(s.address, s.port)} (${describeTarget(s.target)})`;
}
