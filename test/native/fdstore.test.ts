/**
 * Real end-to-end tests of the fd-store addon: a python3 AF_UNIX datagram sink plays systemd's
 * NOTIFY_SOCKET and reports what recvmsg() got (text + SCM_RIGHTS fds, fstat()ed) as JSON.
 * Requires the addon to be built: npx node-gyp rebuild --directory native/sdepmd
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  DEFAULT_ADDON_PATH,
  composeRemoveMessage,
  composeStoreMessage,
  openFdStore,
  requireSocketFd,
  validateFdName,
} from '../../src/systemd/fdstore';

import { loadAddon } from '../../src/native/addon';
import { startSink } from '../support/notify-sink';

/*
 * Jest gives each test file a *copy* of process.env, so assigning process.env.NOTIFY_SOCKET here never
 * reaches the C environment that libsystemd's getenv() reads. The real-socket scenarios therefore run
 * in a child `node` that loads src/systemd/fdstore.ts (transpiled on the fly, from its real location so
 * the default addon path is exercised) with NOTIFY_SOCKET set in its genuine environment.
 */
const REPO = path.join(__dirname, '..', '..');
const CHILD_PRELUDE = `
const fs = require('node:fs'), net = require('node:net'), ts = require('typescript');
require.extensions['.ts'] = (m, f) => m._compile(ts.transpileModule(fs.readFileSync(f, 'utf8'), {
  fileName: f, compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } }).outputText, f);
const fdstore = require(${JSON.stringify(path.join(REPO, 'src', 'systemd', 'fdstore.ts'))});
const ident = (fd) => { const st = fs.fstatSync(fd, { bigint: true }); return { dev: String(st.dev), ino: String(st.ino) }; };
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const attempt = (f) => { try { f(); return null; } catch (e) { return e.message; } };
`;

async function runChild(body: string, notifySocket: string | undefined): Promise<Record<string, unknown>> {
  const env: NodeJS.ProcessEnv = { ...process.env, NOTIFY_SOCKET: notifySocket };
  if (notifySocket === undefined) delete env.NOTIFY_SOCKET;
  const child = spawn(
    process.execPath,
    ['-e', `${CHILD_PRELUDE}\n(async () => {\n${body}\n})().catch((e) => { console.error(e); process.exit(1); });`],
    { cwd: REPO, env },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`child node exited ${code}; stderr: ${stderr}`);
  return stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .reduce((a, b) => ({ ...a, ...b }), {});
}

let tmp: string;
const savedNotifySocket = process.env.NOTIFY_SOCKET;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sdepmd-fdstore-'));
  delete process.env.NOTIFY_SOCKET;
});

afterEach(() => {
  if (savedNotifySocket === undefined) delete process.env.NOTIFY_SOCKET;
  else process.env.NOTIFY_SOCKET = savedNotifySocket;
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('message composition and FDNAME validation', () => {
  test('composes FDSTORE and FDSTOREREMOVE messages', () => {
    expect(composeStoreMessage('x')).toBe('FDSTORE=1\nFDNAME=x');
    expect(composeRemoveMessage('node-a@host')).toBe('FDSTOREREMOVE=1\nFDNAME=node-a@host');
  });

  test('composition refuses names that could inject extra fields', () => {
    expect(() => composeStoreMessage('x\nFDSTOREREMOVE=1')).toThrow(/invalid name/);
    expect(() => composeRemoveMessage('a:b')).toThrow(/':'/);
  });

  test('validateFdName follows systemd fdname_is_valid (plus non-empty)', () => {
    expect(validateFdName('x')).toBeNull();
    expect(validateFdName('reg.1 node@host ~!')).toBeNull();
    expect(validateFdName('a'.repeat(255))).toBeNull();
    expect(validateFdName('a'.repeat(256))).toMatch(/255/);
    expect(validateFdName('')).toMatch(/empty/);
    expect(validateFdName('a:b')).toMatch(/':'/);
    expect(validateFdName('a\nb')).toMatch(/non-printable/);
    expect(validateFdName('a\tb')).toMatch(/non-printable/);
    expect(validateFdName('a\x7fb')).toMatch(/non-printable/);
    expect(validateFdName('nöde')).toMatch(/non-ASCII/);
  });
});

describe('native addon', () => {
  // Typed loosely on purpose: the tests call it with wrong arguments.
  const addon = loadAddon() as unknown as { notifyWithFds: (...args: unknown[]) => number };

  test('exports notifyWithFds', () => {
    expect(Object.keys(addon)).toContain('notifyWithFds');
  });

  // The addon throws the main realm's TypeError, not the jest sandbox's, so compare by name.
  const expectTypeError = (f: () => unknown): void => {
    let caught: unknown = null;
    try {
      f();
    } catch (e) {
      caught = e;
    }
    expect(caught).not.toBeNull();
    expect((caught as Error).name).toBe('TypeError');
  };

  test('throws TypeError on bad arguments', () => {
    expectTypeError(() => addon.notifyWithFds());
    expectTypeError(() => addon.notifyWithFds('READY=1'));
    expectTypeError(() => addon.notifyWithFds(1, []));
    expectTypeError(() => addon.notifyWithFds('', []));
    expectTypeError(() => addon.notifyWithFds('a\0b', []));
    expectTypeError(() => addon.notifyWithFds('READY=1', 3));
    expectTypeError(() => addon.notifyWithFds('READY=1', ['3']));
    expectTypeError(() => addon.notifyWithFds('READY=1', [-1]));
    expectTypeError(() => addon.notifyWithFds('READY=1', [1.5]));
    expectTypeError(() => addon.notifyWithFds('READY=1', new Array(769).fill(0)));
  });

  test('returns 0 when NOTIFY_SOCKET is unset (child process with a clean environment)', async () => {
    const child = await runChild(
      `
      const addon = require(${JSON.stringify(DEFAULT_ADDON_PATH)});
      out({ r: addon.notifyWithFds('FDSTORE=1\\nFDNAME=x', [0]), store: fdstore.openFdStore().available });
    `,
      undefined,
    );
    expect(child).toEqual({ r: 0, store: false });
  });
});

describe('openFdStore without systemd', () => {
  test('returns a no-op store when NOTIFY_SOCKET is unset', () => {
    const store = openFdStore();
    expect(store.available).toBe(false);
    expect(store.unavailableReason).toMatch(/NOTIFY_SOCKET/);
    expect(() => store.store('x', 0)).not.toThrow();
    expect(() => store.remove('x')).not.toThrow();
  });

  test('returns a no-op store when the addon is missing', () => {
    process.env.NOTIFY_SOCKET = path.join(tmp, 'nobody-listens');
    const store = openFdStore({ addonPath: path.join(tmp, 'missing.node') });
    expect(store.available).toBe(false);
    expect(store.unavailableReason).toMatch(/cannot load the native addon/);
  });

  test('store() validates before calling into libsystemd', () => {
    process.env.NOTIFY_SOCKET = path.join(tmp, 'nobody-listens');
    const store = openFdStore();
    expect(store.available).toBe(true);
    expect(() => store.store('a:b', 0)).toThrow(/invalid name/);
    expect(() => store.store('x', 1.5)).toThrow(/invalid fd/);
  });
});

describe('openFdStore against a fake NOTIFY_SOCKET (child process)', () => {
  test('stores a file fd: sink receives the message and exactly one fd to the same file', async () => {
    const sink = await startSink(tmp, 1);
    try {
      const file = path.join(tmp, 'payload');
      fs.writeFileSync(file, 'hello');
      const child = await runChild(
        `
        const fd = fs.openSync(${JSON.stringify(file)}, 'r');
        const store = fdstore.openFdStore();
        out({ available: store.available, reason: store.unavailableReason ?? null });
        store.store('x', fd);
        out({ original: ident(fd) });
      `,
        sink.path,
      );
      expect(child).toMatchObject({ available: true, reason: null });
      const got = await sink.next();
      expect(got.message).toBe('FDSTORE=1\nFDNAME=x');
      expect(got.ctrunc).toBe(false);
      expect(got.fds).toHaveLength(1);
      expect({ dev: got.fds[0]!.dev, ino: got.fds[0]!.ino }).toEqual(child.original);
    } finally {
      await sink.close();
    }
  });

  test('stores a TCP connection fd taken from a net.Socket, then removes it', async () => {
    const sink = await startSink(tmp, 2);
    try {
      const child = await runChild(
        `
        const server = net.createServer((s) => s.on('error', () => {}));
        await new Promise((r) => server.listen(0, '127.0.0.1', r));
        const port = server.address().port;
        const client = net.connect(port, '127.0.0.1');
        await new Promise((r, j) => { client.once('connect', r); client.once('error', j); });
        const fd = fdstore.requireSocketFd(client);
        const store = fdstore.openFdStore();
        store.store('conn-1', fd);
        out({ port, original: ident(fd) });
        store.remove('conn-1');
        client.destroy();
        server.close();
      `,
        sink.path,
      );
      const got = await sink.next();
      expect(got.message).toBe('FDSTORE=1\nFDNAME=conn-1');
      expect(got.fds).toHaveLength(1);
      expect({ dev: got.fds[0]!.dev, ino: got.fds[0]!.ino }).toEqual(child.original);
      expect(got.fds[0]!.peer).toEqual(['127.0.0.1', child.port]);

      const removed = await sink.next();
      expect(removed.message).toBe('FDSTOREREMOVE=1\nFDNAME=conn-1');
      expect(removed.fds).toHaveLength(0);
    } finally {
      await sink.close();
    }
  });

  test('native errors become thrown Errors with the errno name, not crashes', async () => {
    const child = await runChild(
      `
      const store = fdstore.openFdStore();
      out({
        available: store.available,
        storeErr: attempt(() => store.store('x', 0)),
        removeErr: attempt(() => store.remove('x')),
        nameErr: attempt(() => store.store('a:b', 0)),
        fdErr: attempt(() => store.store('x', -1)),
      });
    `,
      path.join(tmp, 'nobody-listens'),
    );
    expect(child).toEqual({
      available: true,
      storeErr: 'fd store: sd_pid_notify_with_fds failed: ENOENT',
      removeErr: 'fd store: sd_pid_notify_with_fds failed: ENOENT',
      nameErr: expect.stringMatching(/invalid name "a:b"/),
      fdErr: 'fd store: invalid fd -1',
    });
  });

  test('an fd that is not open is reported as EBADF', async () => {
    const sink = await startSink(tmp, 1);
    try {
      // Not "open then close": libsystemd's own socket would reuse that lowest free number.
      const child = await runChild(
        `
        const fd = 999999;
        out({ open: attempt(() => fs.fstatSync(fd)) === null, err: attempt(() => fdstore.openFdStore().store('x', fd)) });
      `,
        sink.path,
      );
      expect(child.open).toBe(false);
      expect(child.err).toBe('fd store: sd_pid_notify_with_fds failed: EBADF');
    } finally {
      await sink.close();
    }
  });
});

describe('requireSocketFd', () => {
  test('throws for a socket without a handle', () => {
    expect(() => requireSocketFd(new net.Socket())).toThrow(/no usable file descriptor/);
  });
});
