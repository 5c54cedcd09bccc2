/**
 * Real OTP against sdepmd: erl nodes (erlang-base) register with sdepmd (ERL_EPMD_PORT), find each other through it,
 * and the C `epmd` client administers it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { exchange } from '../../src/cli/client';
import { decodeNamesReply, encodeNameRequest, encodeSimpleRequest } from '../../src/protocol/codec';
import { killQuietly } from '../support/processes';
import { NAMES_REQ, PORT_PLEASE2_REQ } from '../../src/protocol/constants';
import { startDaemon, stopAll, type TestDaemon } from '../support/daemons';
import { allOf, cEpmdAvailable, erlAvailable, findCEpmd, peerDescribe } from '../support/peers';

const rand = Math.random().toString(36).slice(2, 8);
const NAME_A = `a_${rand}`;
const NAME_B = `b_${rand}`;
const NAME_H = `h_${rand}`;
const COOKIE = `cookie_${rand}`;

interface ErlNode {
  readonly name: string;
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  readonly exited: Promise<void>;
}

const nodes: ErlNode[] = [];
let home = '';
let daemon: TestDaemon;

function startNode(name: string, extra: string[] = []): ErlNode {
  const child = spawn(
    erlAvailable().path!,
    ['-sname', name, '-noshell', '-noinput', '-start_epmd', 'false', '-setcookie', COOKIE, ...extra],
    {
      env: { ...process.env, HOME: home, ERL_EPMD_PORT: String(daemon.port), ERL_AFLAGS: '', ERL_FLAGS: '' },
      // Its own process group, so that beam.smp and its children (erl_child_setup, inet_gethost) die with it.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const node: ErlNode = { name, child, stdout: () => out, stderr: () => err, exited };
  nodes.push(node);
  return node;
}

function killGroup(node: ErlNode, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (node.child.pid !== undefined) killQuietly(-node.child.pid, signal);
}

async function names(): Promise<string[]> {
  const reply = await exchange({ host: '127.0.0.1', port: daemon.port }, encodeSimpleRequest(NAMES_REQ), 3000);
  const parsed = decodeNamesReply(reply);
  expect(parsed.epmdPort).toBe(daemon.port);
  return parsed.nodes.map((n) => n.name);
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, ms: number, every = 100): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** Creations sdepmd logged for `name` (its info line "registered NAME port P (..., creation C)"). */
function loggedCreations(name: string): number[] {
  const re = new RegExp(`\\bregistered "?${name}"? port \\d+ \\([^)]*creation (\\d+)\\)`, 'g');
  return [...daemon.stderr().matchAll(re)].map((m) => Number(m[1]));
}

function cClient(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(findCEpmd()!, ['-port', String(daemon.port), ...args], { timeout: 10_000 });
  return { code: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

const d = peerDescribe('erl + C epmd client', allOf(erlAvailable(), cEpmdAvailable()));

d('real OTP nodes with sdepmd', () => {
  let a: ErlNode;
  let h: ErlNode;

  beforeAll(async () => {
    home = mkdtempSync(path.join(tmpdir(), 'sdepmd-otp-'));
    daemon = await startDaemon('sdepmd', { args: ['-relaxed_command_check'] });
    // Node a pings b until pong, then reports an rpc and erl_epmd:names() on stdout, and stays up.
    const script =
      `[_, Host] = string:split(atom_to_list(node()), "@"), ` +
      `B = list_to_atom("${NAME_B}@" ++ Host), ` +
      `Ping = fun Loop(0) -> pang; Loop(N) -> case net_adm:ping(B) of pong -> pong; pang -> timer:sleep(250), Loop(N - 1) end end, ` +
      `P = Ping(120), ` +
      `io:format("PING=~p~n", [P]), ` +
      `io:format("RPC_NODE=~p~n", [rpc:call(B, erlang, node, [])]), ` +
      `io:format("RPC_REVERSE=~p~n", [rpc:call(B, lists, reverse, [[1, 2, 3]])]), ` +
      `io:format("EPMD_NAMES=~p~n", [erl_epmd:names()]).`;
    startNode(NAME_B);
    h = startNode(NAME_H, ['-hidden']);
    // a reports erl_epmd:names() as soon as b answers its ping: b and h must be registered before a starts.
    await waitFor(
      'b and h in NAMES',
      async () => {
        const listed = await names();
        return [NAME_B, NAME_H].every((n) => listed.includes(n)) ? listed : undefined;
      },
      30_000,
    );
    a = startNode(NAME_A, ['-eval', script]);
    await waitFor(
      'all three nodes in NAMES',
      async () => {
        const listed = await names();
        return [NAME_A, NAME_B, NAME_H].every((n) => listed.includes(n)) ? listed : undefined;
      },
      30_000,
    );
  }, 60_000);

  afterAll(async () => {
    for (const n of nodes) killGroup(n);
    await Promise.race([Promise.all(nodes.map((n) => n.exited)), new Promise((r) => setTimeout(r, 5000).unref())]);
    await stopAll();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  test('all three nodes registered, the hidden one included; PORT_PLEASE2 finds them', async () => {
    const listed = await names();
    expect(listed).toEqual(expect.arrayContaining([NAME_A, NAME_B, NAME_H]));
    for (const name of [NAME_A, NAME_B, NAME_H]) {
      const reply = await exchange(
        { host: '127.0.0.1', port: daemon.port },
        encodeNameRequest(PORT_PLEASE2_REQ, name),
        3000,
      );
      expect(reply.subarray(0, 2)).toEqual(Buffer.from([0x77, 0]));
      expect(reply.readUInt16BE(2)).toBeGreaterThan(0);
      // OTP 25 registers hidden nodes with type 'M' too, versions 6/5.
      expect(reply[4]).toBe(77);
      expect(reply.readUInt16BE(6)).toBe(6);
      expect(reply.subarray(12, 12 + name.length).toString()).toBe(name);
    }
    process.stdout.write(`[otp] NAMES: ${listed.join(', ')}\n`);
  });

  test('node a pings b (pong), rpc:call works, erl_epmd:names() lists all three', async () => {
    const out = await waitFor(
      'node a to report',
      async () => (/EPMD_NAMES=.*\n/s.test(a.stdout()) ? a.stdout() : undefined),
      40_000,
      200,
    ).catch((e: Error) => {
      throw new Error(`${e.message}\nstdout: ${a.stdout()}\nstderr: ${a.stderr()}`);
    });
    process.stdout.write(`[otp] node ${NAME_A} reported:\n${out}`);
    expect(out).toContain('PING=pong');
    expect(out).toMatch(new RegExp(`RPC_NODE='?${NAME_B}@[^\\s']+'?`));
    expect(out).toContain('RPC_REVERSE=[3,2,1]');
    const m = /EPMD_NAMES=(\{ok,.*\})\s*$/s.exec(out);
    expect(m).not.toBeNull();
    for (const name of [NAME_A, NAME_B, NAME_H]) expect(m![1]).toContain(`"${name}"`);
  }, 60_000);

  test('the C epmd client lists the nodes', async () => {
    const r = cClient(['-names']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe(`epmd: up and running on port ${daemon.port} with data:`);
    for (const name of [NAME_A, NAME_B, NAME_H])
      expect(lines).toEqual(expect.arrayContaining([expect.stringMatching(new RegExp(`^name ${name} at port \\d+$`))]));
  });

  test('-stop unregisters a node (relaxed); it re-registers ~2 s later with a new creation', async () => {
    const before = loggedCreations(NAME_B);
    expect(before.length).toBeGreaterThanOrEqual(1);
    const r = cClient(['-stop', NAME_B]);
    expect(r).toEqual({ code: 0, stdout: 'STOPPED\n', stderr: '' });
    const t0 = Date.now();
    // Gone at once (the node reconnects only after ~2 s).
    expect(await names()).not.toContain(NAME_B);
    // OTP >= 23.3 re-registers after its epmd connection closed.
    await waitFor(`${NAME_B} to re-register`, async () => (await names()).includes(NAME_B), 15_000);
    process.stdout.write(`[otp] ${NAME_B} re-registered ${Date.now() - t0} ms after -stop\n`);
    // Its log line may come a moment after the NAMES reply that showed it (two pipes).
    const after = await waitFor(
      `the log line of ${NAME_B}'s new registration`,
      () => Promise.resolve(loggedCreations(NAME_B).length > before.length && loggedCreations(NAME_B)),
      5000,
      10,
    );
    expect(after.length).toBe(before.length + 1);
    expect(after[after.length - 1]).not.toBe(before[before.length - 1]);
    expect(after[after.length - 1]).not.toBe(0);
    // The unknown name: the C client prints NOEXIST.
    expect(cClient(['-stop', `nosuch_${rand}`])).toEqual({ code: 0, stdout: 'NOEXIST\n', stderr: '' });
  }, 30_000);

  test('-kill is refused while nodes live (strict sdepmd)', async () => {
    // The shared daemon is relaxed (it must allow -stop); -kill's refusal needs a strict one.
    const strict = await startDaemon('sdepmd');
    const k = startNodeOn(strict, `k2_${rand}`);
    try {
      await waitFor(
        'the node on the strict daemon',
        async () => {
          const reply = await exchange({ host: '127.0.0.1', port: strict.port }, encodeSimpleRequest(NAMES_REQ), 3000);
          return decodeNamesReply(reply).nodes.some((n) => n.name === `k2_${rand}`);
        },
        20_000,
      );
      const r = spawnSync(findCEpmd()!, ['-port', String(strict.port), '-kill'], { timeout: 10_000 });
      expect({ code: r.status, stdout: r.stdout.toString() }).toEqual({
        code: 1,
        stdout: 'Killing not allowed - living nodes in database.\n',
      });
      expect(strict.child.exitCode).toBeNull();
    } finally {
      killGroup(k);
      await strict.stop();
    }
  }, 40_000);

  test('kill -9 of a node process: it disappears from NAMES promptly', async () => {
    expect(await names()).toContain(NAME_H);
    killGroup(h);
    const t0 = Date.now();
    await waitFor(`${NAME_H} to leave NAMES`, async () => !(await names()).includes(NAME_H), 3000, 20);
    const ms = Date.now() - t0;
    process.stdout.write(`[otp] ${NAME_H} gone from NAMES ${ms} ms after SIGKILL\n`);
    expect(ms).toBeLessThan(2000);
    // The others are unaffected.
    expect(await names()).toEqual(expect.arrayContaining([NAME_A, NAME_B]));
  });
});

/** Starts a node registered with another daemon (same cookie and HOME). */
function startNodeOn(other: TestDaemon, name: string): ErlNode {
  const saved = daemon;
  daemon = other;
  try {
    return startNode(name);
  } finally {
    daemon = saved;
  }
}
