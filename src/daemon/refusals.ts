/**
 * Refusals by reason, for `sdepmd status` and `sdepmd metrics` (sdepmd_refusals_total{reason=...}).
 * The reasons are the kinds of the log lines "refused PEER: WHY"; refusalReason() sorts a WHY into one of them.
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

/** The reason of a refusal, from the text the server logs for it. */
export function refusalReason(why: string): RefusalReason {
  if (why.includes('from a non-local peer')) return 'not_local';
  if (why.startsWith('ALIVE2 ')) return 'registration';
  if (why.startsWith('no complete request')) return 'timeout';
  if (why.startsWith('request not complete within')) return 'budget';
  if (why.includes('exceeds the input buffer') || /^request length \d+ exceeds/.test(why)) return 'too_large';
  if (why.startsWith('reply not read')) return 'unread_reply';
  if (why.startsWith('STOP_REQ needs')) return 'stop_not_relaxed';
  if (why.startsWith('per-peer connection limit')) return 'peer_limit';
  if (why.startsWith('connection limit')) return 'connection_limit';
  return 'malformed';
}
