/** `sdepmd attach` / `detach` (src/operator/attach.ts) on a scratch directory, with a recording fake systemctl. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  attachUnits,
  detachUnits,
  dropInContent,
  dropInPath,
  normalizeUnit,
  type AttachDeps,
} from '../../src/operator/attach';

const REPO_DROP_IN = fs.readFileSync(path.join(__dirname, '..', '..', 'units', 'epmd-dependency.conf'), 'utf8');

function harness(known: string[] = ['billing.service', 'other.service']) {
  const out: string[] = [];
  const err: string[] = [];
  const calls: string[][] = [];
  const deps: AttachDeps = {
    systemctl: async (args) => {
      calls.push([...args]);
      if (args[0] === 'show') {
        const unit = args[args.length - 1]!;
        const erl = 'ExecStart={ path=/usr/bin/erl ; argv[]=/usr/bin/erl -sname x -noshell ; ignore_errors=no }\n';
        return {
          code: 0,
          stdout: known.includes(unit) ? `LoadState=loaded\n${erl}` : 'LoadState=not-found\n',
          stderr: '',
        };
      }
      return { code: 0, stdout: '', stderr: '' };
    },
    stdout: (t) => out.push(t),
    stderr: (t) => err.push(t),
  };
  return { deps, out: () => out.join(''), err: () => err.join(''), calls };
}

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sdepmd-attach-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Files are written under tmp (through the real path logic with root=tmp), systemd is the fake. */
const realPathUnder = (unit: string) => dropInPath(unit, tmp);

test('unit names: .service is added when there is no suffix', () => {
  expect(normalizeUnit('billing')).toBe('billing.service');
  expect(normalizeUnit('billing.service')).toBe('billing.service');
  expect(normalizeUnit('erlang-app@x.service')).toBe('erlang-app@x.service');
  expect(normalizeUnit('epmd.socket')).toBe('epmd.socket');
});

test("the drop-in content is the repository's units/epmd-dependency.conf (when not installed)", () => {
  if (!fs.existsSync('/usr/local/share/sdepmd/epmd-dependency.conf')) expect(dropInContent()).toBe(REPO_DROP_IN);
  expect(dropInPath('billing.service')).toBe('/etc/systemd/system/billing.service.d/epmd-dependency.conf');
});

describe('with --root (no systemd asked)', () => {
  beforeEach(() => {
    fs.mkdirSync(path.join(tmp, 'etc/systemd/system'), { recursive: true });
    fs.writeFileSync(path.join(tmp, 'etc/systemd/system/billing.service'), '[Service]\nExecStart=/bin/true\n');
  });

  test('attach writes the drop-in; again is "already attached"; detach removes it and its directory', async () => {
    const h = harness();
    expect(await attachUnits(['billing'], { dryRun: false, root: tmp, content: REPO_DROP_IN }, h.deps)).toBe(0);
    expect(fs.readFileSync(realPathUnder('billing.service'), 'utf8')).toBe(REPO_DROP_IN);
    expect(h.out()).toContain('billing.service: wrote');
    expect(h.out()).toContain('systemctl restart billing.service');
    expect(h.calls).toEqual([]); // --root: no systemctl at all

    const h2 = harness();
    expect(await attachUnits(['billing.service'], { dryRun: false, root: tmp, content: REPO_DROP_IN }, h2.deps)).toBe(
      0,
    );
    expect(h2.out()).toMatch(/^billing\.service: already attached/);

    const h3 = harness();
    expect(await detachUnits(['billing'], { dryRun: false, root: tmp }, h3.deps)).toBe(0);
    expect(fs.existsSync(path.dirname(realPathUnder('billing.service')))).toBe(false);
    const h4 = harness();
    expect(await detachUnits(['billing'], { dryRun: false, root: tmp }, h4.deps)).toBe(0);
    expect(h4.out()).toContain('not attached');
  });

  test('detach keeps the UNIT.d directory when it holds other drop-ins', async () => {
    const h = harness();
    await attachUnits(['billing'], { dryRun: false, root: tmp, content: REPO_DROP_IN }, h.deps);
    fs.writeFileSync(path.join(path.dirname(realPathUnder('billing.service')), 'mine.conf'), '[Service]\n');
    expect(await detachUnits(['billing'], { dryRun: false, root: tmp }, harness().deps)).toBe(0);
    expect(fs.readdirSync(path.dirname(realPathUnder('billing.service')))).toEqual(['mine.conf']);
  });

  test('a drop-in with other content is replaced', async () => {
    fs.mkdirSync(path.dirname(realPathUnder('billing.service')), { recursive: true });
    fs.writeFileSync(realPathUnder('billing.service'), '[Unit]\nRequires=epmd.service\n');
    const h = harness();
    expect(await attachUnits(['billing'], { dryRun: false, root: tmp, content: REPO_DROP_IN }, h.deps)).toBe(0);
    expect(h.out()).toContain('billing.service: replaced');
    expect(fs.readFileSync(realPathUnder('billing.service'), 'utf8')).toBe(REPO_DROP_IN);
  });

  test('units without a unit file are refused, and nothing is written for the others', async () => {
    const h = harness();
    expect(await attachUnits(['billing', 'ghost'], { dryRun: false, root: tmp, content: REPO_DROP_IN }, h.deps)).toBe(
      1,
    );
    expect(h.err()).toMatch(/refusing ghost\.service: no such unit/);
    expect(fs.existsSync(realPathUnder('billing.service'))).toBe(false);
  });
});

describe('against systemd (fake systemctl)', () => {
  // Without --root the real /etc would be written; so these tests only exercise refusals and dry runs.
  test('refuses units that systemctl show reports as not-found, before touching anything', async () => {
    const h = harness();
    expect(await attachUnits(['nope'], { dryRun: false, content: REPO_DROP_IN }, h.deps)).toBe(1);
    expect(h.calls).toEqual([
      ['show', '-p', 'LoadState,ExecStart,Environment,EnvironmentFiles,DropInPaths', '--', 'nope.service'],
    ]);
    expect(h.err()).toContain('refusing nope.service: no such unit (systemctl show -p LoadState: not-found)');
    const d = harness();
    expect(await detachUnits(['nope'], { dryRun: false }, d.deps)).toBe(1);
  });

  test('--dry-run prints the file and the commands, and runs no daemon-reload', async () => {
    const h = harness();
    expect(await attachUnits(['billing'], { dryRun: true, content: REPO_DROP_IN }, h.deps)).toBe(0);
    expect(h.out()).toContain(
      'billing.service: would write /etc/systemd/system/billing.service.d/epmd-dependency.conf:\n',
    );
    expect(h.out()).toContain('    Requires=epmd.service\n');
    expect(h.out()).toContain('would run: systemctl daemon-reload\n');
    expect(h.calls.every((c) => c[0] === 'show' || c[0] === 'list-dependencies')).toBe(true);
  });
});

describe('with a root and the fake systemctl (askSystemd)', () => {
  test('attach of two units: one LoadState check each, then exactly one daemon-reload', async () => {
    const h = harness();
    expect(
      await attachUnits(
        ['billing', 'other'],
        { dryRun: false, root: tmp, askSystemd: true, content: REPO_DROP_IN },
        h.deps,
      ),
    ).toBe(0);
    expect(h.calls).toEqual([
      ['show', '-p', 'LoadState,ExecStart,Environment,EnvironmentFiles,DropInPaths', '--', 'billing.service'],
      ['list-dependencies', '--after', '--plain', '--all', '--no-legend', '--no-pager', 'epmd.service', 'epmd.socket'],
      ['show', '-p', 'LoadState,ExecStart,Environment,EnvironmentFiles,DropInPaths', '--', 'other.service'],
      ['daemon-reload'],
    ]);
    expect(h.out()).toContain('sdepmd attach: ran systemctl daemon-reload');
    expect(h.out()).toContain(
      'note: restart to apply (a running unit keeps its old settings): systemctl restart billing.service other.service',
    );
    // Idempotent: nothing to do, no reload.
    const again = harness();
    expect(
      await attachUnits(
        ['billing', 'other'],
        { dryRun: false, root: tmp, askSystemd: true, content: REPO_DROP_IN },
        again.deps,
      ),
    ).toBe(0);
    expect(again.calls.map((c) => c[0])).toEqual(['show', 'list-dependencies', 'show']);
    const det = harness();
    expect(await detachUnits(['billing'], { dryRun: false, root: tmp, askSystemd: true }, det.deps)).toBe(0);
    expect(det.calls.map((c) => c[0])).toEqual(['show', 'daemon-reload']);
  });

  test('a failing daemon-reload is exit 1', async () => {
    const errors: string[] = [];
    const failing: AttachDeps = {
      systemctl: async (args) =>
        args[0] === 'show'
          ? {
              code: 0,
              stdout: 'LoadState=loaded\nExecStart={ path=/usr/bin/erl ; argv[]=/usr/bin/erl ; }\n',
              stderr: '',
            }
          : args[0] === 'list-dependencies'
            ? { code: 0, stdout: '', stderr: '' }
            : { code: 1, stdout: '', stderr: 'Access denied' },
      stdout: () => undefined,
      stderr: (t) => errors.push(t),
    };
    expect(
      await attachUnits(['billing'], { dryRun: false, root: tmp, askSystemd: true, content: REPO_DROP_IN }, failing),
    ).toBe(1);
    expect(errors.join('')).toContain('daemon-reload failed (exit 1): Access denied');
  });
});

describe('what attach refuses, and what it keeps of the unit', () => {
  /** A fake systemctl with per-unit show output and a list of units epmd is ordered after. */
  function fake(units: Record<string, string>, before: string[] = []) {
    const calls: string[][] = [];
    const out: string[] = [];
    const err: string[] = [];
    const deps: AttachDeps = {
      systemctl: async (args) => {
        calls.push([...args]);
        if (args[0] === 'show') {
          const text = units[args[args.length - 1]!];
          return {
            code: 0,
            stdout: text === undefined ? 'LoadState=not-found\n' : `LoadState=loaded\n${text}`,
            stderr: '',
          };
        }
        if (args[0] === 'list-dependencies')
          return { code: 0, stdout: before.map((u) => `${u}\n`).join(''), stderr: '' };
        return { code: 0, stdout: '', stderr: '' };
      },
      stdout: (t) => out.push(t),
      stderr: (t) => err.push(t),
    };
    return { deps, calls, out: () => out.join(''), err: () => err.join('') };
  }
  const erl = (env = '', files = '') =>
    `ExecStart={ path=/usr/bin/erl ; argv[]=/usr/bin/erl -sname billing -noshell ; ignore_errors=no }\nEnvironment=${env}\nEnvironmentFiles=${files}\n`;
  const opts = () => ({ dryRun: false, root: tmp, askSystemd: true, content: REPO_DROP_IN });

  test("epmd's own units are refused, even with --force", async () => {
    const h = fake({ 'epmd.socket': erl(), 'epmd.service': erl() });
    expect(await attachUnits(['epmd.socket', 'epmd'], { ...opts(), force: true }, h.deps)).toBe(1);
    expect(h.err()).toContain("refusing epmd.socket: it is epmd's own unit");
    expect(h.err()).toContain("refusing epmd.service: it is epmd's own unit");
    expect(fs.existsSync(realPathUnder('epmd.socket'))).toBe(false);
  });

  test('a unit epmd is ordered after is refused: the drop-in would make an ordering cycle', async () => {
    const h = fake({ 'early.service': erl() }, ['network.target', 'early.service']);
    expect(await attachUnits(['early'], { ...opts(), force: true }, h.deps)).toBe(1);
    expect(h.err()).toContain('refusing early.service: epmd.service or epmd.socket is ordered after it');
  });

  test('a unit that does not run an Erlang VM is refused unless --force', async () => {
    const pg =
      'ExecStart={ path=/usr/lib/postgresql/15/bin/postgres ; argv[]=/usr/lib/postgresql/15/bin/postgres -D /var/lib/x ; }\n';
    const h = fake({ 'postgresql.service': pg });
    expect(await attachUnits(['postgresql'], opts(), h.deps)).toBe(1);
    expect(h.err()).toContain('refusing postgresql.service: it does not run an Erlang VM');
    const forced = fake({ 'postgresql.service': pg });
    expect(await attachUnits(['postgresql'], { ...opts(), force: true }, forced.deps)).toBe(0);
  });

  test('release scripts and elixir count as Erlang VMs', async () => {
    const rel = 'ExecStart={ path=/bin/sh ; argv[]=/bin/sh -c exec "$RELEASE_ROOT/bin/billing" foreground ; }\n';
    const ex = 'ExecStart={ path=/usr/bin/elixir ; argv[]=/usr/bin/elixir --sname a app.exs ; }\n';
    const h = fake({ 'rel.service': rel, 'ex.service': ex });
    expect(await attachUnits(['rel', 'ex'], opts(), h.deps)).toBe(0);
  });

  test("the unit's ERL_AFLAGS is left alone, and its ERL_ZFLAGS is merged with -start_epmd false", async () => {
    const h = fake({
      'billing.service': erl('HOME=/root "ERL_AFLAGS=-setcookie s3cret" "ERL_ZFLAGS=+K true -start_epmd true"'),
    });
    expect(await attachUnits(['billing'], opts(), h.deps)).toBe(0);
    const written = fs.readFileSync(realPathUnder('billing.service'), 'utf8');
    expect(written).toContain('Environment="ERL_ZFLAGS=+K true -start_epmd false"\n');
    expect(written).not.toMatch(/^Environment="?ERL_AFLAGS/m);
    expect(written).toContain('Requires=epmd.service');
    // Again, with the drop-in's own value now in the effective environment: the same file.
    const again = fake({ 'billing.service': erl('"ERL_ZFLAGS=+K true -start_epmd false"') });
    expect(await attachUnits(['billing'], opts(), again.deps)).toBe(0);
    expect(again.out()).toContain('already attached');
  });

  test('an EnvironmentFile that sets ERL_ZFLAGS (it would override the drop-in) is refused unless --force', async () => {
    const envFile = path.join(tmp, 'billing.env');
    fs.writeFileSync(envFile, 'RELEASE_ROOT=/opt/billing\nERL_ZFLAGS=-start_epmd true\n');
    const h = fake({ 'billing.service': erl('', `${envFile} (ignore_errors=no)`) });
    expect(await attachUnits(['billing'], opts(), h.deps)).toBe(1);
    expect(h.err()).toContain(`its EnvironmentFile ${envFile} sets ERL_ZFLAGS`);
    // With --force it is attached, and the override is said.
    const forced = fake({ 'billing.service': erl('', `${envFile} (ignore_errors=no)`) });
    expect(await attachUnits(['billing'], { ...opts(), force: true }, forced.deps)).toBe(0);
    expect(forced.err()).toContain(
      `sdepmd attach: warning: billing.service: -start_epmd false in the drop-in is overridden (${envFile} sets ERL_ZFLAGS=-start_epmd true)`,
    );
  });
});

describe('attach warns when a later drop-in overrides -start_epmd false', () => {
  /** A fake systemctl whose unit has these other drop-ins (written under tmp) and Environment=. */
  function withDropIns(dropIns: Record<string, string>, environment: string) {
    const dir = path.join(tmp, 'billing.service.d');
    fs.mkdirSync(dir, { recursive: true });
    for (const [name, text] of Object.entries(dropIns)) fs.writeFileSync(path.join(dir, name), text);
    const paths = Object.keys(dropIns).map((n) => path.join(dir, n));
    const err: string[] = [];
    const deps: AttachDeps = {
      systemctl: async (args) => ({
        code: 0,
        stdout:
          args[0] === 'show'
            ? 'LoadState=loaded\nExecStart={ path=/usr/bin/erl ; argv[]=/usr/bin/erl -sname b ; ignore_errors=no }\n' +
              `Environment=${environment}\nEnvironmentFiles=\nDropInPaths=${paths.join(' ')}\n`
            : '',
        stderr: '',
      }),
      stdout: () => undefined,
      stderr: (t) => err.push(t),
    };
    return { deps, err: () => err.join(''), dir };
  }
  const opts = () => ({ dryRun: false, root: tmp, askSystemd: true, content: REPO_DROP_IN });

  test('a drop-in read after it that sets ERL_ZFLAGS: attached, with a warning naming the file', async () => {
    const h = withDropIns(
      { 'zz-tuning.conf': '[Service]\nEnvironment="ERL_ZFLAGS=+S 2 -start_epmd true"\n' },
      '"ERL_ZFLAGS=+S 2 -start_epmd true"',
    );
    expect(await attachUnits(['billing'], opts(), h.deps)).toBe(0);
    expect(h.err()).toBe(
      `sdepmd attach: warning: billing.service: -start_epmd false in the drop-in is overridden (${h.dir}/zz-tuning.conf sets ERL_ZFLAGS=+S 2 -start_epmd true): ` +
        'the app would still start its own epmd; end that setting with -start_epmd false (sdepmd doctor checks it)\n',
    );
  });

  test('no warning: a later ERL_AFLAGS (read before ERL_ZFLAGS), or an earlier drop-in with ERL_ZFLAGS', async () => {
    const h = withDropIns(
      {
        '00-base.conf': '[Service]\nEnvironment=ERL_ZFLAGS=+S\\ 2\n',
        'zz-cookie.conf': '[Service]\nEnvironment="ERL_AFLAGS=-setcookie x -start_epmd true"\n',
      },
      '"ERL_ZFLAGS=+S 2" "ERL_AFLAGS=-setcookie x -start_epmd true"',
    );
    expect(await attachUnits(['billing'], opts(), h.deps)).toBe(0);
    expect(h.err()).toBe('');
  });
});
