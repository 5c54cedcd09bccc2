/**
 * The JSON shapes of what an EPMD node gave in ALIVE2, and of the daemon's counters, as they cross a process
 * boundary: the fd-store journal (systemd/persistence.ts), the live-upgrade hand-over and adoption frames
 * (daemon/handover.ts), and the control socket's answers (daemon/control.ts). One home, so that the limits a
 * registration must meet (the protocol's, in constants.ts) are checked the same way wherever one is read back.
 */
import type { ServerStats } from '../policy/connection';
import type { NodeInfoRecord, RegistrationRecord } from '../registry/registration-record';
import { validateName } from '../registry/registry';
import { MAX_EXTRA_BYTES, MAX_NAME_BYTES } from './constants';
import { integer, matching, nullable, object, ShapeError, type FieldsOf, type Shape } from '../util/shape';

export const UINT8 = integer(0, 0xff);
export const UINT16 = integer(0, 0xffff);
export const UINT32 = integer(0, 0xffffffff);
export const PORT = UINT16;
/** A count or a time in ms: a non-negative safe integer. */
export const COUNT = integer(0);

/** Bytes as lowercase hex, at most `maxBytes` of them. */
export function hexBytes(maxBytes: number): Shape<string> {
  return matching(new RegExp(`^(?:[0-9a-f]{2}){0,${maxBytes}}$`), `hex bytes (at most ${maxBytes})`);
}

const NAME_HEX = matching(
  new RegExp(`^(?:[0-9a-f]{2}){1,${MAX_NAME_BYTES}}$`),
  `a hex node name (1 to ${MAX_NAME_BYTES} bytes)`,
);

/** A node name, hex: one the registry would accept (valid UTF-8, at most 255 characters). */
export const NODE_NAME_HEX: Shape<string> = (v, at) => {
  const hex = NAME_HEX(v, at);
  const refusal = validateName(Buffer.from(hex, 'hex'));
  if (refusal) throw new ShapeError(`${at}: ${refusal}`);
  return hex;
};

export const NODE_INFO_FIELDS = {
  name: NODE_NAME_HEX,
  port: PORT,
  nodeType: UINT8,
  protocol: UINT8,
  highestVersion: UINT16,
  lowestVersion: UINT16,
  extra: hexBytes(MAX_EXTRA_BYTES),
} satisfies FieldsOf<NodeInfoRecord>;
export const NODE_INFO: Shape<NodeInfoRecord> = object(NODE_INFO_FIELDS);

/** A peer address as text (an IPv6 address with a zone is the longest). */
export const PEER = matching(/^[^\n]{0,64}$/, 'an address');

/** A registration; `fdName` is narrowed by the journal, which only keeps the ones in the fd store. */
export const REGISTRATION_FIELDS = {
  ...NODE_INFO_FIELDS,
  creation: UINT32,
  registeredAt: COUNT,
  peer: PEER,
  fdName: nullable(matching(/^[\x20-\x39\x3b-\x7e]{1,255}$/, 'an fd name (printable ASCII without ":")')),
} satisfies FieldsOf<RegistrationRecord>;
export const REGISTRATION: Shape<RegistrationRecord> = object(REGISTRATION_FIELDS);

export const SERVER_STATS: Shape<ServerStats> = object({
  connections: COUNT,
  lookups: COUNT,
  lookupsFound: COUNT,
  namesRequests: COUNT,
  registrations: COUNT,
  unregistrations: COUNT,
  refused: COUNT,
  limitHits: COUNT,
} satisfies FieldsOf<ServerStats>);
