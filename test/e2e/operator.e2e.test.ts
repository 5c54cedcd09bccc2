/**
 * The operator surface in a real systemd (PID 1 of private namespaces over an overlay of "/"), installed with the
 * shipped installer: man pages, completion and Documentation=; `status` for each cause of no answer; journal
 * fields (journalctl -u epmd EPMD_NODE=...); `sdepmd metrics` and its timer; doctor's exposure findings; and
 * `sdepmd allow` / `sdepmd listen` applied without restarting any app, with a peer on a second host (a network
 * namespace joined to the sandbox by a veth pair, from test/netns/hosts.ts) that `allow` shuts out.
 *
 * One sandbox, tests in order. Outputs are printed with the prefix "[operator-e2e]" (docs/commands.md quotes them).
 */
import { spawnSync } from 'child_process';
import * as path from 'path';
import {
  bootSystemd,
  SystemdSandbox,
  systemdSandboxAvailable,
  stopAndCheckClean,
  type ExecResult,
} from '../support/nsystemd';
import { allOf, cEpmdAvailable, erlAvailable, peerDescribe } from '../support/peers';
import { reporter, waitFor } from '../support/wait';
import { createHosts, netnsAvailable, nsProbe, type Hosts } from '../netns/hosts';
import { encodeSimpleRequest } from '../../src/protocol/codec';
import { NAMES_REQ } from '../../src/protocol/constants';
import { MESSAGE_IDS } from '../../src/daemon/log';

const REPO = path.resolve(__dirname, '..', '..');
const INSTALL = path.join(REPO, 'scripts', 'install.sh');
const SDEPMD = '/usr/local/bin/sdepmd';
const TEST_TIMEOUT = 180000;
const report = reporter('operator-e2e');

const d = peerDescribe(
  'systemd sandbox + erl + C epmd + network namespaces',
  allOf(systemdSandboxAvailable(), erlAvailable(), cEpmdAvailable(), netnsAvailable()),
);

const app = (name: string, dependency: string): string => `[Unit]
Description=Erlang app ${name} (operator e2e)
${dependency}

[Service]
Environment=HOME=/root
Environment="ERL_AFLAGS=-start_epmd false"
ExecStart=/usr/bin/erl -sname ${name} -noshell -noinput
`;

d('the operator surface in a real systemd', () => {
  let sb: SystemdSandbox | undefined;
  let hosts: Hosts | undefined;
  const box = (): SystemdSandbox => {
    if (!sb) throw new Error('sandbox not booted');
    return sb;
  };
  const sh = (cmd: string | string[], timeoutMs = 60000): Promise<ExecResult> => box().exec(cmd, { timeoutMs });
  /** Runs a command, prints it as an operator would see it, and returns the result. */
  const shown = async (cmd: string, timeoutMs = 60000): Promise<ExecResult> => {
    const r = await sh(cmd, timeoutMs);
    report(`$ ${cmd}   (exit ${r.code})\n${r.stdout}${r.stderr}`);
    return r;
  };
  const mainPids = async (...units: string[]): Promise<number[]> => Promise.all(units.map((u) => box().mainPid(u)));
  const registered = async (...names: string[]): Promise<true | undefined> => {
    const r = await sh(['epmd', '-names']);
    return names.every((n) => r.stdout.includes(`name ${n} at port`)) ? true : undefined;
  };

  beforeAll(async () => {
    sb = await bootSystemd();
    const inst = await sb.exec([INSTALL, '--enable'], { timeoutMs: 120000 });
    if (inst.code !== 0) throw new Error(`install.sh --enable failed (${inst.code}):\n${inst.stdout}${inst.stderr}`);
  }, 240000);

  afterAll(async () => {
    hosts?.destroy();
    await stopAndCheckClean(sb);
  }, 60000);

  test(
    'status before the first connection: the socket listens and epmd.service is idle; status does not start it',
    async () => {
      const r = await shown(`${SDEPMD} status`);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        /^sdepmd status: epmd\.socket is listening, and epmd\.service is idle \(inactive\): systemd starts it on the first connection\n/,
      );
      expect(r.stderr).toContain(
        '  next:\n    sdepmd names   # any epmd request starts it\n    systemctl start epmd.service\n',
      );
      expect((await sh(['systemctl', 'is-active', 'epmd.service'])).stdout.trim()).toBe('inactive');
    },
    TEST_TIMEOUT,
  );

  test(
    'man pages, completion and Documentation= are installed',
    async () => {
      const man = await shown(`man sdepmd | head -12`);
      expect(man.stdout).toMatch(/sdepmd - a systemd-native Erlang Port Mapper Daemon/);
      expect((await sh('man 5 sdepmd-units | head -5')).stdout).toMatch(/sdepmd-units\s+-\s+the\s+systemd\s+units/);
      for (const unit of ['epmd.socket', 'epmd.service', 'sdepmd-metrics.service']) {
        const doc = (await sh(['systemctl', 'show', '-p', 'Documentation', '--value', unit])).stdout;
        expect({ unit, doc }).toEqual({ unit, doc: expect.stringContaining('man:sdepmd(8)') });
      }
      const docFile = (await sh(['systemctl', 'show', '-p', 'Documentation', '--value', 'epmd.service'])).stdout.match(
        /file:(\S+)/,
      )?.[1];
      expect((await sh(['test', '-s', docFile ?? '/nonexistent'])).code).toBe(0);
      const complete = (words: string) =>
        sh([
          'bash',
          '-c',
          `source /usr/local/share/bash-completion/completions/sdepmd; COMP_WORDS=(${words}); COMP_CWORD=$((\${#COMP_WORDS[@]}-1)); _sdepmd; echo "\${COMPREPLY[*]}"`,
        ]);
      expect((await complete('sdepmd sta')).stdout.trim()).toBe('status');
      expect((await complete('sdepmd attach --d')).stdout.trim()).toBe('--dry-run');
      expect((await complete('sdepmd detach --w')).stdout.trim()).toBe('');
      expect((await complete('sdepmd -na')).stdout.trim()).toBe('-names');
      const zsh = spawnSync('zsh', ['-n', path.join(REPO, 'completion', '_sdepmd')]);
      if (zsh.error) report(`zsh not installed here: the zsh completion was only installed, not parsed`);
      else expect(zsh.status).toBe(0);
      expect((await sh(['test', '-f', '/usr/local/share/zsh/site-functions/_sdepmd'])).code).toBe(0);
    },
    TEST_TIMEOUT,
  );

  test(
    'journal fields: journalctl -u epmd EPMD_NODE=app1 picks out one node; MESSAGE_ID picks out an event',
    async () => {
      const s = box();
      await s.installUnit('app1.service', app('app1', 'Requires=epmd.service\nAfter=epmd.service'));
      await s.installUnit('app2.service', app('app2', 'Wants=epmd.socket\nAfter=epmd.socket'));
      expect((await s.systemctl('start', 'app1.service', 'app2.service')).code).toBe(0);
      await waitFor('app1 and app2 registered', () => registered('app1', 'app2'), 30000, 250);
      const port1 = /name app1 at port (\d+)/.exec((await sh(['epmd', '-names'])).stdout)![1];
      const shortOut = await waitFor('the registered entry', async () => {
        const r = await sh(['journalctl', '-u', 'epmd', 'EPMD_NODE=app1', '--no-pager']);
        return /registered app1/.test(r.stdout) ? r : undefined;
      });
      report(`$ journalctl -u epmd EPMD_NODE=app1\n${shortOut.stdout}`);
      expect(shortOut.stdout).not.toMatch(/app2/);
      const entries = (await sh(['journalctl', '-u', 'epmd', 'EPMD_NODE=app1', '-o', 'json', '--no-pager'])).stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, string>);
      const reg = entries.find((e) => e.EPMD_EVENT === 'registered');
      expect(reg).toMatchObject({
        MESSAGE_ID: MESSAGE_IDS.registered,
        EPMD_NODE: 'app1',
        EPMD_PORT: port1,
        EPMD_PEER: '127.0.0.1',
        EPMD_CREATION: expect.stringMatching(/^\d+$/),
        PRIORITY: '6',
        SYSLOG_IDENTIFIER: 'sdepmd',
        _SYSTEMD_UNIT: 'epmd.service',
        _TRANSPORT: 'journal',
      });
      const verbose = (
        await sh(
          `journalctl -u epmd EPMD_NODE=app1 EPMD_EVENT=registered -o verbose --no-pager | grep -E '^ +(MESSAGE|MESSAGE_ID|EPMD_[A-Z]+|_SYSTEMD_UNIT)='`,
        )
      ).stdout;
      report(`$ journalctl -u epmd EPMD_NODE=app1 EPMD_EVENT=registered -o verbose (fields)\n${verbose}`);
      const byId = (
        await sh(['journalctl', '-u', 'epmd', `MESSAGE_ID=${MESSAGE_IDS.registered}`, '-o', 'cat', '--no-pager'])
      ).stdout;
      expect(byId).toMatch(/registered app1 /);
      expect(byId).toMatch(/registered app2 /);
      // Lines that are not about a node carry no node fields, but the start line has its MESSAGE_ID.
      const started = (
        await sh(['journalctl', '-u', 'epmd', `MESSAGE_ID=${MESSAGE_IDS.started}`, '-o', 'json', '--no-pager'])
      ).stdout
        .trim()
        .split('\n');
      expect(JSON.parse(started[0]!)).not.toHaveProperty('EPMD_NODE');
    },
    TEST_TIMEOUT,
  );

  test(
    'status, metrics and the metrics timer with two nodes registered',
    async () => {
      const st = await shown(`${SDEPMD} status`);
      expect(st.code).toBe(0);
      expect(st.stdout).toMatch(/^registered: +2 node\(s\)$/m);
      const m = await shown(`${SDEPMD} metrics`);
      expect(m.code).toBe(0);
      expect(m.stdout).toMatch(/^sdepmd_nodes_registered 2$/m);
      expect(m.stdout).toMatch(/^sdepmd_build_info\{version="[^"]+"\} 1$/m);
      expect(m.stdout).toMatch(/^sdepmd_fdstore_registrations 2$/m);
      expect((await sh(['systemctl', 'start', 'sdepmd-metrics.service'])).code).toBe(0);
      const file = await sh(['cat', '/var/lib/prometheus/node-exporter/sdepmd.prom']);
      expect(file.stdout).toMatch(/^sdepmd_up 1$/m);
      expect(file.stdout).toMatch(/^sdepmd_nodes_registered 2$/m);
      expect((await sh(['systemctl', 'enable', '--now', 'sdepmd-metrics.timer'])).code).toBe(0);
      expect((await sh(['systemctl', 'is-active', 'sdepmd-metrics.timer'])).stdout.trim()).toBe('active');
    },
    TEST_TIMEOUT,
  );

  test(
    'status for the other causes: permission, another epmd (the C one), nothing listening; a second daemon',
    async () => {
      const perm = await shown(`runuser -u nobody -- ${SDEPMD} status`);
      expect(perm.code).toBe(1);
      expect(perm.stderr).toMatch(
        /^sdepmd status: permission denied: the control socket is open to root and the daemon's user only\n/,
      );
      const c = await sh(['/usr/bin/epmd', '-port', '4370', '-daemon']);
      expect(c.code).toBe(0);
      await waitFor('the C epmd on 4370', async () =>
        (await sh(['epmd', '-port', '4370', '-names'])).code === 0 ? true : undefined,
      );
      const other = await shown(`${SDEPMD} status --port 4370`);
      expect(other.code).toBe(1);
      expect(other.stderr).toMatch(
        /^sdepmd status: the C epmd \(pid \d+\) answers on port 4370, not an sdepmd with a control socket at \/run\/sdepmd\/control-4370\.sock\n/,
      );
      const second = await shown(`${SDEPMD} -port 4370 --control_socket none`);
      expect(second.code).toBe(0);
      expect(second.stderr).toMatch(/^sdepmd: another epmd is already listening on \S+ port 4370; exiting\n$/);
      expect((await sh(['epmd', '-port', '4370', '-kill'])).code).toBe(0);
      const none = await shown(`${SDEPMD} status --port 4999`);
      expect(none.code).toBe(1);
      expect(none.stderr).toMatch(/^sdepmd status: nothing listens on port 4999\n/);
    },
    TEST_TIMEOUT,
  );

  test(
    'allow: a peer on another host outside the range cannot connect; applied at once, no app restarted',
    async () => {
      const s = box();
      hosts = createHosts();
      // Host A's end of the veth goes into the sandbox: the sandbox is host A (198.51.100.1); B keeps .2 and gets .3.
      const move = spawnSync('ip', ['-n', hosts.a, 'link', 'set', 'sdfa', 'netns', String(s.pid)], {
        encoding: 'utf8',
      });
      expect(move.stderr).toBe('');
      expect((await sh('ip addr add 198.51.100.1/24 dev sdfa && ip link set sdfa up')).code).toBe(0);
      expect(spawnSync('ip', ['-n', hosts.b, 'addr', 'add', '198.51.100.3/24', 'dev', 'sdfb']).status).toBe(0);
      const names = encodeSimpleRequest(NAMES_REQ);
      const probe = (from: string) => nsProbe(hosts!.b, '198.51.100.1', 4369, names, from, 1000);
      expect((await probe('198.51.100.2')).reply).toMatch(/^00001111/);
      expect((await probe('198.51.100.3')).reply).toMatch(/^00001111/);

      // /etc/default/epmd with an address setting that socket activation makes useless.
      await s.writeFile('/etc/default/epmd', 'ERL_EPMD_ADDRESS=127.0.0.1,198.51.100.1\n');
      const doc = await shown(`${SDEPMD} doctor`);
      expect(doc.code).toBe(0); // warnings only
      expect(doc.stdout).toContain(
        'warning: epmd.socket accepts connections from any address ([::]:4369), with no IPAddressAllow=/IPAddressDeny= [socket-exposed]',
      );
      expect(doc.stdout).toContain('    sdepmd allow 198.51.100.0/24');
      expect(doc.stdout).toContain('[epmd-address-ignored]');
      expect(doc.stdout).toContain('    sdepmd listen 198.51.100.1');
      await sh(['rm', '/etc/default/epmd']);

      const before = await mainPids('app1.service', 'app2.service', 'epmd.service');
      const dry = await shown(`${SDEPMD} allow --dry-run 198.51.100.2/32`);
      expect(dry.code).toBe(0);
      expect((await sh(['test', '-e', '/etc/systemd/system/epmd.socket.d/50-sdepmd-allow.conf'])).code).not.toBe(0);
      const allow = await shown(`${SDEPMD} allow 198.51.100.2/32`);
      expect(allow.code).toBe(0);
      expect(allow.stdout).toContain(`  app1.service: ${before[0]} -> ${before[0]} (not restarted)`);
      expect(await mainPids('app1.service', 'app2.service', 'epmd.service')).toEqual(before);
      expect((await probe('198.51.100.2')).reply).toMatch(/^00001111/);
      const shut = await probe('198.51.100.3');
      report(`probe from 198.51.100.3 after allow: ${JSON.stringify(shut)}`);
      expect(shut.reply).toBe('');
      expect(shut.ended).not.toBe('closed');
      expect(await registered('app1', 'app2')).toBe(true);
      expect((await sh(`${SDEPMD} doctor --json`)).stdout).not.toContain('socket-exposed');

      expect((await shown(`${SDEPMD} allow --reset`)).code).toBe(0);
      expect((await probe('198.51.100.3')).reply).toMatch(/^00001111/);
      expect(await mainPids('app1.service', 'app2.service', 'epmd.service')).toEqual(before);
    },
    TEST_TIMEOUT,
  );

  test(
    'listen: new addresses without restarting any app; the nodes register again',
    async () => {
      const before = await mainPids('app1.service', 'app2.service');
      const t0 = Date.now();
      const r = await shown(`${SDEPMD} listen 198.51.100.1`, 120000);
      expect(r.code).toBe(0);
      const listening = (await sh(['ss', '-Hltn', 'sport = :4369'])).stdout;
      expect(listening).toMatch(/127\.0\.0\.1:4369/);
      expect(listening).toMatch(/\[::1\]:4369/);
      expect(listening).toMatch(/198\.51\.100\.1:4369/);
      expect(listening).not.toMatch(/\*:4369|\[::\]:4369|0\.0\.0\.0:4369/);
      await waitFor('app1 and app2 registered again', () => registered('app1', 'app2'), 15000, 100);
      report(`listen: both nodes registered again ${Date.now() - t0} ms after the command started`);
      expect(await mainPids('app1.service', 'app2.service')).toEqual(before);
      expect(
        (await nsProbe(hosts!.b, '198.51.100.1', 4369, encodeSimpleRequest(NAMES_REQ), '198.51.100.2', 1000)).reply,
      ).toMatch(/^00001111/);
      const reset = await shown(`${SDEPMD} listen --reset`, 120000);
      expect(reset.code).toBe(0);
      await waitFor('registered after reset', () => registered('app1', 'app2'), 15000, 100);
      expect(await mainPids('app1.service', 'app2.service')).toEqual(before);
      expect((await sh(['ss', '-Hltn', 'sport = :4369'])).stdout).toMatch(/\*:4369|\[::\]:4369/);
    },
    TEST_TIMEOUT,
  );
});
