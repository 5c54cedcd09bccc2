/**
 * The lifecycle matrix (lifecycle-scenarios.ts) on systemd 252: a real systemd as PID 1 of private namespaces over
 * a copy-on-write overlay of this machine's Debian 12 root, which has Debian's own epmd units (erlang-base).
 * Measured rows are printed with the prefix "[lifecycle-e2e]".
 */
import * as path from 'path';
import { bootSystemd, stopAndCheckClean, systemdSandboxAvailable, type SystemdSandbox } from '../support/nsystemd';
import { allOf, cEpmdAvailable, erlAvailable, peerDescribe } from '../support/peers';
import { reporter } from '../support/wait';
import { Lifecycle, matrixTable, type MatrixRow } from './lifecycle-scenarios';

const REPO = path.resolve(__dirname, '..', '..');
const STEP = 600_000;
const report = reporter('lifecycle-e2e');
const d = peerDescribe(
  'systemd sandbox + erl + C epmd',
  allOf(systemdSandboxAvailable(), erlAvailable(), cEpmdAvailable()),
);

d('every transition of epmd itself, on systemd 252', () => {
  let sb: SystemdSandbox | undefined;
  let lc: Lifecycle;
  const expectAsked = (row: MatrixRow) => expect(row.problems).toEqual([]);

  beforeAll(async () => {
    sb = await bootSystemd();
    const box = sb;
    const version = (await box.exec(['systemctl', '--version'])).stdout.split('\n')[0] ?? '';
    lc = new Lifecycle(
      {
        label: `${version.split(' ').slice(0, 2).join(' ')} (Debian 12, namespaces)`,
        repo: REPO,
        exec: (cmd, timeoutMs) => box.exec(cmd, { timeoutMs: timeoutMs ?? 120_000 }),
        writeFile: (file, content) => box.writeFile(file, content),
      },
      report,
    );
    await lc.setup();
  }, STEP);

  afterAll(async () => {
    if (lc?.rows.length) report(`\n${matrixTable(lc.host.label, lc.rows)}`);
    if (sb && lc?.rows.some((r) => r.problems.length)) report(`journal:\n${await sb.journal('epmd.service', 120)}`);
    await stopAndCheckClean(sb);
  }, 120_000);

  test(
    "install over Debian's running C epmd: every registration adopted, no app bounced",
    async () => expectAsked(await lc.installOverCEpmd()),
    STEP,
  );
  test(
    'systemctl reload to a new version: same process, nothing lost',
    async () => expectAsked(await lc.reload('systemctl reload', '0.1.1-lc')),
    STEP,
  );
  test('systemctl reload again', async () => expectAsked(await lc.reload('systemctl reload')), STEP);
  test('the installer run again is a live upgrade', async () => expectAsked(await lc.reload('installer again')), STEP);
  test(
    'a failed upgrade: reload fails, the old code serves on',
    async () => expectAsked(await lc.failedUpgrade()),
    STEP,
  );
  test('attach / detach: nothing lost, no app bounced', async () => expectAsked(await lc.attachDetach()), STEP);
  // systemd 252 has no RestartMode=direct: the crash's restart is passed on to Requires= apps (documented).
  test('crash and auto-restart: nothing lost', async () => expectAsked(await lc.crash(false)), STEP);
  test(
    'explicit restart: nothing lost outside Requires= apps, and the log names them',
    async () => expectAsked(await lc.restart()),
    STEP,
  );
  // systemd 252 has no FileDescriptorStorePreserve=: a stop drops the fd store (documented).
  test(
    'stop after upgrades ends with Result=success; then start',
    async () => {
      expectAsked(await lc.stopThenStart(false));
      await lc.restartClosedRaws();
    },
    STEP,
  );
  test(
    'uninstall: refused while raw registrations would be lost; --force stops no app',
    async () => {
      for (const row of await lc.uninstall()) expectAsked(row);
    },
    STEP,
  );
  test(
    "install over a stray epmd -daemon in an app's cgroup: every registration adopted",
    async () => expectAsked(await lc.installOverStray()),
    STEP,
  );
});
