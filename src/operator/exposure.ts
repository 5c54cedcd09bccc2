/**
 * `sdepmd listen ADDRESS...` and `sdepmd allow CIDR...`: who can reach epmd at all, set where systemd owns the
 * socket (epmd.socket), since the C epmd's ERL_EPMD_ADDRESS and -address do nothing once sockets are passed in.
 *
 * Each writes one drop-in, /etc/systemd/system/epmd.socket.d/50-sdepmd-{listen,allow}.conf, runs daemon-reload,
 * and applies it with the least disruption systemd allows:
 *
 *  - allow (IPAddressAllow=/IPAddressDeny=): systemd re-attaches the socket unit's BPF filter on daemon-reload, and
 *    the listening socket was created in that unit's cgroup, so the filter applies to it at once: no restart of
 *    epmd.socket, epmd.service or any app.
 *  - listen (ListenStream=): systemd binds sockets only when epmd.socket starts, and refuses to start it while
 *    epmd.service runs ("Socket service epmd.service already active, refusing"). So epmd.service must stop, the
 *    socket restart, and the service start again. Every step runs with --job-mode=ignore-requirements: a plain
 *    `systemctl restart epmd.socket` would pass the restart on to epmd.service (Requires=epmd.socket) and from there
 *    to every app with Requires=epmd.service. One transaction restarting both units does not work either: systemd
 *    orders the socket's start before the service's stop, and the socket refuses. The cost, on systemd 252: an
 *    explicit stop empties epmd.service's fd store, so the nodes see their epmd connection close and register again
 *    on their own (OTP 23.3 and later retry): their names are missing meanwhile (13 s in the e2e suite, under load);
 *    no app restarts.
 *    `--later` only writes the drop-in and reloads: it then applies at the next start of epmd.socket (a boot).
 *
 * The apps' MainPIDs are read before and after, and printed: a changed one would be a bounce.
 */
import * as fs from 'node:fs';
import { readOrNull } from '../util/files';
import * as path from 'node:path';
import { isIP } from 'node:net';
import { EPMD_SERVICE, EPMD_SOCKET } from './findings';
import { usageMessage, USAGE_EXIT_CODE } from '../cli/verbs';
import { writeAtomically } from './metrics';

export type ExposureVerb = 'listen' | 'allow';

export const EXPOSURE_DROP_INS: Readonly<Record<ExposureVerb, string>> = {
  listen: '50-sdepmd-listen.conf',
  allow: '50-sdepmd-allow.conf',
};

export interface ExposureOptions {
  readonly words: readonly string[];
  readonly reset: boolean;
  readonly dryRun: boolean;
  readonly port: number;
  /** Write under this directory instead of / and do not ask systemd (tests). */
  readonly root?: string;
  /** listen: write and reload only; the addresses apply at the next start of epmd.socket. */
  readonly later?: boolean;
}

export interface ExposureDeps {
  systemctl(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

export function exposureDropInPath(verb: ExposureVerb, root = '/'): string {
  return path.join(root, 'etc', 'systemd', 'system', `${EPMD_SOCKET}.d`, EXPOSURE_DROP_INS[verb]);
}

type Built = { readonly ok: true; readonly content: string } | { readonly ok: false; readonly error: string };

const LOOPBACK = ['127.0.0.1', '::1'];

/** The listen drop-in: loopback plus the given addresses, FreeBind=yes so that it binds before they are up. */
export function listenDropIn(addresses: readonly string[], port: number): Built {
  const list: string[] = [...LOOPBACK];
  for (const word of addresses) {
    const address = word.replace(/^\[(.*)\]$/, '$1');
    if (!isIP(address))
      return {
        ok: false,
        error: `${JSON.stringify(word)} is not an IP address (listen takes addresses; allow takes networks)`,
      };
    if (address === '0.0.0.0' || address === '::')
      return { ok: false, error: `${word} is every address: use sdepmd listen --reset for that` };
    if (!list.includes(address)) list.push(address);
  }
  const streams = list.map((a) => `ListenStream=${a.includes(':') ? `[${a}]` : a}:${port}`);
  return {
    ok: true,
    content: [
      '# Written by `sdepmd listen`; remove with `sdepmd listen --reset`.',
      '# epmd.socket listens on these addresses only. Loopback is always kept: local nodes register through it.',
      '[Socket]',
      'ListenStream=',
      ...streams,
      '# Bind an address even before it is configured (boot order, DHCP).',
      'FreeBind=yes',
      '',
    ].join('\n'),
  };
}

const ALLOW_KEYWORDS = ['localhost', 'link-local', 'multicast', 'any'];

/** A systemd IPAddressAllow= entry: an address, an address/prefix, or one of systemd's keywords. */
export function validCidr(word: string): boolean {
  if (ALLOW_KEYWORDS.includes(word)) return true;
  const [address, prefix, extra] = word.split('/');
  if (extra !== undefined || address === undefined) return false;
  const family = isIP(address);
  if (family === 0) return false;
  if (prefix === undefined) return true;
  if (!/^\d{1,3}$/.test(prefix)) return false;
  return Number(prefix) <= (family === 4 ? 32 : 128);
}

/** The allow drop-in: deny everyone, then allow loopback and the given networks. */
export function allowDropIn(cidrs: readonly string[]): Built {
  const list = ['localhost'];
  for (const word of cidrs) {
    if (!validCidr(word))
      return {
        ok: false,
        error: `${JSON.stringify(word)} is not an address or network (e.g. 10.0.0.0/8, fd00::/8, 192.0.2.7)`,
      };
    if (word === 'any') return { ok: false, error: 'allow any is no restriction: use sdepmd allow --reset for that' };
    if (!list.includes(word)) list.push(word);
  }
  return {
    ok: true,
    content: [
      '# Written by `sdepmd allow`; remove with `sdepmd allow --reset`.',
      "# Only loopback and these networks may reach epmd.socket. systemd filters the socket's packets (BPF on its",
      "# cgroup): other peers cannot even connect. Node-to-node traffic (the nodes' own ports) is not affected.",
      '[Socket]',
      'IPAddressDeny=',
      'IPAddressDeny=any',
      'IPAddressAllow=',
      ...list.map((c) => `IPAddressAllow=${c}`),
      '',
    ].join('\n'),
  };
}

function indent(text: string): string {
  return text.replace(/\n$/, '').replace(/^/gm, '    ').replace(/ +$/gm, '') + '\n';
}

/** Units that would be bounced by a restart of epmd: those requiring, bound to, or wanting epmd.service/socket. */
async function dependentApps(deps: ExposureDeps): Promise<string[]> {
  const r = await deps.systemctl([
    'show',
    '-p',
    'RequiredBy,BoundBy,WantedBy,RequisiteOf,PartOf',
    '--value',
    '--',
    EPMD_SERVICE,
    EPMD_SOCKET,
  ]);
  const units = r.stdout.split(/\s+/).filter((u) => u.endsWith('.service') && u !== EPMD_SERVICE);
  return [...new Set(units)].sort();
}

async function mainPids(units: readonly string[], deps: ExposureDeps): Promise<Map<string, number>> {
  const pids = new Map<string, number>();
  for (const unit of units) {
    const r = await deps.systemctl(['show', '-p', 'MainPID', '--value', '--', unit]);
    pids.set(unit, Number(r.stdout.trim()) || 0);
  }
  return pids;
}

async function unitState(unit: string, deps: ExposureDeps): Promise<string> {
  return (await deps.systemctl(['show', '-p', 'ActiveState', '--value', '--', unit])).stdout.trim();
}

/** Exit codes: 0 applied (or nothing to do, or dry run), 1 refused or failed (including an app bounced). */
export async function applyExposure(verb: ExposureVerb, opts: ExposureOptions, deps: ExposureDeps): Promise<number> {
  const say = (text: string) => deps.stdout(`${text}\n`);
  const fail = (text: string) => {
    deps.stderr(`sdepmd ${verb}: ${text}\n`);
    return 1;
  };
  const file = exposureDropInPath(verb, opts.root);
  const current = readOrNull(file);
  let content: string | null = null;
  if (!opts.reset) {
    const built = verb === 'listen' ? listenDropIn(opts.words, opts.port) : allowDropIn(opts.words);
    if (!built.ok) {
      deps.stderr(usageMessage(built.error, verb));
      return USAGE_EXIT_CODE;
    }
    content = built.content;
  }
  if (content === current) {
    say(`${file}: already ${content === null ? 'absent' : 'says that'}; nothing to do`);
    return 0;
  }
  const askSystemd = opts.root === undefined;
  /** listen's steps, in order (see the top of this file for why these and no others). */
  const steps: readonly (readonly string[])[] =
    verb === 'listen' && !opts.later
      ? [
          ['stop', '--job-mode=ignore-requirements', EPMD_SERVICE],
          ['restart', '--job-mode=ignore-requirements', EPMD_SOCKET],
          ['start', '--job-mode=ignore-requirements', EPMD_SERVICE],
        ]
      : [];
  if (opts.dryRun) {
    if (content === null) say(`would remove ${file}`);
    else deps.stdout(`would ${current === null ? 'write' : 'replace'} ${file}:\n${indent(content)}`);
    if (askSystemd) {
      say('would run: systemctl daemon-reload');
      for (const step of steps) say(`would run: systemctl ${step.join(' ')}`);
      if (steps.length > 0)
        say('  (if epmd.socket is active; no app restarts; registered nodes register again on their own)');
      else if (verb === 'listen') say(`  (then the addresses apply at the next start of ${EPMD_SOCKET})`);
      else say('  (IPAddressAllow=/IPAddressDeny= apply to the listening socket at once: nothing restarts)');
    }
    return 0;
  }

  const apps = askSystemd ? await dependentApps(deps) : [];
  const before = await mainPids(apps, deps);
  try {
    if (content === null) fs.rmSync(file, { force: true });
    else writeAtomically(file, content);
  } catch (err) {
    return fail(`cannot ${content === null ? 'remove' : 'write'} ${file}: ${(err as Error).message}`);
  }
  say(`${content === null ? 'removed' : current === null ? 'wrote' : 'replaced'} ${file}`);
  if (content !== null) deps.stdout(indent(content));
  if (!askSystemd) {
    say('--root given: systemd not asked');
    return 0;
  }
  const reload = await deps.systemctl(['daemon-reload']);
  if (reload.code !== 0) return fail(`systemctl daemon-reload failed (exit ${reload.code}): ${reload.stderr.trim()}`);
  say('ran: systemctl daemon-reload');

  if (verb === 'listen') {
    const socketState = await unitState(EPMD_SOCKET, deps);
    if (opts.later || socketState !== 'active') {
      say(
        `${EPMD_SOCKET} is ${socketState || 'not loaded'}${opts.later ? ' (--later)' : ''}: the addresses apply at its next start`,
      );
    } else {
      const t0 = Date.now();
      for (const step of steps) {
        const r = await deps.systemctl(step);
        if (r.code !== 0)
          return fail(
            `systemctl ${step.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}; see journalctl -u ${EPMD_SOCKET} -u ${EPMD_SERVICE}`,
          );
        say(`ran: systemctl ${step.join(' ')}`);
      }
      say(
        `${EPMD_SOCKET} listens on the new addresses (${Date.now() - t0} ms); registered nodes register again on their own (OTP 23.3 and later)`,
      );
    }
  } else {
    const shown = (await deps.systemctl(['show', '-p', 'IPAddressAllow,IPAddressDeny', '--', EPMD_SOCKET])).stdout
      .trim()
      .split('\n');
    say(`applied at once, nothing restarted: ${shown.join('; ')}`);
  }

  const after = await mainPids(apps, deps);
  let bounced = 0;
  if (apps.length === 0) say('apps depending on epmd: none');
  else {
    say('apps depending on epmd (MainPID before -> after):');
    for (const app of apps) {
      const [b, a] = [before.get(app) ?? 0, after.get(app) ?? 0];
      const same = b === a;
      if (!same) bounced++;
      say(`  ${app}: ${b} -> ${a}${same ? (a === 0 ? ' (not running)' : ' (not restarted)') : ' (RESTARTED)'}`);
    }
  }
  return bounced > 0 ? fail(`${bounced} app(s) were restarted`) : 0;
}
