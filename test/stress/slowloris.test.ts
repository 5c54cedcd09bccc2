/**
 * Slowloris and resource limits, against the built daemon on loopback.
 *
 * 1. 10,000 connections (SDEPMD_SLOWLORIS_CONNECTIONS) held open at once: half idle (send nothing), half dribbling
 *    one byte a second of a request that never completes. Meanwhile a second client, in its own process
 *    (lookup-load.js), keeps looking a name up and registering nodes: the lookup rate under attack is measured
 *    against the rate without, and every lookup must be answered. The idle ones must be closed by the packet
 *    timeout, the dribbling ones (which the packet timeout alone would keep for ever) by the request budget.
 * 2. Bounded write buffers: peers that send NAMES and never read the (large) reply are dropped on time, and the
 *    daemon's RSS does not grow with them.
 * 3. The connection and registration limits are enforced and logged.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import * as path from 'node:path';
import { encodeAlive2Request, encodeNameRequest, encodeSimpleRequest } from '../../src/protocol/codec';
import { NAMES_REQ, PORT_PLEASE2_REQ } from '../../src/protocol/constants';
import { sweepIntervalSeconds } from '../../src/policy/timeouts';
import { startDaemon, stopAll, type TestDaemon } from '../support/daemons';
import { hold, probe, type Held } from '../support/probe';

const CONNECTIONS = Number(process.env.SDEPMD_SLOWLORIS_CONNECTIONS ?? 10_000);
const PACKET_TIMEOUT_S = 12;
const BUDGET_S = 18;
const DRIBBLE_MS = 1000;
const LOAD_MS = 4000;
/** Generous slack for "closed on time": timers, a loaded 2-core machine, 10,000 closes at once. */
const SLACK_MS = 6000;

jest.setTimeout(180_000);

const LOAD_SCRIPT = path.join(__dirname, 'lookup-load.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}
const openFds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

interface LoadResult {
  lookups: number;
  lookupErrors: number;
  registrations: number;
  registrationErrors: number;
  seconds: number;
  rate: number;
  maxLatencyMs: number;
  errorSamples: string[];
}

function runLoad(port: number, name: string, expectedPort: number, ms: number): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [LOAD_SCRIPT, String(port), name, String(expectedPort), String(ms), '8', '200'],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()!) as LoadResult);
      } catch {
        reject(new Error(`lookup-load exited ${code}: ${out}`));
      }
    });
  });
}

let sourceIndex = 0;
const nextSource = () => `127.0.1.${(sourceIndex++ % 250) + 2}`;

const NODE = { name: 'victim', port: 41234, nodeType: 77, protocol: 0, highestVersion: 6, lowestVersion: 5 };

afterAll(() => stopAll());

describe(`slowloris: ${CONNECTIONS.toLocaleString('en')} idle or dribbling connections on loopback`, () => {
  let daemon: TestDaemon;
  let node: Held;
  const attackers: {
    socket: Socket;
    kind: 'idle' | 'dribble';
    openedAt: number;
    closedAt: number;
    timer?: NodeJS.Timeout;
  }[] = [];

  beforeAll(async () => {
    daemon = await startDaemon('sdepmd', {
      args: [
        '-packet_timeout',
        String(PACKET_TIMEOUT_S),
        '--request_budget',
        String(BUDGET_S),
        '--control_socket',
        'none',
      ],
    });
    node = await hold(daemon.port, encodeAlive2Request(NODE));
    await node.waitFor(6);
  });
  afterAll(async () => {
    for (const a of attackers) {
      clearInterval(a.timer);
      a.socket.destroy();
    }
    await node?.close().catch(() => undefined);
  });

  test('lookups and registrations keep being served; idle and dribbling connections are closed on time', async () => {
    const pid = daemon.child.pid!;
    const baseline = await runLoad(daemon.port, NODE.name, NODE.port, LOAD_MS);
    expect(baseline.lookupErrors).toBe(0);

    // Open the attack, a wave at a time.
    const openStarted = Date.now();
    const WAVE = 500;
    for (let i = 0; i < CONNECTIONS; i += WAVE) {
      await Promise.all(
        Array.from({ length: Math.min(WAVE, CONNECTIONS - i) }, (_, j) => {
          const kind: 'idle' | 'dribble' = (i + j) % 2 === 0 ? 'idle' : 'dribble';
          return new Promise<void>((resolve, reject) => {
            const socket = connect({ host: '127.0.0.1', port: daemon.port, localAddress: nextSource() });
            const a = { socket, kind, openedAt: 0, closedAt: 0, timer: undefined as NodeJS.Timeout | undefined };
            attackers.push(a);
            socket.on('error', () => undefined);
            socket.once('error', reject);
            socket.on('close', () => {
              a.closedAt = Date.now();
              clearInterval(a.timer);
            });
            socket.on('connect', () => {
              a.openedAt = Date.now();
              socket.off('error', reject);
              if (kind === 'dribble') {
                socket.write(Buffer.from([0x03, 0xe8])); // a 1,000-byte request ...
                a.timer = setInterval(() => socket.writable && socket.write('z'), DRIBBLE_MS); // ... one byte a second
              }
              resolve();
            });
          });
        }),
      );
    }
    const openSeconds = (Date.now() - openStarted) / 1000;
    await sleep(300);
    const heldByClient = attackers.filter((a) => a.closedAt === 0).length;
    const fdsUnderAttack = openFds(pid);
    const rssUnderAttack = rssMb(pid);

    const underAttack = await runLoad(daemon.port, NODE.name, NODE.port, LOAD_MS);
    const stillHeldAfterLoad = attackers.filter((a) => a.closedAt === 0).length;

    // Wait for the daemon to close them all (bounded).
    const deadline = Date.now() + (BUDGET_S * 1000 + DRIBBLE_MS + SLACK_MS + 5000);
    while (attackers.some((a) => a.closedAt === 0) && Date.now() < deadline) await sleep(250);
    const lifetimes = (kind: string) =>
      attackers.filter((a) => a.kind === kind && a.closedAt > 0).map((a) => a.closedAt - a.openedAt);
    const idle = lifetimes('idle');
    const dribble = lifetimes('dribble');
    const summary = {
      connections: CONNECTIONS,
      openSeconds,
      heldByClient,
      fdsUnderAttack,
      stillHeldAfterLoad,
      rssUnderAttackMb: Number(rssUnderAttack.toFixed(1)),
      baseline: {
        rate: baseline.rate,
        lookups: baseline.lookups,
        errors: baseline.lookupErrors,
        registrations: baseline.registrations,
        maxLatencyMs: baseline.maxLatencyMs,
      },
      underAttack: {
        rate: underAttack.rate,
        lookups: underAttack.lookups,
        errors: underAttack.lookupErrors,
        registrations: underAttack.registrations,
        maxLatencyMs: underAttack.maxLatencyMs,
        samples: underAttack.errorSamples,
      },
      idleClosedMs: { n: idle.length, min: Math.min(...idle), max: Math.max(...idle) },
      dribbleClosedMs: { n: dribble.length, min: Math.min(...dribble), max: Math.max(...dribble) },
    };
    process.stderr.write(`[slowloris] ${JSON.stringify(summary)}\n`);
    if (idle.length < CONNECTIONS / 2)
      process.stderr.write(`[slowloris] daemon log tail:\n${daemon.stderr().slice(-3000)}\n`);

    // Every attacker was held open at once, and still was during the whole measurement.
    expect(heldByClient).toBe(CONNECTIONS);
    expect(fdsUnderAttack).toBeGreaterThanOrEqual(CONNECTIONS);
    expect(stillHeldAfterLoad).toBe(CONNECTIONS);
    // Lookups keep being served: none failed, and the rate stays within a generous bound of the unloaded rate.
    expect(underAttack.lookupErrors).toBe(0);
    expect(underAttack.registrationErrors).toBe(0);
    expect(underAttack.registrations).toBeGreaterThan(0);
    expect(underAttack.rate).toBeGreaterThanOrEqual(Math.max(50, baseline.rate * 0.1));
    // Closed on time: idle ones by the packet timeout, dribbling ones by the request budget.
    expect(idle.length).toBe(CONNECTIONS / 2);
    expect(dribble.length).toBe(CONNECTIONS / 2);
    // The C epmd's rule (src/policy/timeouts.ts): idle for more than T whole seconds, found by a sweep every P s.
    expect(Math.min(...idle)).toBeGreaterThanOrEqual(PACKET_TIMEOUT_S * 1000 - 500);
    expect(Math.max(...idle)).toBeLessThanOrEqual(
      (PACKET_TIMEOUT_S + 1 + sweepIntervalSeconds(PACKET_TIMEOUT_S)) * 1000 + SLACK_MS,
    );
    expect(Math.min(...dribble)).toBeGreaterThanOrEqual(BUDGET_S * 1000 - 500);
    expect(Math.max(...dribble)).toBeLessThanOrEqual(BUDGET_S * 1000 + DRIBBLE_MS + SLACK_MS);
    // Logged when hit (rate-limited).
    expect(daemon.stderr()).toContain(`no complete request, idle for more than ${PACKET_TIMEOUT_S} s`);
    expect(daemon.stderr()).toContain(`request not complete within ${BUDGET_S * 1000} ms`);
    expect(daemon.stderr()).toMatch(/more refusal\(s\) not logged/);
    // And the daemon is fine afterwards.
    expect(daemon.child.exitCode).toBeNull();
    const after = await probe(daemon.port, [encodeNameRequest(PORT_PLEASE2_REQ, NODE.name)]);
    expect(after.reply.readUInt16BE(2)).toBe(NODE.port);
  });
});

describe('bounded write buffers: peers that never read a large NAMES reply', () => {
  // Names of 255 four-byte characters (1,020 bytes, the most a name may have): a NAMES reply of about 6 MB, more
  // than the kernel buffers of one loopback connection (about 4 MB sent + 128 kB received), so that the rest of it
  // waits in the daemon's own write buffer.
  const REGISTRATIONS = 6000;
  const NON_READERS = 100;
  const longName = (i: number) => `${i}_`.padEnd(255 - 250, 'x') + '\u{1F600}'.repeat(250);
  const TIMEOUT_S = 3;
  let daemon: TestDaemon;
  const nodes: Held[] = [];

  beforeAll(async () => {
    daemon = await startDaemon('sdepmd', { args: ['-packet_timeout', String(TIMEOUT_S), '--control_socket', 'none'] });
    for (let i = 0; i < REGISTRATIONS; i += 500) {
      const wave = await Promise.all(
        Array.from({ length: Math.min(500, REGISTRATIONS - i) }, (_, j) =>
          hold(daemon.port, encodeAlive2Request({ ...NODE, name: longName(i + j), port: 10000 + i + j })),
        ),
      );
      await Promise.all(wave.map((h) => h.waitFor(6, 10_000)));
      nodes.push(...wave);
    }
  });
  afterAll(async () => {
    for (const h of nodes) h.socket.destroy();
  });

  /** Server-side connections of the daemon that have unsent bytes queued in the kernel. */
  function stuckInKernel(port: number): number {
    const out = execFileSync('ss', ['-tnH', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' });
    return out.split('\n').filter((l) => {
      const f = l.trim().split(/\s+/);
      return f.length >= 4 && Number(f[1]) > 0; // Send-Q (with `state`, the first column is Recv-Q)
    }).length;
  }

  test('they are dropped within the packet timeout, and RSS does not grow with them', async () => {
    const pid = daemon.child.pid!;
    const names = await probe(daemon.port, [encodeSimpleRequest(NAMES_REQ)], { waitMs: 5000 });
    const replyBytes = names.reply.length;
    expect(replyBytes).toBeGreaterThan(REGISTRATIONS * 1000);
    await sleep(500);
    const rssBefore = rssMb(pid);

    const started = Date.now();
    const peers = await Promise.all(
      Array.from({ length: NON_READERS }, () => {
        return new Promise<{ socket: Socket; received: () => number; closedAt: () => number }>((resolve, reject) => {
          let got = 0;
          let closedAt = 0;
          const socket = connect({ host: '127.0.0.1', port: daemon.port, localAddress: nextSource() });
          socket.pause(); // never read
          socket.on('data', (d: Buffer) => (got += d.length));
          socket.on('error', () => undefined);
          socket.once('error', reject);
          socket.on('close', () => (closedAt = Date.now()));
          socket.on('connect', () => {
            socket.write(encodeSimpleRequest(NAMES_REQ));
            resolve({ socket, received: () => got, closedAt: () => closedAt });
          });
        });
      }),
    );
    await sleep(1000);
    const rssPeak = Math.max(rssMb(pid), rssBefore);
    const stuckPeak = stuckInKernel(daemon.port);
    // A well-behaved client is served meanwhile.
    const lookup = await probe(daemon.port, [encodeNameRequest(PORT_PLEASE2_REQ, longName(7))]);
    expect(lookup.reply.readUInt16BE(2)).toBe(10007);

    await sleep(TIMEOUT_S * 1000 + SLACK_MS - 1000);
    const stuckAfter = stuckInKernel(daemon.port);
    const rssAfter = rssMb(pid);
    const dropLogged = /reply not read, idle for more than \d+ s/.test(daemon.stderr());
    // Now read: a dropped peer has less than the whole reply.
    for (const p of peers) p.socket.resume();
    await sleep(1500);
    const complete = peers.filter((p) => p.received() >= replyBytes).length;
    const summary = {
      replyBytes,
      nonReaders: NON_READERS,
      stuckPeak,
      stuckAfter,
      rssBeforeMb: rssBefore,
      rssPeakMb: rssPeak,
      rssAfterMb: rssAfter,
      complete,
      elapsedMs: Date.now() - started,
      dropLogged,
    };
    process.stderr.write(`[write-buffers] ${JSON.stringify(summary)}\n`);
    for (const p of peers) p.socket.destroy();

    // The reply did not fit in the kernel's buffers: the writes were stuck until the daemon dropped them.
    expect(stuckPeak).toBeGreaterThanOrEqual(NON_READERS * 0.9);
    expect(stuckAfter).toBe(0);
    expect(complete).toBe(0);
    // Memory: the NAMES reply is shared, not copied per stuck peer.
    expect(rssPeak - rssBefore).toBeLessThan(48);
    expect(rssAfter - rssBefore).toBeLessThan(48);
    expect(daemon.child.exitCode).toBeNull();
    // A limit hit is logged: the drop of a peer that does not read its reply too.
    expect(dropLogged).toBe(true);
  });
});

describe('connection and registration limits are enforced and logged', () => {
  test('--max_connections and --max_registrations', async () => {
    const daemon = await startDaemon('sdepmd', {
      args: [
        '--max_connections',
        '40',
        '--max_registrations',
        '3',
        '-packet_timeout',
        '30',
        '--control_socket',
        'none',
      ],
    });
    const idle: Socket[] = [];
    let refused = 0;
    await Promise.all(
      Array.from({ length: 50 }, () => {
        return new Promise<void>((resolve) => {
          const s = connect({ host: '127.0.0.1', port: daemon.port });
          idle.push(s);
          s.on('error', () => undefined);
          s.on('close', () => {
            refused++;
            resolve();
          });
          setTimeout(resolve, 1500);
        });
      }),
    );
    expect(refused).toBe(10);
    await daemon.logged(/connection limit \(40\) reached/);
    for (const s of idle) s.destroy();
    await sleep(300);

    const held: Held[] = [];
    for (let i = 0; i < 4; i++) held.push(await hold(daemon.port, encodeAlive2Request({ ...NODE, name: `lim${i}` })));
    const replies = await Promise.all(held.map((h) => h.waitFor(6)));
    expect(replies.map((r) => r[1])).toEqual([0, 0, 0, 1]);
    await daemon.logged(/ALIVE2 lim3 refused: registry full/);
    for (const h of held) h.socket.destroy();
    await daemon.stop();
  });
});
