import { listenFds } from '../../src/systemd/listen';

describe('listenFds (sd_listen_fds semantics)', () => {
  test('nothing passed', () => {
    expect(listenFds({}, 100)).toEqual({ ok: true, fds: [] });
  });

  test('fds start at 3, names come from LISTEN_FDNAMES, variables are cleared', () => {
    const env: NodeJS.ProcessEnv = { LISTEN_PID: '100', LISTEN_FDS: '3', LISTEN_FDNAMES: 'epmd.socket:epmd.socket:node-x', OTHER: 'kept' };
    expect(listenFds(env, 100)).toEqual({
      ok: true,
      fds: [
        { fd: 3, name: 'epmd.socket' },
        { fd: 4, name: 'epmd.socket' },
        { fd: 5, name: 'node-x' },
      ],
    });
    expect(env).toEqual({ OTHER: 'kept' });
  });

  test('without LISTEN_FDNAMES every fd is "unknown"', () => {
    expect(listenFds({ LISTEN_PID: '7', LISTEN_FDS: '1' }, 7)).toEqual({ ok: true, fds: [{ fd: 3, name: 'unknown' }] });
  });

  test('LISTEN_PID for another process: ignored, but still cleared', () => {
    const env: NodeJS.ProcessEnv = { LISTEN_PID: '99', LISTEN_FDS: '2' };
    expect(listenFds(env, 100)).toEqual({ ok: true, fds: [] });
    expect(env.LISTEN_FDS).toBeUndefined();
  });

  test('clearing can be turned off', () => {
    const env: NodeJS.ProcessEnv = { LISTEN_PID: '5', LISTEN_FDS: '1' };
    listenFds(env, 5, false);
    expect(env.LISTEN_FDS).toBe('1');
  });

  test('malformed values are errors, not guesses', () => {
    expect(listenFds({ LISTEN_PID: 'abc', LISTEN_FDS: '1' }, 1)).toMatchObject({ ok: false, error: expect.stringMatching(/LISTEN_PID/) });
    expect(listenFds({ LISTEN_PID: '1', LISTEN_FDS: 'x' }, 1)).toMatchObject({ ok: false, error: expect.stringMatching(/LISTEN_FDS/) });
    expect(listenFds({ LISTEN_PID: '1', LISTEN_FDS: '2', LISTEN_FDNAMES: 'only-one' }, 1)).toMatchObject({
      ok: false,
      error: expect.stringMatching(/LISTEN_FDNAMES names 1/),
    });
  });
});
