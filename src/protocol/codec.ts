/**
 * The EPMD codec: pure functions from bytes to messages and back. No I/O, no state beyond the arguments.
 *
 * Reading a request is two steps, so that a connection can feed bytes in as they arrive:
 *   1. {@link frameRequest} looks at the bytes received so far and says whether a whole request is there.
 *   2. {@link decodeRequest} turns a whole request body into a typed {@link Request}, or says why it is refused.
 * Replies are built by the `encode*` functions into Buffers ready to write.
 */
import { isUtf8 } from 'node:buffer';
import {
  ALIVE2_REQ,
  ALIVE2_RESP,
  ALIVE2_X_RESP,
  DUMP_REQ,
  INBUF_SIZE,
  KILL_REQ,
  MAX_NAME_BYTES,
  MAX_NAME_CHARS,
  NAMES_REQ,
  PORT2_RESP,
  PORT_PLEASE2_REQ,
  STOP_REQ,
} from './constants';

/** What a node tells epmd about itself in ALIVE2_REQ, and what PORT2_RESP hands back. */
export interface NodeInfo {
  /** The node's name (the part before '@'), as the raw bytes the node sent. */
  readonly name: Buffer;
  /** The node's distribution port. */
  readonly port: number;
  /** 77 ('M') for a normal node, 72 ('H') for a hidden one. */
  readonly nodeType: number;
  /** 0 for TCP/IPv4 (the only value OTP sends). */
  readonly protocol: number;
  readonly highestVersion: number;
  readonly lowestVersion: number;
  /** Opaque bytes the node may attach; returned verbatim by PORT2_RESP. */
  readonly extra: Buffer;
}

export interface Alive2Request extends NodeInfo {
  readonly kind: 'alive2';
}
export interface PortPlease2Request {
  readonly kind: 'port_please2';
  readonly name: Buffer;
}
export interface NamesRequest {
  readonly kind: 'names';
}
export interface DumpRequest {
  readonly kind: 'dump';
}
export interface KillRequest {
  readonly kind: 'kill';
}
export interface StopRequest {
  readonly kind: 'stop';
  readonly name: Buffer;
}
export type Request = Alive2Request | PortPlease2Request | NamesRequest | DumpRequest | KillRequest | StopRequest;
export type RequestKind = Request['kind'];

/** The result of looking for one whole request in the bytes received so far. */
export type Frame =
  | { readonly status: 'incomplete' }
  /** `body` is the request; `excess` counts bytes received beyond it (the C epmd closes on any). */
  | { readonly status: 'complete'; readonly body: Buffer; readonly excess: number }
  | { readonly status: 'invalid'; readonly reason: string };

/** Length of the length prefix. */
export const HEADER_BYTES = 2;
/** The largest request body the C epmd accepts: length + 2 must stay below INBUF_SIZE. */
export const MAX_BODY_BYTES = INBUF_SIZE - HEADER_BYTES - 1;

/**
 * Looks for one whole request at the start of `received`.
 * A zero length, or one the C epmd's buffer could not hold, makes the frame invalid at once.
 */
export function frameRequest(received: Buffer): Frame {
  if (received.length < HEADER_BYTES) return INCOMPLETE;
  const length = received.readUInt16BE(0);
  if (length === 0) return { status: 'invalid', reason: 'zero-length request' };
  if (length > MAX_BODY_BYTES) {
    return { status: 'invalid', reason: `request length ${length} exceeds ${MAX_BODY_BYTES}` };
  }
  const end = HEADER_BYTES + length;
  if (received.length < end) return INCOMPLETE;
  return { status: 'complete', body: received.subarray(HEADER_BYTES, end), excess: received.length - end };
}
const INCOMPLETE: Frame = { status: 'incomplete' };

/** The result of decoding one request body. A refused request is answered by closing the connection. */
export type Decoded =
  { readonly ok: true; readonly request: Request } | { readonly ok: false; readonly reason: string };

/** Fixed part of ALIVE2_REQ: tag(1) port(2) type(1) proto(1) hi(2) lo(2) nlen(2). */
const ALIVE2_FIXED = 11;

/** Decodes a request body (the bytes after the length prefix). */
export function decodeRequest(body: Buffer): Decoded {
  switch (body[0]) {
    case ALIVE2_REQ:
      return decodeAlive2(body);
    case PORT_PLEASE2_REQ:
      return decodeNameRequest(body, 'port_please2');
    case STOP_REQ:
      return decodeNameRequest(body, 'stop');
    case NAMES_REQ:
      return { ok: true, request: { kind: 'names' } };
    case DUMP_REQ:
      return { ok: true, request: { kind: 'dump' } };
    case KILL_REQ:
      return { ok: true, request: { kind: 'kill' } };
    default:
      return refuse(`unknown request tag ${describeTag(body[0])}`);
  }
}

function decodeAlive2(body: Buffer): Decoded {
  // The C epmd wants room for at least one name byte plus the extra length: more than 13 bytes.
  if (body.length <= ALIVE2_FIXED + 2) return refuse(`ALIVE2_REQ too short (${body.length} bytes)`);
  const nameLength = body.readUInt16BE(9);
  if (ALIVE2_FIXED + nameLength + 2 > body.length) return refuse('ALIVE2_REQ name length exceeds the packet');
  const extraAt = ALIVE2_FIXED + nameLength + 2;
  const extraLength = body.readUInt16BE(ALIVE2_FIXED + nameLength);
  if (extraAt + extraLength > body.length) return refuse('ALIVE2_REQ extra length exceeds the packet');
  const name = body.subarray(ALIVE2_FIXED, ALIVE2_FIXED + nameLength);
  if (name.includes(0)) return refuse('ALIVE2_REQ name contains a NUL byte');
  return {
    ok: true,
    request: {
      kind: 'alive2',
      port: body.readUInt16BE(1),
      nodeType: body.readUInt8(3),
      protocol: body.readUInt8(4),
      highestVersion: body.readUInt16BE(5),
      lowestVersion: body.readUInt16BE(7),
      // Copies, so that a registration does not pin the connection's receive buffer.
      name: Buffer.from(name),
      extra: Buffer.from(body.subarray(extraAt, extraAt + extraLength)),
    },
  };
}

function decodeNameRequest(body: Buffer, kind: 'port_please2' | 'stop'): Decoded {
  const what = kind === 'stop' ? 'STOP_REQ' : 'PORT_PLEASE2_REQ';
  if (body.length <= 1) return refuse(`${what} without a name`);
  let name = body.subarray(1);
  if (kind === 'stop') {
    // The C epmd compares STOP names as C strings: they end at the first NUL.
    const nul = name.indexOf(0);
    if (nul >= 0) name = name.subarray(0, nul);
    return { ok: true, request: { kind, name: Buffer.from(name) } };
  }
  // PORT_PLEASE2: one trailing NUL is tolerated (some clients send C strings); any other NUL is refused.
  if (name[name.length - 1] === 0) name = name.subarray(0, name.length - 1);
  if (name.length === 0) return refuse(`${what} with an empty name`);
  if (name.includes(0)) return refuse(`${what} name contains a NUL byte`);
  // Longer than any registrable name: the C epmd closes these without a reply, and so do we.
  if (name.length > MAX_NAME_BYTES || !isUtf8(name) || codePoints(name) > MAX_NAME_CHARS) {
    return refuse(`${what} name is not a valid node name`);
  }
  return { ok: true, request: { kind, name: Buffer.from(name) } };
}

/** Counts the code points of valid UTF-8: every byte that is not a continuation byte starts one. */
export function codePoints(utf8: Buffer): number {
  let count = 0;
  for (let i = 0; i < utf8.length; i++) if ((utf8[i]! & 0xc0) !== 0x80) count++;
  return count;
}

function refuse(reason: string): Decoded {
  return { ok: false, reason };
}

function describeTag(tag: number | undefined): string {
  if (tag === undefined) return '(none)';
  const printable = tag >= 0x20 && tag < 0x7f ? ` '${String.fromCharCode(tag)}'` : '';
  return `${tag}${printable}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Replies

/**
 * ALIVE2 reply. Nodes that speak version 6 or later get ALIVE2_X_RESP with a 32-bit creation; older nodes get
 * ALIVE2_RESP with a 16-bit one.
 */
export function encodeAlive2Reply(result: number, creation: number, highestVersion: number): Buffer {
  if (highestVersion >= 6) {
    const reply = Buffer.allocUnsafe(6);
    reply[0] = ALIVE2_X_RESP;
    reply[1] = result;
    reply.writeUInt32BE(creation >>> 0, 2);
    return reply;
  }
  const reply = Buffer.allocUnsafe(4);
  reply[0] = ALIVE2_RESP;
  reply[1] = result;
  reply.writeUInt16BE(creation & 0xffff, 2);
  return reply;
}

/** PORT2_RESP for an unknown name: exactly two bytes. */
export const PORT2_NOT_FOUND: Buffer = Buffer.from([PORT2_RESP, 1]);

/** PORT2_RESP for a registered node. */
export function encodePort2Reply(node: NodeInfo): Buffer {
  const reply = Buffer.allocUnsafe(1 + 1 + 2 + 1 + 1 + 2 + 2 + 2 + node.name.length + 2 + node.extra.length);
  let at = 0;
  reply[at++] = PORT2_RESP;
  reply[at++] = 0;
  at = reply.writeUInt16BE(node.port, at);
  reply[at++] = node.nodeType;
  reply[at++] = node.protocol;
  at = reply.writeUInt16BE(node.highestVersion, at);
  at = reply.writeUInt16BE(node.lowestVersion, at);
  at = reply.writeUInt16BE(node.name.length, at);
  at += node.name.copy(reply, at);
  at = reply.writeUInt16BE(node.extra.length, at);
  node.extra.copy(reply, at);
  return reply;
}

/** The 4-byte big-endian port that opens NAMES and DUMP replies. */
export function encodePortHeader(epmdPort: number): Buffer {
  const header = Buffer.allocUnsafe(4);
  header.writeUInt32BE(epmdPort >>> 0, 0);
  return header;
}

/** One line of the NAMES reply. */
export function encodeNamesLine(node: Pick<NodeInfo, 'name' | 'port'>): Buffer {
  return Buffer.concat([NAME_PREFIX, node.name, Buffer.from(` at port ${node.port}\n`, 'latin1')]);
}
const NAME_PREFIX = Buffer.from('name ', 'latin1');

/** A DUMP line for a registered node, NUL-terminated as the C epmd sends it. */
export function encodeDumpActiveLine(node: Pick<NodeInfo, 'name' | 'port'>, fd: number): Buffer {
  return Buffer.concat([DUMP_ACTIVE, node.name, Buffer.from(`> at port ${node.port}, fd = ${fd}\n\0`, 'latin1')]);
}
const DUMP_ACTIVE = Buffer.from('active name     <', 'latin1');

/** A DUMP line for a name that registered before and has gone (the C epmd's "unused" list). */
export function encodeDumpUnusedLine(node: Pick<NodeInfo, 'name' | 'port'>, fd: number): Buffer {
  return Buffer.concat([DUMP_UNUSED, node.name, Buffer.from(`>, port = ${node.port}, fd = ${fd} \n\0`, 'latin1')]);
}
const DUMP_UNUSED = Buffer.from('old/unused name <', 'latin1');

/** The short text replies of KILL_REQ and STOP_REQ. */
export const KILL_OK: Buffer = Buffer.from('OK', 'latin1');
export const KILL_REFUSED: Buffer = Buffer.from('NO', 'latin1');
export const STOP_OK: Buffer = Buffer.from('STOPPED', 'latin1');
export const STOP_NOT_FOUND: Buffer = Buffer.from('NOEXIST', 'latin1');

// ---------------------------------------------------------------------------------------------------------------
// Replies, as a client reads them; used by the sdepmd client verbs, doctor and the tests.

/** A NAMES or DUMP reply: the 4-byte port, then text. */
export interface PortHeaderReply {
  readonly epmdPort: number;
  /** The text after the port, exactly as sent. */
  readonly text: string;
}

export function decodePortHeaderReply(reply: Buffer): PortHeaderReply {
  if (reply.length < 4) throw new Error(`reply too short for the 4-byte port (${reply.length} bytes)`);
  return { epmdPort: reply.readUInt32BE(0), text: reply.subarray(4).toString('utf8') };
}

export interface NamesReply extends PortHeaderReply {
  readonly nodes: readonly { readonly name: string; readonly port: number }[];
}

/** A NAMES reply, with its `name N at port P` lines parsed. */
export function decodeNamesReply(reply: Buffer): NamesReply {
  const header = decodePortHeaderReply(reply);
  const nodes: { name: string; port: number }[] = [];
  for (const line of header.text.split('\n')) {
    const m = /^name (.*) at port (\d+)$/.exec(line);
    if (m) nodes.push({ name: m[1]!, port: Number(m[2]) });
  }
  return { ...header, nodes };
}

/** One `active name <NAME> at port N, fd = F` line of a DUMP reply: the C epmd's fd number for that node. */
export interface DumpedNode {
  readonly name: Buffer;
  readonly port: number;
  readonly fd: number;
}

/**
 * The active registrations in a DUMP reply (the 4-byte port, then one NUL-terminated line per name). Names are
 * kept as bytes: they may hold spaces, ">" or any UTF-8.
 */
export function decodeDumpReply(reply: Buffer): DumpedNode[] {
  const out: DumpedNode[] = [];
  for (const chunk of reply.subarray(4).toString('latin1').split('\0')) {
    const m = /^active name\s+<([\s\S]*)> at port (\d+), fd = (\d+)\n?$/.exec(chunk);
    if (m) out.push({ name: Buffer.from(m[1]!, 'latin1'), port: Number(m[2]), fd: Number(m[3]) });
  }
  return out;
}

export type Port2Reply = { readonly found: false } | ({ readonly found: true } & NodeInfo);

export function decodePort2Reply(reply: Buffer): Port2Reply {
  if (reply.length < 2 || reply[0] !== PORT2_RESP) throw new Error(`not a PORT2_RESP: ${reply.toString('hex')}`);
  if (reply[1] !== 0) return { found: false };
  const truncated = () => new Error(`PORT2_RESP cut short: ${reply.toString('hex')}`);
  if (reply.length < 12) throw truncated();
  const nameLength = reply.readUInt16BE(10);
  if (reply.length < 14 + nameLength) throw truncated();
  const extraLength = reply.readUInt16BE(12 + nameLength);
  if (reply.length < 14 + nameLength + extraLength) throw truncated();
  return {
    found: true,
    port: reply.readUInt16BE(2),
    nodeType: reply[4]!,
    protocol: reply[5]!,
    highestVersion: reply.readUInt16BE(6),
    lowestVersion: reply.readUInt16BE(8),
    name: Buffer.from(reply.subarray(12, 12 + nameLength)),
    extra: Buffer.from(reply.subarray(14 + nameLength, 14 + nameLength + extraLength)),
  };
}

export interface Alive2Reply {
  readonly result: number;
  readonly creation: number;
}

/** An ALIVE2 reply (32-bit creation after 'v', 16-bit after 'y'); null while more bytes are needed. */
export function decodeAlive2Reply(reply: Buffer): Alive2Reply | null {
  if (reply.length === 0) return null;
  const wide = reply[0] === ALIVE2_X_RESP;
  if (!wide && reply[0] !== ALIVE2_RESP) throw new Error(`not an ALIVE2 reply: ${reply.toString('hex')}`);
  if (reply.length < (wide ? 6 : 4)) return null;
  return { result: reply[1]!, creation: wide ? reply.readUInt32BE(2) : reply.readUInt16BE(2) };
}

// ---------------------------------------------------------------------------------------------------------------
// Requests (what a client sends); used by the sdepmd client verbs and by the tests.

/** Prefixes a request body with its 2-byte length. */
export function frame(body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + body.length);
  out.writeUInt16BE(body.length, 0);
  body.copy(out, HEADER_BYTES);
  return out;
}

export function encodeAlive2Request(
  node: Omit<NodeInfo, 'name' | 'extra'> & { name: Buffer | string; extra?: Buffer },
): Buffer {
  const name = typeof node.name === 'string' ? Buffer.from(node.name, 'utf8') : node.name;
  const extra = node.extra ?? Buffer.alloc(0);
  const body = Buffer.allocUnsafe(ALIVE2_FIXED + name.length + 2 + extra.length);
  let at = 0;
  body[at++] = ALIVE2_REQ;
  at = body.writeUInt16BE(node.port, at);
  body[at++] = node.nodeType;
  body[at++] = node.protocol;
  at = body.writeUInt16BE(node.highestVersion, at);
  at = body.writeUInt16BE(node.lowestVersion, at);
  at = body.writeUInt16BE(name.length, at);
  at += name.copy(body, at);
  at = body.writeUInt16BE(extra.length, at);
  extra.copy(body, at);
  return frame(body);
}

export function encodeNameRequest(tag: typeof PORT_PLEASE2_REQ | typeof STOP_REQ, name: Buffer | string): Buffer {
  const bytes = typeof name === 'string' ? Buffer.from(name, 'utf8') : name;
  return frame(Buffer.concat([Buffer.from([tag]), bytes]));
}

export function encodeSimpleRequest(tag: typeof NAMES_REQ | typeof DUMP_REQ | typeof KILL_REQ): Buffer {
  return frame(Buffer.from([tag]));
}
