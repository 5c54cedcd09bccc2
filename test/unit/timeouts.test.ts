import {
  connectionTimedOut,
  idleExpired,
  IDLE_SWEEP_MAX_SECONDS,
  requestBudgetExceeded,
  sweepIntervalSeconds,
  wholeSeconds,
} from '../../src/policy/timeouts';

describe('the C epmd packet-timeout rule', () => {
  test('whole seconds: floor of the millisecond clock', () => {
    expect(wholeSeconds(0)).toBe(0);
    expect(wholeSeconds(999)).toBe(0);
    expect(wholeSeconds(1000)).toBe(1);
    expect(wholeSeconds(1999.9)).toBe(1);
    expect(wholeSeconds(123_456_789)).toBe(123_456);
  });

  test('expired only when last + timeout < now, strictly', () => {
    // Timeout 1: activity in second 10 survives seconds 10 and 11, expires from second 12.
    expect(idleExpired(10, 1, 10)).toBe(false);
    expect(idleExpired(10, 1, 11)).toBe(false);
    expect(idleExpired(10, 1, 12)).toBe(true);
    expect(idleExpired(10, 1, 20)).toBe(true);
    // Timeout 60, both sides of the boundary.
    expect(idleExpired(1000, 60, 1060)).toBe(false);
    expect(idleExpired(1000, 60, 1061)).toBe(true);
  });

  test('in milliseconds: a gap of exactly T seconds is always served, whatever the phase of the clock', () => {
    for (const start of [10_000, 10_001, 10_500, 10_999]) {
      for (const t of [1, 2, 5, 60]) {
        const last = wholeSeconds(start);
        expect(idleExpired(last, t, wholeSeconds(start + t * 1000 - 1))).toBe(false);
        expect(idleExpired(last, t, wholeSeconds(start + t * 1000))).toBe(false);
      }
    }
  });

  test('in milliseconds: a gap of more than T + 1 seconds always expires; between T and T + 1 it depends on the phase', () => {
    for (const start of [10_000, 10_001, 10_500, 10_999]) {
      const last = wholeSeconds(start);
      expect(idleExpired(last, 1, wholeSeconds(start + 2001))).toBe(true);
    }
    // 1.5 s gaps with timeout 1: served when the activity fell early in its second, expired when late.
    expect(idleExpired(wholeSeconds(10_100), 1, wholeSeconds(11_600))).toBe(false);
    expect(idleExpired(wholeSeconds(10_600), 1, wholeSeconds(12_100))).toBe(true);
  });

  test('the sweep runs every second below the C IDLE_TIMEOUT of 5 s, else every 5 s', () => {
    expect(IDLE_SWEEP_MAX_SECONDS).toBe(5);
    expect(sweepIntervalSeconds(1)).toBe(1);
    expect(sweepIntervalSeconds(4)).toBe(1);
    expect(sweepIntervalSeconds(5)).toBe(5);
    expect(sweepIntervalSeconds(60)).toBe(5);
  });

  test('only connections reading a request or draining a reply time out', () => {
    expect(connectionTimedOut('reading', 10, 1, 12)).toBe(true);
    expect(connectionTimedOut('draining', 10, 1, 12)).toBe(true);
    expect(connectionTimedOut('reading', 10, 1, 11)).toBe(false);
    expect(connectionTimedOut('draining', 10, 1, 11)).toBe(false);
    // A pending reply (-delay_write) and a registration are never idle, however long.
    expect(connectionTimedOut('replying', 10, 1, 1_000_000)).toBe(false);
    expect(connectionTimedOut('registered', 10, 1, 1_000_000)).toBe(false);
  });
});

describe('the request budget (sdepmd only)', () => {
  test('exceeded strictly after the budget', () => {
    expect(requestBudgetExceeded(1000, 60_000, 61_000)).toBe(false);
    expect(requestBudgetExceeded(1000, 60_000, 61_001)).toBe(true);
    expect(requestBudgetExceeded(1000, 60_000, 1000)).toBe(false);
  });
});
