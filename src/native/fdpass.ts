/**
 * Moving raw file descriptors between processes (native/sdepmd/fdpass.c), with errors as Error objects whose
 * `code` is the errno name: copying another process's fd (pidfd_getfd), SCM_RIGHTS over a unix stream socket,
 * and keeping fds across execve for a live upgrade.
 */
import * as fs from 'node:fs';
import { constants } from 'node:os';
import { errnoName, loadAddon, type SdepmdAddon } from './addon';

export class FdPassError extends Error {
  constructor(
    readonly call: string,
    readonly errno: number,
  ) {
    super(`${call}: ${errnoName(errno)}`);
  }
  get code(): string {
    return errnoName(this.errno);
  }
}

function addon(): SdepmdAddon {
  const a = loadAddon();
  if (a instanceof Error) throw a;
  return a;
}

function check(call: string, result: number): number {
  if (result < 0) throw new FdPassError(call, -result);
  return result;
}

/** A pidfd for `pid` (close it with closeFd). */
export function pidfdOpen(pid: number): number {
  return check(`pidfd_open(${pid})`, addon().pidfdOpen(pid));
}

/** A close-on-exec copy of fd `fd` of the process behind `pidfd` (needs ptrace access: root). */
export function pidfdGetfd(pidfd: number, fd: number): number {
  return check(`pidfd_getfd(${fd})`, addon().pidfdGetfd(pidfd, fd));
}

/** Sends `data` on a unix stream socket with `fds` attached to its first byte. */
export function sendFds(sock: number, data: Buffer, fds: readonly number[]): void {
  check('sendmsg', addon().sendFds(sock, data, [...fds]));
}

/** One non-blocking read: null when nothing is there yet; data of length 0 at end of stream. */
export function recvFds(sock: number, maxBytes: number, maxFds: number): { data: Buffer; fds: number[] } | null {
  const r = addon().recvFds(sock, maxBytes, maxFds);
  if (typeof r !== 'number') return r;
  if (-r === constants.errno.EAGAIN) return null;
  throw new FdPassError('recvmsg', -r);
}

/** inheritable: the fd stays open across execve (FD_CLOEXEC cleared); false sets FD_CLOEXEC again. */
export function setInheritable(fd: number, inheritable: boolean): void {
  check(`fcntl(${fd}, F_SETFD)`, addon().setInheritable(fd, inheritable));
}

export function dupFd(fd: number): number {
  return check(`dup(${fd})`, addon().dupFd(fd));
}

/** Replaces this process's program; throws only when execve fails. */
export function execve(path: string, argv: readonly string[], env: NodeJS.ProcessEnv): never {
  const envp = Object.entries(env)
    .filter((e): e is [string, string] => typeof e[1] === 'string')
    .map(([k, v]) => `${k}=${v}`);
  check(`execve(${path})`, addon().execve(path, [...argv], envp));
  throw new FdPassError(`execve(${path})`, constants.errno.EIO);
}

export function closeFd(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // already closed
  }
}
