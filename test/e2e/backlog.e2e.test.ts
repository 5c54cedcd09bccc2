/**
 * The listen backlog of epmd.socket (Backlog=4096) under a real systemd (252, PID 1 of private namespaces over an
 * overlay of "/"), with the shipped units installed by the shipped installer: `ss -ltn` (Send-Q of the listening
 * socket) before activation, after it, after a reload (a live upgrade) and after the service stops. Node listens
 * again on every socket it is given, with 511 unless told otherwise; sdepmd must leave systemd's value alone.
 */
import * as path from 'path';
import { bootSystemd, SystemdSandbox, systemdSandboxAvailable, stopAndCheckClean } from '../support/nsystemd';
import { peerDescribe } from '../support/peers';
import { reporter, waitFor } from '../support/wait';

const REPO = path.resolve(__dirname, '..', '..');
const INSTALL = path.join(REPO, 'scripts', 'install.sh');
const report = reporter('backlog-e2e');

const d = peerDescribe('systemd sandbox', systemdSandboxAvailable());

d('epmd.socket keeps Backlog= through activation, reload and stop', () => {
  let sb: SystemdSandbox | undefined;
  const box = (): SystemdSandbox => {
    if (!sb) throw new Error('sandbox not booted');
    return sb;
  };
  /** Send-Q of each socket listening on port 4369 (one line per socket, e.g. "[::]:4369 4096"). */
  const backlog = async (): Promise<string> => {
    const r = await box().exec(['ss', '-ltnH', '( sport = :4369 )']);
    return r.stdout
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const f = line.trim().split(/\s+/);
        return `${f[3]} ${f[2]}`;
      })
      .join('; ');
  };
  const mainPid = async (): Promise<string> =>
    (await box().exec(['systemctl', 'show', '-p', 'MainPID', '--value', 'epmd.service'])).stdout.trim();

  beforeAll(async () => {
    sb = await bootSystemd();
    report(`sandbox booted in ${sb.bootMs} ms (${sb.bootState})`);
  }, 120000);

  afterAll(() => stopAndCheckClean(sb), 60000);

  test('Send-Q is 4096 before activation, after it, after a reload and after the service stops', async () => {
    const s = box();
    const inst = await s.exec([INSTALL], { timeoutMs: 120000 });
    if (inst.code !== 0) throw new Error(`install.sh failed: ${inst.stdout}${inst.stderr}`);
    expect((await s.exec(['systemctl', 'show', '-p', 'Backlog', '--value', 'epmd.socket'])).stdout.trim()).toBe('4096');
    expect((await s.systemctl('start', 'epmd.socket')).code).toBe(0);

    const seen: Record<string, string> = {};
    seen.beforeActivation = await backlog();
    expect((await s.systemctl('is-active', 'epmd.service')).stdout.trim()).toBe('inactive');

    // The first connection starts the service.
    const names = await s.exec(['epmd', '-names']);
    expect(names.stdout).toMatch(/^epmd: up and running on port 4369 with data:/);
    expect((await s.systemctl('is-active', 'epmd.service')).stdout.trim()).toBe('active');
    seen.afterActivation = await backlog();

    // A reload is a live upgrade: the new code takes the listening socket over, in the same process (execve).
    const before = await mainPid();
    const reload = await s.systemctl('reload', 'epmd.service');
    if (reload.code !== 0) throw new Error(`reload failed: ${reload.stderr}\n${await s.journal('epmd.service', 40)}`);
    await waitFor(
      'the live upgrade in the journal',
      async () => (/live upgrade: /.test(await s.journal('epmd.service', 40)) ? true : undefined),
      30000,
      250,
    );
    expect(await mainPid()).toBe(before);
    expect((await s.exec(['epmd', '-names'])).code).toBe(0);
    seen.afterReload = await backlog();

    expect((await s.systemctl('stop', 'epmd.service')).code).toBe(0);
    expect((await s.systemctl('is-active', 'epmd.socket')).stdout.trim()).toBe('active');
    seen.afterStop = await backlog();

    report(JSON.stringify(seen));
    const want = '*:4369 4096'; // one dual-stack socket (BindIPv6Only=both)
    expect(seen).toEqual({ beforeActivation: want, afterActivation: want, afterReload: want, afterStop: want });
  }, 180000);
});
