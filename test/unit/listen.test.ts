/**
 * listenFds against sd_listen_fds(3) / sd_listen_fds_with_names(3): the parsing with recorded fd calls, then the
 * real addon on real fds. test/integration/activation.test.ts passes real sockets to the daemon, and
 * test/e2e/listen.e2e.test.ts has a real systemd pass them.
 */
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { listenFds, type FdCalls } from '../../src/systemd/listen';
import { DEFAULT_ADDON_PATH, loadAddon } from '../../src/native/addon';

/** Fd calls that record what was asked: fds 3..3+open-1 are open; our pidfd id is `ownId` (null: no pidfs). */
function fakeFds(open: number, ownId: bigint | null = null): FdCalls & { cloexec: number[] } {
  const cloexec: number[] = [];
  return {
    cloexec,
    setCloexec: (fd) => (fd < 3 + open ? (cloexec.push(fd), 0) : -9 /* EBADF */),
    pidfdInodeId: () => ownId ?? -95 /* EOPNOTSUPP */,
  };
}

describe('listenFds (sd_listen_fds semantics)', () => {
  test('nothing passed: no LISTEN_PID, or no LISTEN_FDS', () => {
    expect(listenFds({}, 100, true, fakeFds(0))).toEqual({ ok: true, fds: [] });
    expect(listenFds({ LISTEN_PID: '100' }, 100, true, fakeFds(0))).toEqual({ ok: true, fds: [] });
    expect(listenFds({ LISTEN_FDS: '2' }, 100, true, fakeFds(2))).toEqual({ ok: true, fds: [] });
  });

  test('fds start at 3, each gets FD_CLOEXEC, names come from LISTEN_FDNAMES, all four variables are cleared', () => {
    const env: NodeJS.ProcessEnv = {
      LISTEN_PID: '100',
      LISTEN_PIDFDID: '77',
      LISTEN_FDS: '3',
      LISTEN_FDNAMES: 'epmd.socket:epmd.socket:node-x',
      OTHER: 'kept',
    };
    const fds = fakeFds(3, 77n);
    expect(listenFds(env, 100, true, fds)).toEqual({
      ok: true,
      fds: [
        { fd: 3, name: 'epmd.socket' },
        { fd: 4, name: 'epmd.socket' },
        { fd: 5, name: 'node-x' },
      ],
    });
    expect(fds.cloexec).toEqual([3, 4, 5]);
    expect(env).toEqual({ OTHER: 'kept' });
  });

  test('without LISTEN_FDNAMES every fd is "unknown"', () => {
    expect(listenFds({ LISTEN_PID: '7', LISTEN_FDS: '1' }, 7, true, fakeFds(1))).toEqual({
      ok: true,
      fds: [{ fd: 3, name: 'unknown' }],
    });
  });

  test('LISTEN_PID for another process: ignored (no fd touched), but still cleared', () => {
    const env: NodeJS.ProcessEnv = { LISTEN_PID: '99', LISTEN_FDS: '2', LISTEN_PIDFDID: '1', LISTEN_FDNAMES: 'a:b' };
    const fds = fakeFds(2);
    expect(listenFds(env, 100, true, fds)).toEqual({ ok: true, fds: [] });
    expect(fds.cloexec).toEqual([]);
    expect(env).toEqual({});
  });

  test('LISTEN_PIDFDID: another process with our (reused) pid gets nothing; not compared where pidfds have no ids', () => {
    const env = (): NodeJS.ProcessEnv => ({ LISTEN_PID: '5', LISTEN_PIDFDID: '1234', LISTEN_FDS: '1' });
    expect(listenFds(env(), 5, true, fakeFds(1, 1234n))).toEqual({ ok: true, fds: [{ fd: 3, name: 'unknown' }] });
    const other = fakeFds(1, 999n);
    expect(listenFds(env(), 5, true, other)).toEqual({ ok: true, fds: [] });
    expect(other.cloexec).toEqual([]);
    expect(listenFds(env(), 5, true, fakeFds(1, null))).toEqual({ ok: true, fds: [{ fd: 3, name: 'unknown' }] });
    expect(listenFds({ ...env(), LISTEN_PIDFDID: 'x1' }, 5, true, fakeFds(1))).toMatchObject({
      ok: false,
      error: expect.stringMatching(/LISTEN_PIDFDID/),
    });
  });

  test('LISTEN_FDS=0 or less is an error, as sd_listen_fds returns -EINVAL', () => {
    expect(listenFds({ LISTEN_PID: '1', LISTEN_FDS: '0' }, 1, true, fakeFds(0))).toEqual({
      ok: false,
      error: 'LISTEN_FDS must be from 1 to 2147483644, not 0',
    });
    expect(listenFds({ LISTEN_PID: '1', LISTEN_FDS: '-2' }, 1, true, fakeFds(0))).toMatchObject({ ok: false });
    expect(listenFds({ LISTEN_PID: '1', LISTEN_FDS: '2147483645' }, 1, true, fakeFds(0))).toMatchObject({ ok: false });
  });

  test('a count beyond the open fds is an error naming the fd', () => {
    expect(listenFds({ LISTEN_PID: '1', LISTEN_FDS: '3' }, 1, true, fakeFds(2))).toEqual({
      ok: false,
      error: 'LISTEN_FDS is 3, but fd 5: EBADF',
    });
  });

  test('clearing can be turned off', () => {
    const env: NodeJS.ProcessEnv = { LISTEN_PID: '5', LISTEN_FDS: '1' };
    listenFds(env, 5, false, fakeFds(1));
    expect(env.LISTEN_FDS).toBe('1');
  });

  test('malformed values are errors, not guesses, and the variables are cleared all the same', () => {
    const env: NodeJS.ProcessEnv = { LISTEN_PID: 'abc', LISTEN_FDS: '1' };
    expect(listenFds(env, 1, true, fakeFds(1))).toMatchObject({
      ok: false,
      error: expect.stringMatching(/LISTEN_PID/),
    });
    expect(env).toEqual({});
    expect(listenFds({ LISTEN_PID: '0', LISTEN_FDS: '1' }, 0, true, fakeFds(1))).toMatchObject({
      ok: false,
      error: expect.stringMatching(/LISTEN_PID/),
    });
    expect(listenFds({ LISTEN_PID: '1', LISTEN_FDS: 'x' }, 1, true, fakeFds(1))).toMatchObject({
      ok: false,
      error: expect.stringMatching(/LISTEN_FDS/),
    });
    expect(
      listenFds({ LISTEN_PID: '1', LISTEN_FDS: '2', LISTEN_FDNAMES: 'only-one' }, 1, true, fakeFds(2)),
    ).toMatchObject({
      ok: false,
      error: expect.stringMatching(/LISTEN_FDNAMES names 1/),
    });
    expect(listenFds({ LISTEN_PID: '1', LISTEN_FDS: '1', LISTEN_FDNAMES: '' }, 1, true, fakeFds(1))).toMatchObject({
      ok: false,
    });
  });

  test('without the addon, passed fds are an error (FD_CLOEXEC cannot be set), not silently taken', () => {
    const missing = new Error('not built');
    expect(listenFds({ LISTEN_PID: '1', LISTEN_FDS: '1' }, 1, true, missing)).toEqual({
      ok: false,
      error: 'cannot set FD_CLOEXEC on the passed fds: not built',
    });
    expect(listenFds({ LISTEN_PID: '2', LISTEN_FDS: '1' }, 1, true, missing)).toEqual({ ok: true, fds: [] });
  });
});

describe("the addon's fd calls (native/sdepmd/fd.c), on real fds", () => {
  const addon = loadAddon();
  if (addon instanceof Error) throw addon;

  test('setCloexec leaves FD_CLOEXEC set on an open fd, and says EBADF for a closed one', () => {
    // Node 20 already marks every fd close-on-exec at start-up, inherited ones too (seen here with a pipe at fd 0
    // and /dev/null at fd 3 from a Python parent), so no fd without the flag can be made here to watch it change:
    // setCloexec is what sd_listen_fds does, for a runtime that does not.
    const script =
      `const fs = require('fs'); const a = require(${JSON.stringify(DEFAULT_ADDON_PATH)});` +
      "const flag = () => (parseInt(/^flags:\\s+(\\d+)$/m.exec(fs.readFileSync('/proc/self/fdinfo/0', 'utf8'))[1], 8) & 0o2000000) !== 0;" +
      'const r = a.setCloexec(0); console.log(JSON.stringify({ r, after: flag() }));';
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ r: 0, after: true });

    const fd = fs.openSync('/dev/null', 'r');
    fs.closeSync(fd);
    expect(addon.setCloexec(fd)).toBe(-9); // EBADF
    expect(() => addon.setCloexec(-1)).toThrow(/fd must be an integer/);
    expect(() => (addon.setCloexec as (...a: unknown[]) => number)('3')).toThrow(/fd must be an integer/);
  });

  test("pidfdInodeId is the inode of a pidfd for that pid, as Python's os.pidfd_open sees it", () => {
    const own = addon.pidfdInodeId(process.pid);
    const py = spawnSync('python3', ['-c', `import os; print(os.fstat(os.pidfd_open(${process.pid})).st_ino)`], {
      encoding: 'utf8',
    });
    if (typeof own === 'bigint') expect(own).toBe(BigInt(py.stdout.trim()));
    else expect(own).toBe(-95); // no pidfs on this kernel: EOPNOTSUPP
    expect(addon.pidfdInodeId(0x7ffffff0)).toBe(-3); // ESRCH
    expect(() => addon.pidfdInodeId(0)).toThrow(/pid must be an integer/);
  });
});
