/**
 * The lifecycle matrix (lifecycle-scenarios.ts) on systemd 252: a real systemd as PID 1 of private namespaces over
 * a copy-on-write overlay of this machine's Debian 12 root, which has Debian's own epmd units (erlang-base).
 * Measured rows are printed with the prefix "[lifecycle-e2e]".
 */
import * as path from 'path';
import { bootSystemd, stopAndCheckClean, systemdSandboxAvailable, type SystemdSandbox } from '../support/nsystemd';
import { allOf, cEpmdAvailable, erlAvailable, peerDescribe } from '../support/peers';
import { reporter } from '../support/wait';
import { Lifecycle, defineLifecycleMatrix, matrixTable } from './lifecycle-scenarios';

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

  defineLifecycleMatrix(() => lc, { systemd254: false, stepMs: STEP });
});
