/**
 * Socket activation: the sockets systemd passes in, with sd_listen_fds(3)'s exact semantics.
 *
 * - LISTEN_PID must equal our pid, or the variables were meant for another process and are ignored.
 * - LISTEN_FDS counts the fds, which start at 3 (SD_LISTEN_FDS_START).
 * - LISTEN_FDNAMES, when set, names each fd; colon-separated, one name per fd.
 * - The three variables are removed from the environment in every case, so that children do not inherit them.
 *
 * The fd numbering comes from the systemd-socket package; the checks it lacks (LISTEN_PID, the names, the
 * environment clean-up) are here.
 */
import systemdSocket = require('systemd-socket');

export const SD_LISTEN_FDS_START = 3;

export interface PassedFd {
  readonly fd: number;
  /** The name from LISTEN_FDNAMES (the socket unit's FileDescriptorName=, by default its unit name), or "unknown". */
  readonly name: string;
}

export type ListenFds =
  /** `fds` is empty when nothing was passed to this process. */
  | { readonly ok: true; readonly fds: readonly PassedFd[] }
  | { readonly ok: false; readonly error: string };

/** Reads (and by default clears) LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES. */
export function listenFds(env: NodeJS.ProcessEnv = process.env, pid: number = process.pid, unsetEnvironment = true): ListenFds {
  try {
    return parseListenFds(env, pid);
  } finally {
    if (unsetEnvironment) {
      delete env.LISTEN_PID;
      delete env.LISTEN_FDS;
      delete env.LISTEN_FDNAMES;
    }
  }
}

function parseListenFds(env: NodeJS.ProcessEnv, pid: number): ListenFds {
  const listenPid = env.LISTEN_PID;
  if (listenPid === undefined || env.LISTEN_FDS === undefined) return { ok: true, fds: [] };
  if (!/^\d+$/.test(listenPid)) return { ok: false, error: `LISTEN_PID is not a pid: ${JSON.stringify(listenPid)}` };
  if (Number(listenPid) !== pid) return { ok: true, fds: [] };
  if (!/^\d+$/.test(env.LISTEN_FDS)) return { ok: false, error: `LISTEN_FDS is not a count: ${JSON.stringify(env.LISTEN_FDS)}` };
  const count = Number(env.LISTEN_FDS);
  if (count > 4096) return { ok: false, error: `LISTEN_FDS is implausibly large: ${count}` };
  const names = env.LISTEN_FDNAMES === undefined ? null : env.LISTEN_FDNAMES.split(':');
  if (names && names.length !== count) {
    return { ok: false, error: `LISTEN_FDNAMES names ${names.length} fd(s) but LISTEN_FDS is ${count}` };
  }
  const fds: PassedFd[] = [];
  for (let i = 0; i < count; i++) {
    const passed = withEnv(env, () => systemdSocket(i));
    if (!passed) return { ok: false, error: `LISTEN_FDS: no fd at index ${i}` };
    fds.push({ fd: passed.fd, name: names?.[i] ?? 'unknown' });
  }
  return { ok: true, fds };
}

/** systemd-socket reads process.env; point it at the environment being parsed. */
function withEnv<T>(env: NodeJS.ProcessEnv, f: () => T): T {
  if (env === process.env) return f();
  const saved = process.env.LISTEN_FDS;
  process.env.LISTEN_FDS = env.LISTEN_FDS;
  try {
    return f();
  } finally {
    if (saved === undefined) delete process.env.LISTEN_FDS;
    else process.env.LISTEN_FDS = saved;
  }
}
