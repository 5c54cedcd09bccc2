/**
 * The project's one N-API addon (native/sdepmd): libsystemd and the few syscalls Node lacks.
 * Loaded lazily, once per path; a missing or broken build is reported as an Error value, never thrown, so that
 * callers can fall back (for example to a no-op fd store) and say why.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import type { EngineAddon } from '../engine/native-engine';

/** What the addon exports. Each native/sdepmd/*.c file adds its functions here. */
export interface SdepmdAddon extends EngineAddon {
  /** sd_pid_notify_with_fds(3): < 0 is -errno, 0 means NOTIFY_SOCKET is unset, > 0 means sent. */
  notifyWithFds(state: string, fds: number[]): number;
  /** Sets FD_CLOEXEC on `fd`: 0, or -errno (-EBADF when it is not open). */
  setCloexec(fd: number): number;
  /**
   * The pidfs inode id of a pidfd for `pid` (what systemd >= 256 passes as LISTEN_PIDFDID), or -errno:
   * -EOPNOTSUPP when pidfds are not on pidfs (Linux < 6.9), -ESRCH for no such process.
   */
  pidfdInodeId(pid: number): bigint | number;
  /** sd_journal_sendv(3) with "KEY=value" fields: 0 once sent, < 0 is -errno. */
  journalSend(fields: string[]): number;
  /** pidfd_open(2): a pidfd, or -errno. */
  pidfdOpen(pid: number): number;
  /** pidfd_getfd(2): a close-on-exec copy of another process's fd, or -errno. */
  pidfdGetfd(pidfd: number, fd: number): number;
  /** Sends all of `data` on a unix stream socket, `fds` (at most 253) with its first byte: bytes sent, or -errno. */
  sendFds(sock: number, data: Buffer, fds: number[]): number;
  /** One non-blocking recvmsg(2): the bytes (empty at end of stream) and fds received, or -errno (-EAGAIN: none yet). */
  recvFds(sock: number, maxBytes: number, maxFds: number): { data: Buffer; fds: number[] } | number;
  /** Clears FD_CLOEXEC (inheritable: kept across execve) or sets it: 0, or -errno. */
  setInheritable(fd: number, inheritable: boolean): number;
  /** A close-on-exec duplicate (>= 3), or -errno. */
  dupFd(fd: number): number;
  /** execve(2): returns only on failure, with -errno. */
  execve(path: string, argv: string[], env: string[]): number;
  /**
   * The backlog of a listening TCP socket (what `ss -ltn` shows as Send-Q), or -errno: -EINVAL when it is not
   * listening, -EOPNOTSUPP or -ENOTSOCK when it is not TCP.
   */
  listenBacklog(fd: number): number;
  /** malloc_trim(0): gives the C heap's free pages back to the system; 1 when it released some, else 0. */
  trimHeap(): number;
}

/** dist/native/addon.js and src/native/addon.ts are both two levels below the repo root. */
export const DEFAULT_ADDON_PATH = path.join(
  __dirname,
  '..',
  '..',
  'native',
  'sdepmd',
  'build',
  'Release',
  'sdepmd.node',
);

const REQUIRED_EXPORTS: readonly (keyof SdepmdAddon)[] = [
  'notifyWithFds',
  'setCloexec',
  'pidfdInodeId',
  'journalSend',
  'pidfdOpen',
  'pidfdGetfd',
  'sendFds',
  'recvFds',
  'setInheritable',
  'dupFd',
  'execve',
  'listenBacklog',
  'trimHeap',
  // engine.c
  'engineOpen',
  'engineListen',
  'engineAdoptListener',
  'engineListenerInfo',
  'engineCloseListener',
  'engineAccepting',
  'engineSend',
  'engineClose',
  'engineResume',
  'engineAdopt',
  'enginePeer',
  'engineFd',
  'engineWatched',
  'enginePending',
  'engineCounters',
  'engineDestroy',
];

const cache = new Map<string, SdepmdAddon | Error>();

/** The addon at `addonPath`, or an Error saying why it cannot be used. */
export function loadAddon(addonPath: string = DEFAULT_ADDON_PATH): SdepmdAddon | Error {
  let cached = cache.get(addonPath);
  if (cached === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- a .node module can only be loaded with require(); its shape is checked below
      const mod = require(addonPath) as Partial<Record<keyof SdepmdAddon, unknown>> | null;
      const missing = REQUIRED_EXPORTS.filter((name) => typeof mod?.[name] !== 'function');
      if (missing.length > 0) throw new Error(`it does not export ${missing.join(', ')}`);
      cached = mod as SdepmdAddon;
    } catch (err) {
      cached = new Error(
        `cannot load the native addon ${addonPath}: ${(err as Error).message} (build it: npm run build)`,
      );
    }
    cache.set(addonPath, cached);
  }
  return cached;
}

/** The symbolic name of a positive errno number (22 -> "EINVAL"), for the addon's negative returns. */
export function errnoName(errno: number): string {
  for (const [key, value] of Object.entries(os.constants.errno)) {
    if (value === errno) return key;
  }
  return `errno ${errno}`;
}
