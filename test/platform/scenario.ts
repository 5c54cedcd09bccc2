/**
 * The distro matrix: one stock Debian release booted for real (debian-host.ts), used the way an operator would.
 *
 *  1. the host is stock: systemd is PID 1, no Node.js, no Erlang, no sdepmd;
 *  2. the operator's Erlang: apt-get install erlang-base (its epmd.socket comes up on 4369);
 *  3. the README's install command, `scripts/install.sh --enable`, from a clean copy of the checkout: it apt-gets
 *     the distro's nodejs and the build tools, builds offline against the distro's Node headers, takes over
 *     epmd.socket from erlang-base's C epmd (the downloads run first with the machine's network, the installer in
 *     the guest's own network namespace, so that the take-over sees the guest's port 4369);
 *  4. the seed scenario: two real OTP apps as units (`erl -sname ... -noshell`) with the shipped drop-in
 *     units/epmd-dependency.conf; stopping one leaves the other registered, and they ping each other;
 *  5. the fd store: `systemctl restart epmd.service` keeps a node's registration (same creation, no re-register);
 *  6. `sdepmd doctor` says healthy;
 *  7. the differential suite against this release's C epmd and the real-OTP interop suite, run inside the guest
 *     with jest on the distro's Node, against its own erlang-base (CI=true: a missing peer fails), and with them the
 *     unit and native-addon suites on that Node;
 *  8. the README's uninstall gives erlang-base's units back;
 *  9. the .deb: built inside by scripts/build-deb.sh; install, upgrade (a newer version over an older one), remove
 *     and purge with apt, each followed by `systemctl status epmd.socket`, with no dpkg error and nothing left.
 *
 * Numbers (boot time, install time, versions, suite results) go to stderr as `[platform:<release>] ...` lines.
 */
import { DebianHost, GUEST_REPO, debianHostAvailable, type ExecResult, type Suite } from './debian-host';
import { peerDescribe } from '../support/peers';

const MIN = 60_000;

/**
 * A raw client: one ALIVE2_REQ (name argv[2], port argv[3], normal node, versions 5-6) on a connection it keeps open
 * until killed; it logs the reply, and "closed" should epmd ever close the connection.
 */
const RAW_ALIVE2 = `const net = require('net');
const name = Buffer.from(process.argv[2]);
const req = Buffer.alloc(15 + name.length);
req.writeUInt16BE(13 + name.length, 0);
req.writeUInt8(120, 2);
req.writeUInt16BE(Number(process.argv[3]), 3);
req.writeUInt8(77, 5);
req.writeUInt8(0, 6);
req.writeUInt16BE(6, 7);
req.writeUInt16BE(5, 9);
req.writeUInt16BE(name.length, 11);
name.copy(req, 13);
req.writeUInt16BE(0, 13 + name.length);
const s = net.connect(4369, '127.0.0.1', () => s.write(req));
s.on('data', (b) => console.log('reply ' + b.toString('hex')));
s.on('close', () => { console.log('closed'); process.exit(1); });
`;

/** What sdepmd's own scripts said ("sdepmd: ..." and "sdepmd adopt: ..." lines) in apt's output. */
const sdepmdLines = (out: string): string =>
  out
    .split('\n')
    .filter((l) => /^sdepmd( adopt)?: /.test(l))
    .join('\n');

const appUnit = (name: string): string => `[Unit]
Description=Erlang app ${name} (platform test)

[Service]
Environment=HOME=/root
ExecStart=/usr/bin/erl -sname ${name} -noshell -noinput
`;

export function platformSuite(suite: Suite, release: string): void {
  const d = peerDescribe(`stock ${release} host (debootstrap + systemd-nspawn)`, debianHostAvailable(suite));

  d(
    `${release} (${suite}) booted for real: README install, seed scenario, fd store, doctor, differential, .deb`,
    () => {
      let host: DebianHost | undefined;
      const h = (): DebianHost => {
        if (!host) throw new Error(`${suite} did not boot`);
        return host;
      };
      const say = (line: string) => process.stderr.write(`[platform:${suite}] ${line}\n`);
      const hostname = `sdepmd-${suite}`;
      let installed = false;

      /** Every failure prints the guest's journal: the only way to see what systemd saw. */
      const withJournal = async (fn: () => Promise<void>) => {
        try {
          await fn();
        } catch (e) {
          if (host) say(`journal:\n${await host.journal(undefined, 80)}`);
          throw e;
        }
      };
      const registered = async (...names: string[]): Promise<string | undefined> => {
        const r = await h().exec('epmd -names');
        return r.code === 0 && names.every((n) => r.stdout.includes(`name ${n} at port`)) ? r.stdout : undefined;
      };
      const waitFor = async <T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> => {
        const end = Date.now() + ms;
        for (;;) {
          const v = await fn();
          if (v !== undefined) return v;
          if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
          await new Promise((r) => setTimeout(r, 250));
        }
      };
      /** A short-lived probe node pings `target` (or makes `from` ping it by rpc). */
      const ping = async (target: string, from?: string): Promise<string> => {
        // No single quotes in the expression: it goes inside a single-quoted shell word (hostnames hold a '-').
        const atom = (n: string) => `list_to_atom("${n}@${hostname}")`;
        const expr = from
          ? `io:format("~p", [rpc:call(${atom(from)}, net_adm, ping, [${atom(target)}])])`
          : `io:format("~p", [net_adm:ping(${atom(target)})])`;
        const r = await h().exec(
          `ERL_AFLAGS='-start_epmd false' erl -sname probe$RANDOM -noshell -noinput -eval '${expr}, halt().'`,
        );
        return r.stdout.trim();
      };
      const socketStatus = async (): Promise<string> => {
        const r = await h().exec('systemctl status epmd.socket --no-pager --lines=0');
        return r.stdout;
      };
      const creationOf = async (name: string): Promise<number | undefined> => {
        const r = await h().exec('sdepmd names --json');
        if (r.code !== 0) return undefined;
        const parsed = JSON.parse(r.stdout) as unknown;
        const list = (Array.isArray(parsed) ? parsed : ((parsed as { nodes?: unknown[] }).nodes ?? [])) as Array<{
          name: string;
          creation: number;
        }>;
        return list.find((n) => n.name === name)?.creation;
      };

      beforeAll(async () => {
        host = await DebianHost.boot(suite);
        say(`booted in ${host.bootMs} ms (${host.bootState})`);
      }, 20 * MIN);

      afterAll(async () => {
        if (host) await host.shutdown();
      }, 2 * MIN);

      test(
        'the host is stock: systemd is PID 1, no Node.js, no Erlang, no sdepmd',
        async () => {
          expect(['running', 'degraded']).toContain(h().bootState);
          expect((await h().ok('cat /proc/1/comm')).stdout.trim()).toBe('systemd');
          const v = (await h().ok('systemctl --version | head -n1')).stdout.trim();
          say(`debian ${(await h().ok('cat /etc/debian_version')).stdout.trim()}, ${v}`);
          expect(v).toMatch(suite === 'bookworm' ? /^systemd 252\b/ : /^systemd 257\b/);
          expect((await h().exec('command -v node || command -v erl || command -v sdepmd')).code).not.toBe(0);
          expect(
            (await h().exec('ls /etc/systemd/system/epmd.socket /usr/lib/systemd/system/epmd.socket')).code,
          ).not.toBe(0);
          // Its network is its own: only lo.
          expect((await h().ok('ls /sys/class/net')).stdout.trim()).toBe('lo');
        },
        MIN,
      );

      test(
        "the operator's Erlang: erlang-base's C epmd listens on 4369 through its epmd.socket",
        async () => {
          const r = await h().ok(
            'apt-get update -qq && apt-get install -y -qq --no-install-recommends erlang-base >/dev/null',
            {
              hostNet: true,
              timeoutMs: 15 * MIN,
            },
          );
          const otp = (
            await h().ok(`erl -noshell -eval 'io:format("~s", [erlang:system_info(otp_release)]), halt().'`)
          ).stdout.trim();
          say(`erlang-base (OTP ${otp}) installed in ${(r.ms / 1000).toFixed(0)} s`);
          expect(otp).toBe(suite === 'bookworm' ? '25' : '27');
          expect((await h().ok('systemctl is-active epmd.socket')).stdout.trim()).toBe('active');
          expect((await h().ok('epmd -names')).stdout).toMatch(/epmd: up and running on port 4369/);
        },
        16 * MIN,
      );

      test(
        "the README's install command: scripts/install.sh --enable",
        async () => {
          await withJournal(async () => {
            // What the installer downloads (apt-get, npm ci) is fetched first with the machine's network; the installer
            // itself then runs in the guest's own network namespace, where its take-over sees the guest's C epmd on 4369.
            const fetched = await h().ok(
              `cd ${GUEST_REPO} && scripts/install-deps.sh && . scripts/node-env.sh && scripts/ensure-npm.sh`,
              { hostNet: true, timeoutMs: 25 * MIN },
            );
            const installOnly = await h().ok(`cd ${GUEST_REPO} && scripts/install.sh --enable`, {
              timeoutMs: 25 * MIN,
            });
            const r = { ...installOnly, ms: fetched.ms + installOnly.ms };
            installed = true;
            const node = (await h().ok('node --version')).stdout.trim();
            const origin = (await h().ok('dpkg-query -S "$(readlink -f "$(command -v node)")"')).stdout.trim();
            say(`README install took ${(r.ms / 1000).toFixed(0)} s; node ${node} (${origin})`);
            // The distro's own Node.js, not another one.
            expect(origin).toMatch(/^nodejs: \/usr\/bin\/node(js)?$/);
            expect(node).toMatch(suite === 'bookworm' ? /^v18\.20\./ : /^v20\.19\./);
            expect(r.stderr).toMatch(/epmd\.socket is listening on port 4369/);
            const status = await socketStatus();
            say(`after README install:\n${status}`);
            expect(status).toMatch(/Loaded: loaded \(\/etc\/systemd\/system\/epmd\.socket; enabled/);
            expect(status).toMatch(/Active: active \(listening\)|Active: active \(running\)/);
            // Whatever answers on 4369 now is sdepmd.
            expect((await h().ok('epmd -names')).stdout).toMatch(/epmd: up and running on port 4369/);
            expect((await h().ok('systemctl show -p ExecStart epmd.service')).stdout).toMatch(/sdepmd/);
            expect((await h().ok('sdepmd status')).stdout).toMatch(/under systemd/);
          });
        },
        26 * MIN,
      );

      test(
        'the seed scenario: two OTP apps with the shipped drop-in; stopping one leaves the other registered',
        async () => {
          expect(installed).toBe(true);
          await withJournal(async () => {
            const s = h();
            // One cookie for the apps and the probes (first boot of erl would race to create it).
            await s.ok('umask 077 && echo platformcookie > /root/.erlang.cookie && chmod 400 /root/.erlang.cookie');
            for (const app of ['billing_prod', 'billing_stage']) {
              s.writeFile(`/etc/systemd/system/${app}.service`, appUnit(app));
              await s.ok(
                `mkdir -p /etc/systemd/system/${app}.service.d && cp ${GUEST_REPO}/units/epmd-dependency.conf /etc/systemd/system/${app}.service.d/`,
              );
            }
            await s.ok('systemctl daemon-reload && systemctl start billing_prod.service billing_stage.service');
            await waitFor('both apps registered', () => registered('billing_prod', 'billing_stage'));
            // epmd is its own unit: no epmd in any app's cgroup, the apps depend on epmd.service.
            // (minbase has no pidof or pgrep: read /proc.)
            const epmds = await s.exec('grep -lx epmd /proc/[0-9]*/comm');
            expect(epmds.stdout.trim()).toBe('');
            expect((await s.ok('systemctl show -p Requires billing_prod.service')).stdout).toMatch(/epmd\.service/);
            const epmdPid = (await s.ok('systemctl show -p MainPID --value epmd.service')).stdout.trim();
            expect((await s.ok(`cat /proc/${epmdPid}/cgroup`)).stdout).toMatch(/\/system\.slice\/epmd\.service$/m);
            expect(await ping('billing_stage', 'billing_prod')).toBe('pong');

            await s.ok('systemctl stop billing_prod.service');
            expect((await s.ok('systemctl is-active epmd.service')).stdout.trim()).toBe('active');
            await new Promise((r) => setTimeout(r, 1000));
            const after = await s.ok('epmd -names');
            expect(after.stdout).toMatch(/name billing_stage at port \d+/);
            expect(after.stdout).not.toMatch(/billing_prod/);
            expect(await ping('billing_stage')).toBe('pong');

            await s.ok('systemctl start billing_prod.service');
            await waitFor('billing_prod back', () => registered('billing_prod', 'billing_stage'));
            expect(await ping('billing_stage', 'billing_prod')).toBe('pong');
            expect(await ping('billing_prod', 'billing_stage')).toBe('pong');
            say(
              'seed scenario: stopping billing_prod left billing_stage registered and reachable; both ping each other',
            );
          });
        },
        3 * MIN,
      );

      test(
        'the fd store: systemctl restart epmd.service keeps a registration',
        async () => {
          expect(installed).toBe(true);
          await withJournal(async () => {
            const s = h();
            // A node that no unit ties to epmd.service (a restart of epmd restarts the apps that Require it).
            await s.ok(
              `systemd-run --unit=keeper --setenv=HOME=/root --setenv=ERL_AFLAGS='-start_epmd false' /usr/bin/erl -sname keeper -noshell -noinput`,
            );
            try {
              await waitFor('keeper registered', () => registered('keeper'));
              const before = await creationOf('keeper');
              expect(before).toEqual(expect.any(Number));
              const pid1 = (await s.ok('systemctl show -p MainPID --value epmd.service')).stdout.trim();
              await s.ok('systemctl restart epmd.service');
              const pid2 = (await s.ok('systemctl show -p MainPID --value epmd.service')).stdout.trim();
              expect(pid2).not.toBe(pid1);
              // Right after the restart (well inside OTP's 2 s re-register retry), with the same creation: restored
              // from the fd store, not registered again.
              expect(await registered('keeper')).toBeDefined();
              expect(await creationOf('keeper')).toBe(before);
              expect((await s.ok('sdepmd status')).stdout).toMatch(
                /fd store:\s+\d+ stored, [1-9]\d* restored at start/,
              );
              expect(await ping('keeper')).toBe('pong');
              say(`fd store: restart of epmd.service (pid ${pid1} -> ${pid2}) kept keeper with creation ${before}`);
            } finally {
              // keeper is deliberately not attached to epmd.service; doctor (next) would rightly flag it.
              await s.exec('systemctl stop keeper.service');
            }
          });
        },
        3 * MIN,
      );

      test(
        'sdepmd doctor: healthy',
        async () => {
          expect(installed).toBe(true);
          const r = await h().exec('sdepmd doctor');
          if (r.code !== 0) say(`doctor:\n${r.stdout}${r.stderr}`);
          expect(r.stdout).toMatch(/^sdepmd doctor: healthy/m);
          expect(r.code).toBe(0);
        },
        2 * MIN,
      );

      test(
        "the differential suite against this release's C epmd, the real-OTP interop, unit and native, inside",
        async () => {
          expect(installed).toBe(true);
          const s = h();
          // The test peers the README's test command would install (erlang-base is there; iproute2 for `ss`).
          await s.ok(`cd ${GUEST_REPO} && scripts/install-deps.sh --test`, { hostNet: true, timeoutMs: 10 * MIN });
          // Also the unit and native-addon suites: on this release's Node, they show that sdepmd runs there, beyond
          // building. (integration, fuzz and the namespaced e2e suites run on this machine's Node only, to keep CI short.)
          // Debian 13's OTP 27 is new: the whole differential suite (the wire protocol, the CLI, the timing cases) and the
          // real-OTP interop. Debian 12's erlang-base is OTP 25, the peer the suites on this machine already run against:
          // there, what is new is Node 18, so the unit and native suites and the CLI differential (epmd's own client
          // against sdepmd, on Node 18), without the protocol suite's timing cases, which prove nothing new about OTP 25.
          const suites =
            suite === 'trixie'
              ? 'test/differential test/interop test/unit test/native'
              : 'test/differential/cli.test.ts test/unit test/native';
          const r = await s.exec(`cd ${GUEST_REPO} && npx jest --runInBand --ci ${suites} 2>&1`, {
            timeoutMs: 20 * MIN,
            env: { CI: 'true' },
          });
          const summary = (r.stdout.match(/^(Test Suites|Tests):.*$/gm) ?? []).join('; ');
          const perSuite = (r.stdout.match(/^(PASS|FAIL) \S+/gm) ?? []).join(', ');
          say(`${suites} on ${suite}'s Node and OTP: ${summary} (${(r.ms / 1000).toFixed(0)} s): ${perSuite}`);
          if (r.code !== 0) say(r.stdout.slice(-6000));
          expect(r.code).toBe(0);
          expect(summary).toMatch(/Tests:\s+\d+ passed, \d+ total/);
          expect(summary).not.toMatch(/failed|skipped/);
        },
        22 * MIN,
      );

      test(
        "the README's uninstall gives erlang-base's units back",
        async () => {
          expect(installed).toBe(true);
          await withJournal(async () => {
            const s = h();
            await s.ok('systemctl stop billing_prod.service billing_stage.service');
            await s.ok(`cd ${GUEST_REPO} && scripts/install.sh --uninstall`);
            expect(
              (
                await s.exec(
                  'ls /usr/local/lib/sdepmd /usr/local/bin/sdepmd /etc/systemd/system/epmd.socket /etc/systemd/system/epmd.service',
                )
              ).code,
            ).not.toBe(0);
            const status = await socketStatus();
            say(`after README uninstall:\n${status}`);
            expect(status).toMatch(/Loaded: loaded \(\/(usr\/)?lib\/systemd\/system\/epmd\.socket; enabled/);
            expect(status).toMatch(/Active: active/);
            await s.ok('systemctl restart epmd.socket && systemctl start epmd.service');
            expect((await s.ok('systemctl show -p ExecStart epmd.service')).stdout).toMatch(
              /\/usr\/bin\/epmd -systemd/,
            );
            expect((await s.ok('epmd -names')).stdout).toMatch(/up and running on port 4369/);
            expect((await s.ok('dpkg --verify erlang-base && echo verified')).stdout).toMatch(/^verified$/m);
          });
        },
        3 * MIN,
      );

      test(
        'the .deb: apt install, upgrade over an older version, remove and purge are clean',
        async () => {
          expect(installed).toBe(true);
          await withJournal(async () => {
            const s = h();
            const version = (await s.ok(`node -p 'require("${GUEST_REPO}/package.json").version'`)).stdout.trim();
            const newer = `${version}+test2`;
            const t0 = Date.now();
            // Built once (the checkout was built by the README install already); the newer version is the same package
            // re-packed with a higher version, in the package's control file and in its package.json (which
            // `sdepmd --version` reads), with md5sums to match: the upgrade then shows the new code taking over.
            await s.ok(`cd ${GUEST_REPO} && scripts/build-deb.sh --out /root/debs`, {
              hostNet: true,
              timeoutMs: 10 * MIN,
            });
            await s.ok(
              `set -e; cd /root/debs; rm -rf up; dpkg-deb -R sdepmd_${version}_*.deb up; ` +
                `sed -i 's/^Version: .*/Version: ${newer}/' up/DEBIAN/control; ` +
                `sed -i 's/"version": *"[^"]*"/"version": "${newer}"/' up/usr/lib/sdepmd/package.json; ` +
                `(cd up && find usr -type f -print0 | sort -z | xargs -0 md5sum > DEBIAN/md5sums); ` +
                `dpkg-deb --root-owner-group -Zgzip --build up sdepmd_${newer}_$(dpkg --print-architecture).deb >/dev/null; rm -rf up`,
            );
            const arch = (await s.ok('dpkg --print-architecture')).stdout.trim();
            const control = (await s.ok(`dpkg-deb -f /root/debs/sdepmd_${version}_${arch}.deb Depends`)).stdout.trim();
            say(
              `.deb built in ${((Date.now() - t0) / 1000).toFixed(0)} s (built once, re-packed as the newer version); Depends: ${control}`,
            );
            expect(control).toMatch(/nodejs \(>= 18\.20\)/);
            expect(control).toMatch(/libsystemd0/);
            // Every addon in it is N-API: the same package serves Node 18 and Node 20 (no libnode<ABI> pin).
            expect(control).not.toMatch(/libnode/);

            /**
             * apt-get with its full output, as an operator runs it. What it downloads is fetched first with the machine's
             * network (`--download-only`); the command itself then runs in the guest's own network namespace, where the
             * maintainer scripts' take-over and hand-back see the guest's epmd on 4369 (on the machine's network they
             * would see this machine's port, and take-over refuses: port held by a process it cannot see).
             */
            const aptRun = async (args: string): Promise<ExecResult> => {
              const cmd = (a: string) => `apt-get -o DPkg::Lock::Timeout=120 ${a} 2>&1`;
              const attempt = async () => {
                if (/^install /.test(args)) {
                  const dl = await s.exec(cmd(`--download-only ${args}`), { hostNet: true, timeoutMs: 10 * MIN });
                  if (dl.code !== 0) return dl;
                }
                return s.exec(cmd(args), { timeoutMs: 10 * MIN });
              };
              // apt's own timers are masked at boot; should anything else hold apt's locks, wait for it as an operator would.
              let r = await attempt();
              for (let i = 0; i < 24 && r.code !== 0 && /Could not get lock/.test(r.stdout); i++) {
                await new Promise((res) => setTimeout(res, 5000));
                r = await attempt();
              }
              return r;
            };
            /** apt that must succeed: dpkg errors and warnings fail the test; `systemctl status epmd.socket` right after. */
            const apt = async (args: string, what: string) => {
              const r = await aptRun(args);
              const status = await socketStatus();
              say(
                `${what}: apt exit ${r.code} in ${(r.ms / 1000).toFixed(1)} s; sdepmd said:\n${sdepmdLines(r.stdout)}\nsystemctl status epmd.socket:\n${status}`,
              );
              if (r.code !== 0 || /dpkg: (error|warning)|^E: |^W: /m.test(r.stdout)) say(r.stdout.slice(-4000));
              expect(r.code).toBe(0);
              expect(r.stdout).not.toMatch(/dpkg: (error|warning)|^E: /m);
              expect((await s.exec('dpkg --audit')).stdout.trim()).toBe('');
              return { status, out: r.stdout };
            };
            const sdepmdServes = async () => {
              // An epmd request starts the daemon (socket activation): the C client while erlang-base is installed, else
              // sdepmd's own.
              await s.ok('if command -v epmd >/dev/null; then epmd -names; else sdepmd names; fi >/dev/null');
              expect((await s.ok('systemctl show -p ExecStart epmd.service')).stdout).toMatch(/\/usr\/bin\/sdepmd/);
              expect((await s.ok('sdepmd status')).stdout).toMatch(/under systemd/);
            };
            const mainPid = async (unit: string) =>
              (await s.ok(`systemctl show -p MainPID --value ${unit}`)).stdout.trim();
            const rawKept = async () => {
              expect((await s.exec('systemctl is-active rawreg.service')).stdout.trim()).toBe('active');
              expect((await s.ok('journalctl -u rawreg.service --no-pager -o cat')).stdout).not.toMatch(/closed/);
            };

            // Before: erlang-base's C epmd serves, with registrations: the two OTP apps, attached again with the shipped
            // drop-in (the README uninstall removed their drop-ins: it leaves no app requiring an epmd.service it takes
            // away), and a raw registration (a bare ALIVE2_REQ on a connection that stays open, no OTP: it never
            // registers again, so only a take-over that keeps its connection keeps it).
            await s.ok('systemctl start epmd.service');
            expect((await s.ok('systemctl show -p ExecStart epmd.service')).stdout).toMatch(
              /\/usr\/bin\/epmd -systemd/,
            );
            for (const app of ['billing_prod', 'billing_stage']) {
              await s.ok(
                `mkdir -p /etc/systemd/system/${app}.service.d && cp ${GUEST_REPO}/units/epmd-dependency.conf /etc/systemd/system/${app}.service.d/`,
              );
            }
            await s.ok('systemctl daemon-reload && systemctl start billing_prod.service billing_stage.service');
            s.writeFile('/root/raw-alive2.js', RAW_ALIVE2);
            await s.ok('systemd-run --unit=rawreg /usr/bin/node /root/raw-alive2.js rawnode 45001');
            await waitFor("the apps and the raw registration on Debian's C epmd", () =>
              registered('billing_prod', 'billing_stage', 'rawnode'),
            );
            const cEpmdPid = await mainPid('epmd.service');
            expect((await s.ok(`cat /proc/${cEpmdPid}/comm`)).stdout.trim()).toBe('epmd');
            const prodPid = await mainPid('billing_prod.service');
            const stagePid = await mainPid('billing_stage.service');
            const appsNotBounced = async () => {
              expect(await mainPid('billing_prod.service')).toBe(prodPid);
              expect(await mainPid('billing_stage.service')).toBe(stagePid);
            };

            // Install over the running C epmd: erlang-base's units are diverted aside, the C epmd's registrations are
            // adopted (their connections copied), it is ended, and sdepmd serves them: nothing lost, no app bounced.
            let { status: st, out } = await apt(
              `install -y ./debs/sdepmd_${version}_${arch}.deb`,
              `apt install sdepmd ${version} over the running C epmd`,
            );
            expect(out).toMatch(/sdepmd adopt: sdepmd adopted 3 registration\(s\)/);
            expect(st).toMatch(/Loaded: loaded \(\/(usr\/)?lib\/systemd\/system\/epmd\.socket; enabled/);
            expect(st).toMatch(/Active: active/);
            expect(await registered('billing_prod', 'billing_stage', 'rawnode')).toBeDefined();
            await rawKept();
            await appsNotBounced();
            const diversions = (await s.ok('dpkg-divert --list')).stdout;
            for (const unit of ['epmd.socket', 'epmd.service']) {
              expect(diversions).toMatch(
                new RegExp(
                  `diversion of /(usr/)?lib/systemd/system/${unit.replace('.', '\\.')} to .*${unit.replace('.', '\\.')}\\.distrib by sdepmd`,
                ),
              );
            }
            // erlang-base's own unit files, aside under the diverted name, unchanged.
            expect((await s.ok('cat /usr/lib/systemd/system/epmd.service.distrib')).stdout).toMatch(
              /ExecStart=\/usr\/bin\/epmd -systemd/,
            );
            await sdepmdServes();
            expect((await s.ok('sdepmd --version')).stdout).toContain(version);
            // RestartMode=direct and FileDescriptorStorePreserve=yes only where systemd has them (>= 254).
            const newer254 = await s.exec('systemctl cat epmd.service | grep -c "^RestartMode=direct"');
            expect(newer254.stdout.trim()).toBe(suite === 'trixie' ? '1' : '0');
            expect(await ping('billing_stage', 'billing_prod')).toBe('pong');
            const doctor = await s.exec('sdepmd doctor');
            if (!/^sdepmd doctor: healthy/m.test(doctor.stdout)) say(`doctor:\n${doctor.stdout}${doctor.stderr}`);
            expect(doctor.stdout).toMatch(/^sdepmd doctor: healthy/m);

            // Upgrade: the newer version over it, a live upgrade (same epmd.service process, no restart job): the apps
            // and the raw registration stay registered, the raw connection stays open, and the new code serves.
            const epmdPid = await mainPid('epmd.service');
            ({ status: st } = await apt(
              `install -y ./debs/sdepmd_${newer}_${arch}.deb`,
              `apt install sdepmd ${newer} over ${version}`,
            ));
            expect(st).toMatch(/Active: active/);
            expect((await s.ok("dpkg-query -W -f='${Version} ${Status}' sdepmd")).stdout).toBe(
              `${newer} install ok installed`,
            );
            expect((await s.ok('dpkg --verify sdepmd && echo verified')).stdout).toMatch(/^verified$/m);
            expect(await registered('billing_prod', 'billing_stage', 'rawnode')).toBeDefined();
            expect(await mainPid('epmd.service')).toBe(epmdPid);
            await appsNotBounced();
            await rawKept();
            expect((await s.ok('journalctl -u epmd.service --no-pager -o cat')).stdout).toContain(
              `live upgrade: ${version} (pid ${epmdPid}) → ${newer} (pid ${epmdPid})`,
            );
            expect((await s.ok('sdepmd --version')).stdout).toContain(newer);
            await sdepmdServes();
            expect(await ping('billing_stage', 'billing_prod')).toBe('pong');

            // Remove, while the raw registration (which cannot register again) is held: refused, nothing changed.
            const refused = await aptRun('remove -y sdepmd');
            say(
              `apt remove sdepmd with a raw registration held: apt exit ${refused.code}; sdepmd said:\n${sdepmdLines(refused.stdout)}\nsystemctl status epmd.socket:\n${await socketStatus()}`,
            );
            expect(refused.code).not.toBe(0);
            expect(refused.stdout).toMatch(
              /these cannot register again by themselves, and would stay unregistered: node \(pid \d+/,
            );
            expect(refused.stdout).toMatch(/refusing to uninstall: nothing changed/);
            expect((await s.ok("dpkg-query -W -f='${Version} ${Status}' sdepmd")).stdout).toBe(
              `${newer} install ok installed`,
            );
            expect((await s.exec('dpkg --audit')).stdout.trim()).toBe('');
            expect(await mainPid('epmd.service')).toBe(epmdPid);
            expect(await registered('billing_prod', 'billing_stage', 'rawnode')).toBeDefined();
            await rawKept();

            // Remove, once the raw client is gone: the OTP apps keep running (not one is stopped), sdepmd ends without a
            // stop job, erlang-base's units are back and its C epmd serves; the apps register again with it by themselves.
            await s.ok('systemctl stop rawreg.service');
            ({ status: st, out } = await apt('remove -y sdepmd', 'apt remove sdepmd'));
            expect(out).toMatch(/2 registration\(s\) end with sdepmd; 2 held by OTP >= 23\.3 nodes/);
            expect(out).toMatch(/2 of 2 registration\(s\) came back to the C epmd within \d+ ms/);
            expect(st).toMatch(/Loaded: loaded \(\/(usr\/)?lib\/systemd\/system\/epmd\.socket; enabled/);
            expect(st).toMatch(/Active: active/);
            await appsNotBounced();
            expect(await registered('billing_prod', 'billing_stage')).toBeDefined();
            expect((await s.ok('dpkg-divert --list')).stdout).not.toMatch(/sdepmd/);
            expect((await s.ok('dpkg --verify erlang-base && echo verified')).stdout).toMatch(/^verified$/m);
            expect((await s.ok('epmd -names')).stdout).toMatch(/up and running on port 4369/);
            expect((await s.ok('systemctl show -p ExecStart epmd.service')).stdout).toMatch(
              /\/usr\/bin\/epmd -systemd/,
            );
            expect((await s.ok(`cat /proc/${await mainPid('epmd.service')}/comm`)).stdout.trim()).toBe('epmd');
            expect(await ping('billing_stage', 'billing_prod')).toBe('pong');
            await s.ok('systemctl stop billing_prod.service billing_stage.service');

            // Purge: nothing of sdepmd is left.
            ({ status: st } = await apt('purge -y sdepmd', 'apt purge sdepmd'));
            expect(st).toMatch(/Active: active/);
            expect((await s.exec('dpkg -s sdepmd')).code).not.toBe(0);
            const left = await s.exec(
              'ls -d /usr/lib/sdepmd /usr/bin/sdepmd /usr/share/sdepmd /usr/share/doc/sdepmd /var/lib/dpkg/info/sdepmd.* /usr/lib/systemd/system/*.distrib /lib/systemd/system/*.distrib 2>/dev/null; find /etc/systemd -lname "*sdepmd*"',
            );
            expect(left.stdout.trim()).toBe('');

            // Installing again on a host without erlang-base, then removing it, leaves no epmd unit behind.
            await apt('purge -y erlang-base', 'apt purge erlang-base');
            ({ status: st } = await apt(
              `install -y ./debs/sdepmd_${newer}_${arch}.deb`,
              'apt install sdepmd (no erlang-base)',
            ));
            expect(st).toMatch(/Active: active/);
            await sdepmdServes();
            await apt('purge -y sdepmd', 'apt purge sdepmd (no erlang-base)');
            expect((await s.exec('systemctl cat epmd.socket')).code).not.toBe(0);
            expect((await s.exec('find /etc/systemd -name "epmd.*"')).stdout.trim()).toBe('');
            say('.deb: install over the C epmd, upgrade, remove, purge, and install/purge without erlang-base: clean');
          });
        },
        25 * MIN,
      );
    },
  );
}
