/**
 * What the operator reads: the cause when nothing answers, the metrics exposition, refusals by reason, the
 * exposure drop-ins, and the log's journal fields.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { explainNoAnswer, formatNoAnswer, type NoAnswerFacts } from '../../src/operator/no-answer';
import { formatDown, formatMetrics, writeAtomically } from '../../src/operator/metrics';
import { allowDropIn, applyExposure, exposureDropInPath, listenDropIn, validCidr } from '../../src/operator/exposure';
import { emptyRefusalCounts, REFUSAL_REASONS } from '../../src/daemon/refusals';
import { journalFields, Logger, MESSAGE_IDS } from '../../src/daemon/log';
import type { StatusRecord } from '../../src/daemon/control';
import type { UnitInfo } from '../../src/operator/findings';

const unit = (id: string, activeState: string, subState: string, more: Partial<UnitInfo> = {}): UnitInfo => ({
  id,
  loadState: 'loaded',
  activeState,
  subState,
  result: 'success',
  mainPid: 0,
  controlGroup: '',
  requires: [],
  wants: [],
  bindsTo: [],
  after: [],
  environment: [],
  execStart: '',
  nRestarts: 0,
  unitFileState: 'enabled',
  listen: [],
  ...more,
});
const facts = (more: Partial<NoAnswerFacts>): NoAnswerFacts => ({
  port: 4369,
  control: '/run/sdepmd/control-4369.sock',
  controlError: 'ENOENT',
  uid: 0,
  socketUnit: null,
  serviceUnit: null,
  tcp: { kind: 'refused' },
  holders: [],
  ...more,
});

describe('status with no answer names the cause and the next command', () => {
  test('idle: the socket listens, the service waits for its first connection (no EPMD probe was sent)', () => {
    const a = explainNoAnswer(
      facts({
        tcp: null,
        socketUnit: unit('epmd.socket', 'active', 'listening', { listen: ['[::]:4369 (Stream)'] }),
        serviceUnit: unit('epmd.service', 'inactive', 'dead'),
      }),
    );
    expect(a.cause).toBe('idle');
    expect(a.evidence).toContain('epmd.socket: active/listening on [::]:4369');
    expect(a.next).toEqual(['sdepmd names   # any epmd request starts it', 'systemctl start epmd.service']);
  });

  test('permission denied on the control socket', () => {
    const a = explainNoAnswer(facts({ controlError: 'EACCES', uid: 1000 }));
    expect(a.cause).toBe('permission');
    expect(a.next[0]).toBe('sudo sdepmd status');
  });

  test('the C epmd answers on the port', () => {
    const a = explainNoAnswer(
      facts({
        tcp: { kind: 'names', nodes: 2 },
        holders: [{ pid: 77, comm: 'epmd', cmdline: '/usr/bin/epmd -daemon' }],
      }),
    );
    expect(a.cause).toBe('other-epmd');
    expect(a.summary).toBe(
      'the C epmd (pid 77) answers on port 4369, not an sdepmd with a control socket at /run/sdepmd/control-4369.sock',
    );
    expect(a.evidence).toContain('port 4369 is held by pid 77 (epmd): /usr/bin/epmd -daemon');
  });

  test("Debian's epmd.service (the C epmd, socket-activated) answers", () => {
    const a = explainNoAnswer(
      facts({
        tcp: { kind: 'names', nodes: 0 },
        holders: [{ pid: 1, comm: 'systemd', cmdline: '/sbin/init' }],
        socketUnit: unit('epmd.socket', 'active', 'running'),
        serviceUnit: unit('epmd.service', 'active', 'running', { execStart: '/usr/bin/epmd -systemd' }),
      }),
    );
    expect(a.summary).toMatch(/^the C epmd \(epmd\.service: \/usr\/bin\/epmd -systemd\) answers/);
  });

  test('nothing listens', () => {
    const a = explainNoAnswer(facts({ socketUnit: unit('epmd.socket', 'failed', 'failed') }));
    expect(a.cause).toBe('nothing-listening');
    expect(a.next[0]).toBe('systemctl enable --now epmd.socket');
    expect(formatNoAnswer('status', a)).toBe(
      'sdepmd status: nothing listens on port 4369\n' +
        '  no sdepmd answers on /run/sdepmd/control-4369.sock (ENOENT)\n' +
        '  connecting to [::1]:4369 and 127.0.0.1:4369: refused\n' +
        '  epmd.socket is failed/failed (enabled)\n' +
        '  next:\n    systemctl enable --now epmd.socket\n    sudo sdepmd doctor\n',
    );
  });

  test('nothing on this port, but epmd.socket listens on another: point at that port', () => {
    const a = explainNoAnswer(
      facts({ port: 4999, socketUnit: unit('epmd.socket', 'active', 'listening', { listen: ['[::]:4369 (Stream)'] }) }),
    );
    expect(a.cause).toBe('nothing-listening');
    expect(a.evidence[2]).toBe('epmd.socket is active, on [::]:4369, not on port 4999');
    expect(a.next).toEqual(['sdepmd status --port 4369', 'sudo sdepmd doctor']);
  });

  test('something that is not epmd, and no reply', () => {
    expect(explainNoAnswer(facts({ tcp: { kind: 'garbage', bytes: 3 } })).cause).toBe('not-epmd');
    expect(explainNoAnswer(facts({ tcp: { kind: 'error', message: 'no reply within 3000 ms' } })).cause).toBe(
      'no-reply',
    );
  });
});

const STATUS: StatusRecord = {
  version: '0.1.0',
  pid: 42,
  startedAt: '2026-11-29T22:00:00.000Z',
  uptimeSeconds: 61,
  underSystemd: true,
  logLevel: 'info',
  sockets: [{ address: '::', port: 4369, source: 'fd 3 (epmd.socket)' }],
  registered: 2,
  openConnections: 3,
  counts: {
    connections: 10,
    lookups: 5,
    lookupsFound: 3,
    namesRequests: 4,
    registrations: 3,
    unregistrations: 1,
    refused: 2,
    limitHits: 1,
  },
  refusals: { ...emptyRefusalCounts(), not_local: 1, connection_limit: 1 },
  fdStore: { enabled: true, stored: 2, restored: 1, notRestored: 1, detail: 'x' },
};

/** A strict reader of the text exposition format: HELP and TYPE before each family's samples, valid names. */
function parseExposition(text: string): Map<string, { type: string; samples: Map<string, number> }> {
  const families = new Map<string, { type: string; samples: Map<string, number> }>();
  let current: string | null = null;
  expect(text.endsWith('\n')).toBe(true);
  for (const line of text.trimEnd().split('\n')) {
    let m: RegExpExecArray | null;
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$/.exec(line))) {
      expect(families.has(m[1]!)).toBe(false);
      current = m[1]!;
    } else if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge)$/.exec(line))) {
      expect(m[1]).toBe(current);
      families.set(m[1]!, { type: m[2]!, samples: new Map() });
    } else if (
      (m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_]\w*="(?:[^"\\\n]|\\.)*",?)*\})? (-?\d+(?:\.\d+)?)$/.exec(line))
    ) {
      expect(m[1]).toBe(current);
      families.get(m[1]!)!.samples.set(m[2] ?? '', Number(m[3]));
    } else throw new Error(`not exposition format: ${JSON.stringify(line)}`);
  }
  return families;
}

describe('sdepmd metrics', () => {
  test('every counter and gauge the issue lists, in valid exposition format', () => {
    const f = parseExposition(formatMetrics(STATUS));
    const v = (name: string, labels = '') => f.get(name)?.samples.get(labels);
    expect(v('sdepmd_up')).toBe(1);
    expect(v('sdepmd_build_info', '{version="0.1.0"}')).toBe(1);
    expect(v('sdepmd_nodes_registered')).toBe(2);
    expect(v('sdepmd_lookups_total', '{result="found"}')).toBe(3);
    expect(v('sdepmd_lookups_total', '{result="not_found"}')).toBe(2);
    expect(v('sdepmd_names_requests_total')).toBe(4);
    expect(v('sdepmd_registrations_total')).toBe(3);
    expect(v('sdepmd_unregistrations_total')).toBe(1);
    expect(v('sdepmd_refusals_total', '{reason="not_local"}')).toBe(1);
    expect(v('sdepmd_refusals_total', '{reason="connection_limit"}')).toBe(1);
    expect(f.get('sdepmd_refusals_total')!.samples.size).toBe(REFUSAL_REASONS.length);
    expect(v('sdepmd_limit_hits_total')).toBe(1);
    expect(v('sdepmd_connections_open')).toBe(3);
    expect(v('sdepmd_fdstore_registrations')).toBe(2);
    expect(v('sdepmd_fdstore_restore_results', '{result="not_restored"}')).toBe(1);
    expect(v('sdepmd_uptime_seconds')).toBe(61);
    expect(v('sdepmd_start_time_seconds')).toBe(Date.parse('2026-11-29T22:00:00Z') / 1000);
    for (const [name, fam] of f)
      expect({ name, counter: fam.type === 'counter' }).toEqual({ name, counter: name.endsWith('_total') });
  });

  test('label values are escaped; down is sdepmd_up 0', () => {
    const f = parseExposition(formatMetrics({ ...STATUS, version: 'a"b\\c\nd' }));
    expect([...f.get('sdepmd_build_info')!.samples.keys()]).toEqual(['{version="a\\"b\\\\c\\nd"}']);
    expect(parseExposition(formatDown()).get('sdepmd_up')!.samples.get('')).toBe(0);
  });

  test('--output: the file is replaced by a rename (a new inode), no temporary file is left, the parent is created', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdepmd-metrics-'));
    const file = path.join(dir, 'sub', 'sdepmd.prom');
    writeAtomically(file, 'old\n');
    const held = fs.openSync(file, 'r'); // a reader that opened the old file keeps reading all of it
    const inode = fs.fstatSync(held).ino;
    writeAtomically(file, formatMetrics(STATUS));
    expect(fs.statSync(file).ino).not.toBe(inode);
    expect(fs.readFileSync(held, 'utf8')).toBe('old\n');
    fs.closeSync(held);
    expect(fs.readFileSync(file, 'utf8')).toBe(formatMetrics(STATUS));
    expect(fs.readdirSync(path.dirname(file))).toEqual(['sdepmd.prom']);
    fs.rmSync(dir, { recursive: true });
  });
});

describe('exposure drop-ins', () => {
  test('listen: loopback first, brackets for IPv6, FreeBind', () => {
    const d = listenDropIn(['10.0.0.5', '[fd00::5]', '10.0.0.5'], 4369);
    expect(d.ok && d.content.split('\n').filter((l) => !l.startsWith('#'))).toEqual([
      '[Socket]',
      'ListenStream=',
      'ListenStream=127.0.0.1:4369',
      'ListenStream=[::1]:4369',
      'ListenStream=10.0.0.5:4369',
      'ListenStream=[fd00::5]:4369',
      'FreeBind=yes',
      '',
    ]);
    expect(listenDropIn(['10.0.0.0/8'], 4369).ok).toBe(false);
    expect(listenDropIn(['0.0.0.0'], 4369).ok).toBe(false);
  });

  test('allow: deny any, allow localhost and the networks', () => {
    const d = allowDropIn(['10.0.0.0/8', 'fd00::/8', '192.0.2.7']);
    expect(d.ok && d.content.split('\n').filter((l) => !l.startsWith('#'))).toEqual([
      '[Socket]',
      'IPAddressDeny=',
      'IPAddressDeny=any',
      'IPAddressAllow=',
      'IPAddressAllow=localhost',
      'IPAddressAllow=10.0.0.0/8',
      'IPAddressAllow=fd00::/8',
      'IPAddressAllow=192.0.2.7',
      '',
    ]);
    for (const bad of ['10.0.0.0/33', 'fd00::/129', 'x', '10.0.0.0/8/1', '10.0.0.0/'])
      expect({ bad, ok: validCidr(bad) }).toEqual({ bad, ok: false });
    expect(allowDropIn(['any']).ok).toBe(false);
  });

  test('with --root: written, idempotent, reset removes it', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sdepmd-exposure-'));
    const out: string[] = [];
    const deps = {
      systemctl: async () => ({ code: 1, stdout: '', stderr: 'not called' }),
      stdout: (t: string) => out.push(t),
      stderr: (t: string) => out.push(t),
    };
    const opts = { words: ['10.0.0.0/8'], reset: false, dryRun: false, port: 4369, root };
    expect(await applyExposure('allow', { ...opts, dryRun: true }, deps)).toBe(0);
    expect(fs.existsSync(exposureDropInPath('allow', root))).toBe(false);
    expect(await applyExposure('allow', opts, deps)).toBe(0);
    expect(fs.readFileSync(exposureDropInPath('allow', root), 'utf8')).toContain('IPAddressAllow=10.0.0.0/8');
    out.length = 0;
    expect(await applyExposure('allow', opts, deps)).toBe(0);
    expect(out.join('')).toContain('nothing to do');
    expect(await applyExposure('allow', { ...opts, words: [], reset: true }, deps)).toBe(0);
    expect(fs.existsSync(exposureDropInPath('allow', root))).toBe(false);
    fs.rmSync(root, { recursive: true });
  });
});

describe('journal fields', () => {
  test('a line about a node carries its fields and the event kind', () => {
    const sent: string[][] = [];
    const log = new Logger({
      journal: true,
      level: 3,
      send: (f) => (sent.push(f), 0),
      sink: () => {
        throw new Error('no stderr line expected');
      },
    });
    log.info('registered a port 1', { event: 'registered', node: 'a', port: 1, peer: '127.0.0.1', creation: 9 });
    log.notice('plain');
    expect(sent).toEqual([
      [
        'MESSAGE=registered a port 1',
        'PRIORITY=6',
        'SYSLOG_IDENTIFIER=sdepmd',
        `MESSAGE_ID=${MESSAGE_IDS.registered}`,
        'EPMD_EVENT=registered',
        'EPMD_NODE=a',
        'EPMD_PORT=1',
        'EPMD_PEER=127.0.0.1',
        'EPMD_CREATION=9',
      ],
      ['MESSAGE=plain', 'PRIORITY=5', 'SYSLOG_IDENTIFIER=sdepmd'],
    ]);
  });

  test('when the send fails, the line goes to stderr with its <N> prefix; off the journal, no fields at all', () => {
    const lines: string[] = [];
    const failing = new Logger({ journal: true, level: 3, send: () => -111, sink: (l) => lines.push(l) });
    failing.warning('w', { event: 'refused', peer: '10.0.0.1' });
    expect(lines).toEqual(['<4>w\n']);
    const terminal = new Logger({
      journal: false,
      level: 3,
      send: () => {
        throw new Error('not used');
      },
      sink: (l) => lines.push(l),
    });
    expect(terminal.structured).toBe(false);
    terminal.info('i', { event: 'lookup' });
    expect(lines[1]).toMatch(/ info i\n$/);
    expect(journalFields(7, 'x')).toEqual(['MESSAGE=x', 'PRIORITY=7', 'SYSLOG_IDENTIFIER=sdepmd']);
  });
});

describe('doctor inputs for exposure', () => {
  test('networkOf masks the host part', async () => {
    const { networkOf, localNetworks, epmdAddressSettings } = await import('../../src/operator/snapshot');
    expect(networkOf('10.1.2.5/24')).toBe('10.1.2.0/24');
    expect(networkOf('192.0.2.77/32')).toBe('192.0.2.77/32');
    expect(networkOf('fd00:5df::11/64')).toBe('fd00:5df::/64');
    expect(networkOf('2001:db8:1:2:3:4:5:6/48')).toBe('2001:db8:1::/48');
    expect(
      localNetworks({
        lo: [
          { address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '', internal: true, cidr: '127.0.0.1/8' },
        ],
        eth0: [
          {
            address: '10.1.2.5',
            netmask: '255.255.255.0',
            family: 'IPv4',
            mac: '',
            internal: false,
            cidr: '10.1.2.5/24',
          },
          {
            address: 'fe80::1',
            netmask: 'ffff:ffff:ffff:ffff::',
            family: 'IPv6',
            mac: '',
            internal: false,
            cidr: 'fe80::1/64',
            scopeid: 2,
          },
        ],
      }),
    ).toEqual(['10.1.2.0/24']);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdepmd-default-'));
    const file = path.join(dir, 'epmd');
    fs.writeFileSync(
      file,
      '# comment\nERL_EPMD_ADDRESS="10.0.0.5, 127.0.0.1"\nexport ERL_EPMD_ADDRESS=10.0.0.6\nOTHER=1\n',
    );
    expect(epmdAddressSettings({ ERL_EPMD_ADDRESS: '::1' }, [file, path.join(dir, 'missing')])).toEqual([
      { where: file, value: '10.0.0.5, 127.0.0.1' },
      { where: file, value: '10.0.0.6' },
      { where: "sdepmd doctor's own environment", value: '::1' },
    ]);
    fs.rmSync(dir, { recursive: true });
  });
});
