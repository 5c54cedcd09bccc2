/** The parsers behind `sdepmd doctor`'s snapshot, on output captured in the namespaced systemd (fixtures/*.txt). */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  attachedUnits,
  parseListUnits,
  parseProcCgroup,
  parseSs,
  parseSystemctlShow,
  readErlFlagSources,
} from '../../src/operator/snapshot';
import { splitQuoted } from '../../src/operator/unit-env';

const fixture = (name: string): string => fs.readFileSync(path.join(__dirname, 'fixtures', name), 'utf8');

test('systemctl show: one unit per block, lists split, Environment unquoted, ExecStart argv', () => {
  const units = parseSystemctlShow(fixture('systemctl-show.txt'));
  expect(units.map((u) => u.id)).toEqual(['app1.service', 'epmd.socket', 'epmd.service', 'nosuch.service']);
  const app = units[0]!;
  expect(app.mainPid).toBe(523);
  expect(app.controlGroup).toBe('/sdepmd-ns-04esm4/system.slice/app1.service');
  expect(app.environment).toEqual(['HOME=/root', 'ERL_AFLAGS=-start_epmd false', 'X=1']);
  expect(app.execStart).toBe('/usr/bin/erl -sname app1 -noshell -noinput');
  expect(app.requires).toEqual(['system.slice', 'sysinit.target']);
  expect(app.unitFileState).toBe('static');
  const socket = units[1]!;
  expect(socket.listen).toEqual(['[::]:4369 (Stream)']);
  expect(socket.unitFileState).toBe('enabled');
  expect(units[2]!.requires).toContain('epmd.socket');
  expect(units[2]!.execStart).toBe('/usr/local/bin/sdepmd -systemd --fdstore_max 8192');
  expect(units[3]!.loadState).toBe('not-found');
});

test('systemd quoting', () => {
  expect(splitQuoted('A=1 "B=two words" \'C=x y\' D=a\\ b')).toEqual(['A=1', 'B=two words', 'C=x y', 'D=a b']);
  expect(splitQuoted('')).toEqual([]);
});

test('systemctl list-units --plain --no-legend', () => {
  expect(parseListUnits(fixture('list-units.txt'))).toEqual([
    'app1.service',
    'epmd.service',
    'systemd-journald.service',
  ]);
  expect(parseListUnits('● foo.service loaded failed failed Foo\n')).toEqual(['foo.service']);
});

test('ss -Hltnp: address, port and every process holding the socket', () => {
  const l = parseSs(fixture('ss-hltnp.txt'));
  expect(l).toEqual([
    { address: '0.0.0.0', port: 41615, holders: [{ comm: 'beam.smp', pid: 523 }] },
    {
      address: '*',
      port: 4369,
      holders: [
        { comm: 'node', pid: 514 },
        { comm: 'systemd', pid: 1 },
      ],
    },
    { address: '127.0.0.53%lo', port: 53, holders: [{ comm: 'systemd-resolve', pid: 300 }] },
    { address: '[::1]', port: 631, holders: [] },
  ]);
});

test('/proc/PID/cgroup: the systemd path on a hybrid hierarchy and on pure v2', () => {
  expect(parseProcCgroup(fixture('proc-cgroup-hybrid.txt'))).toBe('/sdepmd-ns-04esm4/system.slice/app1.service');
  expect(parseProcCgroup('0::/system.slice/epmd.service\n')).toBe('/system.slice/epmd.service');
  expect(parseProcCgroup('1:name=systemd:/system.slice/x.service\n0::/\n')).toBe('/system.slice/x.service');
});

describe('where an attached unit gets its ERL_*FLAGS', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdepmd-doctor-parse-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('systemctl show: DropInPaths= and every EnvironmentFiles= line', () => {
    const [u] = parseSystemctlShow(
      'Id=billing.service\nDropInPaths=/etc/systemd/system/billing.service.d/epmd-dependency.conf /run/systemd/system/billing.service.d/zz.conf\n' +
        'EnvironmentFiles=/etc/default/billing (ignore_errors=no)\nEnvironmentFiles=/etc/billing.env (ignore_errors=yes)\n',
    );
    expect(u!.dropInPaths).toEqual([
      '/etc/systemd/system/billing.service.d/epmd-dependency.conf',
      '/run/systemd/system/billing.service.d/zz.conf',
    ]);
    expect(u!.environmentFiles).toEqual(['/etc/default/billing', '/etc/billing.env']);
    // Older snapshots (and show output without the properties) leave them out.
    expect(parseSystemctlShow('Id=x.service\n')[0]).not.toHaveProperty('dropInPaths');
  });

  test('Environment= lines of a drop-in and VAR= lines of an environment file, read from the files', () => {
    const dropIn = path.join(dir, 'zz.conf');
    fs.writeFileSync(
      dropIn,
      '[Service]\nEnvironment=HOME=/root "ERL_ZFLAGS=+S 2 -start_epmd true"\n# Environment=ERL_FLAGS=-x\nEnvironment=ERL_AFLAGS=-setcookie\\ c\n',
    );
    const envFile = path.join(dir, 'billing.env');
    fs.writeFileSync(
      envFile,
      '# comment\nRELEASE_ROOT=/opt/b\nexport ERL_FLAGS="-kernel a b"\nERL_ZFLAGS=-start_epmd true\n',
    );
    expect(
      readErlFlagSources({
        ...parseSystemctlShow('Id=b.service\n')[0]!,
        dropInPaths: [dropIn, path.join(dir, 'missing.conf')],
        environmentFiles: [envFile],
      }),
    ).toEqual([
      { file: dropIn, kind: 'drop-in', name: 'ERL_ZFLAGS', value: '+S 2 -start_epmd true' },
      { file: dropIn, kind: 'drop-in', name: 'ERL_AFLAGS', value: '-setcookie c' },
      { file: envFile, kind: 'environment-file', name: 'ERL_FLAGS', value: '-kernel a b' },
      { file: envFile, kind: 'environment-file', name: 'ERL_ZFLAGS', value: '-start_epmd true' },
    ]);
  });

  test('attached units are found by their drop-in in /etc/systemd/system, running or not', () => {
    for (const unit of ['billing.service', 'other.service']) fs.mkdirSync(path.join(dir, `${unit}.d`));
    fs.writeFileSync(path.join(dir, 'billing.service.d', 'epmd-dependency.conf'), '[Unit]\n');
    fs.writeFileSync(path.join(dir, 'other.service.d', 'mine.conf'), '[Unit]\n');
    expect(attachedUnits(dir)).toEqual(['billing.service']);
    expect(attachedUnits(path.join(dir, 'missing'))).toEqual([]);
  });
});
