/**
 * The timing rules for a connection that has not yet sent its whole request, as the C epmd applies them, plus the
 * total request budget that the C epmd lacks. Pure functions of numbers: no sockets, no timers, no clock. The
 * engine reads a clock, keeps a connection's last activity, and asks these functions when its sweep runs.
 *
 * The C epmd (erts/epmd/src/epmd_srv.c) counts -packet_timeout like this:
 * - time is time(NULL): whole seconds;
 * - "activity" is the accept and every read from the connection, complete request or not;
 * - a connection is closed when `last activity + packet_timeout < now`, strictly;
 * - that test runs only when its select() loop wakes, and the loop sleeps at most 1 s when the packet timeout is
 *   under IDLE_TIMEOUT (5 s), else at most 5 s;
 * - a registration (ALIVE2 answered, even with result 1) is never timed out;
 * - while a reply is being written (-delay_write sleeps before each write) the loop does not run at all, so a
 *   complete request whose reply is pending is never timed out.
 *
 * What that means for a client, with a packet timeout of T seconds and a sweep every P seconds (P = 1 if T < 5,
 * else 5):
 * - a gap of at most T seconds between two reads (or between accept and the first read) is always served;
 * - a gap of more than T + 1 seconds fails the test; it is closed at the next sweep, so certainly once the gap
 *   reaches T + 1 + P seconds;
 * - a gap between T and T + 1 seconds is served or not depending on where the second boundaries fall.
 *
 * sdepmd's clock for these rules is the wall clock as it was at start-up, advanced monotonically: its seconds
 * begin where time(NULL)'s do, so a client sees the same outcome as from the C epmd, but a step of the system
 * clock does not close every connection at once, or keep one open for as long as the clock went back.
 */

/** The C epmd's IDLE_TIMEOUT: the longest its select() loop sleeps, in seconds. */
export const IDLE_SWEEP_MAX_SECONDS = 5;

/** Whole seconds on a clock given in milliseconds (the C epmd's time(NULL) granularity). */
export function wholeSeconds(clockMs: number): number {
  return Math.floor(clockMs / 1000);
}

/**
 * How often, in seconds, the idle rule is checked for a packet timeout of `packetTimeoutSeconds`: every second
 * when the timeout is under 5 s, else every 5 s (the C epmd's select() timeout).
 */
export function sweepIntervalSeconds(packetTimeoutSeconds: number): number {
  return packetTimeoutSeconds < IDLE_SWEEP_MAX_SECONDS ? 1 : IDLE_SWEEP_MAX_SECONDS;
}

/** Where a connection is in its life, as far as the timing rules care. */
export type ConnectionPhase =
  /** Waiting for (more of) its request: the idle rule applies. */
  | 'reading'
  /** Its request is complete and its reply is pending (-delay_write): never idle. */
  | 'replying'
  /** Answered, but the peer has not read the whole reply yet: the idle rule applies, counted from the reply. */
  | 'draining'
  /** A registration (or a failed ALIVE2, which the C epmd keeps too): never timed out. */
  | 'registered';

/**
 * The C epmd's rule: a connection whose last activity was at whole second `lastActivitySeconds` has timed out at
 * whole second `nowSeconds` when `lastActivitySeconds + packetTimeoutSeconds < nowSeconds`.
 */
export function idleExpired(lastActivitySeconds: number, packetTimeoutSeconds: number, nowSeconds: number): boolean {
  return lastActivitySeconds + packetTimeoutSeconds < nowSeconds;
}

/** The idle rule for a connection in `phase`: only 'reading' and 'draining' connections can time out. */
export function connectionTimedOut(
  phase: ConnectionPhase,
  lastActivitySeconds: number,
  packetTimeoutSeconds: number,
  nowSeconds: number,
): boolean {
  if (phase === 'replying' || phase === 'registered') return false;
  return idleExpired(lastActivitySeconds, packetTimeoutSeconds, nowSeconds);
}

/**
 * sdepmd's own rule (the C epmd has none): a connection still sending its request `budgetMs` after it was
 * accepted is dropped, however steadily it dribbles bytes, since every byte restarts the idle rule. Exceeded
 * strictly after the budget, in milliseconds.
 */
export function requestBudgetExceeded(acceptedAtMs: number, budgetMs: number, nowMs: number): boolean {
  return nowMs - acceptedAtMs > budgetMs;
}
