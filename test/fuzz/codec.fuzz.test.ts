/**
 * Property-based and mutation fuzzing of the pure codec (frameRequest / decodeRequest / the encoders), with
 * fast-check. Random frames, truncated frames, lengths that lie, every request code, giant and zero lengths, and
 * incremental framing: a valid request split at every byte boundary (or fed one byte at a time) must frame exactly
 * as the whole request does.
 *
 * Runs: SDEPMD_FUZZ_RUNS (default 2,000 per property; the long mode, SDEPMD_FUZZ_LONG=1, uses 50,000).
 * A failure prints fast-check's seed and path: re-run with SDEPMD_FUZZ_SEED=<seed> to replay it.
 */
import fc from 'fast-check';
import {
  decodeRequest,
  encodeAlive2Request,
  encodeNameRequest,
  encodeSimpleRequest,
  frame,
  frameRequest,
  HEADER_BYTES,
  MAX_BODY_BYTES,
  type Frame,
} from '../../src/protocol/codec';
import {
  ALIVE2_REQ,
  DUMP_REQ,
  INBUF_SIZE,
  KILL_REQ,
  MAX_NAME_BYTES,
  MAX_NAME_CHARS,
  NAMES_REQ,
  PORT_PLEASE2_REQ,
  STOP_REQ,
} from '../../src/protocol/constants';
import { mutate } from './mutate';

const LONG = process.env.SDEPMD_FUZZ_LONG === '1';
const RUNS = Number(process.env.SDEPMD_FUZZ_RUNS ?? (LONG ? 50_000 : 2_000));
const SEED = process.env.SDEPMD_FUZZ_SEED === undefined ? undefined : Number(process.env.SDEPMD_FUZZ_SEED);
const params = (runs = RUNS): fc.Parameters<unknown> => ({
  numRuns: runs,
  ...(SEED === undefined ? {} : { seed: SEED }),
});

jest.setTimeout(LONG ? 600_000 : 60_000);

const TAGS = [ALIVE2_REQ, PORT_PLEASE2_REQ, NAMES_REQ, DUMP_REQ, KILL_REQ, STOP_REQ];

// ---------------------------------------------------------------------------------------------------------------
// Generators

const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((a) => Buffer.from(a));
/** A node name the registry would accept: UTF-8, no NUL, at most 255 code points and 1020 bytes. */
const goodName = fc
  .string({ unit: 'grapheme', minLength: 1, maxLength: 40 })
  .map((s) => s.replace(/\0/g, 'a'))
  .filter((s) => s.length > 0 && Buffer.byteLength(s) <= MAX_NAME_BYTES && [...s].length <= MAX_NAME_CHARS);
const alive2 = fc.record({
  name: fc.oneof(
    goodName,
    bytes(300).filter((b) => b.length > 0 && !b.includes(0)),
  ),
  port: fc.integer({ min: 0, max: 65535 }),
  nodeType: fc.oneof(fc.constantFrom(77, 72), fc.integer({ min: 0, max: 255 })),
  protocol: fc.integer({ min: 0, max: 255 }),
  highestVersion: fc.integer({ min: 0, max: 65535 }),
  lowestVersion: fc.integer({ min: 0, max: 65535 }),
  extra: bytes(64),
});
/** A valid framed request of every kind. */
const validRequest: fc.Arbitrary<Buffer> = fc.oneof(
  alive2.map((n) => encodeAlive2Request(n)),
  goodName.map((n) => encodeNameRequest(PORT_PLEASE2_REQ, n)),
  goodName.map((n) => encodeNameRequest(STOP_REQ, n)),
  fc.constantFrom(NAMES_REQ, DUMP_REQ, KILL_REQ).map((t) => encodeSimpleRequest(t as typeof NAMES_REQ)),
);

const mutationOps = fc.array(fc.tuple(fc.nat(5), fc.nat(5000), fc.nat(255)), { minLength: 1, maxLength: 6 });
const mutated = fc.tuple(validRequest, mutationOps).map(([b, ops]) => mutate(b, ops, 8));

/** A frame whose 2-byte length lies about the body that follows. */
const lyingLength = fc
  .tuple(fc.integer({ min: 0, max: 65535 }), fc.constantFrom(...TAGS), bytes(200))
  .map(([len, tag, rest]) => {
    const out = Buffer.alloc(HEADER_BYTES + 1 + rest.length);
    out.writeUInt16BE(len, 0);
    out[2] = tag;
    rest.copy(out, 3);
    return out;
  });

const anyPacket = fc.oneof(bytes(64), bytes(4000), validRequest, mutated, lyingLength);

// ---------------------------------------------------------------------------------------------------------------
// An independent model of the framing rule (from the C epmd: 2-byte length, 0 and length+2 >= INBUF_SIZE refused).

function modelFrame(received: Buffer): Frame['status'] {
  if (received.length < 2) return 'incomplete';
  const len = received.readUInt16BE(0);
  if (len === 0 || len + 2 >= INBUF_SIZE) return 'invalid';
  return received.length < 2 + len ? 'incomplete' : 'complete';
}

/** How a connection frames bytes that arrive in chunks: the first chunk after which the frame is not incomplete. */
function frameIncrementally(chunks: readonly Buffer[]): { frame: Frame; consumedChunks: number } {
  let received = Buffer.alloc(0);
  for (let i = 0; i < chunks.length; i++) {
    received = Buffer.concat([received, chunks[i]!]);
    const f = frameRequest(received);
    if (f.status !== 'incomplete') return { frame: f, consumedChunks: i + 1 };
  }
  return { frame: frameRequest(received), consumedChunks: chunks.length };
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

function sameFrame(a: Frame, b: Frame): boolean {
  if (a.status !== b.status) return false;
  if (a.status === 'complete' && b.status === 'complete') return a.body.equals(b.body) && a.excess === b.excess;
  return true;
}

// ---------------------------------------------------------------------------------------------------------------

describe('frameRequest (property-based)', () => {
  test('never throws, and agrees with the model of the framing rule on any bytes', () => {
    fc.assert(
      fc.property(anyPacket, (packet) => {
        const f = frameRequest(packet);
        expect(f.status).toBe(modelFrame(packet));
        if (f.status === 'complete') {
          const len = packet.readUInt16BE(0);
          expect(f.body.equals(packet.subarray(2, 2 + len))).toBe(true);
          expect(f.excess).toBe(packet.length - 2 - len);
        }
      }),
      params(),
    );
  });

  test('zero length is invalid at once; every giant length (length + 2 >= 3060) is invalid with only the header', () => {
    expect(frameRequest(Buffer.from([0, 0])).status).toBe('invalid');
    expect(frameRequest(Buffer.from([0, 0, NAMES_REQ])).status).toBe('invalid');
    for (let len = MAX_BODY_BYTES + 1; len <= 0xffff; len++) {
      const header = Buffer.alloc(2);
      header.writeUInt16BE(len, 0);
      const f = frameRequest(header);
      if (f.status !== 'invalid') throw new Error(`length ${len} framed as ${f.status}`);
    }
    // The largest length accepted: MAX_BODY_BYTES (3057), so that length + 2 = 3059 < INBUF_SIZE (3060).
    expect(MAX_BODY_BYTES + 2).toBe(INBUF_SIZE - 1);
    const header = Buffer.alloc(2);
    header.writeUInt16BE(MAX_BODY_BYTES, 0);
    expect(frameRequest(header).status).toBe('incomplete');
    expect(frameRequest(Buffer.concat([header, Buffer.alloc(MAX_BODY_BYTES, NAMES_REQ)])).status).toBe('complete');
  });

  test('a length that lies: longer than the body stays incomplete, shorter leaves excess bytes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: MAX_BODY_BYTES }), fc.integer({ min: 0, max: 300 }), (len, have) => {
        const packet = Buffer.alloc(2 + have, 0x7a);
        packet.writeUInt16BE(len, 0);
        const f = frameRequest(packet);
        if (have < len) expect(f.status).toBe('incomplete');
        else {
          expect(f.status).toBe('complete');
          if (f.status === 'complete') expect(f.excess).toBe(have - len);
        }
      }),
      params(),
    );
  });

  test('every truncation of a valid request is incomplete, never invalid or complete', () => {
    fc.assert(
      fc.property(validRequest, (req) => {
        for (let cut = 0; cut < req.length; cut++) expect(frameRequest(req.subarray(0, cut)).status).toBe('incomplete');
        expect(frameRequest(req).status).toBe('complete');
      }),
      params(Math.max(200, RUNS / 10)),
    );
  });

  test('splitting a valid request at every byte boundary frames exactly as the whole request', () => {
    fc.assert(
      fc.property(validRequest, (req) => {
        const whole = frameRequest(req);
        for (let cut = 1; cut < req.length; cut++) {
          const split = frameIncrementally([req.subarray(0, cut), req.subarray(cut)]);
          expect(sameFrame(split.frame, whole)).toBe(true);
          expect(split.consumedChunks).toBe(2);
        }
        // One byte at a time.
        const dribbled = frameIncrementally([...req].map((b) => Buffer.from([b])));
        expect(sameFrame(dribbled.frame, whole)).toBe(true);
        // And the decoded request is the same.
        if (whole.status === 'complete' && dribbled.frame.status === 'complete') {
          expect(decodeRequest(dribbled.frame.body)).toEqual(decodeRequest(whole.body));
        }
      }),
      params(Math.max(200, RUNS / 10)),
    );
  });

  test('random splits of any packet frame as the whole packet does (first decisive chunk wins)', () => {
    fc.assert(
      fc.property(anyPacket, fc.array(fc.nat(5000), { maxLength: 8 }), (packet, cuts) => {
        const chunks = splitAt(packet, cuts);
        const { frame: f, consumedChunks } = frameIncrementally(chunks);
        // What had arrived when the connection decided: the whole packet's verdict on that prefix.
        const seen = Buffer.concat(chunks.slice(0, consumedChunks));
        expect(sameFrame(f, frameRequest(seen))).toBe(true);
        // Status never depends on where the packet was cut, only on how much of it was seen: invalid and complete
        // are final (a longer prefix keeps the same status, with more excess).
        if (f.status !== 'incomplete') {
          const later = frameRequest(packet);
          expect(later.status).toBe(f.status);
          if (f.status === 'complete' && later.status === 'complete') expect(later.body.equals(f.body)).toBe(true);
        }
      }),
      params(),
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------

/** What decodeRequest must say about a body, from the C epmd's rules (docs/protocol.md), written independently. */
function modelDecode(body: Buffer): { ok: boolean; kind?: string } {
  const tag = body[0];
  if (tag === NAMES_REQ) return { ok: true, kind: 'names' };
  if (tag === DUMP_REQ) return { ok: true, kind: 'dump' };
  if (tag === KILL_REQ) return { ok: true, kind: 'kill' };
  if (tag === STOP_REQ) return { ok: body.length > 1, kind: 'stop' };
  if (tag === PORT_PLEASE2_REQ) {
    let name = body.subarray(1);
    if (name.length > 0 && name[name.length - 1] === 0) name = name.subarray(0, -1);
    const valid =
      name.length > 0 &&
      !name.includes(0) &&
      name.length <= MAX_NAME_BYTES &&
      Buffer.from(name.toString('utf8')).equals(name) &&
      [...name.toString('utf8')].length <= MAX_NAME_CHARS;
    return { ok: valid, kind: 'port_please2' };
  }
  if (tag === ALIVE2_REQ) {
    if (body.length <= 13) return { ok: false };
    const nlen = body.readUInt16BE(9);
    if (11 + nlen + 2 > body.length) return { ok: false };
    const elen = body.readUInt16BE(11 + nlen);
    if (13 + nlen + elen > body.length) return { ok: false };
    if (body.subarray(11, 11 + nlen).includes(0)) return { ok: false };
    return { ok: true, kind: 'alive2' };
  }
  return { ok: false };
}

describe('decodeRequest (property-based)', () => {
  test('never throws on any body, and agrees with the model', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          bytes(64),
          bytes(MAX_BODY_BYTES),
          mutated.map((m) => m.subarray(2)),
        ),
        (body) => {
          const d = decodeRequest(body);
          const m = modelDecode(body);
          expect(d.ok).toBe(m.ok);
          if (d.ok) expect(d.request.kind).toBe(m.kind);
          else expect(typeof d.reason).toBe('string');
        },
      ),
      params(),
    );
  });

  test('every request code 0..255, alone and with a random payload', () => {
    for (let tag = 0; tag <= 255; tag++) {
      const alone = decodeRequest(Buffer.from([tag]));
      expect({ tag, ok: alone.ok }).toEqual({ tag, ok: tag === NAMES_REQ || tag === DUMP_REQ || tag === KILL_REQ });
    }
    expect(decodeRequest(Buffer.alloc(0)).ok).toBe(false);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), bytes(300), (tag, rest) => {
        const body = Buffer.concat([Buffer.from([tag]), rest]);
        const d = decodeRequest(body);
        const m = modelDecode(body);
        expect(d.ok).toBe(m.ok);
        if (!TAGS.includes(tag)) expect(d.ok).toBe(false);
      }),
      params(),
    );
  });

  test('mutated valid requests: decoded fields always lie inside the packet', () => {
    fc.assert(
      fc.property(mutated, (packet) => {
        const f = frameRequest(packet);
        if (f.status !== 'complete') return;
        const d = decodeRequest(f.body);
        if (!d.ok) return;
        const r = d.request;
        if (r.kind === 'alive2') {
          expect(r.name.includes(0)).toBe(false);
          expect(11 + r.name.length + 2 + r.extra.length).toBeLessThanOrEqual(f.body.length);
          expect(r.port).toBe(f.body.readUInt16BE(1));
          // Decoded names are copies: overwriting the receive buffer afterwards does not change them.
          const name = Buffer.from(r.name);
          f.body.fill(0xee);
          expect(r.name.equals(name)).toBe(true);
        }
        if (r.kind === 'port_please2') expect(r.name.length).toBeGreaterThan(0);
      }),
      params(),
    );
  });

  test('round trip: every encoded valid request decodes to what was encoded', () => {
    fc.assert(
      fc.property(alive2, (n) => {
        const f = frameRequest(encodeAlive2Request(n));
        expect(f.status).toBe('complete');
        if (f.status !== 'complete') return;
        expect(f.excess).toBe(0);
        const d = decodeRequest(f.body);
        expect(d.ok).toBe(true);
        if (d.ok && d.request.kind === 'alive2') {
          const name = typeof n.name === 'string' ? Buffer.from(n.name) : n.name;
          expect(d.request.name.equals(name)).toBe(true);
          expect(d.request.extra.equals(n.extra)).toBe(true);
          expect([
            d.request.port,
            d.request.nodeType,
            d.request.protocol,
            d.request.highestVersion,
            d.request.lowestVersion,
          ]).toEqual([n.port, n.nodeType, n.protocol, n.highestVersion, n.lowestVersion]);
        }
      }),
      params(),
    );
    fc.assert(
      fc.property(goodName, (name) => {
        const f = frameRequest(encodeNameRequest(PORT_PLEASE2_REQ, name));
        const d = f.status === 'complete' ? decodeRequest(f.body) : null;
        expect(d?.ok).toBe(true);
        if (d?.ok && d.request.kind === 'port_please2') expect(d.request.name.toString('utf8')).toBe(name);
      }),
      params(),
    );
  });

  test('frame() and frameRequest() are inverse for every body length the C epmd accepts', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: MAX_BODY_BYTES }), fc.nat(255), (len, fill) => {
        const body = Buffer.alloc(len, fill);
        const f = frameRequest(frame(body));
        expect(f.status).toBe('complete');
        if (f.status === 'complete') expect(f.body.equals(body)).toBe(true);
      }),
      params(Math.max(200, RUNS / 10)),
    );
  });
});
