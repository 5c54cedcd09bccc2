import {
  decodeAlive2Reply,
  decodeDumpReply,
  decodeNamesReply,
  decodePort2Reply,
  decodePortHeaderReply,
  decodeRequest,
  encodeAlive2Reply,
  encodeAlive2Request,
  encodeDumpActiveLine,
  encodeDumpUnusedLine,
  encodeNameRequest,
  encodeNamesLine,
  encodePort2Reply,
  encodePortHeader,
  encodeSimpleRequest,
  frame,
  frameRequest,
  MAX_BODY_BYTES,
  PORT2_NOT_FOUND,
  type Request,
} from '../../src/protocol/codec';
import { ALIVE2_REQ, NAMES_REQ, nodeTypeName, PORT_PLEASE2_REQ, STOP_REQ } from '../../src/protocol/constants';

const node = {
  name: Buffer.from('billing_prod'),
  port: 40123,
  nodeType: 77,
  protocol: 0,
  highestVersion: 6,
  lowestVersion: 5,
  extra: Buffer.alloc(0),
};

function decodeFramed(bytes: Buffer): Request {
  const f = frameRequest(bytes);
  if (f.status !== 'complete') throw new Error(`frame ${f.status}`);
  const d = decodeRequest(f.body);
  if (!d.ok) throw new Error(d.reason);
  return d.request;
}

describe('frameRequest', () => {
  test('waits for the length and the body', () => {
    const bytes = encodeSimpleRequest(NAMES_REQ);
    expect(frameRequest(Buffer.alloc(0)).status).toBe('incomplete');
    expect(frameRequest(bytes.subarray(0, 1)).status).toBe('incomplete');
    expect(frameRequest(bytes.subarray(0, 2)).status).toBe('incomplete');
    const f = frameRequest(bytes);
    expect(f).toEqual({ status: 'complete', body: Buffer.from([NAMES_REQ]), excess: 0 });
  });

  test('a valid request split at every byte gives the same frame', () => {
    const bytes = encodeAlive2Request({ ...node, extra: Buffer.from('xyz') });
    const whole = frameRequest(bytes);
    for (let cut = 0; cut < bytes.length; cut++) {
      expect(frameRequest(bytes.subarray(0, cut)).status).toBe('incomplete');
    }
    expect(whole.status).toBe('complete');
  });

  test('zero length is invalid at once', () => {
    expect(frameRequest(Buffer.from([0, 0]))).toMatchObject({ status: 'invalid', reason: 'zero-length request' });
  });

  test('the C epmd limit: length 3057 is accepted, 3058 refused', () => {
    expect(MAX_BODY_BYTES).toBe(3057);
    const ok = Buffer.alloc(2 + 3057);
    ok.writeUInt16BE(3057, 0);
    expect(frameRequest(ok).status).toBe('complete');
    const header = Buffer.from([0x0b, 0xf2]); // 3058
    expect(frameRequest(header)).toMatchObject({ status: 'invalid' });
    expect(frameRequest(Buffer.from([0xff, 0xff]))).toMatchObject({ status: 'invalid' });
  });

  test('counts bytes beyond the request', () => {
    const two = Buffer.concat([encodeSimpleRequest(NAMES_REQ), encodeSimpleRequest(NAMES_REQ)]);
    expect(frameRequest(two)).toMatchObject({ status: 'complete', excess: 3 });
  });
});

describe('decodeRequest', () => {
  test('round-trips ALIVE2_REQ with every field', () => {
    const req = decodeFramed(encodeAlive2Request({ ...node, nodeType: 72, extra: Buffer.from([1, 2, 3]) }));
    expect(req).toEqual({ kind: 'alive2', ...node, nodeType: 72, extra: Buffer.from([1, 2, 3]) });
  });

  test('ALIVE2_REQ of 13 bytes or fewer (no name byte) is refused', () => {
    const body = encodeAlive2Request({ ...node, name: '' }).subarray(2);
    expect(body.length).toBe(13);
    expect(decodeRequest(body)).toMatchObject({ ok: false });
  });

  test('ALIVE2_REQ with an empty name but one trailing byte decodes (as in the C epmd)', () => {
    const body = Buffer.concat([encodeAlive2Request({ ...node, name: '' }).subarray(2), Buffer.from([0])]);
    const d = decodeRequest(body);
    expect(d).toMatchObject({ ok: true, request: { kind: 'alive2', name: Buffer.alloc(0) } });
  });

  test('ALIVE2_REQ whose name or extra length lies is refused', () => {
    const body = Buffer.from(encodeAlive2Request(node).subarray(2));
    const nameTooLong = Buffer.from(body);
    nameTooLong.writeUInt16BE(body.length, 9);
    expect(decodeRequest(nameTooLong)).toMatchObject({ ok: false, reason: expect.stringMatching(/name length/) });
    const extraTooLong = Buffer.from(body);
    extraTooLong.writeUInt16BE(5, body.length - 2);
    expect(decodeRequest(extraTooLong)).toMatchObject({ ok: false, reason: expect.stringMatching(/extra length/) });
  });

  test('ALIVE2_REQ ignores bytes after the extra field', () => {
    const body = Buffer.concat([encodeAlive2Request(node).subarray(2), Buffer.from('junk')]);
    expect(decodeRequest(body)).toMatchObject({ ok: true, request: { name: node.name, extra: Buffer.alloc(0) } });
  });

  test('ALIVE2_REQ with a NUL in the name is refused', () => {
    for (const name of [Buffer.from('a\0b'), Buffer.from('ab\0'), Buffer.from('\0')]) {
      expect(decodeRequest(encodeAlive2Request({ ...node, name }).subarray(2))).toMatchObject({ ok: false });
    }
  });

  test('PORT_PLEASE2_REQ: name, one trailing NUL stripped, empty / NUL / invalid UTF-8 refused', () => {
    expect(decodeFramed(encodeNameRequest(PORT_PLEASE2_REQ, 'foo'))).toEqual({
      kind: 'port_please2',
      name: Buffer.from('foo'),
    });
    expect(decodeFramed(encodeNameRequest(PORT_PLEASE2_REQ, Buffer.from('foo\0')))).toEqual({
      kind: 'port_please2',
      name: Buffer.from('foo'),
    });
    for (const bad of [Buffer.alloc(0), Buffer.from([0]), Buffer.from('a\0b'), Buffer.from([0xff, 0x41])]) {
      expect(decodeRequest(Buffer.concat([Buffer.from([PORT_PLEASE2_REQ]), bad]))).toMatchObject({ ok: false });
    }
    expect(decodeRequest(Buffer.concat([Buffer.from([PORT_PLEASE2_REQ]), Buffer.alloc(1021, 0x61)]))).toMatchObject({
      ok: false,
    });
  });

  test('STOP_REQ compares up to the first NUL', () => {
    expect(decodeFramed(encodeNameRequest(STOP_REQ, Buffer.from('foo\0junk')))).toEqual({
      kind: 'stop',
      name: Buffer.from('foo'),
    });
  });

  test('dispatches on the first byte only; unknown tags are refused', () => {
    expect(decodeRequest(Buffer.from('nJUNK'))).toEqual({ ok: true, request: { kind: 'names' } });
    expect(decodeRequest(Buffer.from('dJUNK'))).toEqual({ ok: true, request: { kind: 'dump' } });
    expect(decodeRequest(Buffer.from('kJUNK'))).toEqual({ ok: true, request: { kind: 'kill' } });
    const known = new Set([0x78, 0x7a, 0x6e, 0x64, 0x6b, 0x73]);
    for (let tag = 0; tag < 256; tag++) {
      if (known.has(tag)) continue;
      expect(decodeRequest(Buffer.from([tag, 1, 2]))).toMatchObject({
        ok: false,
        reason: expect.stringMatching(/unknown request tag/),
      });
    }
  });
});

describe('replies', () => {
  test('ALIVE2_X_RESP carries a 32-bit creation; ALIVE2_RESP a 16-bit one', () => {
    expect(encodeAlive2Reply(0, 0x12345678, 6).toString('hex')).toBe('760012345678');
    expect(encodeAlive2Reply(1, 99, 6).toString('hex')).toBe('760100000063');
    expect(encodeAlive2Reply(0, 3, 5).toString('hex')).toBe('79000003');
    expect(encodeAlive2Reply(1, 99, 5).toString('hex')).toBe('79010063');
  });

  test('PORT2_RESP', () => {
    expect(PORT2_NOT_FOUND.toString('hex')).toBe('7701');
    const reply = encodePort2Reply({ ...node, extra: Buffer.from('ab') });
    expect(reply.toString('hex')).toBe(
      '77' +
        '00' +
        '9cbb' +
        '4d' +
        '00' +
        '0006' +
        '0005' +
        '000c' +
        Buffer.from('billing_prod').toString('hex') +
        '0002' +
        '6162',
    );
  });

  test('NAMES and DUMP lines', () => {
    expect(encodePortHeader(4369).toString('hex')).toBe('00001111');
    expect(encodeNamesLine(node).toString()).toBe('name billing_prod at port 40123\n');
    expect(encodeDumpActiveLine(node, 7).toString()).toBe('active name     <billing_prod> at port 40123, fd = 7\n\0');
    expect(encodeDumpUnusedLine(node, 7).toString()).toBe('old/unused name <billing_prod>, port = 40123, fd = 7 \n\0');
  });

  test('frame prefixes the length', () => {
    expect(frame(Buffer.from('abc')).toString('hex')).toBe('0003616263');
    expect(encodeAlive2Request(node)[2]).toBe(ALIVE2_REQ);
  });
});

describe('reply decoders (what a client reads), against the encoders', () => {
  test('PORT2_RESP: found, not found, cut short', () => {
    const reply = encodePort2Reply({ ...node, name: Buffer.from('né'), extra: Buffer.from([1, 2]) });
    expect(decodePort2Reply(reply)).toEqual({
      found: true,
      ...node,
      name: Buffer.from('né'),
      extra: Buffer.from([1, 2]),
    });
    expect(decodePort2Reply(PORT2_NOT_FOUND)).toEqual({ found: false });
    for (const cut of [3, 11, 13, reply.length - 1]) {
      expect(() => decodePort2Reply(reply.subarray(0, cut))).toThrow(/PORT2_RESP cut short/);
    }
    expect(() => decodePort2Reply(Buffer.from('y'))).toThrow(/not a PORT2_RESP/);
  });

  test('ALIVE2 replies: 32-bit and 16-bit creation, null until whole', () => {
    const wide = encodeAlive2Reply(0, 0xdeadbeef, 6);
    expect(decodeAlive2Reply(wide)).toEqual({ result: 0, creation: 0xdeadbeef });
    expect(decodeAlive2Reply(wide.subarray(0, 5))).toBeNull();
    expect(decodeAlive2Reply(encodeAlive2Reply(1, 0x12345, 5))).toEqual({ result: 1, creation: 0x2345 });
    expect(decodeAlive2Reply(Buffer.alloc(0))).toBeNull();
    expect(() => decodeAlive2Reply(Buffer.from('w'))).toThrow(/not an ALIVE2 reply/);
  });

  test('NAMES: the port as an unsigned 32-bit number, the text as sent, its lines parsed', () => {
    const reply = Buffer.concat([
      encodePortHeader(4369),
      encodeNamesLine({ name: Buffer.from('a'), port: 1 }),
      encodeNamesLine({ name: Buffer.from('b c'), port: 65535 }),
    ]);
    expect(decodeNamesReply(reply)).toEqual({
      epmdPort: 4369,
      text: 'name a at port 1\nname b c at port 65535\n',
      nodes: [
        { name: 'a', port: 1 },
        { name: 'b c', port: 65535 },
      ],
    });
    expect(decodePortHeaderReply(Buffer.from([0xff, 0xff, 0xff, 0xff])).epmdPort).toBe(0xffffffff);
    expect(() => decodePortHeaderReply(Buffer.from([0, 0, 1]))).toThrow(/too short/);
  });

  test('node type names', () => {
    expect([nodeTypeName(77), nodeTypeName(72), nodeTypeName(0)]).toEqual(['normal', 'hidden', null]);
  });
});

test('DUMP replies of the C epmd are parsed (names with spaces and ">"; unused names left out)', () => {
  const lines = [
    'active name     <a b> at port 4711, fd = 5\n',
    'active name     <x>y> at port 1, fd = 12\n',
    'old/unused name, <z> at port 3, fd = 7\n',
  ];
  const reply = Buffer.concat([Buffer.from([0, 0, 0x11, 0x11]), ...lines.map((l) => Buffer.from(`${l}\0`, 'latin1'))]);
  expect(decodeDumpReply(reply).map((n) => [n.name.toString(), n.port, n.fd])).toEqual([
    ['a b', 4711, 5],
    ['x>y', 1, 12],
  ]);
});
