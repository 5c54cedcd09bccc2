/**
 * Socket activation as a real systemd (252, PID 1 of private namespaces over an overlay of "/") passes fds:
 * listenFds (src/systemd/listen.ts, built to dist/) run as a service with two socket units, and run as a child of
 * the service's main process (LISTEN_PID is then not its pid). What it returned, the FD_CLOEXEC flag of each fd,
 * and the LISTEN_* variables left in its environment are written to a file and compared here.
 * systemd 252 sets no LISTEN_PIDFDID (256 does): test/integration/activation.test.ts passes one the way it does.
 */
import * as path from 'path';
import { bootSystemd, SystemdSandbox, systemdSandboxAvailable, stopAndCheckClean } from '../support/nsystemd';
import { peerDescribe } from '../support/peers';
import { sandboxShell } from '../support/sandbox';

const REPO = path.resolve(__dirname, '..', '..');
const PROBE = '/root/listen-probe.js';
/** Calls listenFds, then reports what it returned, each passed fd's FD_CLOEXEC, and the LISTEN_* left over. */
const PROBE_SCRIPT = `
const fs = require('fs');
const { listenFds } = require(${JSON.stringify(path.join(REPO, 'dist', 'systemd', 'listen.js'))});
const before = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('LISTEN_')));
const result = listenFds();
const cloexec = (fd) => (parseInt(/^flags:\\s+(\\d+)$/m.exec(fs.readFileSync('/proc/self/fdinfo/' + fd, 'utf8'))[1], 8) & 0o2000000) !== 0;
const fds = result.ok ? result.fds.map((p) => ({ ...p, cloexec: cloexec(p.fd), socket: fs.readlinkSync('/proc/self/fd/' + p.fd).startsWith('socket:') })) : [];
const left = Object.keys(process.env).filter((k) => k.startsWith('LISTEN_'));
fs.writeFileSync(process.argv[2], JSON.stringify({ pid: process.pid, before, ok: result.ok, error: result.error, fds, left }));
`;
const socketUnit = (port: number, name: string): string => `[Socket]
ListenStream=127.0.0.1:${port}
FileDescriptorName=${name}
Service=listen-probe.service
`;

interface ProbeOutput {
  pid: number;
  before: Record<string, string>;
  ok: boolean;
  error?: string;
  fds: { fd: number; name: string; cloexec: boolean; socket: boolean }[];
  left: string[];
}

const d = peerDescribe('systemd sandbox', systemdSandboxAvailable());

d('listenFds under a real systemd (sd_listen_fds semantics)', () => {
  let sb: SystemdSandbox | undefined;
  const { box } = sandboxShell(() => sb);
  const probeService = (execStart: string): string =>
    `[Service]\nType=oneshot\nSockets=listen-a.socket listen-b.socket\nExecStart=${execStart}\n`;
  const runProbe = async (execStart: string, out: string): Promise<ProbeOutput> => {
    const s = box();
    await s.installUnit('listen-probe.service', probeService(execStart));
    const started = await s.systemctl('start', 'listen-probe.service');
    if (started.code !== 0)
      throw new Error(`listen-probe.service failed: ${started.stderr}\n${await s.journal('listen-probe.service', 40)}`);
    return JSON.parse(await s.readFile(out)) as ProbeOutput;
  };

  beforeAll(async () => {
    sb = await bootSystemd();
    await sb.writeFile(PROBE, PROBE_SCRIPT);
    // The socket units name the service: it must exist before they start.
    await sb.installUnit('listen-probe.service', probeService('/bin/true'));
    await sb.installUnit('listen-a.socket', socketUnit(4411, 'first'));
    await sb.installUnit('listen-b.socket', socketUnit(4412, 'second'));
    const r = await sb.systemctl('start', 'listen-a.socket', 'listen-b.socket');
    if (r.code !== 0) throw new Error(`cannot start the socket units: ${r.stderr}`);
  }, 120000);

  afterAll(() => stopAndCheckClean(sb), 60000);

  test('the main process gets fds 3 and 4, named, close-on-exec; every LISTEN_* variable is removed', async () => {
    const o = await runProbe(`/usr/bin/node ${PROBE} /root/main.json`, '/root/main.json');
    expect(o.before.LISTEN_PID).toBe(String(o.pid));
    expect(o.before.LISTEN_FDS).toBe('2');
    // systemd chooses the order of the two socket units; the names say which is which.
    const names = (o.before.LISTEN_FDNAMES ?? '').split(':');
    expect([...names].sort()).toEqual(['first', 'second']);
    expect(o.before.LISTEN_PIDFDID).toBeUndefined(); // systemd 252
    expect(o.ok).toBe(true);
    expect(o.fds).toEqual([
      { fd: 3, name: names[0], cloexec: true, socket: true },
      { fd: 4, name: names[1], cloexec: true, socket: true },
    ]);
    expect(o.left).toEqual([]);
  }, 60000);

  test('a child of the main process (LISTEN_PID is not its pid) gets nothing, and the variables are removed', async () => {
    const o = await runProbe(`/bin/sh -c '/usr/bin/node ${PROBE} /root/child.json; true'`, '/root/child.json');
    expect(Number(o.before.LISTEN_PID)).not.toBe(o.pid);
    expect(o.before.LISTEN_FDS).toBe('2');
    expect(o).toMatchObject({ ok: true, fds: [], left: [] });
  }, 60000);
});
