import { buildParser } from '../../src/cli/cli';
import { runCli } from '../support/run-cli';
import { resolveAddresses, resolveDaemonConfig, resolvePort } from '../../src/daemon/config';

function parse(argv: string[]) {
  return buildParser(argv)
    .exitProcess(false)
    .fail((msg) => {
      throw new Error(msg);
    })
    .parseSync();
}

const run = runCli;

describe('flag parsing (the C epmd dialect)', () => {
  test('single-dash long flags', () => {
    const a = parse([
      '-port',
      '4370',
      '-d',
      '-debug',
      '-relaxed_command_check',
      '-address',
      '10.0.0.1,::1',
      '-systemd',
    ]);
    expect(a).toMatchObject({
      port: '4370',
      debug: 2,
      relaxed_command_check: true,
      address: '10.0.0.1,::1',
      systemd: true,
    });
  });

  test('modern double-dash spellings too', () => {
    expect(parse(['--port', '4370', '--names'])).toMatchObject({ port: '4370', names: true });
  });

  test('client verbs', () => {
    expect(parse(['-names'])).toMatchObject({ names: true });
    expect(parse(['-kill'])).toMatchObject({ kill: true });
    expect(parse(['-stop', 'billing_prod'])).toMatchObject({ stop: 'billing_prod' });
  });

  test('DbgExtra flags', () => {
    const a = parse(['-packet_timeout', '5', '-delay_accept', '1', '-delay_write', '2']);
    const c = resolveDaemonConfig(a, {});
    expect(c).toMatchObject({
      ok: true,
      value: { limits: { packetTimeoutSeconds: 5 }, delayAcceptMs: 1000, delayWriteMs: 2000 },
    });
  });

  test('unknown flags, grouped short flags and conflicting verbs get a one-line error and exit 1', async () => {
    for (const argv of [['-bogus'], ['-dd'], ['-names', '-kill']]) {
      const r = await run(argv);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^sdepmd: .+\(see sdepmd --help\)\n$/);
      expect(r.stderr.split('\n').length).toBe(2);
    }
  });

  test('bad values get a one-line error and exit 1, not a stack trace', async () => {
    for (const argv of [
      ['-port'],
      ['-port', 'abc'],
      ['-port', '0'],
      ['-port', '70000'],
      ['-packet_timeout', '0'],
      ['-address', 'nonsense'],
      ['-delay_write', '-1'],
    ]) {
      const r = await run(argv);
      expect({ argv, code: r.code }).toEqual({ argv, code: 1 });
      expect(r.stderr).toMatch(/^sdepmd: [^\n]+\n$/);
      expect(r.stderr).not.toMatch(/at .*\.js/);
    }
  });

  test('--help and --version print and exit 0', async () => {
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/-relaxed_command_check/);
    const version = await run(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });
});

describe('environment', () => {
  test('ERL_EPMD_PORT, overridden by -port', () => {
    expect(resolvePort(undefined, {})).toEqual({ ok: true, value: 4369 });
    expect(resolvePort(undefined, { ERL_EPMD_PORT: '4370' })).toEqual({ ok: true, value: 4370 });
    expect(resolvePort('4371', { ERL_EPMD_PORT: '4370' })).toEqual({ ok: true, value: 4371 });
    expect(resolvePort(undefined, { ERL_EPMD_PORT: 'abc' })).toMatchObject({
      ok: false,
      error: expect.stringMatching(/ERL_EPMD_PORT/),
    });
  });

  test('ERL_EPMD_ADDRESS and -address: comma or space separated, loopback always added', () => {
    expect(resolveAddresses(undefined, {})).toEqual({ ok: true, value: [] });
    expect(resolveAddresses('10.1.2.3, fd00::2', {})).toEqual({
      ok: true,
      value: ['10.1.2.3', 'fd00::2', '127.0.0.1', '::1'],
    });
    expect(resolveAddresses(undefined, { ERL_EPMD_ADDRESS: '10.1.2.3 127.0.0.1' })).toEqual({
      ok: true,
      value: ['10.1.2.3', '127.0.0.1', '::1'],
    });
    expect(resolveAddresses('[::1]', {})).toEqual({ ok: true, value: ['::1', '127.0.0.1'] });
    expect(resolveAddresses('10.1.2.300', {})).toMatchObject({
      ok: false,
      error: expect.stringMatching(/-address: "10.1.2.300"/),
    });
  });

  test('ERL_EPMD_RELAXED_COMMAND_CHECK counts when set, even empty', () => {
    expect(resolveDaemonConfig({}, {})).toMatchObject({ ok: true, value: { relaxedCommandCheck: false } });
    expect(resolveDaemonConfig({}, { ERL_EPMD_RELAXED_COMMAND_CHECK: '' })).toMatchObject({
      ok: true,
      value: { relaxedCommandCheck: true },
    });
    expect(resolveDaemonConfig({ relaxed_command_check: true }, {})).toMatchObject({
      ok: true,
      value: { relaxedCommandCheck: true },
    });
  });

  test('-d raises the log level one step each', () => {
    const base = resolveDaemonConfig({}, {});
    const dd = resolveDaemonConfig({ debug: 2 }, {});
    if (!base.ok || !dd.ok) throw new Error('resolve');
    expect(dd.value.logLevel).toBe(base.value.logLevel + 2);
  });
});
