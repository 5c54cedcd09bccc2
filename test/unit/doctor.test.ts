/**
 * `sdepmd doctor`'s rules (src/operator/findings.ts) on captured inputs: the snapshots in fixtures/captured were
 * taken in the namespaced systemd while test/e2e/doctor.e2e.test.ts held each fault; the others are those,
 * edited to the one fault a test is about.
 */
import * as fs from 'fs';
import * as path from 'path';
import {
  dependencyGaps,
  diagnose,
  factsOf,
  formatFindings,
  isEpmdProcess,
  isHealthy,
  nodeNameOf,
  RULES,
  socketNotEnabled,
  socketNotListening,
  epmdNotAnswering,
  epmdServiceFailing,
  startsNoEpmd,
  startEpmdOverridden,
  unitOfCgroup,
  type Finding,
  type HostSnapshot,
  type ProcessInfo,
  type UnitInfo,
} from '../../src/operator/findings';

const load = (name: string): HostSnapshot =>
  JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'captured', `${name}.json`), 'utf8')) as HostSnapshot;
const ids = (fs: readonly Finding[]): string[] => fs.map((f) => f.id).sort();
const only = (fs: readonly Finding[], id: string): Finding => {
  const hits = fs.filter((f) => f.id === id);
  expect(hits).toHaveLength(1);
  return hits[0]!;
};
const healthy = (): HostSnapshot => load('healthy');
/** The healthy snapshot with some units / processes replaced or added. */
function edit(
  base: HostSnapshot,
  change: { units?: Partial<UnitInfo>[]; processes?: ProcessInfo[]; more?: Partial<HostSnapshot> },
): HostSnapshot {
  const units = base.units.map((u) => ({ ...u, ...(change.units?.find((c) => c.id === u.id) ?? {}) }));
  for (const c of change.units ?? []) if (!units.some((u) => u.id === c.id)) units.push({ ...blankUnit(c.id!), ...c });
  return { ...base, units, processes: [...base.processes, ...(change.processes ?? [])], ...(change.more ?? {}) };
}
function blankUnit(id: string): UnitInfo {
  return {
    id,
    loadState: 'loaded',
    activeState: 'active',
    subState: 'running',
    result: 'success',
    mainPid: 0,
    controlGroup: `/system.slice/${id}`,
    requires: ['sysinit.target'],
    wants: [],
    bindsTo: [],
    after: ['basic.target'],
    environment: [],
    execStart: '',
    nRestarts: 0,
    unitFileState: 'enabled',
    listen: [],
  };
}
const beam = (pid: number, unit: string, args: string[], environ: Record<string, string> = {}): ProcessInfo => ({
  pid,
  comm: 'beam.smp',
  cmdline: [
    '/usr/lib/erlang/erts-13.1.5/bin/beam.smp',
    '--',
    '-root',
    '/usr/lib/erlang',
    '-progname',
    'erl',
    '--',
    '-home',
    '/root',
    '--',
    ...args,
  ],
  environ,
  cgroup: `/system.slice/${unit}`,
});
const attachedApp = (id: string): Partial<UnitInfo> => ({
  id,
  requires: ['sysinit.target', 'epmd.service'],
  after: ['basic.target', 'epmd.service'],
  environment: ['HOME=/root', 'ERL_AFLAGS=-start_epmd false'],
});

describe('doctor: a healthy host', () => {
  test('no findings, exit-0 verdict, and a one-line summary', () => {
    const s = healthy();
    expect(diagnose(s)).toEqual([]);
    expect(isHealthy([])).toBe(true);
    expect(formatFindings([], s)).toMatch(
      /^sdepmd doctor: healthy\. epmd\.socket is listening on port 4369; epmd\.service runs pid \d+; 0 node\(s\) registered\.\n$/,
    );
  });

  test('an attached app whose node is registered is healthy', () => {
    const s = edit(healthy(), {
      units: [attachedApp('billing.service')],
      processes: [beam(700, 'billing.service', ['-start_epmd', 'false', '--', '-sname', 'billing', '-noshell'])],
      more: { registered: [{ name: 'billing', port: 40000 }] },
    });
    expect(diagnose(s)).toEqual([]);
  });

  test('the opt-in alternative (Wants= + After=epmd.socket) counts as attached', () => {
    const s = edit(healthy(), {
      units: [{ ...blankUnit('calm.service'), wants: ['epmd.socket'], after: ['epmd.socket'] }],
      processes: [beam(701, 'calm.service', ['-sname', 'calm'], { ERL_AFLAGS: '-start_epmd false' })],
      more: { registered: [{ name: 'calm', port: 40001 }] },
    });
    expect(diagnose(s)).toEqual([]);
  });

  test('the socket idle before its first connection (no epmd process yet) is healthy', () => {
    const s = edit(healthy(), {
      more: {
        processes: healthy().processes.filter((p) => p.pid === 1),
        listeners: [{ address: '*', port: 4369, holders: [{ pid: 1, comm: 'systemd' }] }],
      },
    });
    expect(diagnose(s)).toEqual([]);
  });
});

describe('doctor: each finding', () => {
  test('epmd.socket disabled (captured)', () => {
    const f = diagnose(load('fault-socket-disabled'));
    expect(ids(f)).toEqual(['socket-not-enabled']);
    expect(f[0]!.severity).toBe('error');
    expect(f[0]!.evidence[0]).toContain('UnitFileState=disabled');
    expect(f[0]!.fix).toEqual(['systemctl enable --now epmd.socket']);
  });

  test('epmd.socket masked: unmask first', () => {
    const s = edit(healthy(), {
      units: [
        { id: 'epmd.socket', unitFileState: 'masked', loadState: 'masked', activeState: 'inactive', subState: 'dead' },
      ],
    });
    const f = only(diagnose(s), 'socket-not-enabled');
    expect(f.fix).toEqual(['systemctl unmask epmd.socket', 'systemctl enable --now epmd.socket']);
  });

  test('epmd.socket enabled but not listening, nothing on the port', () => {
    const s = edit(healthy(), {
      units: [{ id: 'epmd.socket', activeState: 'inactive', subState: 'dead' }],
      more: { listeners: [], processes: [], registered: null, registeredError: 'ECONNREFUSED' },
    });
    const f = only(diagnose(s), 'socket-not-listening');
    expect(f.evidence).toContain('nothing listens on port 4369');
    expect(f.fix).toEqual(['systemctl start epmd.socket']);
  });

  test('epmd.socket not installed', () => {
    const s = { ...healthy(), units: healthy().units.filter((u) => u.id !== 'epmd.socket') };
    expect(ids(diagnose(s))).toContain('socket-missing');
  });

  test('a foreign process on 4369 (captured): says who holds it, and the unit to stop', () => {
    const s = load('fault-foreign-port-holder');
    const f = diagnose(s);
    expect(ids(f)).toEqual(['port-held', 'socket-not-listening']);
    const held = only(f, 'port-held');
    const squatter = s.processes.find((p) => unitOfCgroup(p.cgroup) === 'squatter.service')!;
    expect(held.title).toBe(`port 4369 is held by node (pid ${squatter.pid}), which is not epmd`);
    expect(held.evidence[0]).toContain(`pid ${squatter.pid} (node) in squatter.service`);
    expect(held.fix).toEqual(['systemctl stop squatter.service', 'systemctl start epmd.socket']);
  });

  test('a foreign process outside any unit: kill it', () => {
    const s = load('fault-foreign-port-holder');
    const moved = {
      ...s,
      processes: s.processes.map((p) =>
        unitOfCgroup(p.cgroup) === 'squatter.service' ? { ...p, cgroup: '/user.slice' } : p,
      ),
    };
    const held = only(diagnose(moved), 'port-held');
    expect(held.fix[0]).toMatch(/^kill \d+$/);
  });

  test('an epmd in an app cgroup (captured): names the unit whose stop would kill it', () => {
    const s = load('fault-epmd-in-app-cgroup');
    const f = diagnose(s);
    expect(ids(f)).toEqual(['app-not-attached', 'epmd-in-app-cgroup', 'socket-not-listening']);
    const e = only(f, 'epmd-in-app-cgroup');
    expect(e.title).toBe(
      "an epmd runs inside billing_prod.service's cgroup: stopping billing_prod.service would kill it",
    );
    expect(e.evidence.join('\n')).toMatch(/\(epmd\): \/usr\/lib\/erlang\/erts-[\d.]+\/bin\/epmd -daemon/);
    expect(e.evidence.join('\n')).toContain('it holds port 4369, so epmd.socket cannot listen');
    // No restart of anything: adopt keeps every registration the stray holds, and the app keeps running.
    expect(e.fix).toEqual([
      'sdepmd attach billing_prod.service',
      `sdepmd adopt --pid ${/pid (\d+) \(epmd\)/.exec(e.evidence.join('\n'))![1]}`,
    ]);
    expect(only(f, 'app-not-attached').fix).toEqual(e.fix);
  });

  test('an epmd outside epmd.service and outside any service; and two epmds', () => {
    const s = edit(healthy(), {
      processes: [
        {
          pid: 900,
          comm: 'epmd',
          cmdline: ['epmd', '-port', '4370'],
          environ: {},
          cgroup: '/user.slice/user-0.slice/session-3.scope',
        },
      ],
    });
    const f = diagnose(s);
    expect(ids(f)).toEqual(['epmd-outside-service', 'multiple-epmd']);
    expect(only(f, 'epmd-outside-service').title).toBe('an epmd runs outside epmd.service (in session-3.scope)');
    expect(only(f, 'epmd-outside-service').fix).toEqual(['kill 900', 'systemctl start epmd.socket']);
    expect(only(f, 'multiple-epmd').evidence).toHaveLength(2);
  });

  test('an sdepmd daemon started by hand counts as an epmd; its client verbs and subcommands do not', () => {
    const node = (args: string[]): ProcessInfo => ({
      pid: 1,
      comm: 'node',
      cmdline: ['node', '/usr/local/bin/sdepmd', ...args],
      environ: {},
      cgroup: '/',
    });
    expect(isEpmdProcess(node(['-port', '4369']))).toBe(true);
    expect(isEpmdProcess(node(['-systemd']))).toBe(true);
    expect(isEpmdProcess(node(['-names']))).toBe(false);
    expect(isEpmdProcess(node(['doctor', '--json']))).toBe(false);
    expect(
      isEpmdProcess({ pid: 2, comm: 'node', cmdline: ['node', '/srv/app/server.js'], environ: {}, cgroup: '/' }),
    ).toBe(false);
    expect(
      isEpmdProcess({ pid: 3, comm: 'epmd', cmdline: ['/usr/bin/epmd', '-systemd'], environ: {}, cgroup: '/' }),
    ).toBe(true);
  });

  test("epmd.service running the C epmd (Debian's unit): a warning", () => {
    const s = healthy();
    const svc = s.units.find((u) => u.id === 'epmd.service')!;
    const c = edit(s, {
      units: [{ id: 'epmd.service', execStart: '/usr/bin/epmd -systemd' }],
      more: {
        processes: [
          { pid: 77, comm: 'epmd', cmdline: ['/usr/bin/epmd', '-systemd'], environ: {}, cgroup: svc.controlGroup },
        ],
        listeners: [
          {
            address: '*',
            port: 4369,
            holders: [
              { pid: 77, comm: 'epmd' },
              { pid: 1, comm: 'systemd' },
            ],
          },
        ],
      },
    });
    const f = diagnose(c);
    expect(ids(f)).toEqual(['epmd-not-sdepmd']);
    expect(f[0]!.severity).toBe('warning');
    expect(isHealthy(f)).toBe(true);
  });

  test('an Erlang unit without the dependency lines (Requires/After), or without -start_epmd false', () => {
    const noDeps = edit(healthy(), {
      units: [{ ...blankUnit('a.service'), environment: ['ERL_AFLAGS=-start_epmd false'] }],
      processes: [beam(800, 'a.service', ['-start_epmd', 'false', '--', '-sname', 'a'])],
      more: { registered: [{ name: 'a', port: 1 }] },
    });
    const f1 = only(diagnose(noDeps), 'app-not-attached');
    expect(f1.title).toBe('a.service runs an Erlang VM without Requires=epmd.service, After=epmd.service');
    expect(f1.fix).toEqual(['sdepmd attach a.service', 'systemctl restart a.service']);

    const onlyRequires = edit(healthy(), {
      units: [{ ...blankUnit('b.service'), requires: ['epmd.service'] }],
      processes: [beam(801, 'b.service', ['-sname', 'b'], { ERL_FLAGS: '-start_epmd false' })],
      more: { registered: [{ name: 'b', port: 2 }] },
    });
    expect(only(diagnose(onlyRequires), 'app-not-attached').title).toBe(
      'b.service runs an Erlang VM without After=epmd.service',
    );

    const noFlag = edit(healthy(), {
      units: [{ ...attachedApp('c.service'), environment: [] }],
      processes: [beam(802, 'c.service', ['-sname', 'c'])],
      more: { registered: [{ name: 'c', port: 3 }] },
    });
    const f3 = only(diagnose(noFlag), 'app-not-attached');
    expect(f3.title).toBe('c.service runs an Erlang VM without -start_epmd false');
    expect(f3.evidence.join('\n')).toContain('pid 802 starts its own epmd when none answers');
  });

  test('attached (daemon-reload done) but not restarted: restart only', () => {
    const s = edit(healthy(), {
      units: [attachedApp('d.service')],
      processes: [beam(803, 'd.service', ['-sname', 'd'])], // old process: no -start_epmd false
      more: { registered: [{ name: 'd', port: 4 }] },
    });
    const f = only(diagnose(s), 'app-not-attached');
    expect(f.title).toMatch(/was attached to epmd\.service but still runs with its old settings/);
    expect(f.fix).toEqual(['systemctl restart d.service']);
  });

  test('a node that is not registered (captured): names it, says no epmd answers', () => {
    const f = diagnose(load('fault-node-not-registered'));
    expect(ids(f)).toEqual(['app-not-attached', 'node-not-registered', 'socket-not-listening']);
    const n = only(f, 'node-not-registered');
    expect(n.title).toBe('node billing_b (billing_b.service) is not registered with epmd: no other node can reach it');
    expect(n.evidence.join('\n')).toMatch(/no epmd answers on port 4369 \(cannot connect/);
    expect(n.fix).toEqual(['sdepmd attach billing_b.service', 'systemctl restart billing_b.service']);
  });

  test('a node that is not registered although epmd answers (-name with @host, attached app)', () => {
    const s = edit(healthy(), {
      units: [attachedApp('e.service')],
      processes: [beam(804, 'e.service', ['-start_epmd', 'false', '--', '-name', 'e@host.example.com'])],
      more: { registered: [{ name: 'other', port: 5 }] },
    });
    const f = diagnose(s);
    const n = only(f, 'node-not-registered');
    expect(n.title).toContain('node e (e.service)');
    expect(n.evidence).toContain('registered names on port 4369: other');
    expect(n.fix).toEqual(['systemctl restart e.service']);
  });

  test('a registered name that belongs to no running unit (captured): a warning', () => {
    const f = diagnose(load('warning-orphan-registration'));
    expect(ids(f)).toEqual(['orphan-registration']);
    expect(f[0]!.severity).toBe('warning');
    expect(f[0]!.title).toBe('registered name adhoc_shell belongs to no running unit');
    expect(f[0]!.fix[0]).toMatch(/^kill \d+$/);
    expect(isHealthy(f)).toBe(true);
  });

  test('a registered name nobody listens for (stale)', () => {
    const s = edit(healthy(), { more: { registered: [{ name: 'ghost', port: 45678 }] } });
    const f = only(diagnose(s), 'orphan-registration');
    expect(f.evidence[1]).toMatch(/nothing listens on port 45678/);
  });

  test('epmd.service failing: error with the journal lines', () => {
    const s = edit(healthy(), {
      units: [{ id: 'epmd.service', activeState: 'failed', subState: 'failed', result: 'exit-code', nRestarts: 5 }],
      more: {
        epmdJournal: ['... sdepmd[12]: boom', '... systemd[1]: epmd.service: Failed with result exit-code.'],
        processes: [],
      },
    });
    const f = only(diagnose(s), 'epmd-service-failing');
    expect(f.severity).toBe('error');
    expect(f.title).toBe('epmd.service is failing (failed/failed)');
    expect(f.evidence).toContain('  ... sdepmd[12]: boom');
    expect(f.fix).toContain('systemctl reset-failed epmd.service');
  });

  test('epmd.service restarting repeatedly: error from 3 restarts, warning below', () => {
    const at = (n: number) =>
      only(diagnose(edit(healthy(), { units: [{ id: 'epmd.service', nRestarts: n }] })), 'epmd-service-failing');
    expect(at(3).severity).toBe('error');
    expect(at(3).title).toMatch(/has restarted 3 time\(s\)/);
    expect(at(1).severity).toBe('warning');
    const autoRestart = edit(healthy(), {
      units: [{ id: 'epmd.service', activeState: 'activating', subState: 'auto-restart', nRestarts: 1 }],
    });
    expect(only(diagnose(autoRestart), 'epmd-service-failing').severity).toBe('error');
  });

  test('socket listening but nothing answers as epmd', () => {
    const s = edit(healthy(), { more: { registered: null, registeredError: 'no reply within 3000 ms' } });
    expect(only(diagnose(s), 'epmd-not-answering').evidence[0]).toBe('no reply within 3000 ms');
  });

  test('systemctl unusable', () => {
    const s: HostSnapshot = { ...healthy(), systemdError: 'System has not been booted with systemd', units: [] };
    expect(ids(diagnose(s))).toContain('systemd-unavailable');
  });

  test('human output: one block per finding, evidence and fix lines', () => {
    const s = load('fault-epmd-in-app-cgroup');
    const text = formatFindings(diagnose(s), s);
    expect(text.split('\n')[0]).toBe('sdepmd doctor: 3 error(s)');
    expect(text).toMatch(
      /\nerror: an epmd runs inside billing_prod\.service's cgroup: stopping billing_prod\.service would kill it \[epmd-in-app-cgroup\]\n {2}pid \d+ \(epmd\)/,
    );
    expect(text).toMatch(/\n {2}fix:\n {4}sdepmd attach billing_prod\.service\n {4}sdepmd adopt --pid \d+\n/);
  });
});

describe('doctor: node identity helpers', () => {
  test('unit of a cgroup: last .service/.scope component, whatever the prefix', () => {
    expect(unitOfCgroup('/sdepmd-ns-AbC/system.slice/foo.service')).toBe('foo.service');
    expect(unitOfCgroup('/system.slice/foo.service/sub/cg')).toBe('foo.service');
    expect(unitOfCgroup('/user.slice/user-0.slice/session-2.scope')).toBe('session-2.scope');
    expect(unitOfCgroup('/')).toBeNull();
  });

  test('node names and -start_epmd false', () => {
    const p = beam(1, 'x.service', ['-sname', 'first', '-name', 'second@h.example']);
    expect(nodeNameOf(p)).toBe('second');
    expect(nodeNameOf(beam(1, 'x.service', ['-noshell']))).toBeNull();
    expect(nodeNameOf(beam(1, 'x.service', ['-sname', 'undefined']))).toBeNull();
    expect(startsNoEpmd(beam(1, 'x.service', ['-start_epmd', 'false']))).toBe(true);
    expect(startsNoEpmd(beam(1, 'x.service', []))).toBe(false);
    expect(startsNoEpmd(beam(1, 'x.service', [], { ERL_ZFLAGS: '-kernel a b -start_epmd false' }))).toBe(true);
    expect(startsNoEpmd(beam(1, 'x.service', ['-start_epmd', 'false', '-start_epmd', 'true']))).toBe(false);
  });

  test('dependency gaps', () => {
    expect(dependencyGaps({ ...blankUnit('a.service'), requires: ['epmd.service'], after: ['epmd.service'] })).toEqual(
      [],
    );
    expect(dependencyGaps({ ...blankUnit('a.service'), bindsTo: ['epmd.service'], after: ['epmd.service'] })).toEqual(
      [],
    );
    expect(dependencyGaps({ ...blankUnit('a.service'), wants: ['epmd.socket'] })).toEqual([
      'Requires=epmd.service',
      'After=epmd.service',
    ]);
  });
});

describe('doctor: the rules, one at a time', () => {
  test('every rule is a distinct function of the facts, and diagnose() runs the list it is given', () => {
    expect(new Set(RULES).size).toBe(RULES.length);
    const s = load('fault-epmd-in-app-cgroup');
    expect(diagnose(s, [])).toEqual([]);
    expect(ids(diagnose(s, [socketNotListening]))).toEqual(['socket-not-listening']);
    expect(diagnose(s, RULES)).toEqual(diagnose(s));
  });

  test('a disabled socket that does not listen: one finding says both, with who holds the port', () => {
    const s = edit(load('fault-foreign-port-holder'), { units: [{ id: 'epmd.socket', unitFileState: 'disabled' }] });
    const facts = factsOf(s);
    expect(socketNotListening(facts)).toEqual([]);
    const [f] = socketNotEnabled(facts);
    expect(f!.evidence[0]).toContain('UnitFileState=disabled');
    expect(f!.evidence.slice(1).join('\n')).toMatch(/^port 4369 is held by pid \d+ \(node\) in squatter\.service/);
    expect(f!.fix).toEqual(['systemctl stop squatter.service', 'systemctl enable --now epmd.socket']);
  });

  test('a masked socket: both findings, and the port evidence only on socket-not-listening', () => {
    const s = edit(healthy(), {
      units: [
        { id: 'epmd.socket', unitFileState: 'masked', loadState: 'masked', activeState: 'inactive', subState: 'dead' },
      ],
      more: { listeners: [] },
    });
    const facts = factsOf(s);
    expect(socketNotEnabled(facts)[0]!.evidence).toHaveLength(1);
    expect(socketNotListening(facts)[0]!.evidence).toContain('nothing listens on port 4369');
  });

  test('epmd-not-answering stays quiet when epmd.service is failing (that finding has the journal)', () => {
    const silent = edit(healthy(), { more: { registered: null, registeredError: 'ECONNREFUSED' } });
    expect(ids(epmdNotAnswering(factsOf(silent)))).toEqual(['epmd-not-answering']);
    const failing = edit(silent, { units: [{ id: 'epmd.service', activeState: 'failed', subState: 'failed' }] });
    expect(epmdNotAnswering(factsOf(failing))).toEqual([]);
    expect(ids(epmdServiceFailing(factsOf(failing)))).toEqual(['epmd-service-failing']);
  });
});

describe('doctor: exposure', () => {
  const exposedSocket = (more: Partial<UnitInfo> = {}): Partial<UnitInfo> => ({
    id: 'epmd.socket',
    listen: ['[::]:4369 (Stream)'],
    ipAddressAllow: [],
    ipAddressDeny: [],
    ...more,
  });

  test('epmd.socket on every address with no IPAddressAllow=/IPAddressDeny=: a warning, with the drop-in and the allow fix', () => {
    const s = edit(healthy(), { units: [exposedSocket()], more: { localNetworks: ['10.1.2.0/24', 'fd00:1::/64'] } });
    const f = only(diagnose(s), 'socket-exposed');
    expect(f.severity).toBe('warning');
    expect(f.title).toBe(
      'epmd.socket accepts connections from any address ([::]:4369), with no IPAddressAllow=/IPAddressDeny=',
    );
    expect(f.evidence).toEqual(
      expect.arrayContaining([
        '    [Socket]',
        '    IPAddressDeny=any',
        '    IPAddressAllow=localhost',
        '    IPAddressAllow=10.1.2.0/24',
        '    IPAddressAllow=fd00:1::/64',
      ]),
    );
    expect(f.fix).toEqual(['sdepmd allow 10.1.2.0/24 fd00:1::/64']);
    expect(isHealthy(diagnose(s))).toBe(true);
    // A host with no network of its own: loopback alone.
    expect(
      only(diagnose(edit(healthy(), { units: [exposedSocket()], more: { localNetworks: [] } })), 'socket-exposed').fix,
    ).toEqual(['sdepmd allow localhost']);
  });

  test('no warning once restricted, on loopback only, or when the snapshot did not read the properties', () => {
    for (const socket of [
      exposedSocket({ ipAddressAllow: ['127.0.0.0/8', '::1/128', '10.0.0.0/8'], ipAddressDeny: ['0.0.0.0/0', '::/0'] }),
      exposedSocket({ ipAddressDeny: ['0.0.0.0/0'] }),
      exposedSocket({ listen: ['127.0.0.1:4369 (Stream)', '[::1]:4369 (Stream)'] }),
      { id: 'epmd.socket', listen: ['[::]:4369 (Stream)'] },
    ]) {
      expect(ids(diagnose(edit(healthy(), { units: [socket] })))).not.toContain('socket-exposed');
    }
    // A specific non-loopback address is exposed too.
    expect(
      ids(
        diagnose(
          edit(healthy(), {
            units: [exposedSocket({ listen: ['127.0.0.1:4369 (Stream)', '10.0.0.5:4369 (Stream)'] })],
          }),
        ),
      ),
    ).toContain('socket-exposed');
  });

  test('ERL_EPMD_ADDRESS in an app unit, a VM environment, /etc/default/epmd, or -address: flagged as having no effect', () => {
    const s = edit(healthy(), {
      units: [{ ...attachedApp('chat.service'), environment: ['HOME=/root', 'ERL_EPMD_ADDRESS=10.0.0.5'] }],
      processes: [
        beam(702, 'chat.service', ['-sname', 'chat'], {
          ERL_EPMD_ADDRESS: '10.0.0.5',
          ERL_AFLAGS: '-start_epmd false',
        }),
      ],
      more: {
        registered: [{ name: 'chat', port: 40002 }],
        epmdAddressSettings: [{ where: '/etc/default/epmd', value: '127.0.0.1,10.0.0.6' }],
      },
    });
    const f = only(diagnose(s), 'epmd-address-ignored');
    expect(f.severity).toBe('warning');
    expect(f.evidence.slice(0, 3)).toEqual([
      'chat.service Environment=: ERL_EPMD_ADDRESS=10.0.0.5',
      'the environment of pid 702 (beam.smp) in chat.service: ERL_EPMD_ADDRESS=10.0.0.5',
      '/etc/default/epmd: ERL_EPMD_ADDRESS=127.0.0.1,10.0.0.6',
    ]);
    expect(f.fix).toEqual(['sdepmd listen 10.0.0.5 10.0.0.6']);
    const withFlag = edit(healthy(), {
      units: [{ id: 'epmd.service', execStart: '/usr/bin/epmd -systemd -address 10.0.0.7' }],
    });
    expect(only(diagnose(withFlag), 'epmd-address-ignored').fix).toEqual(['sdepmd listen 10.0.0.7']);
    // Without socket activation (no epmd.socket), ERL_EPMD_ADDRESS does what it says: nothing to flag.
    const noSocket = { ...s, units: s.units.filter((u) => u.id !== 'epmd.socket') };
    expect(ids(diagnose(noSocket))).not.toContain('epmd-address-ignored');
  });
});

test('an ordering cycle between an attached unit and epmd (e.g. epmd.socket attached to itself) is an error', () => {
  const base = healthy();
  const units = base.units.map((u) =>
    u.id === 'epmd.socket'
      ? { ...u, after: [...u.after, 'epmd.service'], requires: [...u.requires, 'epmd.service'] }
      : u,
  );
  const f = diagnose(edit(base, { units }));
  const cycle = f.filter((x) => x.id === 'dependency-cycle');
  expect(cycle).toHaveLength(1);
  expect(cycle[0]!.title).toBe('epmd.socket and epmd.service are each ordered after the other: an ordering cycle');
  expect(cycle[0]!.fix).toEqual(['sdepmd detach epmd.socket']);
  expect(diagnose(base).some((x) => x.id === 'dependency-cycle')).toBe(false);
});

describe('doctor: an attached unit whose own ERL_*FLAGS override -start_epmd false', () => {
  const dropIns = '/etc/systemd/system/billing.service.d';
  const attached = (more: Partial<UnitInfo>): Partial<UnitInfo> => ({
    ...attachedApp('billing.service'),
    execStart: '/usr/bin/erl -sname billing -noshell',
    dropInPaths: [`${dropIns}/epmd-dependency.conf`],
    environment: ['HOME=/root', 'ERL_ZFLAGS=-start_epmd false'],
    ...more,
  });
  const override = (s: HostSnapshot) => startEpmdOverridden(factsOf(s));

  test('the drop-in alone: no finding', () => {
    expect(override(edit(healthy(), { units: [attached({})] }))).toEqual([]);
  });

  test('a later drop-in sets ERL_ZFLAGS without it: an error naming the drop-in, with the fix', () => {
    const s = edit(healthy(), {
      units: [
        attached({
          dropInPaths: [`${dropIns}/epmd-dependency.conf`, `${dropIns}/zz-tuning.conf`],
          environment: ['HOME=/root', 'ERL_ZFLAGS=+S 2'],
          erlFlagSources: [
            {
              file: `${dropIns}/epmd-dependency.conf`,
              kind: 'drop-in',
              name: 'ERL_ZFLAGS',
              value: '-start_epmd false',
            },
            { file: `${dropIns}/zz-tuning.conf`, kind: 'drop-in', name: 'ERL_ZFLAGS', value: '+S 2' },
          ],
        }),
      ],
    });
    const f = only(diagnose(s), 'start-epmd-overridden');
    expect(f.severity).toBe('error');
    expect(f.title).toBe(
      "billing.service is attached, but its own ERL_ZFLAGS overrides the drop-in's -start_epmd false: it would start its own epmd in its cgroup",
    );
    expect(f.evidence).toEqual([
      'effective ERL_ZFLAGS=+S 2',
      'no -start_epmd in the effective flags: erl starts epmd -daemon when none answers',
      `${dropIns}/zz-tuning.conf (a drop-in read after epmd-dependency.conf) sets ERL_ZFLAGS=+S 2`,
    ]);
    expect(f.fix).toEqual([
      `# end the ERL_ZFLAGS in ${dropIns}/zz-tuning.conf with -start_epmd false`,
      'systemctl daemon-reload',
    ]);
  });

  test('an EnvironmentFile= with -start_epmd true overrides Environment=; a running VM gets a restart in the fix', () => {
    const s = edit(healthy(), {
      units: [
        attached({
          erlFlagSources: [
            { file: '/etc/default/billing', kind: 'environment-file', name: 'ERL_ZFLAGS', value: '-start_epmd true' },
            // Harmless: ERL_AFLAGS is read before ERL_ZFLAGS, so it is no culprit and gets no fix line.
            { file: '/etc/default/billing', kind: 'environment-file', name: 'ERL_AFLAGS', value: '-setcookie c' },
          ],
        }),
      ],
      processes: [beam(900, 'billing.service', ['-sname', 'billing', '-start_epmd', 'true'])],
    });
    const f = only(diagnose(s), 'start-epmd-overridden');
    expect(f.evidence).toContain('the last -start_epmd is true');
    expect(f.evidence).toContain(
      '/etc/default/billing (an EnvironmentFile=, which overrides Environment=) sets ERL_ZFLAGS=-start_epmd true',
    );
    expect(
      f.evidence.some((e) => e.startsWith('pid 900 (beam.smp)') && e.endsWith('runs without -start_epmd false')),
    ).toBe(true);
    expect(f.fix).toEqual([
      '# end the ERL_ZFLAGS in /etc/default/billing with -start_epmd false',
      'systemctl restart billing.service',
    ]);
    // The override is the one finding about it: app-not-attached does not also ask for an attach that cannot help.
    expect(diagnose(s).filter((x) => x.id === 'app-not-attached')).toEqual([]);
  });

  test('-start_epmd true on the command line is still undone by ERL_ZFLAGS (read last): no finding', () => {
    const s = edit(healthy(), { units: [attached({ execStart: '/usr/bin/erl -start_epmd true -sname billing' })] });
    expect(override(s)).toEqual([]);
  });

  test('units without the drop-in are not judged here (app-not-attached covers them)', () => {
    const s = edit(healthy(), { units: [attached({ dropInPaths: [], environment: ['ERL_ZFLAGS=-start_epmd true'] })] });
    expect(override(s)).toEqual([]);
  });
});
