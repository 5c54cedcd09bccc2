import { MemoryRelease, MIN_DROP } from '../../src/engine/release-memory';

describe('MemoryRelease', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  const fill = (m: MemoryRelease, from: number, to: number) => {
    const step = from < to ? 1 : -1;
    for (let n = from; n !== to + step; n += step) m.sizeChanged(n);
  };

  it('collects once, when a burst of unregistrations that halved the table is over', () => {
    const collect = jest.fn();
    const m = new MemoryRelease(collect);
    fill(m, 1, 4000);
    fill(m, 3999, 1500);
    jest.advanceTimersByTime(150);
    fill(m, 1499, 1000); // still going: the collection waits
    jest.advanceTimersByTime(150);
    expect(collect).not.toHaveBeenCalled();
    jest.advanceTimersByTime(100);
    expect(collect).toHaveBeenCalledTimes(1);
    jest.advanceTimersByTime(10_000);
    expect(collect).toHaveBeenCalledTimes(1);
  });

  it('does not collect for small tables or small drops', () => {
    const collect = jest.fn();
    const m = new MemoryRelease(collect);
    fill(m, 1, MIN_DROP + 500);
    fill(m, MIN_DROP + 499, MIN_DROP - 100); // fewer than MIN_DROP gone
    fill(m, MIN_DROP - 99, 3 * MIN_DROP);
    fill(m, 3 * MIN_DROP - 1, 2 * MIN_DROP); // more than MIN_DROP gone, but not half
    jest.advanceTimersByTime(10_000);
    expect(collect).not.toHaveBeenCalled();
  });

  it('measures the next drop from what was left, and stop() cancels a pending collection', () => {
    const collect = jest.fn();
    const m = new MemoryRelease(collect);
    fill(m, 1, 5000);
    fill(m, 4999, 2000);
    jest.advanceTimersByTime(1000);
    expect(collect).toHaveBeenCalledTimes(1);
    fill(m, 1999, 1500); // 500 fewer than at the last collection: not worth another
    jest.advanceTimersByTime(1000);
    expect(collect).toHaveBeenCalledTimes(1);
    fill(m, 1501, 6000);
    fill(m, 5999, 0);
    m.stop();
    jest.advanceTimersByTime(1000);
    expect(collect).toHaveBeenCalledTimes(1);
  });
});
