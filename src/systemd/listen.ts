/**
 * Socket activation: the fds systemd passes in, as sd_listen_fds(3) and sd_listen_fds_with_names(3) read them.
 *
 * - LISTEN_PID unset: nothing was passed. Set but not a pid: an error. Another process's pid: nothing for us.
 * - LISTEN_PIDFDID (systemd >= 256) is the inode id of a pidfd for the process the fds are meant for: when set it
 *   must be a number, and when this kernel gives pidfds such ids (pidfs, Linux >= 6.9) it must be ours, or the
 *   fds are not for us (a pid can be reused; this id cannot). Where the kernel has no such ids it is not checked.
 * - LISTEN_FDS unset: nothing was passed. Not a number, 0 or less: an error (sd_listen_fds returns -EINVAL).
 * - The fds start at 3 (SD_LISTEN_FDS_START); FD_CLOEXEC is set on each, so that no child inherits them. A
 *   count that names an fd that is not open is an error.
 * - LISTEN_FDNAMES, when set, names each fd (colon-separated; a different count is an error); otherwise each is
 *   "unknown".
 * - LISTEN_PID, LISTEN_PIDFDID, LISTEN_FDS and LISTEN_FDNAMES are removed from the environment in every case.
 *
 * systemd writes these numbers in decimal; only decimal digits are accepted here.
 */
import { errnoName, loadAddon, type SdepmdAddon } from '../native/addon';

export const SD_LISTEN_FDS_START = 3;
const INT_MAX = 0x7fffffff;
const LISTEN_VARIABLES = ['LISTEN_PID', 'LISTEN_PIDFDID', 'LISTEN_FDS', 'LISTEN_FDNAMES'] as const;

export interface PassedFd {
  readonly fd: number;
  /** The name from LISTEN_FDNAMES (the socket unit's FileDescriptorName=, by default its unit name), or "unknown". */
  readonly name: string;
}

export type ListenFds =
  /** `fds` is empty when nothing was passed to this process. */
  { readonly ok: true; readonly fds: readonly PassedFd[] } | { readonly ok: false; readonly error: string };

/** The two calls listenFds needs from the native addon (injectable, for tests). */
export type FdCalls = Pick<SdepmdAddon, 'setCloexec' | 'pidfdInodeId'>;

/** Reads (and by default clears) LISTEN_PID, LISTEN_PIDFDID, LISTEN_FDS and LISTEN_FDNAMES. */
export function listenFds(
  env: NodeJS.ProcessEnv = process.env,
  pid: number = process.pid,
  unsetEnvironment = true,
  fdCalls: FdCalls | Error = loadAddon(),
): ListenFds {
  try {
    return parseListenFds(env, pid, fdCalls);
  } finally {
    if (unsetEnvironment) for (const name of LISTEN_VARIABLES) delete env[name];
  }
}

function parseListenFds(env: NodeJS.ProcessEnv, pid: number, fdCalls: FdCalls | Error): ListenFds {
  const fail = (error: string): ListenFds => ({ ok: false, error });
  const nothing: ListenFds = { ok: true, fds: [] };

  const listenPid = env.LISTEN_PID;
  if (listenPid === undefined) return nothing;
  if (!isDecimal(listenPid) || Number(listenPid) < 1 || Number(listenPid) > INT_MAX) {
    return fail(`LISTEN_PID is not a pid: ${JSON.stringify(listenPid)}`);
  }
  if (Number(listenPid) !== pid) return nothing;

  const pidfdId = env.LISTEN_PIDFDID;
  if (pidfdId !== undefined) {
    if (!isDecimal(pidfdId) || BigInt(pidfdId) >= 2n ** 64n) {
      return fail(`LISTEN_PIDFDID is not a pidfd inode id: ${JSON.stringify(pidfdId)}`);
    }
    // As sd_listen_fds: compared only when our own id can be had.
    const own = fdCalls instanceof Error ? null : fdCalls.pidfdInodeId(pid);
    if (typeof own === 'bigint' && own !== BigInt(pidfdId)) return nothing;
  }

  const listenFdsText = env.LISTEN_FDS;
  if (listenFdsText === undefined) return nothing;
  if (!/^[+-]?\d+$/.test(listenFdsText)) return fail(`LISTEN_FDS is not a count: ${JSON.stringify(listenFdsText)}`);
  const count = Number(listenFdsText);
  if (count <= 0 || count > INT_MAX - SD_LISTEN_FDS_START)
    return fail(`LISTEN_FDS must be from 1 to ${INT_MAX - SD_LISTEN_FDS_START}, not ${listenFdsText}`);

  const names =
    env.LISTEN_FDNAMES === undefined ? null : env.LISTEN_FDNAMES === '' ? [] : env.LISTEN_FDNAMES.split(':');
  if (fdCalls instanceof Error) return fail(`cannot set FD_CLOEXEC on the passed fds: ${fdCalls.message}`);
  const fds: PassedFd[] = [];
  for (let i = 0; i < count; i++) {
    const fd = SD_LISTEN_FDS_START + i;
    const r = fdCalls.setCloexec(fd);
    if (r < 0) return fail(`LISTEN_FDS is ${count}, but fd ${fd}: ${errnoName(-r)}`);
    fds.push({ fd, name: names?.[i] ?? 'unknown' });
  }
  if (names && names.length !== count) {
    return fail(`LISTEN_FDNAMES names ${names.length} fd(s) but LISTEN_FDS is ${count}`);
  }
  return { ok: true, fds };
}

function isDecimal(text: string): boolean {
  return /^\d+$/.test(text);
}
