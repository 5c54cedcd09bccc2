/**
 * The operator commands against real daemons (no systemd here; test/e2e/operator.e2e.test.ts does the rest in a
 * real systemd): `status` names the cause when nothing answers (another epmd, permission, nothing listening), a
 * second daemon on a taken port says so in one line and no error, and `metrics` reads a running daemon.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort, SDEPMD_BIN, startDaemon, stopAll } from '../support/daemons';
import { allOf, cEpmdAvailable, peerDescribe } from '../support/peers';
import { register } from '../../src/cli/client';

afterAll(() => stopAll());

function sdepmd(
  args: string[],
  opts: { uid?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SDEPMD_BIN, ...args], {
      env: { ...process.env, ...opts.env, NODE_EXTRA_CA_CERTS: '' },
      ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {}),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

const isRoot = process.getuid?.() === 0;

peerDescribe('the C epmd', allOf(cEpmdAvailable()))('status when nothing answers, and a taken port', () => {
  test('another epmd (the C one) answers on the port: named, with the next command; exit 1', async () => {
    const c = await startDaemon('c-epmd');
    const r = await sdepmd([
      'status',
      '--port',
      String(c.port),
      '--control_socket',
      path.join(os.tmpdir(), `none-${c.port}.sock`),
    ]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      new RegExp(
        `^sdepmd status: (the C epmd \\(pid ${c.child.pid}\\)|another epmd) answers on port ${c.port}, not an sdepmd`,
      ),
    );
    expect(r.stderr).toContain(`  next:\n    epmd -port ${c.port} -names\n`);
    const json = await sdepmd([
      'status',
      '--json',
      '--port',
      String(c.port),
      '--control_socket',
      '/nonexistent/x.sock',
    ]);
    expect(JSON.parse(json.stdout)).toMatchObject({ answering: false, cause: 'other-epmd' });
    // names still lists what the other epmd has, through the EPMD protocol.
    expect((await sdepmd(['names', '--port', String(c.port), '--control_socket', '/nonexistent/x.sock'])).stdout).toBe(
      'no nodes registered\n',
    );
  });

  test('a second daemon on a taken port: one notice line, no error line, exit 0 (as the C epmd)', async () => {
    for (const holder of ['c-epmd', 'sdepmd'] as const) {
      const first = await startDaemon(holder, holder === 'sdepmd' ? { args: ['--control_socket', 'none'] } : {});
      const r = await sdepmd(['-port', String(first.port), '--control_socket', 'none']);
      expect({ holder, code: r.code, stdout: r.stdout }).toEqual({ holder, code: 0, stdout: '' });
      expect(r.stderr).toMatch(
        new RegExp(`^sdepmd: another epmd is already listening on \\S+ port ${first.port}; exiting\\n$`),
      );
      expect(r.stderr).not.toMatch(/error/i);
    }
  });
});

describe('status, names and metrics', () => {
  test('nothing listening: named, exit 1', async () => {
    const port = await freePort();
    for (const verb of ['status', 'names', 'metrics']) {
      const r = await sdepmd([verb, '--port', String(port), '--control_socket', '/nonexistent/x.sock']);
      expect({ verb, code: r.code, stdout: r.stdout }).toEqual({ verb, code: 1, stdout: '' });
      expect(r.stderr).toMatch(new RegExp(`^sdepmd ${verb}: nothing listens on port ${port}\\n`));
      expect(r.stderr).toContain('  next:\n');
    }
  });

  test('metrics from a running daemon, and --output', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdepmd-op-'));
    const control = path.join(dir, 'control.sock');
    const d = await startDaemon('sdepmd', { args: ['--control_socket', control] });
    const node = await register(
      { host: '127.0.0.1', port: d.port },
      { name: 'metrics_node', port: 4711, nodeType: 77, protocol: 0, highestVersion: 6, lowestVersion: 5 },
    );
    const r = await sdepmd(['metrics', '--port', String(d.port), '--control_socket', control]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^sdepmd_nodes_registered 1$/m);
    expect(r.stdout).toMatch(/^sdepmd_registrations_total 1$/m);
    expect(r.stdout).toMatch(/^sdepmd_build_info\{version="\d+\.\d+\.\d+"\} 1$/m);
    const file = path.join(dir, 'textfile', 'sdepmd.prom');
    expect(
      (await sdepmd(['metrics', '--port', String(d.port), '--control_socket', control, '--output', file])).code,
    ).toBe(0);
    expect(fs.readFileSync(file, 'utf8')).toMatch(/^sdepmd_up 1$/m);
    await node.close();
    await d.stop();
    // Down: --output writes sdepmd_up 0 and exits 0 (a timer must not fail every minute); the cause goes to stderr.
    const down = await sdepmd(['metrics', '--port', String(d.port), '--control_socket', control, '--output', file]);
    expect(down.code).toBe(0);
    expect(down.stderr).toMatch(/^sdepmd metrics: nothing listens/);
    expect(fs.readFileSync(file, 'utf8')).toMatch(/^sdepmd_up 0$/m);
    fs.rmSync(dir, { recursive: true });
  });

  (isRoot ? test : test.skip)('permission denied: a non-root user is told to use sudo', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdepmd-op-'));
    fs.chmodSync(dir, 0o755);
    const control = path.join(dir, 'control.sock');
    const d = await startDaemon('sdepmd', { args: ['--control_socket', control] });
    const r = await sdepmd(['status', '--port', String(d.port), '--control_socket', control], { uid: 65534 });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^sdepmd status: permission denied: the control socket is open to root and the daemon's user only\n/,
    );
    expect(r.stderr).toContain('you are uid 65534');
    expect(r.stderr).toContain('    sudo sdepmd status\n');
    // names works all the same, through the EPMD protocol.
    expect((await sdepmd(['names', '--port', String(d.port), '--control_socket', control], { uid: 65534 })).code).toBe(
      0,
    );
    await d.stop();
    fs.rmSync(dir, { recursive: true });
  });
});
