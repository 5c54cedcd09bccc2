/**
 * The server in-process, over real loopback TCP: lifetimes, timeouts, limits and logging.
 * (Byte-for-byte agreement with the C epmd is the differential suite's job.)
 */
import { connect } from 'node:net';
import { EpmdServer } from '../../src/engine/server';
import { Logger } from '../../src/daemon/log';
import { DEFAULT_LIMITS, type Limits } from '../../src/policy/policy';
import { kill, names, portPlease, register, stop } from '../../src/cli/client';
import { encodeAlive2Request, encodeSimpleRequest } from '../../src/protocol/codec';
import { KILL_REQ, NAMES_REQ } from '../../src/protocol/constants';
import { hold, node, probe } from '../support/probe';

let server: EpmdServer;
let lines: string[];
let killed: number;
let endpoint: { host: string; port: number };

async function start(
  options: { relaxed?: boolean; limits?: Partial<Limits>; delayWriteMs?: number; delayAcceptMs?: number } = {},
) {
  lines = [];
  killed = 0;
  server = new EpmdServer(
    {
      relaxedCommandCheck: options.relaxed ?? false,
      limits: { ...DEFAULT_LIMITS, ...options.limits },
      delayWriteMs: options.delayWriteMs ?? 0,
      delayAcceptMs: options.delayAcceptMs ?? 0,
    },
    new Logger({ journal: true, level: 3, sink: (l) => lines.push(l) }),
    { kill: () => killed++ },
  );
  const [served] = await server.listen([{ kind: 'address', host: '127.0.0.1', port: 0 }]);
  endpoint = { host: '127.0.0.1', port: served!.port };
}

afterEach(async () => {
  await server?.close();
});

const registered = async () => (await names(endpoint)).nodes.map((n) => n.name);
const until = async (predicate: () => Promise<boolean> | boolean, ms = 3000) => {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
};

test('a registration lives exactly as long as its connection: EOF unregisters', async () => {
  await start();
  const a = await register(endpoint, node('alpha', 7001));
  expect(a.result).toBe(0);
  expect(await portPlease(endpoint, 'alpha')).toMatchObject({ found: true, port: 7001 });
  await a.close();
  await until(async () => (await registered()).length === 0);
  expect(await portPlease(endpoint, 'alpha')).toEqual({ found: false });
  expect(lines.join('')).toMatch(
    /<6>registered alpha port 7001 \(normal, versions 5-6, creation \d+\) from 127\.0\.0\.1; 1 node\(s\) registered/,
  );
  expect(lines.join('')).toMatch(/<6>unregistered alpha port 7001 .* connection closed; 0 node\(s\) registered/);
});

test('a stray byte from a registered node unregisters it and closes the connection', async () => {
  await start();
  const h = await hold(endpoint.port, encodeAlive2Request(node('chatty')));
  await h.waitFor(6);
  expect(await registered()).toEqual(['chatty']);
  h.socket.write(Buffer.from([0]));
  await h.closed;
  expect(await registered()).toEqual([]);
  expect(lines.join('')).toMatch(/unregistered chatty .* node sent 1 unexpected byte/);
});

test('an incomplete request is closed after the packet timeout (whole seconds, strictly), a registration never is', async () => {
  await start({ limits: { packetTimeoutSeconds: 1 } });
  const a = await register(endpoint, node('patient'));
  const t0 = Date.now();
  // Idle for more than 1 s is closed at the next sweep: after more than 1 s, and by 1 + 1 + 1 s at the latest.
  const [partial, idle] = await Promise.all([
    probe(endpoint.port, [Buffer.from([0, 5, 0x7a])], { waitMs: 5000 }),
    probe(endpoint.port, [], { waitMs: 5000 }),
  ]);
  expect(partial).toEqual({ reply: Buffer.alloc(0), ended: 'closed' });
  expect(idle.ended).toBe('closed');
  expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
  expect(Date.now() - t0).toBeLessThan(3500);
  // Gaps of 0.8 s: never idle for a whole timeout, so the request is served however long it takes in all.
  const slow = await probe(endpoint.port, [Buffer.from([0]), Buffer.from([1]), Buffer.from('n')], {
    gapMs: 800,
    waitMs: 2000,
  });
  expect(slow.ended).toBe('closed');
  expect(slow.reply.length).toBeGreaterThan(4);
  expect(a.socket.destroyed).toBe(false);
  expect(await registered()).toEqual(['patient']);
  expect(lines.join('')).toMatch(/refused 127\.0\.0\.1: no complete request, idle for more than 1 s/);
  await a.close();
});

test('-delay_write: a complete request whose reply is pending is not idle, and NAMES comes in one write per line', async () => {
  await start({ delayWriteMs: 1200, limits: { packetTimeoutSeconds: 1 } });
  const a = await register(endpoint, node('one'));
  const b = await register(endpoint, node('two'));
  const chunks: { at: number; bytes: Buffer }[] = [];
  const t0 = Date.now();
  await new Promise<void>((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: endpoint.port }, () =>
      socket.write(encodeSimpleRequest(NAMES_REQ)),
    );
    socket.on('data', (d: Buffer) => chunks.push({ at: Date.now() - t0, bytes: d }));
    socket.on('error', reject);
    socket.on('close', () => resolve());
  });
  const reply = Buffer.concat(chunks.map((c) => c.bytes));
  expect(reply.readUInt32BE(0)).toBe(endpoint.port);
  expect(reply.subarray(4).toString()).toBe('name two at port 6000\nname one at port 6000\n');
  // Three writes, 1.2 s apart: 3.6 s in all, three times the packet timeout.
  expect(chunks.map((c) => c.bytes.length)).toEqual([4, 22, 22]);
  expect(chunks[2]!.at).toBeGreaterThanOrEqual(3500);
  await Promise.all([a.close(), b.close()]);
}, 20_000);

test('a request that came in pieces, then a hang-up while its reply is delayed: answered whole, without spinning', async () => {
  // The connection is in the epoll set from its first piece, and stays there while JS owes the reply: the FIN
  // must make the engine stop watching it once, not wake the loop again and again until the reply goes out.
  await start({ delayWriteMs: 600 });
  const a = await register(endpoint, node('one'));
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const r = await probe(endpoint.port, [Buffer.from([0, 1]), Buffer.from([NAMES_REQ])], {
    halfClose: true,
    waitMs: 5000,
  });
  const wallUs = Number(process.hrtime.bigint() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  expect(r.ended).toBe('closed');
  expect(r.reply.readUInt32BE(0)).toBe(endpoint.port);
  expect(r.reply.subarray(4).toString()).toBe('name one at port 6000\n');
  expect(wallUs).toBeGreaterThanOrEqual(1_100_000); // two delayed writes: the port, then the line
  expect(cpu.user + cpu.system).toBeLessThan(wallUs / 2); // a busy loop would use all of it
  await a.close();
}, 20_000);

test('a registration handed to another server as a raw fd stays registered on the same connection', async () => {
  // What a live upgrade and the fd store do across processes, here between two servers in one process.
  await start();
  const held = await hold(endpoint.port, encodeAlive2Request(node('moved', 7100)));
  await held.waitFor(6);
  const registration = server.registry.lookup(Buffer.from('moved'))!;
  const next = new EpmdServer({ limits: DEFAULT_LIMITS }, new Logger({ journal: true, level: 3, sink: () => {} }));
  try {
    const [served] = await next.listen([{ kind: 'address', host: '127.0.0.1', port: 0 }]);
    const nextEndpoint = { host: '127.0.0.1', port: served!.port };
    const restored = {
      info: registration,
      creation: registration.creation,
      registeredAt: registration.registeredAt,
      fdName: null,
      peer: registration.owner.peer,
    };
    const fd = registration.owner.detach();
    expect(fd).toBeGreaterThanOrEqual(0);
    expect(next.adoptRegistration(fd, restored)).toBe(true);
    expect(await portPlease(nextEndpoint, 'moved')).toMatchObject({ found: true, port: 7100 });
    expect(next.registry.lookup(Buffer.from('moved'))?.creation).toBe(registration.creation);
    // Another connection that claims the same name is refused, and its fd closed: its node sees EOF.
    const twin = await hold(endpoint.port, encodeAlive2Request(node('twin', 7101)));
    await twin.waitFor(6);
    const claim = server.registry.lookup(Buffer.from('twin'))!.owner.detach();
    expect(next.adoptRegistration(claim, restored)).toBe(false);
    await twin.closed;
    // The node's connection never closed, and its EOF now ends the registration in the new server.
    expect(held.socket.destroyed).toBe(false);
    await held.close();
    await until(() => next.registry.size === 0);
  } finally {
    await next.close();
  }
});

test('-delay_accept: a connection is read only after the delay, whatever it sent at once; then served as usual', async () => {
  await start({ delayAcceptMs: 400 });
  const t0 = Date.now();
  const timed = (writes: Buffer[], gapMs = 20) =>
    probe(endpoint.port, writes, { gapMs, waitMs: 3000 }).then((r) => ({ ...r, at: Date.now() - t0 }));
  const [a, b] = await Promise.all([
    timed([encodeSimpleRequest(NAMES_REQ)]),
    timed([Buffer.from([0, 1]), Buffer.from([NAMES_REQ])], 600),
  ]);
  for (const r of [a, b]) {
    expect(r.ended).toBe('closed');
    expect(r.reply.readUInt32BE(0)).toBe(endpoint.port);
  }
  expect(a.at).toBeGreaterThanOrEqual(390); // its request was there at once, but not read before the delay
  expect(b.at).toBeGreaterThanOrEqual(600); // read at 400 ms, half a request: it waited for the rest
  const t1 = Date.now();
  const reg = await register(endpoint, node('late'));
  expect(Date.now() - t1).toBeGreaterThanOrEqual(390); // a registration waits for the delay too
  expect(await registered()).toEqual(['late']);
  await reg.close();
});

test('STOP closes the node connection and unregisters before answering', async () => {
  await start({ relaxed: true });
  const a = await register(endpoint, node('victim'));
  const closed = new Promise<void>((r) => a.socket.once('close', () => r()));
  expect(await stop(endpoint, 'victim')).toBe('STOPPED');
  expect(await registered()).toEqual([]);
  await closed;
  expect(await stop(endpoint, 'victim')).toBe('NOEXIST');
});

test('KILL: refused with nodes registered unless relaxed; accepted when empty', async () => {
  await start();
  const a = await register(endpoint, node('alive'));
  expect(await kill(endpoint)).toBe('NO');
  expect(killed).toBe(0);
  await a.close();
  await until(async () => (await registered()).length === 0);
  expect(await kill(endpoint)).toBe('OK');
  expect(killed).toBe(1);
  await server.close();
  await start({ relaxed: true });
  await register(endpoint, node('alive2'));
  expect(await kill(endpoint)).toBe('OK');
  expect(killed).toBe(1);
});

test('an accepted KILL exits even when its reply cannot be written: -delay_write past the packet timeout, or a reset client', async () => {
  await start({ delayWriteMs: 1500, limits: { packetTimeoutSeconds: 1 } });
  // The reply is due 1.5 s after the request, past the 1 s packet timeout: a pending reply is not idle.
  expect(await kill(endpoint)).toBe('OK');
  expect(killed).toBe(1);
  // The client resets the connection while the reply waits.
  const socket = connect({ host: '127.0.0.1', port: endpoint.port }, () => {
    socket.write(encodeSimpleRequest(KILL_REQ));
    setTimeout(() => socket.resetAndDestroy(), 100);
  });
  socket.on('error', () => undefined);
  await until(() => killed === 2, 4000);
}, 15_000);

test('an accepted KILL exits even when the client reset the connection before the reply', async () => {
  await start();
  // The request and a reset in one go: the reply finds the connection gone.
  const socket = connect({ host: '127.0.0.1', port: endpoint.port }, () => {
    socket.write(encodeSimpleRequest(KILL_REQ), () => socket.resetAndDestroy());
  });
  socket.on('error', () => undefined);
  await until(() => killed === 1);
});

test('connection and registration limits are enforced, counted and logged', async () => {
  await start({ limits: { maxConnections: 3, maxRegistrations: 1 } });
  const a = await register(endpoint, node('first'));
  const b = await register(endpoint, node('second'));
  expect(b.result).toBe(1);
  const c = await hold(endpoint.port, Buffer.alloc(0));
  await until(() => server.openConnections === 3);
  // The fourth connection is closed at once, without a reply.
  const d = await probe(endpoint.port, [encodeSimpleRequest(NAMES_REQ)], { waitMs: 2000 });
  expect(d).toEqual({ reply: Buffer.alloc(0), ended: 'closed' });
  expect(server.stats.limitHits).toBe(1);
  expect(lines.join('')).toMatch(/connection limit \(3\) reached/);
  expect(lines.join('')).toMatch(/ALIVE2 second refused: registry full/);
  await Promise.all([a.close(), b.close(), c.close()]);
});

test('each refusal is counted under the reason the connection layer gives, beside its log line', async () => {
  await start({ limits: { packetTimeoutSeconds: 1 } });
  const taken = await register(endpoint, node('taken'));
  expect((await register(endpoint, node('taken'))).result).toBe(1);
  const refusedWith = async (bytes: Buffer) =>
    expect(await probe(endpoint.port, [bytes], { waitMs: 3000 })).toEqual({ reply: Buffer.alloc(0), ended: 'closed' });
  await refusedWith(Buffer.from([0, 0])); // zero length
  await refusedWith(Buffer.from([0xff, 0xff])); // longer than any request
  await refusedWith(Buffer.concat([encodeSimpleRequest(NAMES_REQ), Buffer.from([0])])); // bytes after it
  await refusedWith(Buffer.from([0, 1, 0x7f])); // an unknown request
  await refusedWith(Buffer.from([0, 6, 0x73, ...Buffer.from('taken')])); // STOP without -relaxed_command_check
  await refusedWith(Buffer.from([0, 5, 0x7a])); // incomplete: the packet timeout
  expect(server.refusals).toMatchObject({
    registration: 1,
    malformed: 3,
    too_large: 1,
    stop_not_relaxed: 1,
    timeout: 1,
    not_local: 0,
    budget: 0,
  });
  expect(Object.values(server.refusals).reduce((a, n) => a + n, 0)).toBe(server.stats.refused);
  const log = lines.join('');
  for (const why of [
    'ALIVE2 taken refused: ',
    'zero-length request',
    'request length 65535 exceeds',
    'bytes after the request',
    'STOP_REQ needs -relaxed_command_check',
    'no complete request, idle for more than 1 s',
  ])
    expect(log).toContain(`refused 127.0.0.1: ${why}`);
  await taken.close();
});

test('garbage on many connections never takes the server down', async () => {
  await start();
  const keeper = await register(endpoint, node('keeper'));
  let seed = 42;
  const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const probes = [];
  for (let i = 0; i < 200; i++) {
    const bytes = Buffer.alloc(1 + Math.floor(rand() * 40));
    for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(rand() * 256);
    probes.push(probe(endpoint.port, [bytes], { waitMs: 200 }));
  }
  await Promise.all(probes);
  expect(await registered()).toEqual(['keeper']);
  expect(await portPlease(endpoint, 'keeper')).toMatchObject({ found: true });
  await keeper.close();
});

test('NAMES is cached and refreshed on every change', async () => {
  await start();
  const a = await register(endpoint, node('a'));
  const first = (await names(endpoint)).text;
  expect((await names(endpoint)).text).toBe(first);
  const b = await register(endpoint, node('b'));
  expect((await names(endpoint)).text).toBe('name b at port 6000\nname a at port 6000\n');
  await Promise.all([a.close(), b.close()]);
});

test('a dribbling request is dropped once its total budget is spent, however often it sends', async () => {
  await start({ limits: { packetTimeoutSeconds: 1, requestBudgetMs: 600 } });
  const t0 = Date.now();
  // One byte every 150 ms: never idle for the packet timeout, but slower than the budget allows.
  const bytes = Array.from({ length: 20 }, () => Buffer.from([0]));
  const r = await probe(endpoint.port, [Buffer.from([0x0b]), ...bytes], { gapMs: 150, waitMs: 500 });
  expect(r).toEqual({ reply: Buffer.alloc(0), ended: 'closed' });
  expect(Date.now() - t0).toBeLessThan(1500);
  expect(lines.join('')).toMatch(/request not complete within 600 ms/);
});
