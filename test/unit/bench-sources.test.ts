import { PER_SOURCE, SourceBudget } from '../../bench/sources';

// The bench holds many registrations at once; each held connection to 127.0.0.1 uses an ephemeral port of its
// source address, so no address may carry more than PER_SOURCE of them.
describe('bench SourceBudget', () => {
  it('fills 127.0.0.1 first, then moves on, and never puts more than the budget on one address', () => {
    const b = new SourceBudget(10);
    expect(b.take(4)).toEqual({ octet: 1, count: 4 });
    expect(b.take(10)).toEqual({ octet: 1, count: 6 });
    expect(b.take(3)).toEqual({ octet: 2, count: 3 });
    expect(b.usedOn(1)).toBe(10);
    expect(b.usedOn(2)).toBe(3);
  });

  it('records every reservation, up to the last address, then says it is full', () => {
    const b = new SourceBudget(2);
    let total = 0;
    for (let i = 0; i < 254; i++) {
      const r = b.take(5);
      expect(r).toEqual({ octet: i + 1, count: 2 });
      total += r?.count ?? 0;
    }
    expect(total).toBe(254 * 2);
    expect(b.usedOn(254)).toBe(2);
    expect(b.pick()).toBeNull();
    expect(b.take(1)).toBeNull();
  });

  it('holds more than the per-address budget only by spreading it over addresses', () => {
    const b = new SourceBudget();
    const per = new Map<number, number>();
    for (let left = 100000; left > 0;) {
      const r = b.take(Math.min(left, 19800));
      if (!r) throw new Error('budget exhausted early');
      per.set(r.octet, (per.get(r.octet) ?? 0) + r.count);
      left -= r.count;
    }
    expect([...per.values()].reduce((a, n) => a + n, 0)).toBe(100000);
    for (const n of per.values()) expect(n).toBeLessThanOrEqual(PER_SOURCE);
    expect(per.size).toBe(Math.ceil(100000 / PER_SOURCE));
  });
});
