/**
 * The lifecycle matrix (test/e2e/lifecycle-scenarios.ts) on stock Debian 13 (systemd 257, OTP 27, its own nodejs),
 * booted for real by debian-host.ts. The same scenarios as on systemd 252, with what systemd >= 254 adds: the
 * installer writes RestartMode=direct and FileDescriptorStorePreserve=yes, so a crash bounces no app and a stop then
 * start keeps the registrations. Measured rows are printed with the prefix "[lifecycle-257]".
 *
 * scripts/test.sh runs it after `npm test` (alone: `npm run test:lifecycle-257`). The build's downloads (apt-get,
 * npm ci) happen first with the machine's network; the installer itself then runs in the guest's own network
 * namespace, so that `sdepmd adopt` sees the guest's C epmd on port 4369, not the machine's.
 */
import { DebianHost, GUEST_REPO, debianHostAvailable } from './debian-host';
import { peerDescribe } from '../support/peers';
import { reporter } from '../support/wait';
import { Lifecycle, defineLifecycleMatrix, matrixTable } from '../e2e/lifecycle-scenarios';

const STEP = 40 * 60_000;
const report = reporter('lifecycle-257');
const d = peerDescribe('stock Debian 13 host (debootstrap + systemd-nspawn)', debianHostAvailable('trixie'));

/** One shell word. */
const quote = (w: string): string => (/^[\w./:=@%+,-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`);

d('every transition of epmd itself, on systemd 257 (Debian 13)', () => {
  let host: DebianHost | undefined;
  let lc: Lifecycle;

  beforeAll(async () => {
    host = await DebianHost.boot('trixie');
    const h = host;
    // The operator's Erlang and Node (the installer would apt-get nodejs itself; the raw clients need it first), and
    // what a standard Debian install has beyond minbase: ss (iproute2), pgrep (procps).
    await h.ok(
      'apt-get update -qq && apt-get install -y -qq --no-install-recommends erlang-base nodejs iproute2 procps >/dev/null',
      { hostNet: true, timeoutMs: STEP },
    );
    // Everything the installer would download, while the network is there: its packages, npm ci and the build.
    await h.ok(
      `cd ${GUEST_REPO} && scripts/install-deps.sh && . scripts/node-env.sh && scripts/ensure-npm.sh && npm run --silent build`,
      { hostNet: true, timeoutMs: STEP },
    );
    const version = (await h.exec('systemctl --version')).stdout.split('\n')[0] ?? '';
    lc = new Lifecycle(
      {
        label: `${version.split(' ').slice(0, 2).join(' ')} (Debian 13, nspawn)`,
        repo: GUEST_REPO,
        // Everything runs in the guest's network namespace: what the installer downloads is already there.
        exec: (cmd, timeoutMs) => {
          const line = Array.isArray(cmd) ? cmd.map(quote).join(' ') : cmd;
          return h.exec(line, { timeoutMs: timeoutMs ?? 120_000 });
        },
        writeFile: async (file, content) => h.writeFile(file, content),
      },
      report,
    );
    await lc.setup();
  }, STEP);

  afterAll(async () => {
    if (lc?.rows.length) report(`\n${matrixTable(lc.host.label, lc.rows)}`);
    if (host && lc?.rows.some((r) => r.problems.length)) report(`journal:\n${await host.journal('epmd.service', 120)}`);
    await host?.shutdown();
  }, 120_000);

  defineLifecycleMatrix(() => lc, { systemd254: true, stepMs: STEP });
});
