/**
 * Gives memory back after many registrations end. V8 keeps the old generation's pages once they have grown, and
 * a daemon that only waits on sockets allocates too little to trigger the full collection that would free them:
 * after 10,000 registrations came and went, RSS stayed 18 MiB above idle for as long as it was watched. So when
 * the table has shrunk to half of its peak, by at least MIN_DROP registrations, full collections run once the
 * burst of unregistrations is over (QUIET_MS after the last one).
 */

import { loadAddon } from '../native/addon';

/** Fewer unregistrations than this are not worth a full collection. */
export const MIN_DROP = 1000;
const QUIET_MS = 200;

/**
 * V8's gc(), without --expose-gc on the command line (NODE_OPTIONS accepts it only from Node 22): the flag set at
 * run time exposes it to contexts created afterwards. Null when this V8 refuses.
 */
function fullCollection(): (() => void) | null {
  try {
    // Loaded here, not at start-up: most daemons never get here.
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- a lazy load: import() would make this async
    (require('node:v8') as typeof import('node:v8')).setFlagsFromString('--expose-gc');
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- a lazy load, as above
    const vm = require('node:vm') as typeof import('node:vm');
    const gc: unknown = vm.runInNewContext('typeof gc === "function" ? gc : null');
    if (typeof gc !== 'function') return null;
    const collect = gc as () => void;
    // Twice: the first collection frees the objects, the second gives the pages they left empty back to the
    // system (measured: one gc() left RSS where it was; two took 92 MiB of garbage down to 54 MiB). Then the C
    // heap: glibc keeps the freed records of the engine's closed connections until it is trimmed.
    const addon = loadAddon();
    return () => {
      collect();
      collect();
      if (!(addon instanceof Error)) addon.trimHeap();
    };
  } catch {
    return null;
  }
}

export class MemoryRelease {
  #peak = 0;
  /** The size when the collection was last put off. */
  #size = 0;
  #timer: NodeJS.Timeout | null = null;
  #gc: (() => void) | null | undefined;

  /** `collect`: what to run instead of V8's full collections (tests). */
  constructor(collect?: () => void) {
    this.#gc = collect;
  }

  /** Called with the table's size after each change. */
  sizeChanged(size: number): void {
    if (size > this.#peak) {
      this.#peak = size;
      return;
    }
    if (size > this.#peak / 2 || this.#peak - size < MIN_DROP) return;
    this.#size = size;
    if (this.#timer) this.#timer.refresh();
    else {
      this.#timer = setTimeout(() => this.#collect(), QUIET_MS);
      this.#timer.unref();
    }
  }

  /** Stops a pending collection (the server is closing). */
  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #collect(): void {
    this.#timer = null;
    this.#peak = this.#size;
    if (this.#gc === undefined) this.#gc = fullCollection();
    this.#gc?.();
  }
}
