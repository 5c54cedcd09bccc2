/**
 * Live upgrade: the running daemon starts the new code as a child and hands it the listening sockets and every
 * registration's connection, then the child becomes systemd's main process and the old one exits. No systemd
 * restart job runs, so no unit with Requires=epmd.service is restarted, no node sees its connection close, and
 * no connection is refused: while the sockets change hands, new connections wait in the kernel's backlog.
 *
 * Handles travel over Node's IPC channel (SCM_RIGHTS underneath), the same mechanism as the cluster module.
 *
 *   old process                                   new process (SDEPMD_UPGRADE=1)
 *   SIGHUP ─► RELOADING=1, spawn ───────────────► loads its code ─► "loaded"
 *   each listening socket ──────────────────────► holds new connections in a queue
 *   stops accepting; lets in-flight requests end
 *   each registration's socket + record ────────► adopts it into its registry
 *   "done" (counters, creation counter) ────────► serves every socket, drains the queue ─► "serving"
 *   MAINPID=<new>, READY=1; "main"; exits ──────► starts its watchdog; now systemd's main process
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Server, Socket } from 'node:net';
import type { EpmdServer } from '../engine/server';
import type { RestoredRegistration, ServerStats } from '../policy/connection';
import type { Logger } from './log';
import type { Notifier } from '../systemd/notify';
import { restoredFrom, type RegistrationRecord } from '../registry/registration-record';

export type UpgradeMessage =
  | { readonly type: 'loaded' }
  | { readonly type: 'listener'; readonly source: string }
  | { readonly type: 'registration'; readonly registration: RegistrationRecord }
  | { readonly type: 'done'; readonly creationCounter: number; readonly stats: ServerStats; readonly startedAt: number }
  | { readonly type: 'serving' }
  | { readonly type: 'main' };

/** Set in the new process's environment. */
export const UPGRADE_ENV = 'SDEPMD_UPGRADE';

export interface HandOverOptions {
  readonly server: EpmdServer;
  readonly log: Logger;
  readonly notifier: Notifier;
  /** The command that runs the (new) daemon: the Node binary's arguments, e.g. [entry script, ...flags]. */
  readonly command: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  /** How long in-flight requests may take to finish once accepting has stopped. */
  readonly drainMs?: number;
}

export type HandOverResult =
  | { readonly ok: true; readonly pid: number; readonly registrations: number; readonly ms: number }
  /** `recoverable`: nothing was handed over yet, and this process still serves. */
  | { readonly ok: false; readonly recoverable: boolean; readonly error: string };

/** The old process's side. On success the caller exits; the child is systemd's main process. */
export async function handOver(options: HandOverOptions): Promise<HandOverResult> {
  const { server, log, notifier } = options;
  const started = Date.now();
  const env: NodeJS.ProcessEnv = { ...options.env, [UPGRADE_ENV]: '1' };
  for (const name of ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES', 'WATCHDOG_PID']) delete env[name];
  const child = spawn(process.execPath, [...options.command], { env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const messages = messageQueue(child);

  const loaded = await messages.next(30_000);
  if (loaded?.type !== 'loaded') {
    child.kill('SIGKILL');
    return { ok: false, recoverable: true, error: `the new process did not start: ${messages.failure()}` };
  }

  // From here on, the sockets are the child's.
  for (const listener of server.listeners) {
    const address = listener.address();
    const source = address && typeof address === 'object' ? `${address.address}:${address.port}` : String(address);
    await send(child, { type: 'listener', source }, listener);
  }
  await server.stopAccepting(options.drainMs ?? 1000);
  const handed = server.releaseRegistrations();
  for (const { socket, registration } of handed) {
    await send(child, { type: 'registration', registration }, socket);
  }
  await send(child, {
    type: 'done',
    creationCounter: server.registry.creationCounter,
    stats: { ...server.stats },
    startedAt: server.startedAt,
  });
  const serving = await messages.next(60_000);
  if (serving?.type !== 'serving') {
    child.kill('SIGKILL');
    return { ok: false, recoverable: false, error: `the new process failed during the hand-over: ${messages.failure()}` };
  }
  notifier.handOver(child.pid!);
  await send(child, { type: 'main' });
  child.disconnect();
  child.unref();
  log.notice(`live upgrade: handed ${handed.length} registration(s) and ${server.listeners.length} socket(s) to pid ${child.pid} in ${Date.now() - started} ms`);
  return { ok: true, pid: child.pid!, registrations: handed.length, ms: Date.now() - started };
}

export interface Inherited {
  readonly listeners: readonly { readonly server: Server; readonly source: string }[];
  readonly registrations: readonly { readonly socket: Socket; readonly restored: RestoredRegistration }[];
  readonly creationCounter: number;
  readonly stats: ServerStats;
  readonly startedAt: number;
  /** Connections accepted on the inherited sockets before this process was ready: serve them next. */
  readonly queued: Socket[];
  /** Resolves when the old process has told systemd that this one is the main process. */
  readonly becameMain: Promise<void>;
  /** Tells the old process that everything is served. */
  serving(): void;
}

/** The new process's side: receives everything, queueing the connections that arrive meanwhile. */
export function receiveHandOver(): Promise<Inherited> {
  return new Promise((resolve, reject) => {
    const listeners: { server: Server; source: string }[] = [];
    const registrations: { socket: Socket; restored: RestoredRegistration }[] = [];
    const queued: Socket[] = [];
    let becameMain!: () => void;
    const main = new Promise<void>((r) => (becameMain = r));
    const onMessage = (message: UpgradeMessage, handle: unknown) => {
      switch (message.type) {
        case 'listener': {
          const server = handle as Server;
          server.on('connection', (socket: Socket) => {
            socket.pause();
            queued.push(socket);
          });
          listeners.push({ server, source: message.source });
          return;
        }
        case 'registration':
          registrations.push({ socket: handle as Socket, restored: restoredFrom(message.registration) });
          return;
        case 'done':
          return resolve({
            listeners,
            registrations,
            creationCounter: message.creationCounter,
            stats: message.stats,
            startedAt: message.startedAt,
            queued,
            becameMain: main,
            serving: () => process.send?.({ type: 'serving' } satisfies UpgradeMessage),
          });
        case 'main':
          process.off('message', onMessage);
          becameMain();
          return;
      }
    };
    process.on('message', onMessage);
    process.once('disconnect', () => {
      becameMain();
      reject(new Error('the old process went away during the hand-over'));
    });
    process.send?.({ type: 'loaded' } satisfies UpgradeMessage);
  });
}

function send(child: ChildProcess, message: UpgradeMessage, handle?: Server | Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | null) => (err ? reject(err) : resolve());
    if (handle) child.send(message, handle as Socket, {}, done);
    else child.send(message, done);
  });
}

function messageQueue(child: ChildProcess) {
  const inbox: UpgradeMessage[] = [];
  const waiting: ((m: UpgradeMessage | null) => void)[] = [];
  let exit: string | null = null;
  child.on('message', (m: UpgradeMessage) => {
    const w = waiting.shift();
    if (w) w(m);
    else inbox.push(m);
  });
  child.once('exit', (code, signal) => {
    exit = `exited with ${signal ?? code}`;
    for (const w of waiting.splice(0)) w(null);
  });
  return {
    next(timeoutMs: number): Promise<UpgradeMessage | null> {
      const queued = inbox.shift();
      if (queued) return Promise.resolve(queued);
      if (exit) return Promise.resolve(null);
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          exit ??= `no answer within ${timeoutMs} ms`;
          resolve(null);
        }, timeoutMs);
        waiting.push((m) => {
          clearTimeout(timer);
          resolve(m);
        });
      });
    },
    failure: () => exit ?? 'unexpected message',
  };
}
