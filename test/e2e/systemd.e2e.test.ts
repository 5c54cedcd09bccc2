/**
 * sdepmd under a real systemd (PID 1 of private namespaces over an overlay of "/"): install with the shipped
 * installer, socket activation, READY/STATUS/WATCHDOG/STOPPING, journal priorities, hardening score, and the seed
 * scenario (two Erlang apps as units) FIXED with the shipped drop-in, then, as a control, the same scenario without
 * sdepmd and without the drop-in, where the seed bug must show.
 *
 * One sandbox, tests in order (each builds on the state the previous one left). Measured numbers are printed with
 * the prefix "[systemd-e2e]".
 */
import * as fs from 'fs';
import * as path from 'path';
import { bootSystemd, SystemdSandbox, systemdSandboxAvailable, stopAndCheckClean } from '../support/nsystemd';
import { allOf, cEpmdAvailable, erlAvailable, peerDescribe } from '../support/peers';
import {
  JournalEntry,
  looksLikeEpmd,
  messageOf,
  parseJournalJson,
  ProcInfo,
  PROBE_PATH,
  PROBE_SCRIPT,
} from './systemd-e2e-probe';
import { reporter, sleep, waitFor } from '../support/wait';
import { erlangAppUnit, sandboxShell } from '../support/sandbox';

const REPO = path.resolve(__dirname, '..', '..');
const INSTALL = path.join(REPO, 'scripts', 'install.sh');
const DROP_IN = path.join(REPO, 'units', 'epmd-dependency.conf');
const APPS = ['billing_prod', 'billing_stage'] as const;
const TEST_TIMEOUT = 180000;

const d = peerDescribe(
  'systemd sandbox + erl + C epmd',
  allOf(systemdSandboxAvailable(), erlAvailable(), cEpmdAvailable()),
);

const report = reporter('systemd-e2e');

const appUnit = (name: string): string => erlangAppUnit(name, 'sdepmd e2e');

d('sdepmd under a real systemd: install, activation, seed scenario fixed, journal, watchdog, stop', () => {
  let sb: SystemdSandbox | undefined;
  const shell = sandboxShell(() => sb);
  const { box, sh, show, isActive, names, registered } = shell;
  /** `systemctl is-enabled epmd.socket epmd.service` before sdepmd was installed (Debian's enablement). */
  let enabledBefore: string[] = [];

  // ---- small helpers over the sandbox -------------------------------------------------------------------------
  const probe = async <T>(...args: string[]): Promise<T> => {
    const r = await sh(['node', PROBE_PATH, ...args]);
    if (r.code !== 0) throw new Error(`probe ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  const ps = (): Promise<ProcInfo[]> => probe<ProcInfo[]>('ps');
  const journalJson = async (unit: string): Promise<JournalEntry[]> =>
    parseJournalJson((await sh(['journalctl', '--no-pager', '-u', unit, '-o', 'json'])).stdout);
  /** The daemon's own lines (not systemd's about the unit). */
  const daemonLines = async (): Promise<JournalEntry[]> =>
    (await journalJson('epmd.service')).filter((e) => e.SYSLOG_IDENTIFIER === 'sdepmd');
  const waitJournal = (what: string, pred: (e: JournalEntry) => boolean, timeoutMs = 15000): Promise<JournalEntry> =>
    waitFor(what, async () => (await journalJson('epmd.service')).find(pred), timeoutMs, 250);
  const dumpOnFailure = <T>(fn: () => Promise<T>): Promise<T> => shell.dumpOnFailure(fn, report, 120);
  const pingAll = async (): Promise<string> => {
    // A throwaway node: it must not start an epmd of its own (that would pollute the process checks).
    const evalText =
      'H = lists:last(string:split(atom_to_list(node()), "@")),' +
      'P = list_to_atom("billing_prod@" ++ H), S = list_to_atom("billing_stage@" ++ H),' +
      'R = [net_adm:ping(P), net_adm:ping(S), rpc:call(P, net_adm, ping, [S]), rpc:call(S, net_adm, ping, [P])],' +
      'io:format("~p~n", [R]), halt().';
    const r = await sh(['erl', '-sname', 'probe', '-noshell', '-start_epmd', 'false', '-eval', evalText]);
    return r.stdout.trim() + r.stderr.trim();
  };

  beforeAll(async () => {
    // No mask: Debian's epmd.socket is enabled on this kind of host, exactly as on a real one that sdepmd is
    // installed onto. The installer's units in /etc/systemd/system must take over from it.
    sb = await bootSystemd();
    report(`sandbox booted in ${sb.bootMs} ms (${sb.bootState})`);
    const seen = await sb.exec(['test', '-x', INSTALL]);
    if (seen.code !== 0) throw new Error(`${INSTALL} is not visible inside the sandbox (separate mount?)`);
    await sb.writeFile(PROBE_PATH, PROBE_SCRIPT);
  }, 120000);

  // Nothing leaks: the namespace's processes, its cgroups and its scratch dir are gone.
  afterAll(() => stopAndCheckClean(sb), 60000);

  test(
    '1. install.sh --enable inside the sandbox; epmd.socket listens, the first connection activates epmd.service',
    () =>
      dumpOnFailure(async () => {
        const s = box();
        enabledBefore = (await sh(['systemctl', 'is-enabled', 'epmd.socket', 'epmd.service'])).stdout
          .trim()
          .split('\n');

        // The installer, offline (the sandbox has only lo).
        const inst = await sh([INSTALL, '--enable'], 120000);
        report(`install.sh --enable: exit ${inst.code}\n${inst.stdout}${inst.stderr}`);
        expect(inst.code).toBe(0);
        expect(inst.stderr).not.toMatch(/installing npm dependencies|internal error/);
        // /usr/local/bin/sdepmd -> lib/sdepmd/bin/sdepmd -> sdepmd.js (the name the type checker can read).
        expect((await sh(['readlink', '-f', '/usr/local/bin/sdepmd'])).stdout.trim()).toBe(
          '/usr/local/lib/sdepmd/bin/sdepmd.js',
        );
        expect((await sh(['/usr/local/bin/sdepmd', '--version'])).stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
        // Ours are the units systemd loaded (they override Debian's of the same names).
        expect(await show('epmd.socket', 'FragmentPath')).toBe('/etc/systemd/system/epmd.socket');
        expect(await show('epmd.service', 'FragmentPath')).toBe('/etc/systemd/system/epmd.service');
        expect(await show('epmd.service', 'ExecStart')).toMatch(/\/usr\/local\/bin\/sdepmd -systemd/);
        expect((await sh(['systemctl', 'is-enabled', 'epmd.socket'])).stdout.trim()).toBe('enabled');

        // The socket listens; the service waits for its first connection.
        expect(await isActive('epmd.socket')).toBe('active');
        expect(await isActive('epmd.service')).toBe('inactive');
        expect(await show('epmd.socket', 'NAccepted')).toBe('0');
        expect((await sh(['ss', '-Hltn', 'sport = :4369'])).stdout).toMatch(/LISTEN/);

        // First connection: a NAMES request on the inactive socket. The probe times connect -> first reply byte;
        // `date +%s%N` around it adds the probe's own start-up (node).
        const first = await sh(
          `t0=$(date +%s%N); out=$(node ${PROBE_PATH} names); rc=$?; t1=$(date +%s%N); echo "$rc $(( (t1 - t0) / 1000 ))"; echo "$out"`,
        );
        const [rcLine = '', json = ''] = first.stdout.trim().split('\n');
        const [rc, wallUs] = rcLine.split(' ').map(Number);
        expect(rc).toBe(0);
        const reply = JSON.parse(json) as { ms: number; port: number; text: string };
        expect(reply.port).toBe(4369);
        expect(reply.text).toBe('');
        report(
          `activation -> first reply (connect on the inactive socket -> first NAMES reply byte): ${reply.ms.toFixed(1)} ms`,
        );
        report(
          `activation, date +%s%N before the first NAMES (node probe) to after: ${((wallUs ?? 0) / 1000).toFixed(1)} ms`,
        );

        // Type=notify: active (running) means READY=1 arrived.
        expect(await show('epmd.service', 'Type')).toBe('notify');
        expect(await isActive('epmd.service')).toBe('active');
        expect(await show('epmd.service', 'SubState')).toBe('running');
        const mainPid = await s.mainPid('epmd.service');
        expect(mainPid).toBeGreaterThan(0);
        expect((await sh(['cat', `/proc/${mainPid}/comm`])).stdout.trim()).toBe('node');
        expect(await show('epmd.service', 'StatusText')).toMatch(/registered/);

        // A second activation, timed with the C client: stop the service (the socket stays), then `epmd -names`.
        expect((await s.systemctl('stop', 'epmd.service')).code).toBe(0);
        expect(await isActive('epmd.service')).toBe('inactive');
        const second = await sh(
          't0=$(date +%s%N); epmd -names; rc=$?; t1=$(date +%s%N); echo "rc=$rc us=$(( (t1 - t0) / 1000 ))"',
        );
        expect(second.stdout).toMatch(/epmd: up and running on port 4369 with data:/);
        const us = Number(/rc=0 us=(\d+)/.exec(second.stdout)?.[1] ?? NaN);
        expect(us).toBeGreaterThan(0);
        report(`re-activation, date +%s%N before \`epmd -names\` (C client) to after: ${(us / 1000).toFixed(1)} ms`);
        expect(await isActive('epmd.service')).toBe('active');
        expect(await show('epmd.service', 'SubState')).toBe('running');
      }),
    TEST_TIMEOUT,
  );

  test(
    '1b. STATUS= shows the lookup count after lookups (refreshed at most once a second)',
    () =>
      dumpOnFailure(async () => {
        expect(await isActive('epmd.service')).toBe('active');
        const before = await show('epmd.service', 'StatusText');
        expect(before).toMatch(/registered/);
        const r = await probe<{ count: number; found: boolean }>('lookup', 'no_such_node', '5');
        expect(r).toEqual({ count: 5, found: false, port: 0 });
        // This daemon instance served exactly these 5 lookups.
        const status = await waitFor(
          'StatusText to show 5 lookups',
          async () => {
            const t = await show('epmd.service', 'StatusText');
            return /\b5 lookups? served/.test(t) ? t : undefined;
          },
          5000,
          250,
        ).catch(async (e: Error) => {
          throw new Error(`${e.message}; StatusText is still "${await show('epmd.service', 'StatusText')}"`);
        });
        report(`StatusText after 5 lookups: "${status}"`);
        expect(status).toMatch(/registered/);
      }),
    TEST_TIMEOUT,
  );

  test(
    '2. systemd-analyze verify passes; security exposure of epmd.service <= 1.0',
    () =>
      dumpOnFailure(async () => {
        const units = ['epmd.socket', 'epmd.service', 'erlang-app@.service'].map((u) => `/etc/systemd/system/${u}`);
        const verify = await sh(['systemd-analyze', 'verify', ...units]);
        report(`systemd-analyze verify: exit ${verify.code}${verify.stderr.trim() ? `\n${verify.stderr.trim()}` : ''}`);
        expect(verify.code).toBe(0);
        // Warnings about our units (unknown keys, bad values) go to stderr with exit 0.
        expect(verify.stderr).not.toMatch(/epmd|erlang-app/);

        const sec = await sh(['systemd-analyze', 'security', '--offline=yes', '/etc/systemd/system/epmd.service']);
        const m = /Overall exposure level for \S+: (\d+(?:\.\d+)?) (\S+)/.exec(sec.stdout);
        expect(m).not.toBeNull();
        const score = Number(m?.[1]);
        report(`systemd-analyze security --offline=yes epmd.service: overall exposure ${score} ${m?.[2] ?? ''}`);
        expect(score).toBeLessThanOrEqual(1.0);
      }),
    TEST_TIMEOUT,
  );

  test(
    '3. the seed scenario is FIXED: two Erlang apps with the shipped drop-in survive each other',
    () =>
      dumpOnFailure(async () => {
        const s = box();
        for (const app of APPS) {
          await s.writeFile(`/etc/systemd/system/${app}.service`, appUnit(app));
          await s.writeFile(
            `/etc/systemd/system/${app}.service.d/epmd-dependency.conf`,
            fs.readFileSync(DROP_IN, 'utf8'),
          );
        }
        expect((await sh(['systemctl', 'daemon-reload'])).code).toBe(0);
        // The drop-in is what systemd sees.
        expect(await show('billing_prod.service', 'Requires')).toMatch(/\bepmd\.service\b/);
        expect(await show('billing_prod.service', 'After')).toMatch(/\bepmd\.service\b/);

        expect((await s.systemctl('start', 'billing_prod.service')).code).toBe(0);
        await waitFor('billing_prod registered', () => registered('billing_prod'));
        expect((await s.systemctl('start', 'billing_stage.service')).code).toBe(0);
        const both = await waitFor('both registered', () => registered(...APPS));
        expect(both).toMatch(/name billing_prod at port \d+/);
        expect(both).toMatch(/name billing_stage at port \d+/);

        // The only epmd is sdepmd, and it lives in epmd.service's cgroup; no app cgroup holds an epmd.
        const epmdPid = await s.mainPid('epmd.service');
        const epmdCg = await s.unitCgroup('epmd.service');
        expect(epmdPid).toBeGreaterThan(0);
        expect(epmdCg).toBe(`/${s.cgroup}/system.slice/epmd.service`);
        expect(await s.cgroupOf(epmdPid)).toBe(epmdCg);
        const appCgs = await Promise.all(APPS.map((a) => s.unitCgroup(`${a}.service`)));
        const checkProcesses = async (when: string): Promise<void> => {
          const procs = await ps();
          const epmds = procs.filter(looksLikeEpmd);
          expect({ when, epmds: epmds.map((p) => `${p.pid} ${p.comm} ${p.argv.join(' ')}`) }).toEqual({
            when,
            epmds: [
              expect.stringMatching(new RegExp(`^${await s.mainPid('epmd.service')} node .*sdepmd -systemd( .*)?$`)),
            ],
          });
          expect(epmds[0]?.cgroup).toBe(epmdCg);
          for (const cg of appCgs) {
            const inApp = procs.filter((p) => p.cgroup === cg || p.cgroup.startsWith(`${cg}/`));
            const running = (await show(path.basename(cg), 'ActiveState')) === 'active';
            if (running) expect(inApp.some((p) => p.comm === 'beam.smp')).toBe(true);
            expect(inApp.filter(looksLikeEpmd)).toEqual([]);
            // The drop-in's -start_epmd false (in ERL_ZFLAGS) reached the VM.
            for (const beam of inApp.filter((p) => p.comm === 'beam.smp'))
              expect(beam.argv.join(' ')).toMatch(/-start_epmd false/);
          }
        };
        await checkProcesses('both apps started');

        expect(await pingAll()).toBe('[pong,pong,pong,pong]');

        // Stop, start, restart billing_prod: billing_stage stays registered every time, and is never bounced.
        const stagePid = await s.mainPid('billing_stage.service');
        const stageListed = async (when: string): Promise<void> => {
          const r = await names();
          expect({ when, code: r.code, out: r.stdout }).toEqual({
            when,
            code: 0,
            out: expect.stringMatching(/name billing_stage at port \d+/),
          });
        };
        expect((await s.systemctl('stop', 'billing_prod.service')).code).toBe(0);
        await stageListed('after stop billing_prod');
        await waitFor('billing_prod unregistered', async () =>
          (await names()).stdout.includes('billing_prod') ? undefined : true,
        );
        await stageListed('after billing_prod unregistered');
        await checkProcesses('billing_prod stopped');

        expect((await s.systemctl('start', 'billing_prod.service')).code).toBe(0);
        await stageListed('after start billing_prod');
        await waitFor('billing_prod registered again', () => registered(...APPS));

        expect((await s.systemctl('restart', 'billing_prod.service')).code).toBe(0);
        await stageListed('right after restart billing_prod');
        await waitFor('billing_prod registered after restart', () => registered(...APPS));
        await stageListed('after billing_prod re-registered');
        await checkProcesses('billing_prod restarted');

        expect(await s.mainPid('billing_stage.service')).toBe(stagePid);
        expect(await s.mainPid('epmd.service')).toBe(epmdPid);
        expect(await pingAll()).toBe('[pong,pong,pong,pong]');

        const status = await waitFor(
          'StatusText to show 2 nodes registered',
          async () => {
            const t = await show('epmd.service', 'StatusText');
            return /\b2 nodes registered/.test(t) ? t : undefined;
          },
          5000,
        );
        report(`StatusText with both apps: "${status}"`);
      }),
    TEST_TIMEOUT,
  );

  test(
    '4. journal: registration lines at PRIORITY 6; after SIGUSR1, lookups log debug lines at PRIORITY 7',
    () =>
      dumpOnFailure(async () => {
        const s = box();
        const stageReg = await waitJournal(
          'registered billing_stage line',
          (e) => e.SYSLOG_IDENTIFIER === 'sdepmd' && /^registered billing_stage port \d+/.test(messageOf(e)),
        );
        expect(stageReg.PRIORITY).toBe('6');
        expect((await sh(['journalctl', '--no-pager', '-u', 'epmd', '-o', 'cat'])).stdout).toMatch(
          /registered billing_stage port \d+/,
        );
        const pid = String(await s.mainPid('epmd.service'));
        const levelUp = (e: JournalEntry): boolean =>
          e.SYSLOG_IDENTIFIER === 'sdepmd' && e._PID === pid && /^log level info -> debug/.test(messageOf(e));
        // At info level, a lookup logs nothing.
        const quiet = (await daemonLines()).length;
        expect((await probe<{ found: boolean }>('lookup', 'billing_stage')).found).toBe(true);
        await sleep(500);
        expect((await daemonLines()).filter((e) => e._PID === pid && /PORT_PLEASE2/.test(messageOf(e)))).toEqual([]);
        expect((await daemonLines()).length).toBe(quiet);

        expect((await s.systemctl('kill', '-s', 'USR1', 'epmd')).code).toBe(0);
        expect((await waitJournal('log level info -> debug', levelUp)).PRIORITY).toBe('5');
        const lookup = await probe<{ found: boolean; port: number }>('lookup', 'billing_stage');
        expect(lookup.found).toBe(true);
        expect((await names()).code).toBe(0);
        const pp = await waitJournal(
          'PORT_PLEASE2 debug line',
          (e) =>
            e._PID === pid &&
            new RegExp(`^PORT_PLEASE2 billing_stage from \\S+: port ${lookup.port}$`).test(messageOf(e)),
        );
        expect(pp.PRIORITY).toBe('7');
        const nm = await waitJournal('NAMES debug line', (e) => e._PID === pid && /^NAMES from \S+/.test(messageOf(e)));
        expect(nm.PRIORITY).toBe('7');

        // SIGUSR2 lowers it again: lookups are quiet once more.
        expect((await s.systemctl('kill', '-s', 'USR2', 'epmd')).code).toBe(0);
        await waitJournal(
          'log level debug -> info',
          (e) => e._PID === pid && /^log level debug -> info/.test(messageOf(e)),
        );
        const debugCount = (await daemonLines()).filter((e) => e.PRIORITY === '7').length;
        await probe('lookup', 'billing_stage', '3');
        await sleep(500);
        expect((await daemonLines()).filter((e) => e.PRIORITY === '7').length).toBe(debugCount);
      }),
    TEST_TIMEOUT,
  );

  test(
    '5. watchdog: a stalled event loop gets the daemon aborted and restarted by systemd, and it serves again',
    () =>
      dumpOnFailure(async () => {
        const s = box();
        // Apps with Requires=epmd.service are restarted along with epmd (documented trade-off): stop them first.
        expect((await s.systemctl('stop', ...APPS.map((a) => `${a}.service`))).code).toBe(0);
        await s.writeFile(
          '/etc/systemd/system/epmd.service.d/systemd-e2e-watchdog.conf',
          '[Service]\nEnvironment=SDEPMD_TEST_HOOKS=1\nWatchdogSec=2s\n# no core file from the SIGABRT\nLimitCORE=0\n',
        );
        expect((await sh(['systemctl', 'daemon-reload'])).code).toBe(0);
        expect((await s.systemctl('restart', 'epmd.service')).code).toBe(0);
        expect(await show('epmd.service', 'WatchdogUSec')).toBe('2s');
        const pid1 = await s.mainPid('epmd.service');
        const restarts1 = Number(await show('epmd.service', 'NRestarts'));
        await waitJournal(
          'watchdog ping line',
          (e) => e._PID === String(pid1) && /^watchdog: pinging systemd every 1000 ms/.test(messageOf(e)),
        );
        // Healthy for longer than WatchdogSec: no restart.
        await sleep(3000);
        expect(await s.mainPid('epmd.service')).toBe(pid1);

        const t0 = Date.now();
        expect((await s.systemctl('kill', '-s', 'WINCH', 'epmd')).code).toBe(0);
        const pid2 = await waitFor(
          'epmd.service restarted by the watchdog',
          async () => {
            const p = await s.mainPid('epmd.service');
            const n = Number(await show('epmd.service', 'NRestarts'));
            return p > 0 && p !== pid1 && n > restarts1 && (await isActive('epmd.service')) === 'active'
              ? p
              : undefined;
          },
          15000,
          100,
        );
        report(`watchdog: SIGWINCH -> new MainPID ${pid2} active after ${Date.now() - t0} ms (WatchdogSec=2s)`);
        expect(Number(await show('epmd.service', 'NRestarts'))).toBe(restarts1 + 1);
        await waitJournal(
          'stall line',
          (e) => e._PID === String(pid1) && /test hook: stalling the event loop/.test(messageOf(e)),
        );
        await waitJournal('watchdog timeout', (e) => /Watchdog timeout/.test(messageOf(e)));
        await waitJournal('result watchdog', (e) => /Failed with result 'watchdog'/.test(messageOf(e)));
        // It serves again.
        expect((await names()).stdout).toMatch(/epmd: up and running on port 4369 with data:/);
        expect(await probe('lookup', 'nobody')).toEqual({ count: 1, found: false, port: 0 });

        // Back to the shipped configuration.
        await sh(['rm', '-f', '/etc/systemd/system/epmd.service.d/systemd-e2e-watchdog.conf']);
        expect((await sh(['systemctl', 'daemon-reload'])).code).toBe(0);
        expect((await s.systemctl('restart', 'epmd.service')).code).toBe(0);
        expect(await show('epmd.service', 'WatchdogUSec')).toBe('10s');
      }),
    TEST_TIMEOUT,
  );

  test(
    '6. SIGTERM: stop logs "shutting down", the socket keeps listening, the next connection re-activates',
    () =>
      dumpOnFailure(async () => {
        const s = box();
        expect(await isActive('epmd.service')).toBe('active');
        const pid1 = await s.mainPid('epmd.service');
        expect((await s.systemctl('stop', 'epmd.service')).code).toBe(0);
        expect(await isActive('epmd.service')).toBe('inactive');
        expect(await show('epmd.service', 'Result')).toBe('success');
        const down = await waitJournal(
          'shutting down line',
          (e) => e._PID === String(pid1) && /^shutting down: SIGTERM received/.test(messageOf(e)),
        );
        expect(down.PRIORITY).toBe('5');
        expect(await isActive('epmd.socket')).toBe('active');
        expect((await sh(['ss', '-Hltn', 'sport = :4369'])).stdout).toMatch(/LISTEN/);

        const r = await probe<{ ms: number; port: number }>('names');
        expect(r.port).toBe(4369);
        report(`re-activation after SIGTERM stop -> first NAMES reply: ${r.ms.toFixed(1)} ms`);
        expect(await isActive('epmd.service')).toBe('active');
        const pid2 = await s.mainPid('epmd.service');
        expect(pid2).toBeGreaterThan(0);
        expect(pid2).not.toBe(pid1);
      }),
    TEST_TIMEOUT,
  );

  test(
    '6b. in all of the above the daemon logged no warning, no error and no disabled feature (apart from the deliberate watchdog stall)',
    () =>
      dumpOnFailure(async () => {
        const bad = (await daemonLines())
          .filter((e) => Number(e.PRIORITY ?? 6) <= 4 || /will not work|EACCES|EPERM/.test(messageOf(e)))
          .map((e) => `<${e.PRIORITY}> [${e._PID}] ${messageOf(e)}`)
          .filter((l) => !/test hook: stalling the event loop/.test(l));
        expect(bad).toEqual([]);
      }),
    TEST_TIMEOUT,
  );

  test(
    '7. install.sh --uninstall removes sdepmd and gives back the epmd units as they were before',
    () =>
      dumpOnFailure(async () => {
        const s = box();
        const un = await sh([INSTALL, '--uninstall'], 120000);
        report(`install.sh --uninstall: exit ${un.code}\n${un.stdout}${un.stderr}`);
        expect(un.code).toBe(0);
        for (const f of [
          '/usr/local/bin/sdepmd',
          '/usr/local/lib/sdepmd',
          '/etc/systemd/system/epmd.socket',
          '/etc/systemd/system/epmd.service',
          '/etc/systemd/system/erlang-app@.service',
        ]) {
          expect({ f, exists: (await sh(['test', '-e', f])).code === 0 }).toEqual({ f, exists: false });
        }
        expect(await isActive('epmd.service')).toBe('inactive');
        expect(await show('epmd.socket', 'FragmentPath')).toBe('/lib/systemd/system/epmd.socket');
        // The uninstaller says "Debian's own epmd units, if any, apply again": their enablement should be as before.
        const enabledAfter = (await s.systemctl('is-enabled', 'epmd.socket', 'epmd.service')).stdout.trim().split('\n');
        expect(enabledAfter).toEqual(enabledBefore);
      }),
    TEST_TIMEOUT,
  );

  test(
    '8. control: without sdepmd and without the drop-in, the seed bug shows (stopping billing_prod kills epmd)',
    () =>
      dumpOnFailure(async () => {
        const s = box();
        if ((await sh(['test', '-e', '/etc/systemd/system/epmd.service'])).code === 0) {
          expect((await sh([INSTALL, '--uninstall'], 120000)).code).toBe(0); // in case test 7 did not get that far
        }
        expect((await s.systemctl('stop', ...APPS.map((a) => `${a}.service`))).code).toBe(0);
        // Debian's epmd units must not catch the apps' connections either.
        expect((await s.systemctl('mask', '--now', 'epmd.socket', 'epmd.service')).code).toBe(0);
        await sh(['rm', '-rf', ...APPS.map((a) => `/etc/systemd/system/${a}.service.d`)]);
        expect((await sh(['systemctl', 'daemon-reload'])).code).toBe(0);
        expect(await show('billing_prod.service', 'Requires')).not.toMatch(/epmd/);
        const none = await names();
        expect(none.code).not.toBe(0);
        expect(none.stdout + none.stderr).toMatch(/Cannot connect to local epmd/);
        expect((await ps()).filter(looksLikeEpmd)).toEqual([]);

        expect((await s.systemctl('start', 'billing_prod.service')).code).toBe(0);
        await waitFor('billing_prod registered', () => registered('billing_prod'));
        expect((await s.systemctl('start', 'billing_stage.service')).code).toBe(0);
        await waitFor('both registered', () => registered(...APPS));

        // The one epmd is the C epmd that billing_prod's VM spawned, inside billing_prod's cgroup.
        const epmds = (await ps()).filter(looksLikeEpmd);
        expect(epmds.map((p) => p.argv.join(' '))).toEqual([expect.stringMatching(/epmd -daemon/)]);
        expect(epmds[0]?.cgroup).toBe(await s.unitCgroup('billing_prod.service'));

        expect((await s.systemctl('stop', 'billing_prod.service')).code).toBe(0);
        expect(await isActive('billing_stage.service')).toBe('active');
        const after = await names();
        expect(after.code).not.toBe(0);
        expect(after.stdout + after.stderr).toMatch(/Cannot connect to local epmd/);
        // billing_stage is running but unreachable: nobody can look it up.
        await sleep(3000);
        expect((await names()).stdout + (await names()).stderr).toMatch(/Cannot connect to local epmd/);
        expect(await isActive('billing_stage.service')).toBe('active');
        report(
          `control: without sdepmd, stopping billing_prod left billing_stage running but unregistered ("Cannot connect to local epmd")`,
        );
        await s.systemctl('stop', ...APPS.map((a) => `${a}.service`));
      }),
    TEST_TIMEOUT,
  );
});
