/**
 * What the daemon loads to serve: node:net (with the streams it pulls in) costs several milliseconds of every start,
 * and the native engine serves without it. Only the control socket, the clients and -address's checks load it
 * (src/util/lazy-modules.ts). A top-level import of node:net anywhere on the daemon's path would bring the cost back.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { exchange } from '../../src/cli/client';
import { encodeNameRequest, encodeSimpleRequest } from '../../src/protocol/codec';
import { NAMES_REQ, PORT_PLEASE2_REQ } from '../../src/protocol/constants';
import { freePort, SDEPMD_BIN } from '../support/daemons';
import { sleep } from '../support/wait';

let dir: string;
beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdepmd-modules-'))));
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

test('a daemon without a control socket serves its requests without ever loading node:net', async () => {
  const port = await freePort();
  const result = path.join(dir, 'loaded.json');
  const preload = path.join(dir, 'preload.js');
  fs.writeFileSync(
    preload,
    `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(result)}, ` +
      `JSON.stringify(process.moduleLoadList.filter((m) => m.startsWith('NativeModule '))))) ;\n`,
  );
  // stderr goes to a file: a pipe would make process.stderr a net.Socket.
  const stderr = fs.openSync(path.join(dir, 'stderr'), 'w');
  const env = { ...process.env };
  for (const name of ['NOTIFY_SOCKET', 'LISTEN_FDS', 'LISTEN_PID', 'NODE_OPTIONS']) delete env[name];
  const child = spawn(
    process.execPath,
    ['-r', preload, SDEPMD_BIN, '-port', String(port), '--control_socket', 'none'],
    { env, stdio: ['ignore', 'ignore', stderr] },
  );
  fs.closeSync(stderr);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let names: Buffer | null = null;
  for (let i = 0; i < 300 && names === null; i++) {
    names = await exchange({ host: '127.0.0.1', port }, encodeSimpleRequest(NAMES_REQ), 2000).catch(() => null);
    if (names === null) await sleep(50);
  }
  expect(names?.readUInt32BE(0)).toBe(port);
  const lookup = await exchange({ host: '127.0.0.1', port }, encodeNameRequest(PORT_PLEASE2_REQ, 'nobody'));
  expect([...lookup]).toEqual([0x77, 1]);
  child.kill('SIGINT');
  expect(await exited).toBe(0);
  const loaded = JSON.parse(fs.readFileSync(result, 'utf8')) as string[];
  // The check itself can fail: the daemon loaded other builtins, which the list shows.
  expect(loaded).toContain('NativeModule fs');
  expect(loaded).not.toContain('NativeModule net');
}, 30_000);
