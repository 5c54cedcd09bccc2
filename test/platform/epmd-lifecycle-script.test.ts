/**
 * scripts/epmd-lifecycle.sh take-over decides by what holds the epmd port, before it changes anything. Run here on
 * a port of its own (ERL_EPMD_PORT), with a `systemctl` and an sdepmd binary that only record how they were called:
 *  - a program that is not an epmd holds the port: it says what, exits 3, ends nothing, starts nothing, and never
 *    runs `sdepmd adopt` (the holder still serves);
 *  - a real C epmd holds the port: it runs `sdepmd adopt --port P`;
 *  - nothing holds the port: with --start it starts epmd.socket.
 */
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { spawn, spawnSync } from 'child_process';
import { cEpmdAvailable, requirePeer } from '../support/peers';

const SCRIPT = path.resolve(__dirname, '..', '..', 'scripts', 'epmd-lifecycle.sh');

interface Run {
  code: number;
  stderr: string;
  calls: string[];
}

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdepmd-lifecycle-script.'));
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  // systemctl: `show` answers "no main process"; every call is recorded.
  fs.writeFileSync(
    path.join(bin, 'systemctl'),
    `#!/bin/sh\necho "systemctl $*" >> "${dir}/calls"\n[ "$1" = show ] && echo 0\nexit 0\n`,
    { mode: 0o755 },
  );
  fs.writeFileSync(path.join(bin, 'sdepmd'), `#!/bin/sh\necho "sdepmd $*" >> "${dir}/calls"\nexit 0\n`, {
    mode: 0o755,
  });
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function takeOver(port: number): Run {
  fs.rmSync(path.join(dir, 'calls'), { force: true });
  const r = spawnSync(SCRIPT, ['take-over', path.join(dir, 'bin', 'sdepmd'), '--start'], {
    encoding: 'utf8',
    env: { ...process.env, PATH: `${path.join(dir, 'bin')}:${process.env.PATH ?? ''}`, ERL_EPMD_PORT: String(port) },
    timeout: 30_000,
  });
  const calls = fs.existsSync(path.join(dir, 'calls'))
    ? fs.readFileSync(path.join(dir, 'calls'), 'utf8').trim().split('\n')
    : [];
  return { code: r.status ?? -1, stderr: r.stderr, calls };
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('epmd-lifecycle.sh take-over', () => {
  test('a program that is not an epmd on the port: says what, exits 3, changes nothing', async () => {
    const server = net.createServer((c) => c.end('still here'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const r = takeOver(port);
      expect(r.code).toBe(3);
      expect(r.stderr).toContain(`port ${port} is held by node (pid ${process.pid}`);
      expect(r.stderr).toMatch(/neither systemd's epmd\.socket nor a C epmd/);
      expect(r.stderr).toMatch(/changed nothing/);
      // Only the read-only question whether epmd.service runs sdepmd: no start, no reload, no adopt.
      expect(r.calls.every((c) => c.startsWith('systemctl show '))).toBe(true);
      const answer = await new Promise<string>((resolve, reject) => {
        const c = net.connect(port, '127.0.0.1');
        let got = '';
        c.on('data', (b) => (got += b.toString()));
        c.on('end', () => resolve(got));
        c.on('error', reject);
      });
      expect(answer).toBe('still here');
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  test('nothing on the port: --start starts epmd.socket, and nothing is adopted', async () => {
    const r = takeOver(await freePort());
    expect(r.code).toBe(0);
    expect(r.calls).toContain('systemctl start epmd.socket');
    expect(r.calls.some((c) => c.startsWith('sdepmd'))).toBe(false);
  });

  const epmd = cEpmdAvailable();
  const withEpmd = requirePeer('the C epmd (erlang-base)', epmd) ? test : test.skip;
  withEpmd('a C epmd on the port: it is adopted (sdepmd adopt --port P), nothing else started', async () => {
    const port = await freePort();
    const child = spawn(epmd.path ?? 'epmd', ['-port', String(port)], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 100; i++) {
        const up = await new Promise<boolean>((resolve) => {
          const c = net.connect(port, '127.0.0.1', () => (c.destroy(), resolve(true)));
          c.on('error', () => resolve(false));
        });
        if (up) break;
        await sleep(50);
      }
      const r = takeOver(port);
      expect(r.code).toBe(0);
      expect(r.calls).toContain(`sdepmd adopt --port ${port}`);
      expect(r.calls).not.toContain('systemctl start epmd.socket');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
