/**
 * Gathers a HostSnapshot from the real host for `sdepmd doctor`: systemd through `systemctl show` and
 * `systemctl list-units`, processes through /proc, listeners through `ss -Hltnp`, registrations through the EPMD
 * protocol, and epmd.service's last journal lines. The parsers are exported for the unit tests.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import { readOrNull } from '../util/files';
import * as os from 'node:os';
import { exchangeLocal } from '../cli/client';
import { decodeNamesReply, encodeSimpleRequest } from '../protocol/codec';
import { NAMES_REQ } from '../protocol/constants';
import {
  EPMD_SERVICE,
  EPMD_SOCKET,
  isEpmdProcess,
  isErlangVm,
  unitOfCgroup,
  type HostSnapshot,
  type Listener,
  type ProcessInfo,
  type UnitInfo,
} from './findings';
import { DROP_IN_NAME, environmentFileErlFlags, splitQuoted, unitFileErlFlags, type ErlFlagSource } from './unit-env';

export const SHOW_PROPERTIES = [
  'Id',
  'LoadState',
  'ActiveState',
  'SubState',
  'Result',
  'MainPID',
  'ControlGroup',
  'Requires',
  'Wants',
  'BindsTo',
  'After',
  'Environment',
  'ExecStart',
  'NRestarts',
  'UnitFileState',
  'Listen',
  'IPAddressAllow',
  'IPAddressDeny',
  'DropInPaths',
  'EnvironmentFiles',
] as const;

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: readonly string[], timeoutMs = 15_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      [...args],
      {
        timeout: timeoutMs,
        maxBuffer: 64 * 1024 * 1024,
        env: { ...process.env, SYSTEMD_PAGER: '', SYSTEMD_COLORS: '0', LC_ALL: 'C' },
      },
      (err, stdout, stderr) => {
        const code = err
          ? typeof (err as { code?: unknown }).code === 'number'
            ? (err as { code: number }).code
            : 127
          : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) || (err && code === 127 ? err.message : '') });
      },
    );
  });
}

/** Parses `systemctl show -p ... UNIT...` (blocks of KEY=VALUE, separated by blank lines). */
export function parseSystemctlShow(text: string): UnitInfo[] {
  const units: UnitInfo[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    const props = new Map<string, string[]>();
    for (const line of block.split('\n')) {
      const eq = line.indexOf('=');
      if (eq <= 0) continue;
      const key = line.slice(0, eq);
      props.set(key, [...(props.get(key) ?? []), line.slice(eq + 1)]);
    }
    const one = (k: string): string => props.get(k)?.[0] ?? '';
    const list = (k: string): string[] => one(k).split(/\s+/).filter(Boolean);
    if (!one('Id')) continue;

    units.push({
      id: one('Id'),
      loadState: one('LoadState'),
      activeState: one('ActiveState'),
      subState: one('SubState'),
      result: one('Result'),
      mainPid: Number(one('MainPID')) || 0,
      controlGroup: one('ControlGroup'),
      requires: list('Requires'),
      wants: list('Wants'),
      bindsTo: list('BindsTo'),
      after: list('After'),
      environment: splitQuoted(one('Environment')),
      execStart: execStartCommand(one('ExecStart')),
      nRestarts: Number(one('NRestarts')) || 0,
      unitFileState: one('UnitFileState'),
      listen: props.get('Listen')?.filter(Boolean) ?? [],
      ...(props.has('IPAddressAllow')
        ? { ipAddressAllow: list('IPAddressAllow'), ipAddressDeny: list('IPAddressDeny') }
        : {}),
      ...(props.has('DropInPaths') ? { dropInPaths: list('DropInPaths') } : {}),
      ...(props.has('EnvironmentFiles')
        ? { environmentFiles: environmentFilePaths(props.get('EnvironmentFiles')!) }
        : {}),
    });
  }
  return units;
}

/** The command of the first ExecStart= in `systemctl show` (`{ path=... ; argv[]=CMD ; ... }`), or ''. */
export function execStartCommand(value: string): string {
  return /argv\[\]=(.*?) ; /.exec(value)?.[1] ?? '';
}

/** The paths in `systemctl show -p EnvironmentFiles` (one `PATH (ignore_errors=yes|no)` per line). */
export function environmentFilePaths(lines: readonly string[]): string[] {
  return lines.flatMap((l) => [...l.matchAll(/(\S+) \(ignore_errors=(?:yes|no)\)/g)].map((m) => m[1]!));
}

/** Where a unit's ERL_*FLAGS come from besides Environment=: its drop-ins and environment files, read now. */
export function readErlFlagSources(unit: UnitInfo): ErlFlagSource[] {
  const fromDropIns = (unit.dropInPaths ?? []).flatMap((f) => unitFileErlFlags(f, readOrNull(f) ?? ''));
  const fromFiles = (unit.environmentFiles ?? []).flatMap((f) => environmentFileErlFlags(f, readOrNull(f) ?? ''));
  return [...fromDropIns, ...fromFiles];
}

/** Units with the attach drop-in in /etc/systemd/system, running or not. */
export function attachedUnits(dir = '/etc/systemd/system'): string[] {
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return entries
    .filter((e) => e.endsWith('.d') && fs.existsSync(`${dir}/${e}/${DROP_IN_NAME}`))
    .map((e) => e.slice(0, -2));
}

/** Parses `systemctl list-units --plain --no-legend`: the first column of each line. */
export function parseListUnits(text: string): string[] {
  return text
    .split('\n')
    .map(
      (l) =>
        l
          .trim()
          .replace(/^[●*]\s*/, '')
          .split(/\s+/)[0] ?? '',
    )
    .filter((u) => u.length > 0);
}

/** Parses `ss -Hltnp`. */
export function parseSs(text: string): Listener[] {
  const listeners: Listener[] = [];
  for (const line of text.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 5) continue;
    // State Recv-Q Send-Q Local Peer [Process]; with -l the state is LISTEN (older ss omit the state with -H -l).
    const local = cols[0] === 'LISTEN' || cols[0] === 'UNCONN' ? cols[3]! : cols[2]!;
    const colon = local.lastIndexOf(':');
    const port = Number(local.slice(colon + 1));
    if (colon < 0 || !Number.isInteger(port)) continue;
    const holders: { pid: number; comm: string }[] = [];
    for (const m of line.matchAll(/\("((?:[^"\\]|\\.)*)",pid=(\d+),fd=\d+\)/g))
      holders.push({ comm: m[1]!, pid: Number(m[2]) });
    listeners.push({ address: local.slice(0, colon), port, holders });
  }
  return listeners;
}

/** The systemd cgroup of a process from /proc/PID/cgroup: the unified (0::) line, else name=systemd. */
export function parseProcCgroup(text: string): string {
  const lines = text.split('\n');
  const unified = lines.find((l) => l.startsWith('0::'));
  const named = lines.find((l) => l.includes(':name=systemd:'));
  const line = unified && unified !== '0::/' ? unified : (named ?? unified ?? '');
  return line.slice(line.indexOf(':', line.indexOf(':') + 1) + 1);
}

function readProc(pid: number, excluded: ReadonlySet<number>): ProcessInfo | null {
  if (excluded.has(pid)) return null;
  try {
    const comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    while (cmdline.length > 0 && cmdline[cmdline.length - 1] === '') cmdline.pop();
    let cgroup = '';
    try {
      cgroup = parseProcCgroup(fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8'));
    } catch {
      /* hidden */
    }
    return { pid, comm, cmdline, environ: {}, cgroup };
  } catch {
    return null; // gone, or hidden
  }
}

function readErlEnviron(pid: number): Record<string, string> {
  const env: Record<string, string> = {};
  try {
    for (const kv of fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
      const eq = kv.indexOf('=');
      if (eq > 0 && kv.startsWith('ERL_')) env[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
  } catch {
    /* not ours to read */
  }
  return env;
}

async function registeredNames(port: number): Promise<Pick<HostSnapshot, 'registered' | 'registeredError'>> {
  try {
    const reply = await exchangeLocal(port, encodeSimpleRequest(NAMES_REQ), 3000);
    if (reply.length < 4)
      return {
        registered: null,
        registeredError: `the NAMES reply on port ${port} is ${reply.length} byte(s): not an epmd`,
      };
    const parsed = decodeNamesReply(reply);
    if (parsed.epmdPort !== port) {
      return {
        registered: null,
        registeredError: `the answer on port ${port} is not an EPMD NAMES reply (${reply.subarray(0, 16).toString('hex')})`,
      };
    }
    return { registered: parsed.nodes.map((n) => ({ name: n.name, port: n.port })) };
  } catch (err) {
    return { registered: null, registeredError: (err as Error).message };
  }
}

/** Gathers the snapshot. `excludePids`: the doctor itself (and its parent), which must not count as an epmd. */
export async function gatherSnapshot(
  port: number,
  excludePids: readonly number[] = [process.pid, process.ppid],
): Promise<HostSnapshot> {
  // Ask epmd first: a NAMES request activates epmd.service behind its socket, so the processes read below include it.
  const names = await registeredNames(port);

  const excluded = new Set(excludePids);
  const processes: ProcessInfo[] = [];
  const all = new Map<number, ProcessInfo>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const p = readProc(Number(entry), excluded);
    if (p) all.set(p.pid, p);
  }

  let listeners: Listener[] | null = null;
  let listenersError: string | undefined;
  const ss = await run('ss', ['-Hltnp']);
  if (ss.code === 0) {
    const wanted = new Set([port, ...(names.registered ?? []).map((r) => r.port)]);
    listeners = parseSs(ss.stdout).filter((l) => wanted.has(l.port));
  } else listenersError = `ss -Hltnp: exit ${ss.code}: ${oneLine(ss.stderr)}`;

  const holderPids = new Set((listeners ?? []).flatMap((l) => l.holders.map((h) => h.pid)));
  for (const p of all.values()) {
    if (isErlangVm(p)) processes.push({ ...p, environ: readErlEnviron(p.pid) });
    else if (isEpmdProcess(p) || holderPids.has(p.pid)) processes.push(p);
  }

  const list = await run('systemctl', [
    'list-units',
    '--type=service',
    '--state=running',
    '--plain',
    '--no-legend',
    '--no-pager',
  ]);
  let systemdError: string | undefined;
  let units: UnitInfo[] = [];
  if (list.code !== 0) systemdError = `systemctl list-units: exit ${list.code}: ${oneLine(list.stderr || list.stdout)}`;
  else {
    const ids = new Set([EPMD_SOCKET, EPMD_SERVICE, ...parseListUnits(list.stdout), ...attachedUnits()]);
    for (const p of processes) {
      const u = unitOfCgroup(p.cgroup);
      if (u) ids.add(u);
    }
    const show = await run('systemctl', ['show', '--no-pager', '-p', SHOW_PROPERTIES.join(','), '--', ...ids]);
    if (show.code !== 0) systemdError = `systemctl show: exit ${show.code}: ${oneLine(show.stderr)}`;
    else
      units = parseSystemctlShow(show.stdout).map((u) => {
        const sources = readErlFlagSources(u);
        return sources.length > 0 ? { ...u, erlFlagSources: sources } : u;
      });
  }

  const journal = await run('journalctl', ['-u', EPMD_SERVICE, '-n', '10', '--no-pager', '-o', 'short-iso', '-q']);
  const epmdJournal =
    journal.code === 0 ? journal.stdout.split('\n').filter((l) => l.trim() && !/^-- No entries --$/.test(l)) : [];

  return {
    port,
    epmdAddressSettings: epmdAddressSettings(),
    localNetworks: localNetworks(),
    ...(systemdError !== undefined ? { systemdError } : {}),
    units,
    processes: processes.sort((a, b) => a.pid - b.pid),
    listeners,
    ...(listenersError !== undefined ? { listenersError } : {}),
    ...names,
    epmdJournal,
  };
}

/** ERL_EPMD_ADDRESS in /etc/default/epmd, /etc/environment, and doctor's own environment. */
export function epmdAddressSettings(
  env: NodeJS.ProcessEnv = process.env,
  files: readonly string[] = ['/etc/default/epmd', '/etc/environment'],
): { where: string; value: string }[] {
  const found: { where: string; value: string }[] = [];
  for (const file of files) {
    for (const line of (readOrNull(file) ?? '').split('\n')) {
      const m = /^\s*(?:export\s+)?ERL_EPMD_ADDRESS\s*=\s*(.*?)\s*$/.exec(line);
      if (m) found.push({ where: file, value: m[1]!.replace(/^(["'])(.*)\1$/, '$2') });
    }
  }
  if (env.ERL_EPMD_ADDRESS) found.push({ where: "sdepmd doctor's own environment", value: env.ERL_EPMD_ADDRESS });
  return found;
}

/** This host's networks, from its non-loopback, non-link-local addresses: "10.1.2.0/24", "fd00:1::/64". */
export function localNetworks(interfaces: ReturnType<typeof os.networkInterfaces> = os.networkInterfaces()): string[] {
  const networks = new Set<string>();
  for (const addresses of Object.values(interfaces)) {
    for (const a of addresses ?? []) {
      if (a.internal || !a.cidr || /^fe80:/i.test(a.address)) continue;
      networks.add(networkOf(a.cidr));
    }
  }
  return [...networks].sort();
}

/** The network of an address/prefix: 10.1.2.5/24 -> 10.1.2.0/24. */
export function networkOf(cidr: string): string {
  const [address, prefixText] = cidr.split('/') as [string, string];
  const prefix = Number(prefixText);
  if (address.includes(':')) {
    const full = expandIpv6(address);
    let n = BigInt(`0x${full}`);
    n &= ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - prefix)) - 1n);
    const hex = n.toString(16).padStart(32, '0');
    const groups = hex.match(/.{4}/g)!.map((g) => g.replace(/^0+(?=.)/, ''));
    return `${groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::')}/${prefix}`;
  }
  const n = address.split('.').reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n);
  const masked = n & (((1n << 32n) - 1n) ^ ((1n << BigInt(32 - prefix)) - 1n));
  return `${[24n, 16n, 8n, 0n].map((s) => String((masked >> s) & 255n)).join('.')}/${prefix}`;
}

function expandIpv6(address: string): string {
  const [head, tail] = address.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.map((g) => g.padStart(4, '0')).join('');
}

function oneLine(text: string): string {
  return text
    .trim()
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join('; ');
}
