/**
 * `sdepmd doctor`, `attach` and `detach` in a real systemd (PID 1 of private namespaces over an overlay of "/").
 * sdepmd is installed with the shipped installer; then each fault is created for real, doctor must name it, the
 * fix it prints (or `sdepmd attach`) is applied as printed, and doctor must turn green.
 *
 * One sandbox, tests in order. Timings are printed with the prefix "[doctor-e2e]"; the doctor's human output too
 * (docs/commands.md quotes it). With SDEPMD_CAPTURE_DIR=DIR, the snapshot of each fault is saved there as JSON
 * (test/unit/fixtures/ holds the ones captured so).
 */
import * as fs from 'fs';
import * as path from 'path';
import { bootSystemd, SystemdSandbox, systemdSandboxAvailable, stopAndCheckClean } from '../support/nsystemd';
import { allOf, cEpmdAvailable, erlAvailable, peerDescribe } from '../support/peers';
import { reporter, waitFor as waitForEvery } from '../support/wait';
import { erlangAppUnit, sandboxShell } from '../support/sandbox';

const REPO = path.resolve(__dirname, '..', '..');
const INSTALL = path.join(REPO, 'scripts', 'install.sh');
const DROP_IN_SRC = fs.readFileSync(path.join(REPO, 'units', 'epmd-dependency.conf'), 'utf8');
const SDEPMD = '/usr/local/bin/sdepmd';
const TEST_TIMEOUT = 180000;

const d = peerDescribe(
  'systemd sandbox + erl + C epmd',
  allOf(systemdSandboxAvailable(), erlAvailable(), cEpmdAvailable()),
);

interface Finding {
  id: string;
  severity: 'error' | 'warning';
  title: string;
  evidence: string[];
  fix: string[];
}
interface DoctorResult {
  code: number;
  healthy: boolean;
  findings: Finding[];
  text: string;
}

const report = reporter('doctor-e2e');

const waitFor = <T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30000, everyMs = 250): Promise<T> =>
  waitForEvery(what, fn, timeoutMs, everyMs);

const appUnit = (name: string): string => erlangAppUnit(name, 'doctor e2e; no epmd dependency of its own');

d('sdepmd doctor / attach / detach in a real systemd: each fault created, named, fixed', () => {
  let sb: SystemdSandbox | undefined;
  const shell = sandboxShell(() => sb);
  const { box, sh, show, registered } = shell;
  const doctor = async (label?: string): Promise<DoctorResult> => {
    const t0 = Date.now();
    const j = await sh([SDEPMD, 'doctor', '--json']);
    const ms = Date.now() - t0;
    let parsed: { healthy: boolean; findings: Finding[] };
    try {
      parsed = JSON.parse(j.stdout) as typeof parsed;
    } catch {
      throw new Error(`doctor --json printed no JSON (exit ${j.code}):\n${j.stdout}\n${j.stderr}`);
    }
    const t = await sh([SDEPMD, 'doctor']);
    expect(t.code).toBe(j.code); // the same verdict both ways
    if (label) {
      report(`doctor (${label}): exit ${j.code} in ${ms} ms\n$ sdepmd doctor\n${t.stdout}${t.stderr}`);
      if (process.env.SDEPMD_CAPTURE_DIR) {
        const snap = await sh([SDEPMD, 'doctor', '--snapshot']);
        fs.mkdirSync(process.env.SDEPMD_CAPTURE_DIR, { recursive: true });
        fs.writeFileSync(path.join(process.env.SDEPMD_CAPTURE_DIR, `${label}.json`), snap.stdout);
      }
    }
    return { code: j.code, ...parsed, text: t.stdout };
  };
  const waitGreen = (what: string, timeoutMs = 30000): Promise<DoctorResult> =>
    waitFor(
      what,
      async () => {
        const r = await doctor();
        return r.code === 0 ? r : undefined;
      },
      timeoutMs,
      500,
    ).catch(async (e: Error) => {
      const r = await doctor();
      throw new Error(`${e.message}; last doctor output:\n${r.text}`);
    });
  /** Runs the printed fix commands, in order, as an operator would paste them. */
  const applyFix = async (f: Finding): Promise<void> => {
    expect(f.fix.length).toBeGreaterThan(0);
    for (const cmd of f.fix) {
      const r = await sh(cmd, 90000);
      report(
        `fix: $ ${cmd} -> exit ${r.code}${r.stdout.trim() ? `\n${r.stdout.trim()}` : ''}${r.stderr.trim() ? `\n${r.stderr.trim()}` : ''}`,
      );
      expect({ cmd, code: r.code, stderr: r.stderr }).toEqual({ cmd, code: 0, stderr: r.stderr });
    }
  };
  const find = (r: DoctorResult, id: string, predicate: (f: Finding) => boolean = () => true): Finding => {
    const f = r.findings.find((x) => x.id === id && predicate(x));
    if (!f) throw new Error(`doctor did not report ${id}; it said:\n${r.text}`);
    return f;
  };
  const dumpOnFailure = <T>(fn: () => Promise<T>): Promise<T> => shell.dumpOnFailure(fn, report);
  const timed = (name: string, fn: () => Promise<void>) => async () => {
    const t0 = Date.now();
    await dumpOnFailure(fn);
    report(`${name}: ${Date.now() - t0} ms`);
  };

  beforeAll(async () => {
    sb = await bootSystemd(); // Debian's epmd.socket is enabled, as on a real host; the installer's units win.
    report(`sandbox booted in ${sb.bootMs} ms (${sb.bootState})`);
    const t0 = Date.now();
    const inst = await sb.exec([INSTALL, '--enable'], { timeoutMs: 120000 });
    if (inst.code !== 0) throw new Error(`install.sh --enable failed (${inst.code}):\n${inst.stdout}${inst.stderr}`);
    report(`install.sh --enable: ${Date.now() - t0} ms`);
  }, 240000);

  // Nothing leaks: the namespace's processes, its cgroups and its scratch dir are gone.
  afterAll(() => stopAndCheckClean(sb), 60000);

  test(
    'a freshly installed host is healthy: exit 0; its one warning, the open socket, is fixed as printed',
    timed('healthy host', async () => {
      // The shipped epmd.socket listens on every address, as the C epmd does: doctor warns, and its fix restricts it.
      const exposed = await doctor('exposed');
      expect(exposed.code).toBe(0);
      expect(exposed.findings.map((f) => f.id)).toEqual(['socket-exposed']);
      const warning = find(exposed, 'socket-exposed');
      expect(warning.severity).toBe('warning');
      expect(warning.evidence).toEqual(
        expect.arrayContaining(['    IPAddressDeny=any', '    IPAddressAllow=localhost']),
      );
      expect(warning.fix).toEqual(['sdepmd allow localhost']); // the sandbox has no network but loopback
      await applyFix(warning);
      const r = await doctor('healthy');
      expect(r.findings).toEqual([]);
      expect(r.healthy).toBe(true);
      expect(r.code).toBe(0);
      expect(r.text).toMatch(/^sdepmd doctor: healthy\. epmd\.socket is listening on port 4369/);
      const help = await sh([SDEPMD, 'doctor', '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(/--json/);
      expect((await sh([SDEPMD, 'doctor', '--bogus'])).code).toBe(1); // a usage error: exit 1, as everywhere
    }),
    TEST_TIMEOUT,
  );

  test(
    'attach and detach round-trip on a real unit (dry run, idempotence, refusal)',
    timed('attach/detach round trip', async () => {
      const s = box();
      await s.installUnit('billing_prod.service', appUnit('billing_prod'));
      const file = '/etc/systemd/system/billing_prod.service.d/epmd-dependency.conf';
      expect(await show('billing_prod.service', 'Requires')).not.toMatch(/epmd\.service/);

      const dry = await sh([SDEPMD, 'attach', '--dry-run', 'billing_prod']);
      report(`$ sdepmd attach --dry-run billing_prod -> exit ${dry.code}\n${dry.stdout}${dry.stderr}`);
      expect(dry.code).toBe(0);
      expect(dry.stdout).toContain(`would write ${file}`);
      expect(dry.stdout).toContain('would run: systemctl daemon-reload');
      expect((await sh(['test', '-e', file])).code).not.toBe(0);

      const att = await sh([SDEPMD, 'attach', 'billing_prod']);
      report(`$ sdepmd attach billing_prod -> exit ${att.code}\n${att.stdout}${att.stderr}`);
      expect(att.code).toBe(0);
      expect(await s.readFile(file)).toBe(DROP_IN_SRC);
      expect(att.stdout).toContain('systemctl restart billing_prod.service');
      // daemon-reload ran: systemd sees the dependency without anyone reloading by hand.
      expect((await show('billing_prod.service', 'Requires')).split(' ')).toContain('epmd.service');
      expect((await show('billing_prod.service', 'After')).split(' ')).toContain('epmd.service');
      expect(await show('billing_prod.service', 'Environment')).toContain('ERL_ZFLAGS=-start_epmd false');
      expect(await show('billing_prod.service', 'DropInPaths')).toContain(file);

      const again = await sh([SDEPMD, 'attach', 'billing_prod.service']);
      expect(again.code).toBe(0);
      expect(again.stdout).toContain('already attached');
      expect(again.stdout).not.toContain('daemon-reload');

      const refused = await sh([SDEPMD, 'attach', 'no_such_app', 'billing_prod']);
      report(`$ sdepmd attach no_such_app billing_prod -> exit ${refused.code}\n${refused.stdout}${refused.stderr}`);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/refusing no_such_app\.service: no such unit/);
      expect((await sh(['test', '-e', '/etc/systemd/system/no_such_app.service.d'])).code).not.toBe(0);

      const dryDetach = await sh([SDEPMD, 'detach', '--dry-run', 'billing_prod']);
      report(
        `$ sdepmd detach --dry-run billing_prod -> exit ${dryDetach.code}\n${dryDetach.stdout}${dryDetach.stderr}`,
      );
      expect(dryDetach.stdout).toContain(`would remove ${file}`);
      expect(await s.readFile(file)).toBe(DROP_IN_SRC);

      const det = await sh([SDEPMD, 'detach', 'billing_prod']);
      report(`$ sdepmd detach billing_prod -> exit ${det.code}\n${det.stdout}${det.stderr}`);
      expect(det.code).toBe(0);
      expect((await sh(['test', '-e', '/etc/systemd/system/billing_prod.service.d'])).code).not.toBe(0);
      expect((await show('billing_prod.service', 'Requires')).split(' ')).not.toContain('epmd.service');
      expect(await show('billing_prod.service', 'Environment')).not.toContain('start_epmd');
      const det2 = await sh([SDEPMD, 'detach', 'billing_prod']);
      expect(det2.code).toBe(0);
      expect(det2.stdout).toContain('not attached');
      expect((await sh([SDEPMD, 'detach', 'no_such_app'])).code).toBe(1);
    }),
    TEST_TIMEOUT,
  );

  test(
    'fault: an app without the drop-in spawned its own epmd in its cgroup; doctor names the unit; attach + adopt fixes it without a restart',
    timed('fault: epmd in an app cgroup', async () => {
      const s = box();
      // epmd.socket is down (stopped by an operator, or not yet started at boot) when the app starts.
      expect((await s.systemctl('stop', 'epmd.socket', 'epmd.service')).code).toBe(0);
      expect((await s.systemctl('start', 'billing_prod.service')).code).toBe(0);
      await waitFor('billing_prod registered with its own epmd', () => registered('billing_prod'));
      const epmdPid = Number((await sh(['pidof', 'epmd'])).stdout.trim());
      expect(epmdPid).toBeGreaterThan(0);
      expect(await s.cgroupOf(epmdPid)).toBe(await s.unitCgroup('billing_prod.service'));
      // Now epmd.socket cannot listen: the app's epmd holds the port.
      expect((await s.systemctl('start', 'epmd.socket')).code).not.toBe(0);

      const r = await doctor('fault-epmd-in-app-cgroup');
      expect(r.code).toBe(1);
      expect(r.healthy).toBe(false);
      const f = find(r, 'epmd-in-app-cgroup');
      expect(f.title).toContain('billing_prod.service');
      expect(f.evidence.join('\n')).toContain(`pid ${epmdPid} (epmd)`);
      expect(f.evidence.join('\n')).toMatch(/holds port 4369/);
      expect(find(r, 'socket-not-listening').evidence.join('\n')).toContain(
        `port 4369 is held by pid ${epmdPid} (epmd) in billing_prod.service`,
      );
      expect(find(r, 'app-not-attached').title).toMatch(
        /billing_prod\.service runs an Erlang VM without Requires=epmd\.service, After=epmd\.service, -start_epmd false/,
      );
      expect(r.text).toMatch(/error: an epmd runs inside billing_prod\.service's cgroup/);
      expect(f.fix).toEqual(['sdepmd attach billing_prod.service', `sdepmd adopt --pid ${epmdPid}`]);
      const appPid = await s.mainPid('billing_prod.service');

      await applyFix(f);
      await waitFor('billing_prod registered with sdepmd', () => registered('billing_prod'));
      const green = await waitGreen('doctor green after attach + adopt');
      // The app was not restarted: its registration was adopted; the drop-in applies at its next start.
      expect(await s.mainPid('billing_prod.service')).toBe(appPid);
      expect(green.findings.map((x) => `${x.severity} ${x.id}`)).toEqual(['warning app-not-attached']);
      // The epmd now is sdepmd in epmd.service, and the app's cgroup holds no epmd.
      expect((await sh(['pidof', 'epmd'])).code).not.toBe(0);
      expect(await show('epmd.service', 'ActiveState')).toBe('active');
      report(`$ sdepmd names (healthy, one app)\n${(await sh([SDEPMD, 'names'])).stdout}`);
      report(`$ sdepmd status\n${(await sh([SDEPMD, 'status'])).stdout}`);
    }),
    TEST_TIMEOUT,
  );

  test(
    'fault: epmd.socket disabled; doctor says so; its printed fix turns it green',
    timed('fault: socket disabled', async () => {
      expect((await sh(['systemctl', 'disable', 'epmd.socket'])).code).toBe(0);
      const r = await doctor('fault-socket-disabled');
      expect(r.code).toBe(1);
      const f = find(r, 'socket-not-enabled');
      expect(f.evidence.join('\n')).toContain('UnitFileState=disabled');
      expect(f.fix).toEqual(['systemctl enable --now epmd.socket']);
      await applyFix(f);
      expect((await sh(['systemctl', 'is-enabled', 'epmd.socket'])).stdout.trim()).toBe('enabled');
      await waitGreen('doctor green after enable');
    }),
    TEST_TIMEOUT,
  );

  test(
    'fault: a foreign process holds port 4369; doctor says who; its printed fix turns it green',
    timed('fault: foreign process on 4369', async () => {
      const s = box();
      // Stopping the socket stops epmd.service and (Requires=) billing_prod with it.
      expect((await s.systemctl('stop', 'epmd.socket')).code).toBe(0);
      const squat = await sh([
        'systemd-run',
        '--unit=squatter',
        '--description=not an epmd',
        '/usr/bin/node',
        '-e',
        "require('net').createServer((c) => c.end()).listen(4369)",
      ]);
      expect(squat.code).toBe(0);
      await waitFor('the squatter listening', async () =>
        (await sh(['ss', '-Hltn', 'sport = :4369'])).stdout.includes('LISTEN') ? true : undefined,
      );
      expect((await s.systemctl('start', 'epmd.socket')).code).not.toBe(0);
      const squatterPid = await s.mainPid('squatter.service');

      const r = await doctor('fault-foreign-port-holder');
      expect(r.code).toBe(1);
      const f = find(r, 'port-held');
      expect(f.title).toBe(`port 4369 is held by node (pid ${squatterPid}), which is not epmd`);
      expect(f.evidence.join('\n')).toContain('in squatter.service');
      expect(find(r, 'socket-not-listening').evidence.join('\n')).toContain(
        `port 4369 is held by pid ${squatterPid} (node) in squatter.service`,
      );
      expect(f.fix).toEqual(['systemctl stop squatter.service', 'systemctl start epmd.socket']);
      await applyFix(f);
      await waitGreen('doctor green after the squatter is gone');
    }),
    TEST_TIMEOUT,
  );

  test(
    'fault: a running node is not registered (its epmd died with another app); doctor names it; the fix re-registers it',
    timed('fault: node not registered', async () => {
      const s = box();
      await s.installUnit('billing_a.service', appUnit('billing_a'));
      await s.installUnit('billing_b.service', appUnit('billing_b'));
      // The seed: neither app has the drop-in, and epmd.socket is down when they start.
      expect((await s.systemctl('stop', 'epmd.socket')).code).toBe(0);
      expect((await s.systemctl('start', 'billing_a.service')).code).toBe(0);
      await waitFor('billing_a registered', () => registered('billing_a'));
      expect((await s.systemctl('start', 'billing_b.service')).code).toBe(0);
      await waitFor('billing_b registered', () => registered('billing_a', 'billing_b'));
      // Stopping billing_a kills the epmd in its cgroup: billing_b drops out.
      expect((await s.systemctl('stop', 'billing_a.service')).code).toBe(0);
      expect((await sh(['pidof', 'epmd'])).code).not.toBe(0);
      expect(await show('billing_b.service', 'ActiveState')).toBe('active');

      const r = await doctor('fault-node-not-registered');
      expect(r.code).toBe(1);
      const f = find(r, 'node-not-registered', (x) => x.title.includes('billing_b'));
      expect(f.title).toBe(
        'node billing_b (billing_b.service) is not registered with epmd: no other node can reach it',
      );
      expect(f.evidence.join('\n')).toMatch(/no epmd answers on port 4369/);
      expect(r.findings.some((x) => x.title.includes('billing_a'))).toBe(false); // stopped: not a running unit
      expect(find(r, 'app-not-attached').title).toContain('billing_b.service');
      expect(f.fix).toEqual(['sdepmd attach billing_b.service', 'systemctl restart billing_b.service']);

      await applyFix(f);
      await waitFor('billing_b registered with sdepmd', () => registered('billing_b'));
      await waitGreen('doctor green after attach + restart');
      expect(await show('epmd.socket', 'ActiveState')).toBe('active'); // pulled in through Requires=epmd.service
    }),
    TEST_TIMEOUT,
  );

  test(
    "fault: a later drop-in's ERL_ZFLAGS overrides the attach drop-in's -start_epmd false; doctor and attach say so",
    timed('fault: -start_epmd overridden', async () => {
      // billing_b is attached (previous test). A tuning drop-in read after epmd-dependency.conf replaces ERL_ZFLAGS.
      const s = box();
      const tuning = '/etc/systemd/system/billing_b.service.d/zz-tuning.conf';
      await s.writeFile(tuning, '[Service]\nEnvironment="ERL_ZFLAGS=+S 1"\n');
      expect((await s.systemctl('daemon-reload')).code).toBe(0);

      const r = await doctor('fault-start-epmd-overridden');
      expect(r.code).toBe(1);
      const f = find(r, 'start-epmd-overridden');
      expect(f.title).toBe(
        "billing_b.service is attached, but its own ERL_ZFLAGS overrides the drop-in's -start_epmd false: it would start its own epmd in its cgroup",
      );
      expect(f.evidence).toContain('effective ERL_ZFLAGS=+S 1');
      expect(f.evidence).toContain(`${tuning} (a drop-in read after epmd-dependency.conf) sets ERL_ZFLAGS=+S 1`);
      expect(f.fix).toEqual([
        `# end the ERL_ZFLAGS in ${tuning} with -start_epmd false`,
        'systemctl daemon-reload',
        'systemctl restart billing_b.service',
      ]);
      // attach sees it too: it attaches (the dependency still holds), and warns.
      const att = await sh([SDEPMD, 'attach', 'billing_b']);
      report(`$ sdepmd attach billing_b -> exit ${att.code}\n${att.stdout}${att.stderr}`);
      expect(att.code).toBe(0);
      expect(att.stderr).toContain(
        `sdepmd attach: warning: billing_b.service: -start_epmd false in the drop-in is overridden (${tuning} sets ERL_ZFLAGS=+S 1)`,
      );

      // The fix as printed: the edit its first line asks for, then the commands.
      await s.writeFile(tuning, '[Service]\nEnvironment="ERL_ZFLAGS=+S 1 -start_epmd false"\n');
      await applyFix({ ...f, fix: f.fix.filter((c) => !c.startsWith('#')) });
      await waitFor('billing_b registered again', () => registered('billing_b'));
      expect((await sh(['pidof', 'epmd'])).code).not.toBe(0); // no epmd of its own in its cgroup
      await waitGreen('doctor green once the override ends with -start_epmd false');
      await sh(['rm', '-f', tuning]);
      expect((await s.systemctl('daemon-reload')).code).toBe(0);
    }),
    TEST_TIMEOUT,
  );

  test(
    'a registered name that belongs to no unit is a warning, not an error',
    timed('orphan registration (warning)', async () => {
      const node = sh(
        ['erl', '-sname', 'adhoc_shell', '-noshell', '-start_epmd', 'false', '-eval', 'timer:sleep(6000), halt().'],
        30000,
      );
      await waitFor('adhoc_shell registered', () => registered('adhoc_shell'));
      const r = await doctor('warning-orphan-registration');
      expect(r.code).toBe(0);
      expect(r.healthy).toBe(true);
      const f = find(r, 'orphan-registration');
      expect(f.severity).toBe('warning');
      expect(f.title).toBe('registered name adhoc_shell belongs to no running unit');
      expect(f.evidence.join('\n')).toMatch(/\(beam\.smp\)/);
      await node;
    }),
    TEST_TIMEOUT,
  );
});
