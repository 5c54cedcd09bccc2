/**
 * The daemon's start, in-process: what systemd may do the moment it hears READY=1 must already be handled. systemd
 * runs ExecReload= (SIGHUP) or a stop (SIGTERM) as soon as the unit is active; a signal that arrived before its
 * handler was installed would kill the daemon (the default action), and under load the scheduler can switch to
 * whoever READY=1 woke before the daemon's next line runs.
 */
import { startDaemon } from '../../src/daemon/daemon';
import { resolveDaemonConfig } from '../../src/daemon/config';
import { Logger } from '../../src/daemon/log';
import { loadAddon } from '../../src/native/addon';
import { freePort } from '../support/daemons';

afterEach(() => jest.restoreAllMocks());

test('the signal handlers are installed before READY=1 is sent', async () => {
  const addon = loadAddon();
  if (addon instanceof Error) throw addon;
  // NOTIFY_SOCKET in the daemon's environment makes it notify; the calls are watched here, not their delivery
  // (which test/unit/notify-log.test.ts and the systemd suites check).
  const env = { ...process.env, NOTIFY_SOCKET: '/run/sdepmd-test-unused.sock' };
  const config = resolveDaemonConfig(
    { port: String(await freePort()), address: '127.0.0.1', control_socket: 'none' },
    env,
  );
  if (!config.ok) throw new Error(config.error);
  const notify = jest.spyOn(addon, 'notifyWithFds');
  const on = jest.spyOn(process, 'on');
  const daemon = await startDaemon(config.value, { env, handleSignals: true, log: new Logger({ sink: () => {} }) });
  try {
    const ready = notify.mock.calls.findIndex(([state]) => /^READY=1$/m.test(state));
    const hup = on.mock.calls.findIndex(([event]) => event === 'SIGHUP');
    const term = on.mock.calls.findIndex(([event]) => event === 'SIGTERM');
    expect(ready).toBeGreaterThanOrEqual(0);
    expect(hup).toBeGreaterThanOrEqual(0);
    expect(term).toBeGreaterThanOrEqual(0);
    const readyAt = notify.mock.invocationCallOrder[ready]!;
    expect(on.mock.invocationCallOrder[hup]).toBeLessThan(readyAt);
    expect(on.mock.invocationCallOrder[term]).toBeLessThan(readyAt);
  } finally {
    await daemon.stop('the test is over');
  }
});
