/** The control socket (src/daemon/control.ts): a real unix socket in a temporary directory. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Server } from 'node:net';
import { queryControl, startControlServer, type ControlProvider, type NodeRecord, type StatusRecord } from '../../src/daemon/control';

const STATUS: StatusRecord = {
  version: '0.1.0',
  pid: 42,
  startedAt: '2026-11-29T00:00:00.000Z',
  uptimeSeconds: 7,
  underSystemd: false,
  logLevel: 'info',
  sockets: [{ address: '127.0.0.1', port: 4369, source: '127.0.0.1:4369' }],
  registered: 1,
  openConnections: 1,
  counts: { connections: 3, lookups: 2, lookupsFound: 1, namesRequests: 0, registrations: 1, unregistrations: 0, refused: 0, limitHits: 0 },
  fdStore: { enabled: false, stored: 0, restored: 0, detail: 'disabled (--fdstore_max 0)' },
};
const NODES: NodeRecord[] = [
  { name: 'a', port: 4000, nodeType: 'normal', protocol: 0, highestVersion: 6, lowestVersion: 5, extra: '', creation: 3, registeredAt: '2026-11-29T00:00:01.000Z', peer: '127.0.0.1' },
  { name: 'b', port: 4001, nodeType: 66, protocol: 0, highestVersion: 6, lowestVersion: 5, extra: 'ff', creation: null },
];
const PROVIDER: ControlProvider = { status: () => STATUS, names: () => NODES };

/** The process umask, read without changing it. */
function currentUmask(): number {
  const mask = process.umask(0o022);
  process.umask(mask);
  return mask;
}

let dir: string;
const servers: Server[] = [];
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdepmd-control-'));
});
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('control socket', () => {
  test('serves status and names as JSON, on a socket only its owner can use (0600)', async () => {
    const socketPath = path.join(dir, 'control-4369.sock');
    const errors: string[] = [];
    const server = await startControlServer(socketPath, PROVIDER, (m) => errors.push(m));
    expect(server).not.toBeNull();
    servers.push(server!);
    expect(fs.statSync(socketPath).mode & 0o777).toBe(0o600);
    expect(await queryControl(socketPath, 'status')).toEqual(STATUS);
    expect(await queryControl(socketPath, 'names')).toEqual(NODES);
    expect(errors).toEqual([]);
  });

  test('the umask is restored after listening, and also when listening fails', async () => {
    const before = currentUmask();
    const ok = await startControlServer(path.join(dir, 'ok.sock'), PROVIDER, () => undefined);
    servers.push(ok!);
    expect(currentUmask()).toBe(before);

    // A regular file where the socket should be: not removed (only stale sockets are), so bind fails.
    const taken = path.join(dir, 'taken.sock');
    fs.writeFileSync(taken, 'not a socket');
    const errors: string[] = [];
    expect(await startControlServer(taken, PROVIDER, (m) => errors.push(m))).toBeNull();
    expect(errors).toEqual([`control socket ${taken}: listen EADDRINUSE: address already in use ${taken}`]);
    expect(currentUmask()).toBe(before);
  });
});
