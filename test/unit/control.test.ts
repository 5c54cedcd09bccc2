/** The control socket (src/daemon/control.ts): a real unix socket in a temporary directory. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createServer, type Server } from 'node:net';
import {
  ControlRefusal,
  decodeControlReply,
  queryControl,
  startControlServer,
  type ControlProvider,
  type NodeRecord,
  type StatusRecord,
} from '../../src/daemon/control';
import { requestUpgrade } from '../../src/operator/reload';

const STATUS: StatusRecord = {
  version: '0.1.0',
  pid: 42,
  startedAt: '2026-11-29T00:00:00.000Z',
  uptimeSeconds: 7,
  underSystemd: false,
  logLevel: 'info',
  sockets: [{ address: '127.0.0.1', port: 4369, source: '127.0.0.1:4369' }],
  upgrades: 2,
  registered: 1,
  openConnections: 1,
  refusals: { 'bad request': 0 },
  counts: {
    connections: 3,
    lookups: 2,
    lookupsFound: 1,
    namesRequests: 0,
    registrations: 1,
    unregistrations: 0,
    refused: 0,
    limitHits: 0,
  },
  fdStore: { enabled: false, stored: 0, restored: 0, notRestored: 0, detail: 'disabled (--fdstore_max 0)' },
};
const NODES: NodeRecord[] = [
  {
    name: 'a',
    port: 4000,
    nodeType: 'normal',
    protocol: 0,
    highestVersion: 6,
    lowestVersion: 5,
    extra: '',
    creation: 3,
    registeredAt: '2026-11-29T00:00:01.000Z',
    peer: '127.0.0.1',
  },
  {
    name: 'b',
    port: 4001,
    nodeType: 66,
    protocol: 0,
    highestVersion: 6,
    lowestVersion: 5,
    extra: 'ff',
    creation: null,
  },
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

describe('control replies are checked, not trusted', () => {
  /** A fake daemon that answers every query with `reply`. */
  async function fakeDaemon(reply: string): Promise<string> {
    const socketPath = path.join(dir, `fake-${servers.length}.sock`);
    const server = createServer((socket) => socket.once('data', () => socket.end(reply)));
    servers.push(server);
    await new Promise<void>((r) => server.listen(socketPath, () => r()));
    return socketPath;
  }

  test("the daemon's own error text becomes the error", async () => {
    const socketPath = await fakeDaemon('{"error":"unknown command \\"x\\""}\n');
    await expect(queryControl(socketPath, 'status')).rejects.toThrow('unknown command "x"');
  });

  test('not JSON, or JSON of the wrong shape: an error naming the field', async () => {
    await expect(queryControl(await fakeDaemon('garbage'), 'status')).rejects.toThrow(
      /^malformed answer to "status" on .*: not JSON/,
    );
    const wrong = { ...STATUS, counts: { ...STATUS.counts, lookups: 'many' } };
    await expect(queryControl(await fakeDaemon(JSON.stringify(wrong)), 'status')).rejects.toThrow(
      /malformed answer to "status" on .*fake-\d+\.sock: counts\.lookups: expected an integer from 0 to \d+, got "many"$/,
    );
    await expect(queryControl(await fakeDaemon(JSON.stringify(STATUS)), 'names')).rejects.toThrow(
      /: expected an array, got/,
    );
  });

  test('`sdepmd reload` reads the upgrade answer checked: success, failure, refusal, wrong shape', async () => {
    const ok = { ok: true, fromVersion: '0.1.0', toVersion: '0.2.0', pid: 7 };
    expect(decodeControlReply('upgrade', JSON.stringify(ok), 'x')).toEqual(ok);
    expect(decodeControlReply('upgrade', '{"ok":false,"error":"check failed"}', 'x')).toEqual({
      ok: false,
      error: 'check failed',
    });
    expect(() => decodeControlReply('upgrade', '{"ok":true,"toVersion":"0.2.0"}', 'x')).toThrow(
      /^malformed answer to "upgrade" on x: the document: expected \{"ok":true,/,
    );
    // An older daemon that does not know the command: the old code still serves, and reload says so.
    const old = await fakeDaemon('{"error":"unknown command \\"upgrade\\""}\n');
    expect(await requestUpgrade(old, 5000)).toEqual({ ok: false, error: 'unknown command "upgrade"' });
    await expect(requestUpgrade(await fakeDaemon('{"ok":1}'), 5000)).rejects.toThrow(/malformed answer to "upgrade"/);
  });

  test('`sdepmd adopt` reads the adopt answer checked', () => {
    const reply = { adopted: ['a'], refused: [{ name: 'b', reason: 'already registered here' }] };
    expect(decodeControlReply('adopt', JSON.stringify(reply), 'x')).toEqual(reply);
    expect(() => decodeControlReply('adopt', '{"adopted":["a"],"refused":[{"name":"b"}]}', 'x')).toThrow(
      'malformed answer to "adopt" on x: refused[0].reason: expected a string, got nothing',
    );
    expect(() => decodeControlReply('adopt', '{"error":"adopt: a malformed frame"}', 'x')).toThrow(ControlRefusal);
  });

  test('each field of a node record', () => {
    const names = (nodes: unknown): unknown => decodeControlReply('names', JSON.stringify(nodes), 'x');
    expect(names(NODES)).toEqual(NODES);
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ port: 70000 }, /\[0\]\.port: expected an integer from 0 to 65535/],
      [{ nodeType: 'weird' }, /\[0\]\.nodeType: expected "normal", "hidden" or a number from 0 to 255, got "weird"/],
      [{ extra: 'xyz' }, /\[0\]\.extra: expected hex bytes/],
      [{ creation: -1 }, /\[0\]\.creation: expected an integer from 0 to 4294967295/],
      [{ name: 5 }, /\[0\]\.name: expected a string, got 5/],
      [{ peer: 1 }, /\[0\]\.peer: expected a string/],
    ];
    for (const [change, error] of bad) expect(() => names([{ ...NODES[0], ...change }])).toThrow(error);
    // Unknown fields are dropped; optional ones may be absent.
    expect(names([{ ...NODES[1], more: 1 }])).toEqual([NODES[1]]);
  });
});
