/**
 * Refusals by reason, for `sdepmd status` and `sdepmd metrics` (sdepmd_refusals_total{reason=...}).
 * The connection layer names the reason of each refusal it makes (src/policy/connection.ts); the log line
 * "refused PEER: WHY" says the same in words.
 */

export const REFUSAL_REASONS = [
  'not_local', // a local-only request (ALIVE2, KILL, STOP, DUMP) from a non-local peer
  'registration', // ALIVE2 refused: the name is taken, too long, or the registration limit is reached
  'timeout', // no complete request within -packet_timeout
  'budget', // the request dribbled in past --request_budget
  'too_large', // the request exceeds the input buffer
  'malformed', // a bad frame, an unknown request, bytes after the request
  'unread_reply', // the peer did not read its reply
  'stop_not_relaxed', // STOP_REQ without -relaxed_command_check
  'connection_limit', // --max_connections
  'peer_limit', // --max_connections_per_peer
] as const;

export type RefusalReason = (typeof REFUSAL_REASONS)[number];
export type RefusalCounts = Record<RefusalReason, number>;

export function emptyRefusalCounts(): RefusalCounts {
  return Object.fromEntries(REFUSAL_REASONS.map((r) => [r, 0])) as RefusalCounts;
}
