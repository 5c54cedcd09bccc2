/**
 * The addon's trimHeap (malloc_trim), in a child process so that the measure is its own: after many small C
 * allocations are freed in between live ones (as the engine's connection records are when most registrations end
 * and a few stay), glibc keeps their pages until it is trimmed; trimHeap gives them back.
 */
import { spawnSync } from 'node:child_process';
import { DEFAULT_ADDON_PATH } from '../../src/native/addon';

const CHILD = `
const addon = require(${JSON.stringify(DEFAULT_ADDON_PATH)});
const anonKb = () => Number(/RssAnon:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/status', 'utf8'))[1]);
// 8 KiB backing stores come from malloc's heap (below its mmap threshold); keep every other one.
let all = Array.from({ length: 12000 }, () => Buffer.allocUnsafeSlow(8192).fill(1));
const kept = all.filter((_, i) => i % 2 === 1);
all = null;
// The backing stores of collected Buffers are freed by V8's sweeper after a collection: collect until they are.
const settle = (tries) => {
  gc();
  if (process.memoryUsage().arrayBuffers > kept.length * 8192 * 1.1 && tries > 0) return setTimeout(settle, 50, tries - 1);
  const before = anonKb();
  const released = addon.trimHeap();
  const after = anonKb();
  process.stdout.write(JSON.stringify({ before, after, released, kept: kept.length }));
};
settle(100);
`;

test('trimHeap gives the freed pages between live allocations back to the system', () => {
  const r = spawnSync(process.execPath, ['--expose-gc', '-e', CHILD], { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  const { before, after, released } = JSON.parse(r.stdout) as { before: number; after: number; released: number };
  expect(released).toBe(1);
  // 6,000 freed 8 KiB blocks between live ones: 47 MiB, of which the whole pages (one or two per block) can go.
  expect(before - after).toBeGreaterThan(15 * 1024);
});
