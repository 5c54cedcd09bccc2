/**
 * Fuzzing the live daemon with fast-check: random frames, mutated valid requests, truncated frames, lengths that
 * lie, every request code, giant and zero lengths, each on its own connection, sometimes split across writes.
 * Every reply is checked against an oracle built from the pure codec (what the C epmd answers), and the daemon must
 * survive it all: no crash, no hang, no unhandled rejection, no leaked sockets, RSS bounded, and a registration held
 * throughout stays registered and answered.
 *
 *   short (default, CI): SDEPMD_FUZZ_PACKETS or 100,000 packets, 10-30 s
 *   long:                SDEPMD_FUZZ_LONG=1 -> 1,000,000 packets (a few minutes)
 *   replay:              SDEPMD_FUZZ_SEED=<seed printed by a failing run>
 */
import fc from 'fast-check';
import { readFileSync, readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import {
  decodeRequest,
  encodeAlive2Request,
  encodeNameRequest,
  encodePort2Reply,
  encodeSimpleRequest,
  frameRequest,
  HEADER_BYTES,
  KILL_REFUSED,
  MAX_BODY_BYTES,
  PORT2_NOT_FOUND,
} from '../../src/protocol/codec';
import { ALIVE2_REQ, DUMP_REQ, KILL_REQ, NAMES_REQ, PORT_PLEASE2_REQ, STOP_REQ } from '../../src/protocol/constants';
import { validateName } from '../../src/registry/registry';
import { startDaemon, stopAll, type TestDaemon } from '../support/daemons';
import { hold, probe, type Held } from '../support/probe';
import { mutate } from './mutate';

const LONG = process.env.SDEPMD_FUZZ_LONG === '1';
const PACKETS = Number(process.env.SDEPMD_FUZZ_PACKETS ?? (LONG ? 1_000_000 : 100_000));
const CONCURRENCY = Number(process.env.SDEPMD_FUZZ_CONCURRENCY ?? 96);
const SEED = Number(process.env.SDEPMD_FUZZ_SEED ?? Date.now() % 1_000_000_007);
/** A connection the daemon has not closed this long after our FIN is a hang. */
const HANG_MS = 15_000;
/** RSS growth allowed between the warmed-up daemon and the end of the run. */
const RSS_GROWTH_LIMIT_MB = Number(process.env.SDEPMD_FUZZ_RSS_LIMIT_MB ?? 64);

jest.setTimeout(LONG ? 3_600_000 : 180_000);

const KEEPER = {
  name: 'fuzz_keeper',
  port: 45678,
  nodeType: 77,
  protocol: 0,
  highestVersion: 6,
  lowestVersion: 5,
  extra: Buffer.from('kept'),
};
const KEEPER_PORT2 = encodePort2Reply({ ...KEEPER, name: Buffer.from(KEEPER.name) });

// ---------------------------------------------------------------------------------------------------------------
// Packet generators

const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((a) => Buffer.from(a));
const name = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 24 }) },
  { weight: 1, arbitrary: fc.constant(KEEPER.name) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', minLength: 0, maxLength: 300 }) },
  { weight: 1, arbitrary: bytes(40) },
);
const valid = fc.oneof(
  fc
    .record({
      name,
      port: fc.integer({ min: 0, max: 65535 }),
      nodeType: fc.constantFrom(77, 72, 0, 255),
      protocol: fc.nat(255),
      highestVersion: fc.integer({ min: 0, max: 8 }),
      lowestVersion: fc.integer({ min: 0, max: 8 }),
      extra: bytes(40),
    })
    .map((n) => encodeAlive2Request(n)),
  name.map((n) => encodeNameRequest(PORT_PLEASE2_REQ, n)),
  name.map((n) => encodeNameRequest(STOP_REQ, n)),
  fc.constantFrom(NAMES_REQ, DUMP_REQ, KILL_REQ).map((t) => encodeSimpleRequest(t as typeof NAMES_REQ)),
);
const header = (len: number, body: Buffer) => {
  const h = Buffer.alloc(HEADER_BYTES);
  h.writeUInt16BE(len, 0);
  return Buffer.concat([h, body]);
};
const packet: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 4, arbitrary: valid },
  {
    weight: 4,
    arbitrary: fc
      .tuple(valid, fc.array(fc.tuple(fc.nat(5), fc.nat(4000), fc.nat(255)), { minLength: 1, maxLength: 4 }))
      .map(([b, o]) => mutate(b, o, 16)),
  },
  { weight: 2, arbitrary: bytes(48) },
  // every request code, correctly framed, with a random payload
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.nat(255), bytes(32))
      .map(([t, rest]) => header(rest.length + 1, Buffer.concat([Buffer.from([t]), rest]))),
  },
  // lengths that lie (longer or shorter than what follows)
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.integer({ min: 1, max: 400 }),
        fc.constantFrom(ALIVE2_REQ, PORT_PLEASE2_REQ, NAMES_REQ, STOP_REQ, DUMP_REQ),
        bytes(64),
      )
      .map(([len, t, rest]) => header(len, Buffer.concat([Buffer.from([t]), rest]))),
  },
  // zero and giant lengths
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.oneof(fc.constant(0), fc.integer({ min: MAX_BODY_BYTES - 2, max: 65535 })), bytes(16))
      .map(([len, rest]) => header(len, rest)),
  },
  // the largest accepted frame, and big random blobs
  { weight: 1, arbitrary: fc.nat(255).map((t) => header(MAX_BODY_BYTES, Buffer.alloc(MAX_BODY_BYTES, t))) },
  { weight: 1, arbitrary: bytes(3500) },
);
/** A packet and where to split it across writes (an empty list: one write). */
const fuzzCase = fc.tuple(
  packet,
  fc.oneof(
    { weight: 3, arbitrary: fc.constant([] as number[]) },
    { weight: 1, arbitrary: fc.array(fc.nat(4000), { maxLength: 4 }) },
  ),
);

// ---------------------------------------------------------------------------------------------------------------
// The oracle: what a non-relaxed C epmd answers a local peer, with KEEPER registered.

type Expectation =
  | { kind: 'exact'; reply: Buffer }
  | { kind: 'check'; check: (r: Buffer) => boolean; what: string }
  | { kind: 'nothing' };

function expectationFor(bytes: Buffer, epmdPort: number): Expectation {
  const f = frameRequest(bytes);
  if (f.status !== 'complete' || f.excess > 0) return { kind: 'nothing' };
  const d = decodeRequest(f.body);
  if (!d.ok) return { kind: 'nothing' };
  const r = d.request;
  switch (r.kind) {
    case 'names':
    case 'dump':
      return {
        kind: 'check',
        what: `${r.kind} reply`,
        check: (reply) => reply.length >= 4 && reply.readUInt32BE(0) === epmdPort,
      };
    case 'kill':
      return { kind: 'exact', reply: KILL_REFUSED };
    case 'stop':
      return { kind: 'nothing' };
    case 'port_please2':
      if (r.name.equals(Buffer.from(KEEPER.name))) return { kind: 'exact', reply: KEEPER_PORT2 };
      // Not found, or (rarely) a name a concurrent fuzz connection registered.
      return {
        kind: 'check',
        what: 'PORT2_RESP',
        check: (reply) => reply.equals(PORT2_NOT_FOUND) || (reply[0] === 0x77 && reply[1] === 0),
      };
    case 'alive2': {
      const tag = r.highestVersion >= 6 ? 0x76 : 0x79;
      const size = r.highestVersion >= 6 ? 6 : 4;
      const mustFail =
        validateName(r.name) !== null || r.extra.length > 1020 || r.name.equals(Buffer.from(KEEPER.name));
      return {
        kind: 'check',
        what: `ALIVE2 reply ${mustFail ? 'with result 1' : ''}`,
        check: (reply) =>
          reply.length === size && reply[0] === tag && (mustFail ? reply[1] === 1 : reply[1] === 0 || reply[1] === 1),
      };
    }
  }
}

/** Whether the request's fate is decided only by its last byte, so that however TCP coalesces the writes, the
 * daemon sees the same thing as for one write. */
function decidedAtEnd(bytes: Buffer): boolean {
  for (let cut = 1; cut < bytes.length; cut++)
    if (frameRequest(bytes.subarray(0, cut)).status !== 'incomplete') return false;
  return true;
}

function splitAt(b: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let last = 0;
  for (const p of points) {
    out.push(b.subarray(last, p));
    last = p;
  }
  out.push(b.subarray(last));
  return out.filter((c) => c.length > 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Sending

interface Outcome {
  reply: Buffer;
  hung: boolean;
  error?: string;
}

let sourceIndex = 0;
/** Spread connections over 127.0.0.2-254 so that a million of them do not run out of ephemeral ports. */
function nextSource(): string {
  sourceIndex = (sourceIndex % 253) + 1;
  return `127.0.0.${sourceIndex + 1}`;
}

function send(port: number, chunks: readonly Buffer[]): Promise<Outcome> {
  return new Promise((resolve) => {
    const received: Buffer[] = [];
    let settled = false;
    let error: string | undefined;
    const socket: Socket = connect({ host: '127.0.0.1', port, localAddress: nextSource(), noDelay: true });
    const timer = setTimeout(() => finish(true), HANG_MS);
    const finish = (hung: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ reply: Buffer.concat(received), hung, error });
    };
    socket.on('connect', () => {
      for (let i = 0; i < chunks.length; i++) {
        if (i === chunks.length - 1) socket.end(chunks[i]!);
        else socket.write(chunks[i]!);
      }
      if (chunks.length === 0) socket.end();
    });
    socket.on('data', (d: Buffer) => received.push(d));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // A reset after the daemon dropped the connection (unread bytes) is a close, not an error.
      if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') error = err.code ?? err.message;
    });
    socket.on('close', () => finish(false));
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Daemon observation

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}
function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const CRASH_SIGNS =
  /internal error|Unhandled|unhandled|TypeError|RangeError|ReferenceError|FATAL|heap out of memory|Segmentation|Aborted|at .*\.js:\d+/;

let daemon: TestDaemon;
let keeper: Held;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  // Non-relaxed (so KILL is refused while KEEPER is registered), a short packet timeout so that anything the fuzzer
  // leaves open is reaped quickly.
  daemon = await startDaemon('sdepmd', { args: ['-packet_timeout', '5', '--control_socket', 'none'] });
  keeper = await hold(daemon.port, encodeAlive2Request(KEEPER));
  const reply = await keeper.waitFor(6);
  expect(reply[0]).toBe(0x76);
  expect(reply[1]).toBe(0);
});

afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  await keeper?.close().catch(() => undefined);
  await stopAll();
});

async function assertHealthy(): Promise<void> {
  expect(daemon.child.exitCode).toBeNull();
  expect(daemon.child.signalCode).toBeNull();
  const names = await probe(daemon.port, [encodeSimpleRequest(NAMES_REQ)]);
  expect(names.reply.subarray(4).toString()).toContain(`name ${KEEPER.name} at port ${KEEPER.port}\n`);
  const port2 = await probe(daemon.port, [encodeNameRequest(PORT_PLEASE2_REQ, KEEPER.name)]);
  expect(port2.reply.equals(KEEPER_PORT2)).toBe(true);
  expect(keeper.socket.destroyed).toBe(false);
  expect(daemon.stderr()).not.toMatch(CRASH_SIGNS);
}

describe('live daemon: a valid request split at every byte boundary gets the same reply', () => {
  const cases: [string, Buffer, number][] = [
    ['PORT_PLEASE2 (registered)', encodeNameRequest(PORT_PLEASE2_REQ, KEEPER.name), 1500],
    ['PORT_PLEASE2 (unknown)', encodeNameRequest(PORT_PLEASE2_REQ, 'nobody_here'), 1500],
    ['NAMES', encodeSimpleRequest(NAMES_REQ), 1500],
    ['DUMP', encodeSimpleRequest(DUMP_REQ), 1500],
    ['KILL (refused: a node is registered)', encodeSimpleRequest(KILL_REQ), 1500],
    ['STOP (not relaxed: closed)', encodeNameRequest(STOP_REQ, KEEPER.name), 1500],
  ];
  test.each(cases)('%s', async (_label, request, waitMs) => {
    const whole = await probe(daemon.port, [request], { waitMs });
    const splits = [];
    for (let cut = 1; cut < request.length; cut++) {
      splits.push(probe(daemon.port, [request.subarray(0, cut), request.subarray(cut)], { gapMs: 15, waitMs }));
    }
    splits.push(
      probe(
        daemon.port,
        [...request].map((b) => Buffer.from([b])),
        { gapMs: 5, waitMs },
      ),
    );
    const results = await Promise.all(splits);
    for (const [i, r] of results.entries()) {
      expect({ cut: i + 1, reply: r.reply.toString('hex'), ended: r.ended }).toEqual({
        cut: i + 1,
        reply: whole.reply.toString('hex'),
        ended: whole.ended,
      });
    }
    expect(whole.ended).toBe('closed');
  });

  test('ALIVE2, split at every byte boundary, registers (same reply shape) and the name resolves', async () => {
    const results = await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        const req = encodeAlive2Request({ ...KEEPER, name: `split_${String(i).padStart(2, '0')}`, port: 50000 + i });
        const cut = 1 + (i % (req.length - 1));
        const h = await hold(daemon.port, req.subarray(0, cut));
        await sleep(15);
        h.socket.write(req.subarray(cut));
        const reply = await h.waitFor(6);
        const found = await probe(daemon.port, [
          encodeNameRequest(PORT_PLEASE2_REQ, `split_${String(i).padStart(2, '0')}`),
        ]);
        await h.close();
        return { reply: reply.subarray(0, 2).toString('hex'), len: reply.length, port: found.reply.readUInt16BE(2) };
      }),
    );
    results.forEach((r, i) => expect(r).toEqual({ reply: '7600', len: 6, port: 50000 + i }));
  });

  test('property: random valid requests, split at random points, get the reply they get whole', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          name.map((n) => encodeNameRequest(PORT_PLEASE2_REQ, n)),
          fc.constantFrom(NAMES_REQ, KILL_REQ).map((t) => encodeSimpleRequest(t as typeof NAMES_REQ)),
        ),
        fc.array(fc.nat(400), { minLength: 1, maxLength: 3 }),
        async (request, cuts) => {
          const whole = await send(daemon.port, [request]);
          const split = await send(daemon.port, splitAt(request, cuts));
          expect(split.reply.toString('hex')).toBe(whole.reply.toString('hex'));
        },
      ),
      { numRuns: 150, seed: SEED },
    );
  });
});

describe(`live daemon fuzz: ${PACKETS.toLocaleString('en')} packets (seed ${SEED})`, () => {
  test('no crash, no hang, no unhandled rejection, replies match the oracle, RSS and fds bounded', async () => {
    const pid = daemon.child.pid!;
    const stats = { sent: 0, bytes: 0, split: 0, mismatches: 0, hangs: 0, errors: 0, replied: 0, silent: 0 };
    const mismatchSamples: string[] = [];
    const rssSamples: number[] = [];
    const warmAt = Math.min(20_000, Math.floor(PACKETS / 5));
    let rssWarm = NaN;
    let fdsWarm = NaN;
    const rssStart = rssMb(pid);
    const fdsStart = openFds(pid);
    const started = Date.now();
    let lastReport = started;

    const BATCH = 5_000;
    let batchNo = 0;
    let queue: [Buffer, number[]][] = [];
    const next = (): [Buffer, number[]] | undefined => {
      if (stats.sent >= PACKETS) return undefined;
      if (queue.length === 0) queue = fc.sample(fuzzCase, { numRuns: BATCH, seed: SEED + batchNo++ });
      stats.sent++;
      return queue.pop();
    };

    const worker = async () => {
      for (let c = next(); c; c = next()) {
        const [bytes, cuts] = c;
        const chunks = cuts.length > 0 ? splitAt(bytes, cuts) : [bytes];
        if (chunks.length > 1) stats.split++;
        stats.bytes += bytes.length;
        const out = await send(daemon.port, chunks);
        if (out.hung) stats.hangs++;
        if (out.error) stats.errors++;
        if (out.reply.length > 0) stats.replied++;
        else stats.silent++;
        // Strict check when the daemon must see the same thing however TCP cut the writes.
        if (chunks.length === 1 || decidedAtEnd(bytes)) {
          const e = expectationFor(bytes, daemon.port);
          const ok =
            e.kind === 'nothing'
              ? out.reply.length === 0
              : e.kind === 'exact'
                ? out.reply.equals(e.reply)
                : e.check(out.reply);
          if (!ok) {
            stats.mismatches++;
            if (mismatchSamples.length < 10) {
              mismatchSamples.push(
                `sent ${bytes.toString('hex').slice(0, 160)} in ${chunks.length} write(s): expected ${e.kind === 'exact' ? e.reply.toString('hex') : e.kind === 'check' ? e.what : 'no reply'}, got ${out.reply.toString('hex').slice(0, 80) || 'nothing'}`,
              );
            }
          }
        }
        if (stats.sent === warmAt && Number.isNaN(rssWarm)) {
          rssWarm = rssMb(pid);
          fdsWarm = openFds(pid);
        }
        if (Date.now() - lastReport > 1000) {
          lastReport = Date.now();
          rssSamples.push(rssMb(pid));
          if (daemon.child.exitCode !== null || daemon.child.signalCode !== null)
            throw new Error(`daemon died: ${daemon.stderr().slice(-2000)}`);
          if (LONG && rssSamples.length % 10 === 0) {
            process.stderr.write(
              `[fuzz] ${stats.sent.toLocaleString('en')} packets, ${Math.round(stats.sent / ((Date.now() - started) / 1000))}/s, RSS ${rssSamples.at(-1)!.toFixed(1)} MB\n`,
            );
          }
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const seconds = (Date.now() - started) / 1000;

    // Let timers and half-closed sockets settle, then look at the daemon.
    await sleep(1500);
    const rssEnd = rssMb(pid);
    let fdsEnd = openFds(pid);
    for (let i = 0; i < 20 && fdsEnd > fdsStart + 8; i++) {
      await sleep(500);
      fdsEnd = openFds(pid);
    }
    const rssMax = Math.max(...rssSamples, rssEnd);
    const summary = {
      packets: stats.sent,
      bytes: stats.bytes,
      splitAcrossWrites: stats.split,
      seconds: Number(seconds.toFixed(1)),
      packetsPerSecond: Math.round(stats.sent / seconds),
      replied: stats.replied,
      closedWithoutReply: stats.silent,
      rssStartMb: Number(rssStart.toFixed(1)),
      rssWarmMb: Number(rssWarm.toFixed(1)),
      rssMaxMb: Number(rssMax.toFixed(1)),
      rssEndMb: Number(rssEnd.toFixed(1)),
      fds: { start: fdsStart, warm: fdsWarm, end: fdsEnd },
      hangs: stats.hangs,
      clientErrors: stats.errors,
      mismatches: stats.mismatches,
      seed: SEED,
    };
    process.stderr.write(`[fuzz] ${JSON.stringify(summary)}\n`);
    if (mismatchSamples.length) process.stderr.write(`[fuzz] mismatches:\n  ${mismatchSamples.join('\n  ')}\n`);

    expect(stats.sent).toBe(PACKETS);
    expect(unhandled).toEqual([]);
    expect(stats.hangs).toBe(0);
    expect(stats.errors).toBe(0);
    expect(mismatchSamples).toEqual([]);
    await assertHealthy();
    // No leaked connections: once the fuzzers are gone only the listeners and the keeper's socket remain.
    expect(fdsEnd).toBeLessThanOrEqual(fdsStart + 8);
    // Memory stays bounded: growth after warm-up below the limit, however many packets were sent.
    expect(rssEnd - rssWarm).toBeLessThan(RSS_GROWTH_LIMIT_MB);
    expect(rssMax - rssWarm).toBeLessThan(RSS_GROWTH_LIMIT_MB * 2);
  });

  test('afterwards the daemon still serves, and its log shows the refusals rate-limited (no log flood)', async () => {
    await assertHealthy();
    const lines = daemon
      .stderr()
      .split('\n')
      .filter((l) => l.includes('refused'));
    // At most 20 refusal lines a second are logged (plus a summary line each second).
    expect(lines.length).toBeGreaterThan(0);
    expect(daemon.stderr()).toMatch(/more refusal\(s\) not logged/);
  });
});
