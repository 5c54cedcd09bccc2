/**
 * Policy for tests that need an external peer (a systemd sandbox, `erl`, the C epmd):
 *
 *  - available            -> the tests run;
 *  - unavailable, in CI   -> FAIL (process.env.CI === 'true'): CI runs as root on a
 *                            machine that has all peers, so a missing peer is a bug;
 *  - unavailable, locally -> skipped, with the reason printed.
 */
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';

export interface Availability {
  ok: boolean;
  reason?: string;
}

export type DescribeLike = (name: string, fn: () => void) => void;

export function inCI(): boolean {
  return process.env.CI === 'true';
}

/**
 * Returns true when the peer is available. Otherwise: in CI throws; outside CI prints
 * the reason and returns false (caller skips).
 */
export function requirePeer(name: string, available: Availability): boolean {
  if (available.ok) return true;
  const msg = `peer '${name}' unavailable: ${available.reason ?? 'unknown reason'}`;
  if (inCI()) throw new Error(`${msg} (CI=true: tests that need it must not be skipped)`);
  process.stderr.write(`[peers] SKIPPING tests: ${msg}\n`);
  return false;
}

/**
 * `describe` when the peer is available; outside CI `describe.skip` (reason printed);
 * in CI a describe block holding one failing test that states the reason.
 *
 *   const d = peerDescribe('systemd sandbox', systemdSandboxAvailable());
 *   d('my e2e suite', () => { ... });
 */
export function peerDescribe(name: string, available: Availability): DescribeLike {
  if (available.ok) return describe;
  const reason = available.reason ?? 'unknown reason';
  if (inCI()) {
    return (title: string) =>
      describe(title, () => {
        test(`requires peer '${name}'`, () => {
          throw new Error(`peer '${name}' unavailable in CI: ${reason}`);
        });
      });
  }
  return (title: string, fn: () => void) => {
    process.stderr.write(`[peers] SKIPPING '${title}': peer '${name}' unavailable: ${reason}\n`);
    describe.skip(title, fn);
  };
}

/** Combine availabilities: ok only when all are ok; reasons joined. */
export function allOf(...as: Availability[]): Availability {
  const bad = as.filter((a) => !a.ok);
  return bad.length === 0 ? { ok: true } : { ok: false, reason: bad.map((a) => a.reason).join('; ') };
}

function isExecutable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/** Path of `erl`, or undefined. */
export function findErl(): string | undefined {
  for (const d of (process.env.PATH ?? '').split(':').concat(['/usr/bin', '/usr/local/bin'])) {
    if (d && isExecutable(path.join(d, 'erl'))) return path.join(d, 'erl');
  }
  return undefined;
}

let erlCache: (Availability & { path?: string }) | undefined;
export function erlAvailable(): Availability & { path?: string } {
  if (!erlCache) erlCache = probeErl();
  return erlCache;
}

function probeErl(): Availability & { path?: string } {
  const erl = findErl();
  if (!erl) return { ok: false, reason: "'erl' not found (install erlang-base)" };
  const r = spawnSync(erl, ['-noshell', '-noinput', '-start_epmd', 'false', '-eval', 'halt().'], {
    timeout: 30000,
    env: { ...process.env, HOME: process.env.HOME ?? '/root' },
  });
  if (r.status !== 0)
    return { ok: false, reason: `'${erl}' does not run: ${r.stderr?.toString().trim() || r.error?.message}` };
  return { ok: true, path: erl };
}

/** Path of the C epmd: /usr/bin/epmd or /usr/lib/erlang/erts-* /bin/epmd, or undefined. */
export function findCEpmd(): string | undefined {
  if (isExecutable('/usr/bin/epmd')) return '/usr/bin/epmd';
  for (const base of ['/usr/lib/erlang', '/usr/local/lib/erlang']) {
    let entries: string[] = [];
    try {
      entries = fs
        .readdirSync(base)
        .filter((e) => e.startsWith('erts-'))
        .sort()
        .reverse();
    } catch {
      continue;
    }
    for (const e of entries) {
      const p = path.join(base, e, 'bin', 'epmd');
      if (isExecutable(p)) return p;
    }
  }
  return undefined;
}

export function cEpmdAvailable(): Availability & { path?: string } {
  const p = findCEpmd();
  return p
    ? { ok: true, path: p }
    : { ok: false, reason: 'C epmd not found (/usr/bin/epmd, /usr/lib/erlang/erts-*/bin/epmd)' };
}
