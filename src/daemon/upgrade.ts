/**
 * Live upgrade: the running daemon replaces its own program with the new code (execve), in the same process.
 *
 * Why execve and not a child: systemd supervises its own child only. A child that becomes the main process
 * (MAINPID=) is "not our child": systemd logs so at every reload, and a later stop could not see it exit
 * cleanly. With execve the pid never changes, so no MAINPID= is needed, the fd store and the watchdog stay with
 * the same process, and a later `systemctl stop` is an ordinary stop.
 *
 *   systemctl reload epmd ─► ExecReload: `sdepmd reload` asks over the control socket, and waits
 *   daemon: RELOADING=1 + MONOTONIC_USEC ─► runs the new code once in check mode (it loads, reads a preview of
 *     the UpgradeState, and exits 0): new code that cannot read this code's hand-over fails here, not after execve
 *     check failed ─► READY=1; answers the error; keeps serving; `sdepmd reload` exits 1: the reload fails
 *     check passed ─► answers "exec"; stops accepting (the listening sockets stay open: connections queue in
 *       the backlog); lets requests in flight finish; writes the UpgradeState; clears close-on-exec on the
 *       listening sockets and every registration's connection; execve(node, same command line)
 *   new code: reads the state, serves the same fds, READY=1 ─► `sdepmd reload` sees the new version: exit 0
 *
 * No systemd restart job runs, so no unit with Requires=epmd.service is restarted and no node sees its
 * connection close. The hand-over carries raw fds only (handover.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { EpmdServer } from '../engine/server';
import { recordOf } from '../registry/registration-record';
import { closeFd, dupFd, execve, setInheritable } from '../native/fdpass';
import { parseUpgradeState, type HandedListener, type HandedRegistration, type UpgradeState } from './handover';
import { VERSION } from '../version';
import { UPGRADE_CHECK_ENV } from './config';
import { runtimeDirectory } from '../systemd/runtime-directory';
import { lazyChildProcess } from '../util/lazy-modules';

/** Names the file that holds the UpgradeState, in the new code's environment. */
export const UPGRADE_STATE_ENV = 'SDEPMD_UPGRADE_STATE';
/**
 * Names a preview of the UpgradeState in the check run's environment: the new code must be able to read the
 * hand-over before the old code stops serving, or the upgrade fails with the old code still serving.
 */
export const UPGRADE_PREVIEW_ENV = 'SDEPMD_UPGRADE_PREVIEW';
/** How long the new code may take to load in check mode. */
const CHECK_TIMEOUT_MS = 30_000;

export type CheckResult =
  { readonly ok: true; readonly version: string } | { readonly ok: false; readonly error: string };

/**
 * Runs the new code in check mode; it must read `preview` (the hand-over as it stands now), exit 0 and print its
 * version.
 */
export async function checkNewCode(
  command: readonly string[],
  env: NodeJS.ProcessEnv,
  preview: UpgradeState,
  stateDirectory: string,
): Promise<CheckResult> {
  const file = path.join(stateDirectory, `upgrade-preview-${process.pid}.json`);
  try {
    fs.writeFileSync(file, JSON.stringify(preview), { mode: 0o600 });
    return await runCheck(command, { ...env, [UPGRADE_PREVIEW_ENV]: file });
  } catch (err) {
    return { ok: false, error: `cannot write the hand-over preview: ${(err as Error).message}` };
  } finally {
    fs.rmSync(file, { force: true });
  }
}

function runCheck(command: readonly string[], env: NodeJS.ProcessEnv): Promise<CheckResult> {
  return new Promise((resolve) => {
    const childEnv: NodeJS.ProcessEnv = { ...env, [UPGRADE_CHECK_ENV]: '1' };
    for (const name of [
      'LISTEN_PID',
      'LISTEN_FDS',
      'LISTEN_FDNAMES',
      'NOTIFY_SOCKET',
      'WATCHDOG_PID',
      'WATCHDOG_USEC',
      UPGRADE_STATE_ENV,
    ]) {
      delete childEnv[name];
    }
    let out = '';
    let err = '';
    const child = lazyChildProcess().spawn(process.execPath, [...process.execArgv, ...command], {
      env: childEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), CHECK_TIMEOUT_MS);
    child.stdout.on('data', (d: Buffer) => (out = (out + d.toString('utf8')).slice(-4096)));
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString('utf8')).slice(-4096)));
    child.once('error', (e) => {
      clearTimeout(timer);
      resolve({ ok: false, error: `cannot run the new code: ${e.message}` });
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const version = /^sdepmd (\S+)$/m.exec(out)?.[1];
      if (code === 0 && version) return resolve({ ok: true, version });
      const why = signal ? `was killed by ${signal}` : `exited with ${code}`;
      const said = err.trim().split('\n').slice(-3).join(' / ');
      resolve({ ok: false, error: `the new code ${why} in check mode${said ? `: ${said}` : ''}` });
    });
  });
}

export interface ExecOptions {
  readonly server: EpmdServer;
  /** The listening sockets as served: the names to keep for each. */
  readonly listeners: readonly HandedListener[];
  /** The command line to run again: [entry script, ...arguments]. */
  readonly command: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  /** Where to leave the UpgradeState (RUNTIME_DIRECTORY under systemd). */
  readonly stateDirectory: string;
  readonly startedAt: number;
  readonly upgrades: number;
  /** How long requests in flight may take once accepting has stopped. */
  readonly drainMs: number;
}

/** The hand-over as it stands: what the new code gets after execve, or (with the served fds) its preview. */
export function handOverState(
  options: Pick<ExecOptions, 'server' | 'startedAt' | 'upgrades'>,
  listeners: readonly HandedListener[],
  handOverAt: number,
): UpgradeState {
  const { server } = options;
  const registrations: HandedRegistration[] = [];
  for (const r of server.registry.newestFirst()) {
    const fd = r.owner.fd;
    if (fd >= 0) registrations.push({ fd, record: recordOf(r) });
  }
  return {
    format: 1,
    fromVersion: VERSION,
    pid: process.pid,
    startedAt: options.startedAt,
    handOverAt,
    upgrades: options.upgrades + 1,
    creationCounter: server.registry.creationCounter,
    stats: { ...server.stats },
    listeners: [...listeners],
    registrations,
  };
}

/**
 * The old code's side, past the check. Returns only if execve failed, with the reason: the listening sockets are
 * then no longer served by this process, and the caller must exit (systemd restarts it; the fd store keeps the
 * registrations).
 */
export async function execNewCode(options: ExecOptions): Promise<string> {
  const { server } = options;
  const handOverAt = Date.now();
  // Copies that outlive Node's handles: closing a listening server would otherwise close the socket itself.
  const listeners: HandedListener[] = [];
  try {
    for (const l of options.listeners) {
      if (l.fd < 0) throw new Error(`listening socket ${l.name} has no fd`);
      listeners.push({ fd: dupFd(l.fd), name: l.name, fromSystemd: l.fromSystemd });
    }
  } catch (err) {
    for (const l of listeners) closeFd(l.fd);
    return `cannot keep the listening sockets: ${(err as Error).message}`;
  }
  // New connections wait in the kernel's backlog from here on.
  await server.stopAccepting(options.drainMs);
  const state = handOverState(options, listeners, handOverAt);
  const { registrations } = state;
  const file = path.join(options.stateDirectory, `upgrade-${process.pid}.json`);
  try {
    fs.writeFileSync(file, JSON.stringify(state), { mode: 0o600 });
    // Node marks stdin, stdout and stderr close-on-exec at start (libuv's uv_disable_stdio_inheritance): without
    // clearing that too, the new code would log to /dev/null instead of the journal.
    for (const fd of [0, 1, 2, ...listeners.map((l) => l.fd), ...registrations.map((r) => r.fd)])
      setInheritable(fd, true);
    execve(process.execPath, [process.execPath, ...process.execArgv, ...options.command], {
      ...options.env,
      [UPGRADE_STATE_ENV]: file,
    });
  } catch (err) {
    return (err as Error).message;
  }
}

/** The directory for the UpgradeState: the unit's RuntimeDirectory=, else the temporary directory. */
export function upgradeStateDirectory(env: NodeJS.ProcessEnv): string {
  return runtimeDirectory(env.RUNTIME_DIRECTORY) ?? os.tmpdir();
}

/**
 * Check mode's side: whether this code can read the hand-over the running code would leave (null), or why not.
 * The preview's fds are the old process's, not ours: only the document is checked.
 */
export function checkHandOverPreview(env: NodeJS.ProcessEnv): string | null {
  const file = env[UPGRADE_PREVIEW_ENV];
  if (!file) return null;
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    return `cannot read the hand-over preview: ${(err as Error).message}`;
  }
  const parsed = parseUpgradeState(text);
  return parsed.ok ? null : `this code cannot take over the running daemon's hand-over: ${parsed.error}`;
}

/**
 * The new code's side: reads (and removes) the state the old code left, and makes its fds close-on-exec again.
 * Fds it names that turn out not to be open are dropped from it.
 */
export function readUpgradeState(file: string): UpgradeState {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } finally {
    try {
      fs.unlinkSync(file);
    } catch {
      // gone already
    }
  }
  const parsed = parseUpgradeState(text);
  if (!parsed.ok) throw new Error(`live upgrade: the state ${file} is invalid: ${parsed.error}`);
  const state = parsed.value;
  const open = (fd: number) => {
    try {
      setInheritable(fd, false);
      return true;
    } catch {
      return false;
    }
  };
  return {
    ...state,
    listeners: state.listeners.filter((l) => open(l.fd)),
    registrations: state.registrations.filter((r) => open(r.fd)),
  };
}
