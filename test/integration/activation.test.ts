/**
 * The systemd glue without systemd: activate.py does what a socket unit does (binds, passes fds 3.., sets
 * LISTEN_*), and notify-sink.py plays NOTIFY_SOCKET. The daemon runs as `bin/sdepmd -systemd`, as epmd.service does.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { names, portPlease, register } from '../../src/cli/client';
import { REPO, SDEPMD_BIN } from '../support/daemons';
import { startSink, type Sink } from '../support/notify-sink';
import { loadAddon } from '../../src/native/addon';
import { ssBacklog } from '../support/ss';

function loadAddonOrThrow() {
  const addon = loadAddon();
  if (addon instanceof Error) throw addon;
  return addon;
}

const ACTIVATE = path.join(__dirname, '..', 'support', 'activate.py');

interface Activated {
  child: ChildProcess;
  ports: number[];
  stderr(): string;
  exited: Promise<number | null>;
}

async function activate(
  specs: string[],
  env: NodeJS.ProcessEnv,
  args: string[] = ['-systemd'],
  bin = SDEPMD_BIN,
): Promise<Activated> {
  const child = spawn('python3', [ACTIVATE, ...specs, '--', process.execPath, bin, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const first = await new Promise<string>((resolve, reject) => {
    readline.createInterface({ input: child.stdout }).once('line', resolve);
    void exited.then((code) => reject(new Error(`exited ${code}: ${stderr}`)));
  });
  return { child, ports: (JSON.parse(first) as { ports: number[] }).ports, stderr: () => stderr, exited };
}

let dir: string;
let sink: Sink | null = null;
let daemon: Activated | null = null;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdepmd-activation-'));
});
afterEach(async () => {
  daemon?.child.kill('SIGKILL');
  await daemon?.exited;
  await sink?.close();
  daemon = null;
  sink = null;
  fs.rmSync(dir, { recursive: true, force: true });
});

async function nextMessage(s: Sink, pattern: RegExp): Promise<string> {
  for (let i = 0; i < 50; i++) {
    const m = (await s.next()).message;
    if (pattern.test(m)) return m;
  }
  throw new Error(`no notify message matching ${pattern}`);
}

test('serves every passed socket (IPv4 and IPv6), reports READY=1 only then, STATUS, and STOPPING=1 on SIGTERM', async () => {
  sink = await startSink(dir, 50);
  daemon = await activate(['epmd.socket=tcp4:127.0.0.1', 'epmd.socket=tcp6:::1'], { NOTIFY_SOCKET: sink.path });
  const [v4, v6] = daemon.ports as [number, number];

  const status = await nextMessage(sink, /STATUS=|READY=1/);
  expect(status).toBe('STATUS=0 nodes registered, 0 lookups served');
  expect(await sink.next()).toMatchObject({ message: 'READY=1' });
  // READY=1 came after both sockets were being served: both answer now.
  const node = await register(
    { host: '127.0.0.1', port: v4 },
    { name: 'act', port: 5555, nodeType: 77, protocol: 0, highestVersion: 6, lowestVersion: 5 },
  );
  expect(node.result).toBe(0);
  expect((await names({ host: '::1', port: v6 })).nodes).toEqual([{ name: 'act', port: 5555 }]);
  // NAMES reports the port of the socket systemd passed.
  expect((await names({ host: '127.0.0.1', port: v4 })).epmdPort).toBe(v4);
  await portPlease({ host: '::1', port: v6 }, 'act');
  expect(await nextMessage(sink, /^STATUS=/)).toBe('STATUS=1 node registered, 1 lookup served');

  daemon.child.kill('SIGTERM');
  expect(await nextMessage(sink, /STOPPING=1/)).toBe('STOPPING=1');
  expect(await daemon.exited).toBe(0);
  await node.close();
  expect(daemon.stderr()).toMatch(
    /serving \[?127\.0\.0\.1\]?:\d+ \(fd 3 \(epmd\.socket\)\), \[::1\]:\d+ \(fd 4 \(epmd\.socket\)\) \(socket-activated\)/,
  );
  expect(daemon.stderr()).toMatch(/shutting down: SIGTERM received/);
});

test('pings the watchdog at half of WATCHDOG_USEC', async () => {
  sink = await startSink(dir, 50);
  daemon = await activate(['epmd.socket=tcp4:127.0.0.1'], { NOTIFY_SOCKET: sink.path, WATCHDOG_USEC: '400000' });
  await nextMessage(sink, /READY=1/);
  const t0 = Date.now();
  await nextMessage(sink, /WATCHDOG=1/);
  await nextMessage(sink, /WATCHDOG=1/);
  await nextMessage(sink, /WATCHDOG=1/);
  const elapsed = Date.now() - t0;
  // Three pings at ~200 ms apart, not at the 400 ms deadline.
  expect(elapsed).toBeLessThan(1200);
  expect(daemon.stderr()).toMatch(/watchdog: pinging systemd every 200 ms/);
});

test("LISTEN_PIDFDID (systemd >= 256): our own pidfd id is served; another process's means the fds are not ours", async () => {
  const own = await activate(['--pidfdid=own', 'epmd.socket=tcp4:127.0.0.1'], {});
  daemon = own;
  await waitFor(() => /serving .*\(socket-activated\)/.test(own.stderr()));
  expect((await names({ host: '127.0.0.1', port: own.ports[0]! })).nodes).toEqual([]);
  own.child.kill('SIGTERM');
  await own.exited;

  // A pid can be reused; the pidfd id cannot. With pidfs (Linux >= 6.9) a wrong one means "not for us".
  const pidfs = typeof loadAddonOrThrow().pidfdInodeId(process.pid) === 'bigint';
  const other = await activate(['--pidfdid=1', 'epmd.socket=tcp4:127.0.0.1'], {});
  daemon = other;
  if (pidfs) {
    expect(await other.exited).toBe(1);
    expect(other.stderr()).toBe(
      'sdepmd: -systemd: no sockets were passed (LISTEN_FDS is unset); start sdepmd through epmd.socket\n',
    );
  } else {
    await waitFor(() => /serving .*\(socket-activated\)/.test(other.stderr()));
  }
});

test('SIGHUP (live upgrade) says RELOADING=1 with MONOTONIC_USEC, then READY=1 from the same process, which runs the new code', async () => {
  sink = await startSink(dir, 50);
  daemon = await activate(['epmd.socket=tcp4:127.0.0.1'], { NOTIFY_SOCKET: sink.path });
  await nextMessage(sink, /^READY=1$/);
  const before = process.hrtime.bigint() / 1000n;
  daemon.child.kill('SIGHUP');
  const reloading = await nextMessage(sink, /^RELOADING=1/);
  const after = process.hrtime.bigint() / 1000n;
  const usec = BigInt(/^RELOADING=1\nMONOTONIC_USEC=(\d+)$/.exec(reloading)![1]!);
  // CLOCK_MONOTONIC is one clock for the whole machine: the daemon's reading falls between ours.
  expect(usec >= before && usec <= after).toBe(true);
  // The new code runs in the same process (execve): no MAINPID=, just READY=1 when it serves.
  const ready = await nextMessage(sink, /^(READY=1|MAINPID=)/);
  expect(ready).toBe('READY=1');
  await waitFor(() => /live upgrade: \S+ \(pid (\d+)\) → \S+ \(pid \1\)/.test(daemon!.stderr()));
  expect(daemon.stderr()).toContain(`(pid ${daemon.child.pid}) →`);
  // Still serving the passed socket, and a stop is an ordinary one.
  await names({ host: '127.0.0.1', port: daemon.ports[0]! });
  await new Promise((r) => setTimeout(r, 200));
  daemon.child.kill('SIGTERM');
  await nextMessage(sink, /^STOPPING=1$/);
  expect(await daemon.exited).toBe(0);
});

test('-systemd without passed sockets fails clearly', async () => {
  const child = spawn(process.execPath, [SDEPMD_BIN, '-systemd'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LISTEN_FDS: '' },
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  expect(code).toBe(1);
  expect(stderr).toBe(
    'sdepmd: -systemd: no sockets were passed (LISTEN_FDS is unset); start sdepmd through epmd.socket\n',
  );
});

test('SIGUSR1 raises and SIGUSR2 lowers the log level at run time', async () => {
  daemon = await activate(['epmd.socket=tcp4:127.0.0.1'], {});
  const endpoint = { host: '127.0.0.1', port: daemon.ports[0]! };
  await waitFor(() => /serving/.test(daemon!.stderr()));
  await names(endpoint);
  expect(daemon.stderr()).not.toMatch(/NAMES from/);
  daemon.child.kill('SIGUSR1');
  await waitFor(() => /log level info -> debug/.test(daemon!.stderr()));
  await names(endpoint);
  await waitFor(() => /debug NAMES from 127\.0\.0\.1/.test(daemon!.stderr()));
  daemon.child.kill('SIGUSR2');
  await waitFor(() => /log level debug -> info/.test(daemon!.stderr()));
  const before = daemon.stderr().length;
  await names(endpoint);
  await new Promise((r) => setTimeout(r, 200));
  expect(daemon.stderr().slice(before)).not.toMatch(/NAMES from/);
});

async function waitFor(predicate: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('the passed socket keeps its backlog (Backlog=), also across a live upgrade, where Node alone would set 511', async () => {
  sink = await startSink(dir, 50);
  daemon = await activate(['--backlog=1234', 'epmd.socket=tcp4:127.0.0.1'], { NOTIFY_SOCKET: sink.path });
  await nextMessage(sink, /^READY=1$/);
  const port = daemon.ports[0]!;
  expect(ssBacklog(port)).toBe(1234);
  daemon.child.kill('SIGHUP');
  await nextMessage(sink, /^RELOADING=1/);
  await nextMessage(sink, /^READY=1$/);
  await waitFor(() => /live upgrade: /.test(daemon!.stderr()));
  expect((await names({ host: '127.0.0.1', port })).epmdPort).toBe(port);
  expect(ssBacklog(port)).toBe(1234);
});

/**
 * A copy of the built tree (bin/, dist/, the addon, package.json; node_modules linked) that a test may change as
 * "the new code" of a live upgrade.
 */
function copyOfTheBuild(into: string): { bin: string; dist: string } {
  for (const part of ['bin', 'dist', 'package.json', path.join('native', 'sdepmd', 'build', 'Release', 'sdepmd.node')])
    fs.cpSync(path.join(REPO, part), path.join(into, part), { recursive: true, verbatimSymlinks: true });
  fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(into, 'node_modules'));
  return { bin: path.join(into, 'bin', 'sdepmd'), dist: path.join(into, 'dist') };
}

test('new code that cannot read the hand-over fails the check: the old code serves on, every registration kept', async () => {
  const build = copyOfTheBuild(path.join(dir, 'build'));
  sink = await startSink(dir, 50);
  daemon = await activate(['epmd.socket=tcp4:127.0.0.1'], { NOTIFY_SOCKET: sink.path }, ['-systemd'], build.bin);
  await nextMessage(sink, /^READY=1$/);
  const endpoint = { host: '127.0.0.1', port: daemon.ports[0]! };
  const node = await register(endpoint, {
    name: 'keeper',
    port: 4711,
    nodeType: 77,
    protocol: 0,
    highestVersion: 6,
    lowestVersion: 5,
  });
  expect(node.result).toBe(0);
  // The new code reads only a hand-over of format 2, as a future release with another state format would.
  const handover = path.join(build.dist, 'daemon', 'handover.js');
  const code = fs.readFileSync(handover, 'utf8');
  const changed = code.replace('format: (0, shape_1.literal)(1)', 'format: (0, shape_1.literal)(2)');
  expect(changed).not.toBe(code);
  fs.writeFileSync(handover, changed);

  daemon.child.kill('SIGHUP');
  await nextMessage(sink, /^RELOADING=1/);
  expect(await nextMessage(sink, /^(READY=1|MAINPID=|STOPPING=1)/)).toBe('READY=1');
  await waitFor(() => /live upgrade failed, still serving/.test(daemon!.stderr()));
  expect(daemon.stderr()).toContain(
    "this code cannot take over the running daemon's hand-over: an invalid upgrade state: format: expected 2, got 1",
  );
  expect(daemon.stderr()).not.toMatch(/handing over/);
  // The same process serves on, with the registration and its creation, on the node's own connection.
  expect(await portPlease(endpoint, 'keeper')).toMatchObject({ found: true, port: 4711 });
  expect((await names(endpoint)).nodes).toEqual([{ name: 'keeper', port: 4711 }]);
  expect(node.socket.readyState).toBe('open');
  await node.close();
});
