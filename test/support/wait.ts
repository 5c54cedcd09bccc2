/** Small helpers shared by the end-to-end suites. */

export const sleep = (ms: number): Promise<void> => new Promise<void>((r) => setTimeout(r, ms));

/** A line-per-measurement reporter on stderr, tagged with the suite's name. */
export function reporter(tag: string): (line: string) => void {
  return (line) => {
    process.stderr.write(`[${tag}] ${line}\n`);
  };
}

/** Polls `fn` until it returns something other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs = 30000,
  everyMs = 200,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}
