import { composeStatus, openNotifier, watchdogIntervalMs } from '../../src/systemd/notify';
import { Logger, hex, printableName } from '../../src/daemon/log';

describe('notify message composition', () => {
  test('STATUS text', () => {
    expect(composeStatus({ registered: 0, lookups: 0, refused: 0 })).toBe('0 nodes registered, 0 lookups served');
    expect(composeStatus({ registered: 1, lookups: 1, refused: 0 })).toBe('1 node registered, 1 lookup served');
    expect(composeStatus({ registered: 3, lookups: 1204, refused: 2 })).toBe('3 nodes registered, 1,204 lookups served, 2 refused');
  });

  test('watchdog interval from WATCHDOG_USEC, honouring WATCHDOG_PID', () => {
    expect(watchdogIntervalMs({}, 1)).toBe(0);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '10000000' }, 1)).toBe(10_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '10000000', WATCHDOG_PID: '1' }, 1)).toBe(10_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '10000000', WATCHDOG_PID: '2' }, 1)).toBe(0);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: 'abc' }, 1)).toBe(0);
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
