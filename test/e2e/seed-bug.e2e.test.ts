/**
 * Reproduces the seed bug with NO sdepmd, inside a real systemd sandbox:
 * the first Erlang app unit to start spawns `epmd -daemon` inside its own cgroup,
 * so stopping that app kills epmd and every other app becomes unreachable
 * ("Cannot connect to local epmd").
 */
import * as fs from 'fs';
import { bootSystemd, SystemdSandbox, systemdSandboxAvailable, stopAndCheckClean } from '../support/nsystemd';
import { allOf, cEpmdAvailable, erlAvailable, peerDescribe } from '../support/peers';
import { erlangAppUnit, sandboxShell } from '../support/sandbox';
import { waitFor } from '../support/wait';

const d = peerDescribe(
  'systemd sandbox + erl + C epmd',
  allOf(systemdSandboxAvailable(), erlAvailable(), cEpmdAvailable()),
);

const appUnit = (name: string): string => erlangAppUnit(name, 'seed-bug reproduction, no epmd unit');

d('seed bug: epmd lives in the first app unit cgroup (no sdepmd)', () => {
  let sb: SystemdSandbox | undefined;
  const { box, registered } = sandboxShell(() => sb);

  beforeAll(async () => {
    // Debian enables /lib/systemd/system/epmd.socket (sockets.target) and epmd.service
    // (multi-user.target). With them the first app would connect to the socket-activated
    // epmd and the bug would not show, so mask both in this sandbox.
    sb = await bootSystemd({ mask: ['epmd.socket', 'epmd.service'] });
    process.stderr.write(`[seed-bug] sandbox booted in ${sb.bootMs} ms (${sb.bootState})\n`);
  }, 120000);

  // Nothing leaks: the namespace's processes, its cgroups and its scratch dir are gone.
  afterAll(() => stopAndCheckClean(sb), 60000);

  test('the harness boots a real systemd as PID 1 in its own namespaces', async () => {
    const s = box();
    expect(['running', 'degraded']).toContain(s.bootState);
    expect((await s.exec('cat /proc/1/comm')).stdout.trim()).toBe('systemd');
    expect((await s.exec(['hostname'])).stdout.trim()).toBe('sdepmd-sandbox');
    // Only loopback in the network namespace.
    expect(
      (await s.exec(['ip', '-o', 'link'])).stdout
        .trim()
        .split('\n')
        .map((l) => l.split(':')[1]?.trim()),
    ).toEqual(['lo']);
    expect((await s.exec(['ls', '/sys/class/net'])).stdout.trim()).toBe('lo');
    // Writes inside stay inside.
    await s.writeFile('/etc/sdepmd-sandbox-probe', 'x');
    expect(await s.readFile('/etc/sdepmd-sandbox-probe')).toBe('x');
    expect(fs.existsSync('/etc/sdepmd-sandbox-probe')).toBe(false);
  }, 60000);

  test("Debian's epmd.socket / epmd.service are not active and nothing listens on 4369", async () => {
    const s = box();
    expect((await s.systemctl('is-active', 'epmd.socket', 'epmd.service')).stdout.split('\n').slice(0, 2)).toEqual([
      'inactive',
      'inactive',
    ]);
    expect((await s.systemctl('is-enabled', 'epmd.socket')).stdout.trim()).toBe('masked');
    const names = await s.exec(['epmd', '-names']);
    expect(names.code).not.toBe(0);
    expect(names.stdout + names.stderr).toMatch(/Cannot connect to local epmd/);
  }, 60000);

  test('stopping the app that spawned epmd unregisters every other app', async () => {
    const s = box();
    await s.installUnit('billing_prod.service', appUnit('billing_prod'));
    await s.installUnit('billing_stage.service', appUnit('billing_stage'));

    try {
      await s.systemctl('start', 'billing_prod.service').then((r) => expect(r.code).toBe(0));
      await waitFor('billing_prod registered', () => registered('billing_prod'));
      await s.systemctl('start', 'billing_stage.service').then((r) => expect(r.code).toBe(0));
      const both = await waitFor('both registered', () => registered('billing_prod', 'billing_stage'));
      expect(both).toMatch(/name billing_prod at port \d+/);
      expect(both).toMatch(/name billing_stage at port \d+/);

      // Exactly one epmd, and it lives in billing_prod's cgroup.
      const pids = (await s.exec(['pidof', 'epmd'])).stdout.trim().split(/\s+/).filter(Boolean).map(Number);
      expect(pids).toHaveLength(1);
      const epmdPid = pids[0] ?? 0;
      const prodCg = await s.unitCgroup('billing_prod.service');
      expect(prodCg).toBe(`/${s.cgroup}/system.slice/billing_prod.service`);
      expect(await s.unitCgroup('billing_stage.service')).not.toBe(prodCg);
      expect(await s.cgroupOf(epmdPid)).toBe(prodCg);
      // ... as seen by systemd too.
      expect((await s.systemctl('status', 'billing_prod.service')).stdout).toMatch(/epmd -daemon/);

      // journald works, and sees the unit.
      await waitFor('journal entry', async () =>
        /Started billing_prod\.service/.test(await s.journal('billing_prod.service')) ? true : undefined,
      );

      // The classic failure.
      await s.systemctl('stop', 'billing_prod.service').then((r) => expect(r.code).toBe(0));
      expect((await s.systemctl('is-active', 'billing_stage.service')).stdout.trim()).toBe('active');
      const after = await s.exec(['epmd', '-names']);
      expect(after.code).not.toBe(0);
      expect(after.stdout + after.stderr).toMatch(/Cannot connect to local epmd/);
      // Nothing brings epmd back: billing_stage retries registration but never restarts epmd.
      await new Promise((r) => setTimeout(r, 3000));
      const later = await s.exec(['epmd', '-names']);
      expect(later.stdout + later.stderr).toMatch(/Cannot connect to local epmd/);
      expect((await s.exec(['pidof', 'epmd'])).code).not.toBe(0);
    } catch (e) {
      process.stderr.write(`[seed-bug] journal:\n${await s.journal(undefined, 100)}\n`);
      throw e;
    }
  }, 120000);
});
