/**
 * The native engine's own paths, in-process over real loopback TCP: framing across partial reads (every request
 * split at every byte, and in random pieces), resets at every byte, slow readers of large replies (short writes),
 * and a registration whose ALIVE2 arrives in pieces. Whatever arrives, the engine ends every connection it should,
 * leaks none, and the next client is served.
 *
 *   SDEPMD_FUZZ_LONG=1 -> more random splits; SDEPMD_FUZZ_SEED=<seed> replays a failing run.
 */
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { EpmdServer } from '../../src/engine/server';
import { Logger } from '../../src/daemon/log';
import { DEFAULT_LIMITS } from '../../src/policy/policy';
import { names, portPlease, register } from '../../src/cli/client';
import { encodeAlive2Request, encodeNameRequest, encodeSimpleRequest } from '../../src/protocol/codec';
import { NAMES_REQ, PORT_PLEASE2_REQ } from '../../src/protocol/constants';
import { hold, node, probe } from '../support/probe';

const LONG = process.env.SDEPMD_FUZZ_LONG === '1';
const SEED = process.env.SDEPMD_FUZZ_SEED === undefined ? undefined : Number(process.env.SDEPMD_FUZZ_SEED);

let server: EpmdServer;
let endpoint: { host: string; port: number };
let lines: string[];

beforeEach(async () => {
  lines = [];
  server = new EpmdServer(
    { limits: { ...DEFAULT_LIMITS, packetTimeoutSeconds: 2 } },
    new Logger({ journal: true, level: 7, sink: (l) => lines.push(l) }),
  );
  const [served] = await server.listen([{ kind: 'address', host: '127.0.0.1', port: 0 }]);
  endpoint = { host: '127.0.0.1', port: served!.port };
});
afterEach(async () => {
  await server.close('hang-up', 0);
});

const until = async (predicate: () => boolean, ms = 3000) => {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};

/** Sends `bytes` in the given pieces (each its own segment), then resets the connection at once. */
function sendAndReset(port: number, pieces: readonly Buffer[]): Promise<void> {
  return new Promise((resolve) => {
    const sendAll = async (): Promise<void> => {
      socket.setNoDelay(true);
      for (const piece of pieces) {
        socket.write(piece);
        await new Promise((r) => setTimeout(r, 2));
      }
      socket.resetAndDestroy();
    };
    const socket: Socket = connect({ host: '127.0.0.1', port }, () => void sendAll());
    socket.on('error', () => undefined);
    socket.on('close', () => resolve());
  });
}

test('a request split at every byte gets the same reply as in one piece', async () => {
  const a = await register(endpoint, node('splitme', 7777));
  const requests = [
    encodeNameRequest(PORT_PLEASE2_REQ, 'splitme'),
    encodeNameRequest(PORT_PLEASE2_REQ, 'nosuchnode'),
    encodeSimpleRequest(NAMES_REQ),
  ];
  for (const request of requests) {
    const whole = await probe(endpoint.port, [request]);
    expect(whole.ended).toBe('closed');
    expect(whole.reply.length).toBeGreaterThan(1);
    for (let at = 1; at < request.length; at++) {
      const split = await probe(endpoint.port, [request.subarray(0, at), request.subarray(at)], { gapMs: 15 });
      expect({ at, ...split }).toEqual({ at, ...whole });
    }
  }
  await until(() => server.openConnections === 1);
  await a.close();
});

test('random pieces, with and without bytes after the request, are framed as in one piece', async () => {
  const a = await register(endpoint, node('pieces', 7001));
  const request = encodeNameRequest(PORT_PLEASE2_REQ, 'pieces');
  const expected = (await probe(endpoint.port, [request])).reply;
  await fc.assert(
    fc.asyncProperty(
      fc.uniqueArray(fc.integer({ min: 1, max: request.length - 1 }), { maxLength: 4 }),
      fc.boolean(),
      async (cuts, extra) => {
        const points = [0, ...cuts.sort((x, y) => x - y), request.length];
        const pieces = points.slice(1).map((end, i) => request.subarray(points[i], end));
        // A byte after the request in its last piece: refused, as the C epmd does (no reply).
        if (extra) pieces[pieces.length - 1] = Buffer.concat([pieces[pieces.length - 1]!, Buffer.from([0])]);
        const r = await probe(endpoint.port, pieces, { gapMs: 3 });
        expect(r.ended).toBe('closed');
        expect(r.reply).toEqual(extra ? Buffer.alloc(0) : expected);
      },
    ),
    { numRuns: LONG ? 2000 : 150, ...(SEED === undefined ? {} : { seed: SEED }) },
  );
  await until(() => server.openConnections === 1);
  await a.close();
}, 120_000);

test('a reset at every byte of a request (lookup or ALIVE2) leaks nothing and registers nothing', async () => {
  const keeper = await register(endpoint, node('keeper', 7002));
  for (const request of [encodeNameRequest(PORT_PLEASE2_REQ, 'keeper'), encodeAlive2Request(node('ghost'))]) {
    for (let at = 0; at <= request.length; at++) {
      await sendAndReset(endpoint.port, at === 0 ? [] : [request.subarray(0, at)]);
    }
  }
  await until(() => server.openConnections === 1);
  expect((await names(endpoint)).nodes.map((n) => n.name)).toEqual(['keeper']);
  expect(await portPlease(endpoint, 'keeper')).toMatchObject({ found: true, port: 7002 });
  await keeper.close();
  await until(() => server.registry.size === 0);
});

test('an ALIVE2 in pieces registers; its connection is then watched for EOF, data and resets', async () => {
  const request = encodeAlive2Request(node('dribbled', 7003));
  const h = await hold(endpoint.port, Buffer.alloc(0));
  for (let at = 0; at < request.length; at += 3) {
    h.socket.write(request.subarray(at, at + 3));
    await new Promise((r) => setTimeout(r, 5));
  }
  await h.waitFor(6);
  expect(await portPlease(endpoint, 'dribbled')).toMatchObject({ found: true, port: 7003 });
  h.socket.resetAndDestroy();
  await until(() => server.registry.size === 0);
  expect(lines.join('')).toMatch(/unregistered dribbled port 7003 .* connection closed/);
  await until(() => server.openConnections === 0);
});

test('slow readers of a large NAMES reply get all of it (short writes), one byte-sized read at a time', async () => {
  const nodes = [];
  for (let i = 0; i < 300; i += 50) {
    nodes.push(
      ...(await Promise.all(
        Array.from({ length: 50 }, (_, j) => register(endpoint, node(`n${i + j}_${'x'.repeat(200)}`, 8000 + i + j))),
      )),
    );
  }
  const expected = (await probe(endpoint.port, [encodeSimpleRequest(NAMES_REQ)])).reply;
  expect(expected.length).toBeGreaterThan(60_000);
  const readers = Array.from(
    { length: 4 },
    () =>
      new Promise<Buffer>((resolve, reject) => {
        const chunks: Buffer[] = [];
        const socket = connect({ host: '127.0.0.1', port: endpoint.port }, () => {
          socket.write(encodeSimpleRequest(NAMES_REQ));
        });
        // Read slowly: pause after every chunk, so the kernel's buffers fill and the engine's writes come up short.
        socket.on('data', (d: Buffer) => {
          chunks.push(d);
          socket.pause();
          setImmediate(() => socket.resume());
        });
        socket.on('error', reject);
        socket.on('close', () => resolve(Buffer.concat(chunks)));
      }),
  );
  for (const got of await Promise.all(readers)) expect(got).toEqual(expected);
  await Promise.all(nodes.map((n) => n.close()));
  await until(() => server.openConnections === 0);
}, 60_000);
