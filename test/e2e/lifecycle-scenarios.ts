/**
 * The lifecycle matrix: every transition of epmd itself, run against a real systemd, with registrations that
 * never re-register (raw-protocol clients that send ALIVE2 once and hold the connection) beside real OTP nodes, and
 * every app's MainPID recorded before and after. Written against a small `LifecycleHost` so that the same scenarios
 * run on systemd 252 (namespaces over this machine's root, test/support/nsystemd.ts) and on newer systemd (a booted
 * Debian root), each in one booted host, in order:
 *
 *   setup            Debian's own epmd.socket/epmd.service (the C epmd) serves two OTP apps (one with Requires=
 *                    epmd.service) and two raw clients
 *   install-c        scripts/install.sh --enable over it: adopted (sdepmd adopt), new creations
 *   reload           systemctl reload epmd, to a new version; twice more; then the installer run again
 *   failed-upgrade   the installed code cannot start: systemctl reload fails, the old code serves on
 *   crash            SIGKILL and Restart=on-failure
 *   restart          systemctl restart epmd
 *   stop-start       systemctl stop (after all those upgrades: Result=success), then start
 *   attach           sdepmd attach / detach of a running app
 *   uninstall        refused while a raw registration would be lost; then --force: no app stopped
 *   install-stray    a stray `epmd -daemon` in an app's cgroup, taken over by the installer
 *
 * Each scenario returns a MatrixRow: what it lost, which apps were bounced, and what was measured.
 */
import { RAW_SCRIPT, parseRawState, type RawEvent } from './fdstore-scripts';

export interface HostExec {
  code: number;
  stdout: string;
  stderr: string;
}

export interface LifecycleHost {
  /** e.g. "systemd 252 (Debian 12, namespaces)". */
  readonly label: string;
  /** The checkout, as seen inside the host. */
  readonly repo: string;
  exec(cmd: string[] | string, timeoutMs?: number): Promise<HostExec>;
  writeFile(file: string, content: string): Promise<void>;
}

export interface MatrixRow {
  readonly transition: string;
  /** Registrations that were gone right after the transition (or whose connection closed). */
  readonly lost: string[];
  /** Apps whose MainPID changed (or that stopped). */
  readonly bounced: string[];
  readonly notes: string;
  /** What the issue asks that did not hold (empty: as asked). */
  readonly problems: string[];
}

/** Apps: OTP nodes as units. APP_REQ requires epmd.service (as `sdepmd attach` makes it); APP_PLAIN does not. */
export const APP_REQ = 'lc_app_req';
export const APP_PLAIN = 'lc_app_plain';
const APPS = [APP_REQ, APP_PLAIN];
const RAW_PATH = '/root/lc-raw.js';
const SDEPMD = '/usr/local/bin/sdepmd';
/** A first install on a stock host apt-gets Node and the build tools and runs npm ci: minutes under load. */
const INSTALL_MS = 25 * 60_000;

interface Raw {
  readonly name: string;
  readonly hi: number;
  readonly unit: string;
  readonly state: string;
}
const raw = (name: string, hi: number): Raw => ({
  name,
  hi,
  unit: `lc-${name}.service`,
  state: `/root/lc-${name}.state`,
});

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class Lifecycle {
  readonly rows: MatrixRow[] = [];
  private raws: Raw[] = [];
  constructor(
    readonly host: LifecycleHost,
    private readonly log: (line: string) => void,
  ) {}

  sh(cmd: string[] | string, timeoutMs = 120_000): Promise<HostExec> {
    return this.host.exec(cmd, timeoutMs);
  }

  async ok(cmd: string[] | string, timeoutMs = 120_000): Promise<HostExec> {
    const r = await this.sh(cmd, timeoutMs);
    if (r.code !== 0)
      throw new Error(`${Array.isArray(cmd) ? cmd.join(' ') : cmd}: exit ${r.code}\n${r.stdout}${r.stderr}`);
    return r;
  }

  async show(unit: string, prop: string): Promise<string> {
    return (await this.sh(['systemctl', 'show', '-p', prop, '--value', unit])).stdout.trim();
  }

  async mainPid(unit: string): Promise<number> {
    return Number(await this.show(unit, 'MainPID')) || 0;
  }

  async appPids(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const a of APPS) out[a] = await this.mainPid(`${a}.service`);
    return out;
  }

  /** name -> creation (null when the epmd does not say), from sdepmd's control socket, else the C client. */
  async names(): Promise<Map<string, number | null>> {
    const r = await this.sh([SDEPMD, 'names', '--json'], 20_000);
    if (r.code === 0) {
      try {
        return new Map(
          (JSON.parse(r.stdout) as { name: string; creation: number | null }[]).map((n) => [n.name, n.creation]),
        );
      } catch {
        // not installed yet: fall through
      }
    }
    const c = await this.sh(['epmd', '-names'], 20_000);
    return new Map([...c.stdout.matchAll(/^name (\S+) at port \d+$/gm)].map((m) => [m[1]!, null]));
  }

  async rawEvents(r: Raw): Promise<RawEvent[]> {
    return parseRawState((await this.sh(['cat', r.state])).stdout);
  }

  async waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000, everyMs = 100): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await fn();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(everyMs);
    }
  }

  async startRaw(r: Raw): Promise<void> {
    await this.sh(['rm', '-f', r.state]);
    await this.sh(['systemctl', 'reset-failed', r.unit]);
    await this.ok([
      'systemd-run',
      `--unit=${r.unit}`,
      '--property=KillMode=process',
      '/usr/bin/node',
      RAW_PATH,
      r.name,
      '4369',
      String(r.hi),
      r.state,
    ]);
    if (!this.raws.includes(r)) this.raws.push(r);
    await this.waitFor(`${r.name} registered`, async () =>
      (await this.rawEvents(r)).some((e) => e.ev === 'reply') ? true : undefined,
    );
  }

  private allNames(): string[] {
    return [...APPS, ...this.raws.map((r) => r.name)];
  }

  /**
   * Runs a transition and compares: registrations gone right after it (`expectSameCreation`: also those whose
   * creation changed, i.e. that registered again), raw connections that closed, apps whose MainPID changed.
   */
  async transition(
    name: string,
    action: () => Promise<string>,
    opts: { expectSameCreation: boolean; watch?: string[] } = { expectSameCreation: true },
  ): Promise<{
    lost: string[];
    bounced: string[];
    notes: string;
    beforePids: Record<string, number>;
    afterPids: Record<string, number>;
  }> {
    const watch = opts.watch ?? this.allNames();
    const before = await this.names();
    const beforePids = await this.appPids();
    const rawBefore = new Map<string, number>();
    for (const r of this.raws) rawBefore.set(r.name, (await this.rawEvents(r)).length);
    const t0 = Date.now();
    const notes = await action();
    const ms = Date.now() - t0;
    const right = await this.names();
    const afterPids = await this.appPids();
    const lost = new Set<string>();
    for (const n of watch) {
      if (!before.has(n)) continue;
      if (!right.has(n)) lost.add(n);
      else if (opts.expectSameCreation && before.get(n) !== null && right.get(n) !== before.get(n))
        lost.add(`${n} (registered again)`);
    }
    for (const r of this.raws) {
      const events = (await this.rawEvents(r)).slice(rawBefore.get(r.name) ?? 0);
      if (events.some((e) => e.ev === 'CLOSED')) {
        lost.delete(r.name);
        lost.add(`${r.name} (connection closed)`);
      }
    }
    const bounced = APPS.filter((a) => beforePids[a] !== afterPids[a]);
    this.log(
      `${this.host.label} | ${name}: ${ms} ms; lost [${[...lost].join(', ')}]; bounced [${bounced.join(', ')}]; ${notes}`,
    );
    return { lost: [...lost], bounced, notes: `${notes}; took ${ms} ms`, beforePids, afterPids };
  }

  record(transition: string, t: { lost: string[]; bounced: string[]; notes: string }, problems: string[]): MatrixRow {
    const row: MatrixRow = { transition, lost: t.lost, bounced: t.bounced, notes: t.notes, problems };
    this.rows.push(row);
    return row;
  }

  async journalSince(cursorTime: string, unit = 'epmd.service'): Promise<string> {
    return (await this.sh(['journalctl', '--no-pager', '-o', 'cat', '-u', unit, '--since', cursorTime])).stdout;
  }

  async now(): Promise<string> {
    return (await this.sh(['date', '+%Y-%m-%d %H:%M:%S'])).stdout.trim();
  }

  // ---- the scenarios, in order ----

  async setup(): Promise<void> {
    await this.host.writeFile(RAW_PATH, RAW_SCRIPT);
    for (const app of APPS) {
      await this.host.writeFile(
        `/etc/systemd/system/${app}.service`,
        `[Unit]\nDescription=Erlang app ${app} (lifecycle e2e)\n\n[Service]\nEnvironment=HOME=/root\n` +
          `Environment="ERL_AFLAGS=-start_epmd false"\nExecStart=/usr/bin/erl -sname ${app} -noshell -noinput\n`,
      );
    }
    // The app that requires epmd.service, the way `sdepmd attach` (or an operator) makes it.
    await this.host.writeFile(
      `/etc/systemd/system/${APP_REQ}.service.d/epmd-dependency.conf`,
      '[Unit]\nRequires=epmd.service\nAfter=epmd.service\n',
    );
    await this.ok(['systemctl', 'daemon-reload']);
    // Debian's own units: the C epmd, socket-activated.
    await this.ok(['systemctl', 'start', 'epmd.socket', 'epmd.service']);
    await this.ok(['systemctl', 'start', ...APPS.map((a) => `${a}.service`)]);
    await this.startRaw(raw('lc_raw_old', 5));
    await this.startRaw(raw('lc_raw_new', 6));
    await this.waitFor(
      'everything registered with the C epmd',
      async () => {
        const n = await this.names();
        return this.allNames().every((a) => n.has(a)) ? true : undefined;
      },
      60_000,
    );
    const main = await this.mainPid('epmd.service');
    const comm = (await this.sh(['cat', `/proc/${main}/comm`])).stdout.trim();
    if (comm !== 'epmd') throw new Error(`epmd.service runs ${comm}, not the C epmd`);
  }

  /** scripts/install.sh --enable over whatever epmd runs, then the checks every takeover must pass. */
  private async installOver(transition: string): Promise<MatrixRow> {
    let output = '';
    const t = await this.transition(
      transition,
      async () => {
        const r = await this.sh([`${this.host.repo}/scripts/install.sh`, '--enable'], INSTALL_MS);
        output = `${r.stdout}${r.stderr}`;
        if (r.code !== 0) throw new Error(`install.sh --enable: exit ${r.code}\n${output}`);
        return (/sdepmd adopt: sdepmd adopted .*/.exec(output)?.[0] ?? 'no adopt line').trim();
      },
      { expectSameCreation: false },
    );
    const problems: string[] = [];
    const main = await this.mainPid('epmd.service');
    const cmdline = (await this.sh(['cat', `/proc/${main}/cmdline`])).stdout;
    if (!cmdline.includes('sdepmd')) problems.push(`epmd.service's main process is not sdepmd: ${cmdline}`);
    if (/restart/i.test(output.replace(/no app is restarted|never restarts?|RestartMode=direct/g, '')))
      problems.push(`the installer mentions a restart: ${output}`);
    if (t.lost.length) problems.push(`lost: ${t.lost.join(', ')}`);
    if (t.bounced.length) problems.push(`bounced: ${t.bounced.join(', ')}`);
    const n = await this.names();
    if ([...n.values()].some((c) => c === null)) problems.push('sdepmd does not serve the names');
    return this.record(transition, t, problems);
  }

  installOverCEpmd(): Promise<MatrixRow> {
    return this.installOver("install over a running C epmd (Debian's epmd.service)");
  }

  /** systemctl reload (or the installer run again, or a new version) with everything checked. */
  async reload(how: 'systemctl reload' | 'installer again', newVersion?: string): Promise<MatrixRow> {
    if (newVersion)
      await this.ok([
        'sed',
        '-i',
        `s/"version": "[^"]*"/"version": "${newVersion}"/`,
        '/usr/local/lib/sdepmd/package.json',
      ]);
    const since = await this.now();
    const pidBefore = await this.mainPid('epmd.service');
    const restartsBefore = await this.show('epmd.service', 'NRestarts');
    const t = await this.transition(how, async () => {
      const r =
        how === 'systemctl reload'
          ? await this.sh(['systemctl', 'reload', 'epmd.service'], 120_000)
          : await this.sh([`${this.host.repo}/scripts/install.sh`], INSTALL_MS);
      if (r.code !== 0) throw new Error(`${how}: exit ${r.code}\n${r.stdout}${r.stderr}`);
      return `${how} exit 0`;
    });
    const problems: string[] = [];
    const journal = await this.journalSince(since);
    const line = /live upgrade: \S+ \(pid \d+\) → \S+ \(pid \d+\)[^\n]*/.exec(journal)?.[0];
    if (!line) problems.push(`no "live upgrade: A (pid) → B (pid)" line:\n${journal}`);
    if (newVersion && !line?.includes(`→ ${newVersion} (pid`)) problems.push(`not upgraded to ${newVersion}: ${line}`);
    if (/not our child/.test(journal)) problems.push('systemd: "not our child"');
    if ((await this.mainPid('epmd.service')) !== pidBefore) problems.push('epmd MainPID changed');
    if ((await this.show('epmd.service', 'NRestarts')) !== restartsBefore) problems.push('NRestarts changed');
    const status = JSON.parse((await this.ok([SDEPMD, 'status', '--json'])).stdout) as {
      sockets: { source: string }[];
      version: string;
    };
    if (!status.sockets.every((s) => /epmd\.socket/.test(s.source)))
      problems.push(`status sockets: ${JSON.stringify(status.sockets)}`);
    if (t.lost.length) problems.push(`lost: ${t.lost.join(', ')}`);
    if (t.bounced.length) problems.push(`bounced: ${t.bounced.join(', ')}`);
    return this.record(
      `live upgrade: ${how}${newVersion ? ` to ${newVersion}` : ''}`,
      { ...t, notes: `${t.notes}; ${line ?? ''}` },
      problems,
    );
  }

  async failedUpgrade(): Promise<MatrixRow> {
    // The installed daemon code exits 70 as soon as it is loaded (the reload command itself still works).
    const cli = '/usr/local/lib/sdepmd/dist/daemon/daemon.js';
    await this.ok(['cp', cli, '/root/lc-cli.js.good']);
    await this.host.writeFile(cli, 'process.exit(70);\n');
    const since = await this.now();
    const pidBefore = await this.mainPid('epmd.service');
    let reloadCode = 0;
    let reloadErr = '';
    const t = await this.transition('failed upgrade', async () => {
      const r = await this.sh(['systemctl', 'reload', 'epmd.service'], 120_000);
      reloadCode = r.code;
      reloadErr = r.stderr.trim();
      return `systemctl reload exit ${r.code}`;
    });
    await this.ok(['cp', '/root/lc-cli.js.good', cli]);
    const problems: string[] = [];
    if (reloadCode === 0) problems.push('systemctl reload exited 0');
    const journal = await this.journalSince(since);
    if (!/live upgrade failed, still serving/.test(journal))
      problems.push(`no "live upgrade failed, still serving" line:\n${journal}`);
    if ((await this.mainPid('epmd.service')) !== pidBefore) problems.push('epmd MainPID changed');
    if ((await this.show('epmd.service', 'ActiveState')) !== 'active') problems.push('epmd.service is not active');
    if (t.lost.length) problems.push(`lost: ${t.lost.join(', ')}`);
    if (t.bounced.length) problems.push(`bounced: ${t.bounced.join(', ')}`);
    return this.record('a failed upgrade', { ...t, notes: `${t.notes}; ${reloadErr.split('\n')[0]}` }, problems);
  }

  async crash(expectNoBounce: boolean): Promise<MatrixRow> {
    const pidBefore = await this.mainPid('epmd.service');
    const t = await this.transition('crash', async () => {
      await this.ok(['systemctl', 'kill', '-s', 'KILL', 'epmd.service']);
      await this.waitFor(
        'epmd back',
        async () => {
          const pid = await this.mainPid('epmd.service');
          return pid > 0 && pid !== pidBefore && (await this.show('epmd.service', 'ActiveState')) === 'active'
            ? true
            : undefined;
        },
        60_000,
        20,
      );
      await this.waitFor(
        `${APP_REQ} active`,
        async () => ((await this.show(`${APP_REQ}.service`, 'ActiveState')) === 'active' ? true : undefined),
        60_000,
      );
      return `RestartMode=${(await this.show('epmd.service', 'RestartMode')) || 'unknown (systemd < 254)'}`;
    });
    const problems: string[] = [];
    // Where systemd restarts the Requires= app with epmd (252), that app registers again: that is its bounce.
    const lost = expectNoBounce
      ? t.lost
      : t.lost.filter((n) => !(t.bounced.includes(APP_REQ) && n.startsWith(APP_REQ)));
    if (lost.length) problems.push(`lost: ${lost.join(', ')}`);
    if (expectNoBounce && t.bounced.length) problems.push(`bounced: ${t.bounced.join(', ')}`);
    return this.record('crash and auto-restart (SIGKILL)', t, problems);
  }

  async restart(): Promise<MatrixRow> {
    const since = await this.now();
    const t = await this.transition('restart', async () => {
      await this.ok(['systemctl', 'restart', 'epmd.service']);
      return 'systemctl restart epmd.service';
    });
    const problems: string[] = [];
    const notRequiring = t.lost.filter((n) => !n.startsWith(APP_REQ));
    if (notRequiring.length) problems.push(`lost (not managed by a Requires= unit): ${notRequiring.join(', ')}`);
    if (t.bounced.some((a) => a !== APP_REQ)) problems.push(`bounced without Requires=: ${t.bounced.join(', ')}`);
    const journal = await this.journalSince(since);
    const said = /if this is a restart, systemd restarts[^\n]*/.exec(journal)?.[0];
    if (!said?.includes(`${APP_REQ}.service`)) problems.push(`no log line naming ${APP_REQ}: ${said ?? journal}`);
    return this.record('explicit systemctl restart epmd', { ...t, notes: `${t.notes}; log: ${said ?? '-'}` }, problems);
  }

  async stopThenStart(expectKept: boolean): Promise<MatrixRow> {
    let result = '';
    const t = await this.transition(
      'stop, then start',
      async () => {
        await this.ok(['systemctl', 'stop', 'epmd.service']);
        result = await this.show('epmd.service', 'Result');
        await this.ok(['systemctl', 'start', 'epmd.socket', 'epmd.service']);
        await this.ok(['systemctl', 'start', `${APP_REQ}.service`]);
        return `stop: Result=${result}`;
      },
      { expectSameCreation: true, watch: this.allNames().filter((n) => n !== APP_REQ) },
    );
    const problems: string[] = [];
    if (result !== 'success') problems.push(`Result=${result} after the stop`);
    if (expectKept && t.lost.length) problems.push(`lost: ${t.lost.join(', ')}`);
    if (t.bounced.some((a) => a !== APP_REQ)) problems.push(`bounced without Requires=: ${t.bounced.join(', ')}`);
    return this.record('systemctl stop (after upgrades), then start', t, problems);
  }

  /** Raw clients whose connection closed are started again (a new registration each). */
  async restartClosedRaws(): Promise<void> {
    for (const r of this.raws) if ((await this.rawEvents(r)).some((e) => e.ev === 'CLOSED')) await this.startRaw(r);
    await this.waitFor(
      'every name registered',
      async () => {
        const n = await this.names();
        return this.allNames().every((a) => n.has(a)) ? true : undefined;
      },
      60_000,
    );
  }

  async attachDetach(): Promise<MatrixRow> {
    const t = await this.transition('attach/detach', async () => {
      await this.ok([SDEPMD, 'attach', `${APP_PLAIN}.service`]);
      await this.ok([SDEPMD, 'detach', `${APP_PLAIN}.service`]);
      return 'sdepmd attach, then detach, of a running app';
    });
    const problems: string[] = [];
    if (t.lost.length) problems.push(`lost: ${t.lost.join(', ')}`);
    if (t.bounced.length) problems.push(`bounced: ${t.bounced.join(', ')}`);
    return this.record('attach / detach', t, problems);
  }

  async uninstall(): Promise<MatrixRow[]> {
    const rows: MatrixRow[] = [];
    // 1. Refused: the raw clients cannot register again.
    let refusal = '';
    const t1 = await this.transition('uninstall (refused)', async () => {
      const r = await this.sh([`${this.host.repo}/scripts/install.sh`, '--uninstall'], 120_000);
      refusal = `${r.stdout}${r.stderr}`;
      return `exit ${r.code}`;
    });
    const p1: string[] = [];
    if (!/refusing to uninstall/.test(refusal)) p1.push(`not refused:\n${refusal}`);
    if (!/lc-raw|node \(pid/.test(refusal)) p1.push(`the refusal does not name the raw clients:\n${refusal}`);
    if (t1.lost.length) p1.push(`lost: ${t1.lost.join(', ')}`);
    if (t1.bounced.length) p1.push(`bounced: ${t1.bounced.join(', ')}`);
    rows.push(this.record('uninstall without --force (registrations that cannot come back)', t1, p1));
    // 2. --force.
    let output = '';
    const t2 = await this.transition(
      'uninstall --force',
      async () => {
        const r = await this.sh([`${this.host.repo}/scripts/install.sh`, '--uninstall', '--force'], 120_000);
        output = `${r.stdout}${r.stderr}`;
        if (r.code !== 0) throw new Error(`uninstall --force: exit ${r.code}\n${output}`);
        // The OTP nodes register again with the C epmd: wait for them, as the script did.
        await this.waitFor(
          'OTP nodes back',
          async () => {
            const n = await this.names();
            return APPS.every((a) => n.has(a)) ? true : undefined;
          },
          30_000,
        );
        return (/came back to the C epmd within \d+ ms/.exec(output)?.[0] ?? 'no measurement line').replace(/^/, '');
      },
      { expectSameCreation: false },
    );
    const p2: string[] = [];
    for (const a of APPS)
      if ((await this.show(`${a}.service`, 'ActiveState')) !== 'active') p2.push(`${a} is not active`);
    if (t2.bounced.length) p2.push(`bounced: ${t2.bounced.join(', ')}`);
    const main = await this.mainPid('epmd.service');
    const comm = main ? (await this.sh(['cat', `/proc/${main}/comm`])).stdout.trim() : 'none';
    if (comm !== 'epmd') p2.push(`epmd.service runs ${comm}, not Debian's C epmd`);
    const expectedLost = this.raws.map((r) => r.name);
    const unexpected = t2.lost.filter((l) => !expectedLost.some((r) => l.startsWith(r)));
    if (unexpected.length) p2.push(`lost beyond the raw clients: ${unexpected.join(', ')}`);
    rows.push(this.record('uninstall --force', { ...t2, notes: `${t2.notes}; expected lost: the raw clients` }, p2));
    return rows;
  }

  /** The seed's bug, repaired by the installer: a stray `epmd -daemon` in an app's cgroup holds everything. */
  async installOverStray(): Promise<MatrixRow> {
    // Back to no epmd units serving, and an app that starts its own epmd.
    await this.sh(['systemctl', 'stop', 'epmd.socket', 'epmd.service']);
    await this.sh(['systemctl', 'mask', '--runtime', 'epmd.socket', 'epmd.service']);
    for (const r of this.raws) await this.sh(['systemctl', 'stop', r.unit]);
    await this.host.writeFile(
      `/etc/systemd/system/${APP_PLAIN}.service.d/start-own.conf`,
      '[Service]\nEnvironment=ERL_AFLAGS=\n',
    );
    await this.ok(['systemctl', 'daemon-reload']);
    await this.ok(['systemctl', 'restart', `${APP_PLAIN}.service`, `${APP_REQ}.service`]);
    await this.sh(['systemctl', 'unmask', '--runtime', 'epmd.socket', 'epmd.service']);
    await this.waitFor(
      'a stray epmd in the app cgroup',
      async () => {
        for (const pid of (await this.sh(['pgrep', '-x', 'epmd'])).stdout.split('\n').filter(Boolean)) {
          if ((await this.sh(['cat', `/proc/${pid}/cgroup`])).stdout.includes(`${APP_PLAIN}.service`)) return true;
        }
        return undefined;
      },
      30_000,
    );
    for (const r of this.raws) await this.startRaw(r);
    await this.waitFor(
      'everything registered with the stray',
      async () => {
        const n = await this.names();
        return this.allNames().every((a) => n.has(a)) ? true : undefined;
      },
      60_000,
    );
    return this.installOver("install over a stray epmd -daemon in an app's cgroup");
  }
}

/** The matrix as a Markdown table. */
export function matrixTable(label: string, rows: readonly MatrixRow[]): string {
  const lines = [`${label}`, '', '| transition | registrations lost | apps bounced | notes |', '|---|---|---|---|'];
  for (const r of rows) {
    lines.push(
      `| ${r.transition} | ${r.lost.length}${r.lost.length ? ` (${r.lost.join(', ')})` : ''} | ${r.bounced.length}${r.bounced.length ? ` (${r.bounced.join(', ')})` : ''} | ${r.notes.replace(/\|/g, '/')} |`,
    );
  }
  return lines.join('\n');
}

/**
 * The matrix's rows as jest tests, in order, for a host booted in the caller's beforeAll: the same rows on every
 * systemd. `systemd254`: the host's systemd has RestartMode=direct and FileDescriptorStorePreserve= (>= 254), which
 * the installer then writes, so that a crash bounces no app and a stop then start keeps the registrations; on older
 * systemd the rows measure (and the docs state) what is lost instead.
 */
export function defineLifecycleMatrix(lifecycle: () => Lifecycle, options: { systemd254: boolean; stepMs: number }) {
  const { systemd254, stepMs } = options;
  const row = (title: string, run: (lc: Lifecycle) => Promise<MatrixRow | MatrixRow[]>) =>
    test(
      title,
      async () => {
        for (const r of [await run(lifecycle())].flat()) expect(r.problems).toEqual([]);
      },
      stepMs,
    );
  row("install over Debian's running C epmd: every registration adopted, no app bounced", (lc) =>
    lc.installOverCEpmd(),
  );
  row('systemctl reload to a new version: same process, nothing lost', (lc) =>
    lc.reload('systemctl reload', '0.1.1-lc'),
  );
  row('systemctl reload again', (lc) => lc.reload('systemctl reload'));
  row('the installer run again is a live upgrade', (lc) => lc.reload('installer again'));
  row('a failed upgrade: reload fails, the old code serves on', (lc) => lc.failedUpgrade());
  row('attach / detach: nothing lost, no app bounced', (lc) => lc.attachDetach());
  row(
    systemd254
      ? 'crash and auto-restart: RestartMode=direct, nothing lost, no app bounced'
      : 'crash and auto-restart: nothing lost (without RestartMode=direct, the restart is passed on to Requires= apps)',
    (lc) => lc.crash(systemd254),
  );
  row('explicit restart: nothing lost outside Requires= apps, and the log names them', (lc) => lc.restart());
  row(
    systemd254
      ? 'stop, then start: FileDescriptorStorePreserve=yes keeps the registrations'
      : 'stop after upgrades ends with Result=success; then start (without FileDescriptorStorePreserve=, the fd store goes)',
    async (lc) => {
      const r = await lc.stopThenStart(systemd254);
      await lc.restartClosedRaws();
      return r;
    },
  );
  row('uninstall: refused while raw registrations would be lost; --force stops no app', (lc) => lc.uninstall());
  row("install over a stray epmd -daemon in an app's cgroup: every registration adopted", (lc) =>
    lc.installOverStray(),
  );
}
