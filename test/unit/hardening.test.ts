/**
 * The shipped unit's hardening, checked on the host in a second: `systemd-analyze security --offline=yes` on
 * units/epmd.service must give an overall exposure of at most 1.0. (test/e2e/systemd.e2e.test.ts checks the
 * installed unit inside a booted systemd as well.) In CI a missing systemd-analyze is a failure, not a skip.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { peerDescribe, type Availability } from '../support/peers';

const UNIT = path.join(__dirname, '..', '..', 'units', 'epmd.service');
const MAX_EXPOSURE = 1.0;

function systemdAnalyze(): Availability {
  const r = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  if (r.error)
    return { ok: false, reason: `systemd-analyze not runnable: ${r.error.message} (apt-get install systemd)` };
  return r.status === 0 ? { ok: true } : { ok: false, reason: `systemd-analyze --version exited ${r.status}` };
}

peerDescribe('systemd-analyze', systemdAnalyze())(
  'epmd.service hardening (systemd-analyze security --offline=yes)',
  () => {
    test(`overall exposure of units/epmd.service is <= ${MAX_EXPOSURE}`, () => {
      const r = spawnSync('systemd-analyze', ['security', '--offline=yes', '--no-pager', UNIT], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      const out = `${r.stdout}\n${r.stderr}`;
      const m = /Overall exposure level for epmd\.service: (\d+(?:\.\d+)?) (\S+)/.exec(out);
      if (!m) throw new Error(`no exposure score in the output of systemd-analyze (exit ${r.status}):\n${out}`);
      const score = Number(m[1]);
      process.stderr.write(`[hardening] systemd-analyze security --offline=yes units/epmd.service: ${score} ${m[2]}\n`);
      expect(score).toBeLessThanOrEqual(MAX_EXPOSURE);
      // The settings the score rests on are there (a regression in one would still show up here first).
      for (const setting of [
        'User=/DynamicUser=',
        'PrivateNetwork=',
        'CapabilityBoundingSet=~CAP_SYS_ADMIN',
        'SystemCallFilter=~@privileged',
        'RestrictAddressFamilies=~AF_PACKET',
      ]) {
        expect(out).toContain(`✓ ${setting}`);
      }
    });
  },
);
