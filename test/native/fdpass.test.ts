/**
 * The fd-passing addon (native/sdepmd/fdpass.c) and the hand-over built on it, for real: pidfd_getfd on a live
 * process, and adoption frames with SCM_RIGHTS through the daemon's real control server. (The hand-over's JSON is
 * checked in test/unit/handover.test.ts; the DUMP decoder in test/unit/codec.test.ts.)
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  closeFd,
  dupFd,
  FdPassError,
  pidfdGetfd,
  pidfdOpen,
  recvFds,
  sendFds,
  setInheritable,
} from '../../src/native/fdpass';
import { loadAddon } from '../../src/native/addon';
import { startControlServer, type ControlProvider } from '../../src/daemon/control';
import { type NodeInfoRecord } from '../../src/daemon/handover';
import { sendToDaemon } from '../../src/operator/adopt';
import { socketFd } from '../../src/engine/socket-fd';

const ident = (fd: number) => {
  const st = fs.fstatSync(fd, { bigint: true });
  return `${st.dev}:${st.ino}`;
};

/** A connected TCP pair on loopback. */
async function tcpPair(): Promise<{ client: net.Socket; server: net.Socket; close(): void }> {
  const listener = net.createServer();
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  const port = (listener.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((r) => listener.once('connection', r));
  const client = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => client.once('connect', () => r()));
  const server = await accepted;
  listener.close();
  return { client, server, close: () => (client.destroy(), server.destroy()) };
}

/** Native TypeErrors come from another realm than jest's: compare by name. */
function expectTypeError(fn: () => unknown): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect((thrown as Error | undefined)?.name).toBe('TypeError');
}

describe('fdpass addon', () => {
  test('loads with every function', () => {
    expect(loadAddon()).not.toBeInstanceOf(Error);
  });

  test('pidfd_getfd copies a live fd of a process: same socket, close-on-exec', async () => {
    const pair = await tcpPair();
    const fd = socketFd(pair.server);
    const pidfd = pidfdOpen(process.pid);
    const copy = pidfdGetfd(pidfd, fd);
    expect(ident(copy)).toBe(ident(fd));
    closeFd(pidfd);
    // Writing on the copy reaches the peer.
    const got = new Promise<string>((r) => pair.client.once('data', (d: Buffer) => r(d.toString())));
    fs.writeSync(copy, 'through the copy');
    expect(await got).toBe('through the copy');
    closeFd(copy);
    pair.close();
  });

  test('errors are errno names; bad arguments are TypeErrors', () => {
    expect(() => pidfdGetfd(1 << 30, 3)).toThrow(FdPassError);
    const devnull = fs.openSync('/dev/null', 'r');
    expect(() => recvFds(devnull, 16, 1)).toThrow(/ENOTSOCK/);
    expect(() => sendFds(devnull, Buffer.from('x'), [])).toThrow(/ENOTSOCK/);
    closeFd(devnull);
    const addon = loadAddon();
    if (addon instanceof Error) throw addon;
    expectTypeError(() => addon.sendFds(-1, Buffer.from('x'), []));
    expectTypeError(() => addon.sendFds(3, Buffer.alloc(0), []));
    expectTypeError(() => addon.sendFds(3, Buffer.from('x'), new Array<number>(254).fill(0)));
    expectTypeError(() => addon.recvFds(3, 0, 1));
    expectTypeError(() => addon.execve('', ['x'], []));
    expectTypeError(() => addon.execve('/bin/true', [], []));
    expectTypeError(() => addon.execve('/bin/true', ['a\u0000b'], []));
    expect(addon.execve('/nonexistent/binary', ['x'], [])).toBe(-os.constants.errno.ENOENT);
    expectTypeError(() => addon.pidfdOpen(0));
  });

  test('setInheritable and dupFd', () => {
    const fd = fs.openSync('/dev/null', 'r');
    const copy = dupFd(fd);
    expect(copy).toBeGreaterThan(2);
    expect(ident(copy)).toBe(ident(fd));
    setInheritable(copy, true);
    setInheritable(copy, false);
    closeFd(copy);
    closeFd(fd);
    expect(() => setInheritable(copy, false)).toThrow(/EBADF/);
  });
});

describe('adoption over the control socket (SCM_RIGHTS)', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdepmd-fdpass-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const info = (name: string, port: number): NodeInfoRecord => ({
    name: Buffer.from(name).toString('hex'),
    port,
    nodeType: 77,
    protocol: 0,
    highestVersion: 6,
    lowestVersion: 5,
    extra: '',
  });

  test('250 registrations (two frames) arrive with working connections, in order', async () => {
    const pairs = await Promise.all(Array.from({ length: 250 }, () => tcpPair()));
    let received: { info: NodeInfoRecord; fd: number }[] = [];
    const provider: ControlProvider = {
      status: () => {
        throw new Error('unused');
      },
      names: () => [],
      adopt: (nodes) => {
        received = [...nodes];
        return { adopted: nodes.map((n) => Buffer.from(n.info.name, 'hex').toString()), refused: [] };
      },
    };
    const control = path.join(dir, 'control.sock');
    const server = await startControlServer(control, provider, (m) => {
      throw new Error(m);
    });
    const taken = pairs.map((p, i) => ({ info: info(`n${i}`, 10000 + i), display: `n${i}`, fd: socketFd(p.server) }));
    const reply = await sendToDaemon(control, taken);
    expect(reply.adopted).toHaveLength(250);
    expect(received.map((r) => r.info.port)).toEqual(pairs.map((_, i) => 10000 + i));
    for (const [i, r] of received.entries()) expect(ident(r.fd)).toBe(ident(socketFd(pairs[i]!.server)));
    // The received copy talks to the node.
    const got = new Promise<string>((r) => pairs[7]!.client.once('data', (d: Buffer) => r(d.toString())));
    fs.writeSync(received[7]!.fd, 'hello n7');
    expect(await got).toBe('hello n7');
    for (const r of received) closeFd(r.fd);
    for (const p of pairs) p.close();
    server?.close();
  });

  test('a frame whose node count and fd count differ is refused, and its fds closed', async () => {
    const control = path.join(dir, 'control.sock');
    const provider: ControlProvider = {
      status: () => ({}) as never,
      names: () => [],
      adopt: () => ({ adopted: ['x'], refused: [] }),
    };
    const server = await startControlServer(control, provider, () => undefined);
    const pair = await tcpPair();
    const reply = await new Promise<string>((resolve) => {
      let input = '';
      const c = net.createConnection(control, () => c.write('adopt\n'));
      c.on('data', (d: Buffer) => {
        input += d.toString();
        if (input === 'ready\n') {
          const json = Buffer.from(JSON.stringify({ nodes: [info('a', 1), info('b', 2)], last: true }));
          const head = Buffer.alloc(4);
          head.writeUInt32BE(json.length);
          sendFds(socketFd(c), Buffer.concat([head, json]), [socketFd(pair.server)]);
          input = '';
        }
      });
      c.on('close', () => resolve(input));
    });
    expect(reply).toMatch(/names 2 nodes but carried 1 fds/);
    pair.close();
    server?.close();
  });
});
