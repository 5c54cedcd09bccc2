import { composeReloading, composeStatus, openNotifier, watchdogSetting } from '../../src/systemd/notify';
import { Logger, batchedSink, hex, printableName } from '../../src/daemon/log';
import { spawnSync } from 'node:child_process';

describe('notify message composition', () => {
  test('STATUS text', () => {
    expect(composeStatus({ registered: 0, lookups: 0, refused: 0 })).toBe('0 nodes registered, 0 lookups served');
    expect(composeStatus({ registered: 1, lookups: 1, refused: 0 })).toBe('1 node registered, 1 lookup served');
    expect(composeStatus({ registered: 3, lookups: 1204, refused: 2 })).toBe(
      '3 nodes registered, 1,204 lookups served, 2 refused',
    );
  });

  test('the watchdog setting, as sd_watchdog_enabled(3) reads WATCHDOG_USEC and WATCHDOG_PID', () => {
    expect(watchdogSetting({}, 1)).toEqual({ ok: true, usec: 0 });
    expect(watchdogSetting({ WATCHDOG_USEC: '10000000' }, 1)).toEqual({ ok: true, usec: 10_000_000 });
    expect(watchdogSetting({ WATCHDOG_USEC: '10000000', WATCHDOG_PID: '1' }, 1)).toEqual({
      ok: true,
      usec: 10_000_000,
    });
    expect(watchdogSetting({ WATCHDOG_USEC: '10000000', WATCHDOG_PID: '2' }, 1)).toEqual({ ok: true, usec: 0 });
    // Not a number, zero, infinity (UINT64_MAX), or a WATCHDOG_PID that is no pid: errors (-EINVAL), not "off".
    for (const usec of ['abc', '0', '18446744073709551615', '-5']) {
      expect(watchdogSetting({ WATCHDOG_USEC: usec }, 1)).toMatchObject({
        ok: false,
        error: expect.stringMatching(/WATCHDOG_USEC/),
      });
    }
    expect(watchdogSetting({ WATCHDOG_USEC: '5', WATCHDOG_PID: 'x' }, 1)).toMatchObject({
      ok: false,
      error: expect.stringMatching(/WATCHDOG_PID/),
    });
  });

  test('RELOADING=1 carries MONOTONIC_USEC', () => {
    expect(composeReloading(12_345_678_901n)).toBe('RELOADING=1\nMONOTONIC_USEC=12345678');
  });

  test('each notifier call sends its state through notifyWithFds with no fds; failures are told once', () => {
    const sent: [string, number[]][] = [];
    let result = 1;
    const errors: string[] = [];
    const n = openNotifier(
      { NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '60000000' },
      { addon: { notifyWithFds: (state, fds) => (sent.push([state, fds]), result) }, onError: (m) => errors.push(m) },
    );
    n.ready();
    n.status('a\nb');
    n.stopping();
    n.handOver(42);
    n.reloading();
    expect(n.startWatchdog()).toBe(30_000);
    n.stopWatchdog();
    expect(sent.map(([state]) => state.replace(/MONOTONIC_USEC=\d+/, 'MONOTONIC_USEC=N'))).toEqual([
      'READY=1',
      'STATUS=a b',
      'STOPPING=1',
      'MAINPID=42\nREADY=1',
      'RELOADING=1\nMONOTONIC_USEC=N',
      'WATCHDOG=1',
    ]);
    expect(sent.every(([, fds]) => fds.length === 0)).toBe(true);
    expect(errors).toEqual([]);
    result = -111; // ECONNREFUSED: systemd has gone
    n.status('x');
    n.status('y');
    result = 1;
    n.ready();
    result = -111;
    n.stopping();
    expect(errors).toEqual(['sd_notify STATUS=x: ECONNREFUSED', 'sd_notify STOPPING=1: ECONNREFUSED']);
  });

  test('a bad WATCHDOG_USEC turns the watchdog off, and says why', () => {
    const errors: string[] = [];
    const n = openNotifier(
      { NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '0' },
      { addon: { notifyWithFds: () => 1 }, onError: (m) => errors.push(m) },
    );
    expect(n.startWatchdog()).toBe(0);
    expect(errors).toEqual(['watchdog off: WATCHDOG_USEC is not a time in microseconds: "0"']);
  });

  test('under systemd without the addon: an error that says how to build it', () => {
    expect(() =>
      openNotifier(
        { NOTIFY_SOCKET: '/run/x' },
        { addon: new Error('cannot load the native addon x (build it: npm run build)') },
      ),
    ).toThrow(
      'NOTIFY_SOCKET is set, but systemd cannot be told anything: cannot load the native addon x (build it: npm run build)',
    );
  });

  test('outside systemd the notifier is a no-op', () => {
    const n = openNotifier({});
    expect(n.active).toBe(false);
    expect(n.startWatchdog()).toBe(0);
    expect(() => {
      n.ready();
      n.status('x');
      n.stopping();
    }).not.toThrow();
  });
});

describe('Logger', () => {
  const capture = (journal: boolean, level: number) => {
    const lines: string[] = [];
    return { log: new Logger({ journal, level, sink: (l) => lines.push(l) }), lines };
  };

  test('journal lines carry <N> priorities and nothing else', () => {
    const { log, lines } = capture(true, 4);
    log.error('e');
    log.warning('w');
    log.notice('n');
    log.info('i');
    log.debug('d');
    log.trace('t');
    expect(lines).toEqual(['<3>e\n', '<4>w\n', '<5>n\n', '<6>i\n', '<7>d\n']);
  });

  test('terminal lines are plain text with a time and a level', () => {
    const { log, lines } = capture(false, 3);
    log.info('registered foo');
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z info registered foo\n$/);
  });

  test('levels filter, clamp, and a message never spans lines', () => {
    const { log, lines } = capture(true, 3);
    log.debug('hidden');
    log.level = 99;
    expect(log.levelName).toBe('trace');
    log.level = -5;
    expect(log.levelName).toBe('err');
    log.error('two\nlines');
    expect(lines).toEqual(['<3>two lines\n']);
  });

  test('hex and printable names', () => {
    expect(hex(Buffer.from([0, 1, 0xab]))).toBe('00 01 ab');
    expect(hex(Buffer.alloc(200), 4)).toBe('00 00 00 00 … (200 bytes)');
    expect(printableName(Buffer.from('a\nb"é'))).toBe('a\\nb\\"é');
  });
});

describe('batchedSink', () => {
  test('lines logged in one synchronous run go out in one write, in order, once the run is over', async () => {
    const writes: string[] = [];
    const sink = batchedSink((text) => writes.push(text));
    sink('a\n');
    sink('b\n');
    expect(writes).toEqual([]);
    await Promise.resolve();
    expect(writes).toEqual(['a\nb\n']);
    sink('c\n');
    await Promise.resolve();
    expect(writes).toEqual(['a\nb\n', 'c\n']);
  });

  test('flush writes what is pending at once, and nothing twice', async () => {
    const writes: string[] = [];
    const sink = batchedSink((text) => writes.push(text));
    sink('x\n');
    sink.flush();
    expect(writes).toEqual(['x\n']);
    await Promise.resolve();
    sink.flush();
    expect(writes).toEqual(['x\n']);
  });

  test('a daemon-style logger on stderr loses no line when the process exits in the same run', () => {
    // Compiled code, as the daemon runs it: log, then exit before any microtask could run.
    const script = `const { Logger } = require(${JSON.stringify(require.resolve('../../dist/daemon/log.js'))});
      const log = new Logger({ journal: false, level: 3 });
      log.info('first'); log.notice('second'); process.exit(0);`;
    const r = spawnSync(process.execPath, ['-e', script], {
      encoding: 'utf8',
      env: { ...process.env, JOURNAL_STREAM: '' },
    });
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/ info first\n.* notice second\n$/);
  });
});

test('a message with line breaks is logged as one line, breaks replaced by spaces', () => {
  const lines: string[] = [];
  const log = new Logger({ journal: true, level: 3, sink: (l) => lines.push(l) });
  log.info('registered a\r\nb\nc');
  log.info('plain');
  expect(lines).toEqual(['<6>registered a b c\n', '<6>plain\n']);
});
