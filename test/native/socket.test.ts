/**
 * The addon's listenBacklog (native/sdepmd/socket.c), on real sockets; `ss -ltn` (Send-Q of a listening socket)
 * says what the kernel has.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import { loadAddon } from '../../src/native/addon';
import { ssBacklog } from '../support/ss';

describe("the addon's listenBacklog", () => {
  const addon = loadAddon();
  if (addon instanceof Error) throw addon;

  test('reads the backlog of a listening socket, as ss shows it; other fds get a negative errno', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0, backlog: 123 }, resolve));
    const port = (server.address() as net.AddressInfo).port;
    const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
    expect(addon.listenBacklog(fd)).toBe(123);
    expect(ssBacklog(port)).toBe(123);
    // A connected TCP socket is not listening: -EINVAL.
    const client = net.connect(port, '127.0.0.1');
    await new Promise((r) => client.once('connect', r));
    const clientFd = (client as unknown as { _handle: { fd: number } })._handle.fd;
    expect(addon.listenBacklog(clientFd)).toBe(-os.constants.errno.EINVAL);
    client.destroy();
    // A file is not a socket; a closed fd is not open.
    const file = fs.openSync(__filename, 'r');
    expect(addon.listenBacklog(file)).toBe(-os.constants.errno.ENOTSOCK);
    fs.closeSync(file);
    expect(addon.listenBacklog(file)).toBe(-os.constants.errno.EBADF);
    await new Promise((r) => server.close(r));
  });

  test("bad arguments throw (a TypeError from the addon, which is another realm than jest's)", () => {
    const bad = addon as unknown as Record<string, (...args: unknown[]) => unknown>;
    const thrown = (f: () => unknown): string => {
      try {
        f();
      } catch (err) {
        return `${(err as Error).name}: ${(err as Error).message}`;
      }
      return 'nothing thrown';
    };
    expect(thrown(() => bad.listenBacklog!())).toBe('TypeError: listenBacklog(fd) expects 1 argument');
    expect(thrown(() => bad.listenBacklog!(-1))).toMatch(/^TypeError: fd must be an integer/);
    expect(thrown(() => bad.listenBacklog!('3'))).toMatch(/^TypeError: fd must be an integer/);
    expect(thrown(() => bad.listenBacklog!(1.5))).toMatch(/^TypeError: fd must be an integer/);
  });
});
