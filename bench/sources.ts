/**
 * Source addresses for held registrations. Every held connection to 127.0.0.1 uses one ephemeral port of its
 * source address, so the bench spreads them over 127.0.0.1 .. 127.0.0.254, at most `perSource` on each.
 */
export const PER_SOURCE = 15000;

/** A source address 127.0.0.`octet` with `room` connections left on it. */
export interface Source {
  octet: number;
  room: number;
}

export class SourceBudget {
  private readonly used = new Map<number, number>();

  constructor(private readonly perSource: number = PER_SOURCE) {}

  /** The first address with room left, or null when every address is full. Reserves nothing: see `take`. */
  pick(): Source | null {
    for (let octet = 1; octet < 255; octet++) {
      const used = this.used.get(octet) ?? 0;
      if (used < this.perSource) return { octet, room: this.perSource - used };
    }
    return null;
  }

  /** Reserves up to `want` connections on one address: returns the address and how many it got, or null when
   * every address is full. */
  take(want: number): { octet: number; count: number } | null {
    const source = this.pick();
    if (!source) return null;
    const count = Math.min(want, source.room);
    this.used.set(source.octet, (this.used.get(source.octet) ?? 0) + count);
    return { octet: source.octet, count };
  }

  /** Connections reserved on 127.0.0.`octet`. */
  usedOn(octet: number): number {
    return this.used.get(octet) ?? 0;
  }
}
