/**
 * EPMD wire constants, as OTP's erts/epmd defines them.
 *
 * Every request is a 2-byte big-endian length followed by that many bytes of body; the first body byte is the
 * request tag. Replies carry no length prefix.
 */

/** Request tags (first byte of a request body). */
export const ALIVE2_REQ = 0x78; // 'x'
export const PORT_PLEASE2_REQ = 0x7a; // 'z'
export const NAMES_REQ = 0x6e; // 'n'
export const DUMP_REQ = 0x64; // 'd'
export const KILL_REQ = 0x6b; // 'k'
export const STOP_REQ = 0x73; // 's'

/** Reply tags (first byte of a reply). */
export const ALIVE2_RESP = 0x79; // 'y': 16-bit creation, for nodes whose highest version is below 6
export const ALIVE2_X_RESP = 0x76; // 'v': 32-bit creation
export const PORT2_RESP = 0x77; // 'w'

/** Node types carried in ALIVE2_REQ and PORT2_RESP. */
export const NODE_TYPE_NORMAL = 77; // 'M'
export const NODE_TYPE_HIDDEN = 72; // 'H'

/** "normal" or "hidden" for the two node types OTP sends, null for any other value. */
export function nodeTypeName(nodeType: number): 'normal' | 'hidden' | null {
  return nodeType === NODE_TYPE_NORMAL ? 'normal' : nodeType === NODE_TYPE_HIDDEN ? 'hidden' : null;
}

/** Largest node name in characters, and in bytes of UTF-8 (MAXSYMLEN in epmd_int.h). */
export const MAX_NAME_CHARS = 255;
export const MAX_NAME_BYTES = 255 * 4;
/** Largest "extra" field of ALIVE2_REQ, in bytes. */
export const MAX_EXTRA_BYTES = 255 * 4;
/**
 * The C epmd's input buffer (INBUF_SIZE = 3 * MAXSYMLEN). A request whose length field plus the 2 length bytes
 * reaches this size is refused by closing the connection.
 */
export const INBUF_SIZE = 3 * MAX_NAME_BYTES;

/** The well-known EPMD port. */
export const DEFAULT_PORT = 4369;
