/**
 * Test "hosts" built from network namespaces and a veth pair on this machine, for cross-host tests.
 *
 *   host A (sdf-<pid>-a): veth sdfa  198.51.100.1/24, 198.51.100.11/24, fd00:5df::1/64, fd00:5df::11/64, lo
 *   host B (sdf-<pid>-b): veth sdfb  198.51.100.2/24,                   fd00:5df::2/64,                   lo
 *
 * Only TEST-NET-2 and fd00::/8 addresses, inside namespaces created here: no traffic leaves the machine.
 * Names carry the creating process's pid; namespaces left by a run that died are deleted on the next one.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import type { Availability } from '../support/peers';
import { killQuietly, stopChild } from '../support/processes';

export const NS_PREFIX = 'sdf-';
export const CLIENT = path.join(__dirname, 'ns-client.js');

export const A = { v4: '198.51.100.1', v4b: '198.51.100.11', v6: 'fd00:5df::1', v6b: 'fd00:5df::11' } as const;
export const B = { v4: '198.51.100.2', v6: 'fd00:5df::2' } as const;

export interface Hosts {
  readonly a: string;
  readonly b: string;
  destroy(): void;
}

function run(args: string[], check = true): string {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8', timeout: 30_000 });
  if (check && r.status !== 0)
    throw new Error(`${args.join(' ')} failed (${r.status}): ${r.stderr || r.error?.message}`);
  return r.stdout ?? '';
}

export function netnsAvailable(): Availability {
  if (process.getuid?.() !== 0) return { ok: false, reason: 'network namespaces need root' };
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  if (r.error || r.status !== 0)
    return {
      ok: false,
      reason: `'ip netns' does not work: ${r.error?.message ?? r.stderr} (apt-get install iproute2)`,
    };
  return { ok: true };
}

/** Deletes namespaces this prefix made in earlier runs whose process is gone. */
export function deleteStale(): void {
  for (const line of run(['ip', 'netns', 'list']).split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = /^sdf-(\d+)-[ab]$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = false;
    try {
      process.kill(pid, 0);
      alive = pid !== process.pid ? true : false;
    } catch {
      alive = false;
    }
    if (alive && pid !== process.pid) continue;
    // Processes a crashed run left inside (daemons, Erlang nodes) would keep the namespace alive: end them first.
    for (const p of run(['ip', 'netns', 'pids', name], false).split('\n').filter(Boolean)) killQuietly(Number(p));
    run(['ip', 'netns', 'del', name], false);
  }
}

export function createHosts(): Hosts {
  deleteStale();
  const a = `${NS_PREFIX}${process.pid}-a`;
  const b = `${NS_PREFIX}${process.pid}-b`;
  const hosts: Hosts = {
    a,
    b,
    destroy() {
      run(['ip', 'netns', 'del', a], false);
      run(['ip', 'netns', 'del', b], false);
    },
  };
  try {
    run(['ip', 'netns', 'add', a]);
    run(['ip', 'netns', 'add', b]);
    // Created directly inside the namespaces: nothing ever appears in the host's own namespace.
    run(['ip', 'link', 'add', 'sdfa', 'netns', a, 'type', 'veth', 'peer', 'name', 'sdfb', 'netns', b]);
    const inA = (...args: string[]) => run(['ip', '-n', a, ...args]);
    const inB = (...args: string[]) => run(['ip', '-n', b, ...args]);
    inA('link', 'set', 'lo', 'up');
    inB('link', 'set', 'lo', 'up');
    inA('addr', 'add', `${A.v4}/24`, 'dev', 'sdfa');
    inA('addr', 'add', `${A.v4b}/24`, 'dev', 'sdfa');
    inA('-6', 'addr', 'add', `${A.v6}/64`, 'dev', 'sdfa', 'nodad');
    inA('-6', 'addr', 'add', `${A.v6b}/64`, 'dev', 'sdfa', 'nodad');
    inB('addr', 'add', `${B.v4}/24`, 'dev', 'sdfb');
    inB('-6', 'addr', 'add', `${B.v6}/64`, 'dev', 'sdfb', 'nodad');
    inA('link', 'set', 'sdfa', 'up');
    inB('link', 'set', 'sdfb', 'up');
  } catch (err) {
    hosts.destroy();
    throw err;
  }
  return hosts;
}

export interface ProbeReply {
  reply: string;
  ended: 'closed' | 'open' | 'refused' | 'error';
  error?: string;
}

/** Runs ns-client.js in a namespace and parses its JSON line. */
export function nsClient(ns: string, args: string[]): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, CLIENT, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => {
      try {
        resolve(JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>);
      } catch {
        reject(new Error(`ns-client ${args.join(' ')} in ${ns} exited ${code}: ${stdout} ${stderr}`));
      }
    });
  });
}

export function nsProbe(
  ns: string,
  host: string,
  port: number,
  request: Buffer,
  localAddress?: string,
  waitMs = 1500,
): Promise<ProbeReply> {
  return nsClient(ns, [
    'probe',
    host,
    String(port),
    request.toString('hex'),
    localAddress ?? '-',
    String(waitMs),
  ]) as unknown as Promise<ProbeReply>;
}

/** A registration held from inside a namespace; `close()` ends it. */
export async function nsHold(
  ns: string,
  host: string,
  port: number,
  request: Buffer,
): Promise<{ reply: string; close(): void }> {
  const child = spawn(
    'ip',
    ['netns', 'exec', ns, process.execPath, CLIENT, 'hold', host, String(port), request.toString('hex')],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  const reply = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) {
        const o = JSON.parse(out.split('\n')[0]!) as { reply?: string; error?: string };
        if (o.reply !== undefined) resolve(o.reply);
        else reject(new Error(`hold failed: ${o.error}`));
      }
    });
    child.once('exit', (code) => reject(new Error(`hold exited ${code}`)));
  });
  return { reply, close: () => child.kill('SIGKILL') };
}

/** A long-running process in a namespace (a daemon, an Erlang node). */
export interface NsProcess {
  readonly child: ChildProcess;
  output(): string;
  stop(): Promise<void>;
  readonly exited: Promise<number | null>;
}

const running = new Set<NsProcess>();

export function nsSpawn(ns: string, command: string[], env: NodeJS.ProcessEnv = {}): NsProcess {
  const fullEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  for (const k of ['NOTIFY_SOCKET', 'LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES']) delete fullEnv[k];
  const child = spawn('ip', ['netns', 'exec', ns, ...command], { stdio: ['ignore', 'pipe', 'pipe'], env: fullEnv });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const p: NsProcess = {
    child,
    exited,
    output: () => output,
    async stop() {
      running.delete(p);
      await stopChild(child, exited);
    },
  };
  running.add(p);
  return p;
}

export async function stopAllNs(): Promise<void> {
  await Promise.all([...running].map((p) => p.stop()));
}

/** Listening TCP sockets in a namespace on a port, as "address:port" strings (IPv6 in brackets), sorted. */
export function listening(ns: string, port: number): string[] {
  const out = run(['ip', 'netns', 'exec', ns, 'ss', '-ltnH', `( sport = :${port} )`]);
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[3])
    .filter((x): x is string => !!x)
    .sort();
}
