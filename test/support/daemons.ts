/**
 * Spawns EPMD daemons for tests: sdepmd (the built bin/sdepmd) or the real C epmd, each on a free port, and waits
 * until it answers NAMES. Every daemon started here is killed by stopAll() (call it in afterAll).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import * as path from 'node:path';
import { exchange } from '../../src/cli/client';
import { encodeSimpleRequest } from '../../src/protocol/codec';
import { NAMES_REQ } from '../../src/protocol/constants';
import { findCEpmd } from './peers';
import { stopChild } from './processes';

export const REPO = path.join(__dirname, '..', '..');
export const SDEPMD_BIN = path.join(REPO, 'bin', 'sdepmd');

export type DaemonKind = 'sdepmd' | 'c-epmd';

export interface TestDaemon {
  readonly kind: DaemonKind;
  readonly port: number;
  readonly child: ChildProcess;
  /** Everything the daemon wrote to stderr so far. */
  stderr(): string;
  /**
   * Resolves once stderr matches `pattern`; fails after `timeoutMs`, showing stderr. A line can reach us after the
   * reply it is about: the reply and the log come over two pipes, and the daemon writes its lines once per batch.
   */
  logged(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** SIGTERM, then SIGKILL after 3 s; resolves when it has exited. */
  stop(): Promise<void>;
  /** Resolves with the exit code when the daemon exits on its own. */
  readonly exited: Promise<number | null>;
}

const running = new Set<TestDaemon>();

/** A TCP port that was free a moment ago (on both 0.0.0.0 and ::). */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen({ port: 0, host: '::' }, () => {
        const address = s.address();
        s.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
      });
    });
    if (port > 0) return port;
  }
}

export interface StartOptions {
  readonly args?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  readonly port?: number;
  /** Do not wait for NAMES to answer (for daemons expected to fail at start-up). */
  readonly noWait?: boolean;
}

export async function startDaemon(kind: DaemonKind, options: StartOptions = {}): Promise<TestDaemon> {
  const port = options.port ?? (await freePort());
  const args = ['-port', String(port), ...(options.args ?? [])];
  const env = { ...process.env, ...options.env };
  delete env.NOTIFY_SOCKET;
  delete env.LISTEN_FDS;
  delete env.LISTEN_PID;
  let child: ChildProcess;
  if (kind === 'sdepmd') {
    child = spawn(process.execPath, [SDEPMD_BIN, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  } else {
    const epmd = findCEpmd();
    if (!epmd) throw new Error('the C epmd is not installed (apt-get install erlang-base)');
    child = spawn(epmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  }
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const daemon: TestDaemon = {
    kind,
    port,
    child,
    exited,
    stderr: () => stderr,
    async logged(pattern, timeoutMs = 5000) {
      const end = Date.now() + timeoutMs;
      while (!pattern.test(stderr)) {
        if (Date.now() > end)
          throw new Error(`no line matching ${String(pattern)} in ${timeoutMs} ms; stderr:\n${stderr}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async stop() {
      running.delete(daemon);
      await stopChild(child, exited);
    },
  };
  running.add(daemon);
  if (!options.noWait) await waitUntilAnswering(daemon);
  return daemon;
}

async function waitUntilAnswering(daemon: TestDaemon): Promise<void> {
  const deadline = Date.now() + 15_000;
  let exitCode: number | null | undefined;
  void daemon.exited.then((code) => (exitCode = code));
  for (;;) {
    try {
      const reply = await exchange({ host: '127.0.0.1', port: daemon.port }, encodeSimpleRequest(NAMES_REQ), 2000);
      if (reply.length >= 4) return;
    } catch {
      // not listening yet
    }
    if (exitCode !== undefined)
      throw new Error(`${daemon.kind} exited with ${exitCode} at start-up: ${daemon.stderr()}`);
    if (Date.now() > deadline)
      throw new Error(`${daemon.kind} did not answer on port ${daemon.port}: ${daemon.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((d) => d.stop()));
}
