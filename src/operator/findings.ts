/**
 * `sdepmd doctor`'s judgement: a pure function from a HostSnapshot (what snapshot.ts gathers from systemd, /proc,
 * `ss` and the EPMD protocol) to findings, each with its evidence and the exact commands that fix it.
 * No I/O here, so that every rule can be tested on captured inputs.
 */

import { SUBCOMMANDS } from '../cli/verbs';
import {
  DROP_IN_NAME,
  ERL_FLAG_VARS,
  hasAttachDropIn,
  lastStartEpmd,
  startEpmdOverride,
  type ErlFlagSource,
  type StartEpmdOverride,
} from './unit-env';

/** What `systemctl show` says about one unit. */
export interface UnitInfo {
  readonly id: string;
  readonly loadState: string;
  readonly activeState: string;
  readonly subState: string;
  readonly result: string;
  readonly mainPid: number;
  readonly controlGroup: string;
  readonly requires: readonly string[];
  readonly wants: readonly string[];
  readonly bindsTo: readonly string[];
  readonly after: readonly string[];
  /** Environment= assignments, unquoted: ["HOME=/root", "ERL_AFLAGS=-start_epmd false"]. */
  readonly environment: readonly string[];
  /** The argv of the first ExecStart= line, or '' (sockets have none). */
  readonly execStart: string;
  readonly nRestarts: number;
  readonly unitFileState: string;
  /** Listen= of a socket unit, e.g. "[::]:4369 (Stream)". */
  readonly listen: readonly string[];
  /** IPAddressAllow= / IPAddressDeny= (absent from snapshots taken before doctor read them). */
  readonly ipAddressAllow?: readonly string[];
  readonly ipAddressDeny?: readonly string[];
  /** DropInPaths= and the EnvironmentFiles= paths (absent from older snapshots). */
  readonly dropInPaths?: readonly string[];
  readonly environmentFiles?: readonly string[];
  /** The ERL_AFLAGS / ERL_FLAGS / ERL_ZFLAGS its drop-ins and environment files set, as read from them. */
  readonly erlFlagSources?: readonly ErlFlagSource[];
}

/** One process, from /proc/PID. */
export interface ProcessInfo {
  readonly pid: number;
  readonly comm: string;
  readonly cmdline: readonly string[];
  /** Only the ERL_* variables of /proc/PID/environ (empty when unreadable). */
  readonly environ: Readonly<Record<string, string>>;
  /** The unified (0::) or name=systemd cgroup path, as systemd's ControlGroup shows it. */
  readonly cgroup: string;
}

/** A listening TCP socket, from `ss -Hltnp`. */
export interface Listener {
  readonly address: string;
  readonly port: number;
  readonly holders: readonly { readonly pid: number; readonly comm: string }[];
}

export interface HostSnapshot {
  /** The epmd port that was checked. */
  readonly port: number;
  /** Set when systemctl could not be used at all (systemd not running, ...). */
  readonly systemdError?: string;
  /** Running services, plus epmd.socket, epmd.service and the units owning epmd or beam.smp processes. */
  readonly units: readonly UnitInfo[];
  /** epmd candidates, Erlang VMs and the processes holding the listeners below. */
  readonly processes: readonly ProcessInfo[];
  /** Listening sockets on the epmd port and on the registered nodes' ports; null when `ss` failed. */
  readonly listeners: readonly Listener[] | null;
  readonly listenersError?: string;
  /** The names the epmd on `port` reports over the EPMD protocol; null when none answered. */
  readonly registered: readonly { readonly name: string; readonly port: number }[] | null;
  readonly registeredError?: string;
  /** The last lines of `journalctl -u epmd.service`. */
  readonly epmdJournal: readonly string[];
  /**
   * Where ERL_EPMD_ADDRESS is set outside the units and processes: /etc/default/epmd, /etc/environment and
   * doctor's own environment, as "where: value" (absent from older snapshots).
   */
  readonly epmdAddressSettings?: readonly { readonly where: string; readonly value: string }[];
  /** This host's own networks (non-loopback interfaces), e.g. "10.1.2.0/24", for the exposure fix. */
  readonly localNetworks?: readonly string[];
}

export interface Finding {
  readonly id: string;
  readonly severity: 'error' | 'warning';
  readonly title: string;
  readonly evidence: string[];
  /** Exact commands, in order. */
  readonly fix: string[];
}

export const EPMD_SERVICE = 'epmd.service';
export const EPMD_SOCKET = 'epmd.socket';

/** The CLI verbs and subcommands of sdepmd: a node process with one of these is a client, not a daemon. */
const SDEPMD_CLIENT_WORDS = new Set([
  '-names',
  '--names',
  '-kill',
  '--kill',
  '-stop',
  '--stop',
  '-dump',
  '--dump',
  '-started',
  '--started',
  '-help',
  '--help',
  '-h',
  '-version',
  '--version',
  ...SUBCOMMANDS,
]);

/** An epmd: the C one (comm "epmd"), or an sdepmd daemon (a node process running sdepmd, not one of its client verbs). */
export function isEpmdProcess(p: ProcessInfo): boolean {
  if (p.comm === 'epmd') return true;
  if (p.comm === 'sdepmd') return !p.cmdline.some((a) => SDEPMD_CLIENT_WORDS.has(a));
  if (p.comm !== 'node' && p.comm !== 'nodejs') return false;
  const script = p.cmdline.findIndex((a, i) => i > 0 && !a.startsWith('-'));
  if (script < 0) return false;
  const entry = p.cmdline[script]!;
  if (!/sdepmd/.test(entry)) return false;
  return !p.cmdline.slice(script + 1).some((a) => SDEPMD_CLIENT_WORDS.has(a));
}

export function isSdepmd(p: ProcessInfo): boolean {
  return p.comm !== 'epmd' && isEpmdProcess(p);
}

export function isErlangVm(p: ProcessInfo): boolean {
  return p.comm === 'beam.smp' || p.comm === 'beam';
}

/** The unit that owns a cgroup path: its last component that names a service or a scope, or null. */
export function unitOfCgroup(cgroup: string): string | null {
  const parts = cgroup.split('/').filter(Boolean);
  for (let i = parts.length - 1; i >= 0; i--) {
    if (/\.(service|scope)$/.test(parts[i]!)) return parts[i]!;
  }
  return null;
}

/** The node name of an Erlang VM (`-sname X` / `-name X@host`, without @host), or null when not distributed. */
export function nodeNameOf(p: ProcessInfo): string | null {
  let name: string | null = null;
  // The last one wins, as in erl; ERL_AFLAGS and friends are merged into beam's argv by erlexec.
  for (let i = 0; i < p.cmdline.length - 1; i++) {
    const a = p.cmdline[i];
    if (a === '-sname' || a === '-name') name = p.cmdline[i + 1]!;
  }
  if (name === null) return null;
  const alive = name.split('@')[0]!;
  // `-sname undefined` asks for a dynamic name (OTP 23+): nothing to find in epmd by that name.
  return alive && alive !== 'undefined' ? alive : null;
}

/** Whether the VM was told `-start_epmd false` (on its command line or in ERL_AFLAGS / ERL_FLAGS / ERL_ZFLAGS). */
export function startsNoEpmd(p: ProcessInfo): boolean {
  return lastStartEpmd([p.cmdline, ...ERL_FLAG_VARS.map((k) => (p.environ[k] ?? '').split(/\s+/))]) === 'false';
}

/** An attached unit whose own settings override the drop-in's -start_epmd false (see unit-env.ts), or null. */
function overriddenStartEpmd(u: UnitInfo | undefined): StartEpmdOverride | null {
  return u && hasAttachDropIn(u.dropInPaths ?? []) ? startEpmdOverride(u) : null;
}

/** Whether a unit depends on epmd the way sdepmd asks (Requires/BindsTo + After epmd.service), or the opt-in
 * alternative (Wants/Requires + After epmd.socket). */
export function dependencyGaps(u: UnitInfo): string[] {
  const onService = u.requires.includes(EPMD_SERVICE) || u.bindsTo.includes(EPMD_SERVICE);
  const afterService = u.after.includes(EPMD_SERVICE);
  const onSocket = (u.wants.includes(EPMD_SOCKET) || u.requires.includes(EPMD_SOCKET)) && u.after.includes(EPMD_SOCKET);
  if (onSocket || (onService && afterService)) return [];
  const gaps: string[] = [];
  if (!onService) gaps.push(`Requires=${EPMD_SERVICE}`);
  if (!afterService) gaps.push(`After=${EPMD_SERVICE}`);
  return gaps;
}

function describeProcess(p: ProcessInfo): string {
  const cmd = p.cmdline.join(' ').trim() || `[${p.comm}]`;
  return `pid ${p.pid} (${p.comm}): ${cmd.length > 200 ? `${cmd.slice(0, 200)}...` : cmd}`;
}

type Holder = Listener['holders'][number];

function describeHolder(h: Holder, byPid: ReadonlyMap<number, ProcessInfo>): string {
  const p = byPid.get(h.pid);
  const unit = p ? unitOfCgroup(p.cgroup) : null;
  const cmd = p ? p.cmdline.join(' ').trim() : '';
  return `pid ${h.pid} (${h.comm})${unit ? ` in ${unit}` : p ? ` in cgroup ${p.cgroup || '?'}` : ''}${cmd ? `: ${cmd}` : ''}`;
}

/** The app service a cgroup belongs to (a service other than epmd.service), or null. */
function appServiceOf(cgroup: string): string | null {
  const unit = unitOfCgroup(cgroup);
  return unit !== null && unit.endsWith('.service') && unit !== EPMD_SERVICE ? unit : null;
}

/**
 * The commands that remove a stray epmd for good. `sdepmd adopt` first: it copies every registration the stray
 * holds into sdepmd (pidfd_getfd), ends the stray and starts epmd.socket and epmd.service, so that no node on the
 * host drops out; then the app gets the drop-in, which applies at its next restart (no restart is needed now).
 */
function strayFix(f: Facts, p: ProcessInfo): string[] {
  const unit = appServiceOf(p.cgroup);
  // adopt asks the epmd on this port for its registrations: an epmd on another port is only ended.
  const end = f.portHolders.has(p.pid)
    ? [`sdepmd adopt --pid ${p.pid}`]
    : [`kill ${p.pid}`, `systemctl start ${EPMD_SOCKET}`];
  return unit ? [`sdepmd attach ${unit}`, ...end] : end;
}

function journalEvidence(s: HostSnapshot): string[] {
  return s.epmdJournal.length > 0 ? ['journalctl -u epmd (last lines):', ...s.epmdJournal.map((l) => `  ${l}`)] : [];
}

/**
 * What the rules share: the snapshot, and what is derived from it once (indexes, the epmd processes, who holds the
 * port). Every rule is a pure function of these facts alone: no rule sees another's findings.
 */
export interface Facts {
  readonly s: HostSnapshot;
  readonly units: ReadonlyMap<string, UnitInfo>;
  readonly byPid: ReadonlyMap<number, ProcessInfo>;
  readonly socket: UnitInfo | undefined;
  readonly service: UnitInfo | undefined;
  /** Every epmd process, and those outside epmd.service. */
  readonly epmds: readonly ProcessInfo[];
  readonly stray: readonly ProcessInfo[];
  readonly inEpmdService: (p: ProcessInfo) => boolean;
  /** Listeners on the epmd port, and their holders by pid. */
  readonly portListeners: readonly Listener[];
  readonly portHolders: ReadonlyMap<number, Holder>;
  /** Holders of the port other than systemd and epmd.service; and of those, the ones that are no epmd at all. */
  readonly foreignHolders: readonly Holder[];
  readonly foreignNonEpmd: readonly Holder[];
  /** Erlang VMs by the app service they run in (epmd.service excluded), sorted by unit. */
  readonly vmsByUnit: ReadonlyMap<string, readonly ProcessInfo[]>;
  /** The registered names, or null when no epmd answered. */
  readonly registered: ReadonlySet<string> | null;
}

export function factsOf(s: HostSnapshot): Facts {
  const units = new Map(s.units.map((u) => [u.id, u]));
  const byPid = new Map(s.processes.map((p) => [p.pid, p]));
  const service = units.get(EPMD_SERVICE);
  const serviceCgroup = service?.controlGroup || null;
  const inEpmdService = (p: ProcessInfo): boolean =>
    (serviceCgroup !== null && (p.cgroup === serviceCgroup || p.cgroup.startsWith(`${serviceCgroup}/`))) ||
    unitOfCgroup(p.cgroup) === EPMD_SERVICE;
  const epmds = s.processes.filter(isEpmdProcess);
  const portListeners = (s.listeners ?? []).filter((l) => l.port === s.port);
  const portHolders = new Map<number, Holder>();
  for (const l of portListeners) for (const h of l.holders) portHolders.set(h.pid, h);
  const foreignHolders = [...portHolders.values()].filter((h) => {
    if (h.pid === 1) return false; // systemd, holding epmd.socket
    const p = byPid.get(h.pid);
    return !(p && inEpmdService(p));
  });
  const foreignNonEpmd = foreignHolders.filter((h) => {
    const p = byPid.get(h.pid);
    return !(p && isEpmdProcess(p));
  });
  const vms = new Map<string, ProcessInfo[]>();
  for (const p of s.processes.filter(isErlangVm)) {
    const unit = appServiceOf(p.cgroup);
    if (unit) vms.set(unit, [...(vms.get(unit) ?? []), p]);
  }
  return {
    s,
    units,
    byPid,
    socket: units.get(EPMD_SOCKET),
    service,
    epmds,
    stray: epmds.filter((p) => !inEpmdService(p)),
    inEpmdService,
    portListeners,
    portHolders,
    foreignHolders,
    foreignNonEpmd,
    vmsByUnit: new Map([...vms.entries()].sort(([a], [b]) => a.localeCompare(b))),
    registered: s.registered === null ? null : new Set(s.registered.map((r) => r.name)),
  };
}

// ---- What several rules ask of the facts -----------------------------------------------------------------------

/** The commands that free the port from a holder that is not systemd's epmd. */
function holderFix(f: Facts, h: Holder): string[] {
  const p = f.byPid.get(h.pid);
  if (p && isEpmdProcess(p)) return strayFix(f, p);
  const unit = p ? unitOfCgroup(p.cgroup) : null;
  if (unit && unit.endsWith('.service')) {
    const enabled = f.units.get(unit)?.unitFileState === 'enabled';
    return [`systemctl stop ${unit}`, ...(enabled ? [`systemctl disable ${unit}`] : [])];
  }
  return [`kill ${h.pid}`];
}

/** Everything that must go before epmd.socket can listen: stray epmds, then foreign holders of the port. */
function clearPortFix(f: Facts): string[] {
  return [...f.stray.flatMap((p) => strayFix(f, p)), ...f.foreignNonEpmd.flatMap((h) => holderFix(f, h))];
}

/** epmd.socket is installed (systemctl answered and knows it). */
function installedSocket(f: Facts): UnitInfo | null {
  if (f.s.systemdError !== undefined || !f.socket || f.socket.loadState === 'not-found') return null;
  return f.socket;
}

function socketEnabled(socket: UnitInfo): boolean {
  return socket.unitFileState === 'enabled' || socket.unitFileState === 'enabled-runtime';
}

function socketListening(socket: UnitInfo): boolean {
  return socket.activeState === 'active' && (socket.subState === 'listening' || socket.subState === 'running');
}

/**
 * A socket that does not listen gets its own finding when it is enabled or masked. Otherwise socket-not-enabled
 * (whose fix, `systemctl enable --now`, also starts it) carries the evidence of why it does not listen.
 */
function notListeningIsSeparate(socket: UnitInfo): boolean {
  return socketEnabled(socket) || socket.unitFileState === 'masked';
}

/** Why the socket does not listen: who holds the port, or that nothing does. */
function portEvidence(f: Facts): string[] {
  const evidence = f.foreignHolders.map((h) => `port ${f.s.port} is held by ${describeHolder(h, f.byPid)}`);
  if (f.portHolders.size === 0 && f.s.listeners !== null) evidence.push(`nothing listens on port ${f.s.port}`);
  return evidence;
}

/** epmd.service has failed, is restarting, or has restarted: the cause is in its journal. */
function serviceTrouble(f: Facts): { failing: boolean; restarting: boolean } | null {
  const service = f.service;
  if (!service || service.loadState === 'not-found') return null;
  const failing = service.activeState === 'failed' || service.subState === 'auto-restart';
  const restarting = service.nRestarts >= 3;
  return failing || restarting || service.nRestarts > 0 ? { failing, restarting } : null;
}

/**
 * How to apply an app's settings: restart it; but when it holds a stray epmd, adopt that epmd's registrations
 * instead (see strayFix): the app keeps running, and its drop-in applies at its next start.
 */
function restartFix(f: Facts, unit: string): string[] {
  const stray = f.stray.find((p) => unitOfCgroup(p.cgroup) === unit);
  return stray ? strayFix(f, stray).filter((c) => !c.startsWith('sdepmd attach')) : [`systemctl restart ${unit}`];
}

/** What an app unit lacks to be attached: dependency lines, and -start_epmd false on VMs that would spawn epmd. */
function attachGaps(
  f: Facts,
  unitId: string,
  vms: readonly ProcessInfo[],
): { gaps: string[]; spawning: ProcessInfo[] } {
  const unit = f.units.get(unitId);
  return {
    gaps: unit ? dependencyGaps(unit) : [`Requires=${EPMD_SERVICE}`, `After=${EPMD_SERVICE}`],
    spawning: vms.filter((p) => !startsNoEpmd(p)),
  };
}

// ---- The rules: each is a function of the facts alone, returning its findings (usually none) ------------------

export type Rule = (f: Facts) => Finding[];

export const systemdUnavailable: Rule = ({ s }) =>
  s.systemdError === undefined
    ? []
    : [
        {
          id: 'systemd-unavailable',
          severity: 'error',
          title: 'systemd cannot be asked (is systemd PID 1 here, and are you root?)',
          evidence: [s.systemdError],
          fix: ['sudo sdepmd doctor'],
        },
      ];

export const socketMissing: Rule = (f) =>
  f.s.systemdError !== undefined || installedSocket(f)
    ? []
    : [
        {
          id: 'socket-missing',
          severity: 'error',
          title: `${EPMD_SOCKET} is not installed`,
          evidence: [`systemctl show ${EPMD_SOCKET}: LoadState=${f.socket?.loadState ?? 'not-found'}`],
          fix: ['scripts/install.sh --enable   # from the sdepmd checkout'],
        },
      ];

/** Not enabled; when it does not listen either, also why (see notListeningIsSeparate). */
export const socketNotEnabled: Rule = (f) => {
  const socket = installedSocket(f);
  if (!socket || socketEnabled(socket)) return [];
  const masked = socket.unitFileState === 'masked' || socket.loadState === 'masked';
  return [
    {
      id: 'socket-not-enabled',
      severity: 'error',
      title: `${EPMD_SOCKET} is not enabled: epmd will not listen after a reboot, and the first Erlang app to start will spawn its own epmd`,
      evidence: [
        `systemctl show ${EPMD_SOCKET}: UnitFileState=${socket.unitFileState || '(none)'}, ActiveState=${socket.activeState}, SubState=${socket.subState}`,
        ...(socketListening(socket) || notListeningIsSeparate(socket) ? [] : portEvidence(f)),
      ],
      fix: [
        ...(masked ? [`systemctl unmask ${EPMD_SOCKET}`] : []),
        ...clearPortFix(f),
        `systemctl enable --now ${EPMD_SOCKET}`,
      ],
    },
  ];
};

export const socketNotListening: Rule = (f) => {
  const socket = installedSocket(f);
  if (!socket || socketListening(socket) || !notListeningIsSeparate(socket)) return [];
  return [
    {
      id: 'socket-not-listening',
      severity: 'error',
      title: `${EPMD_SOCKET} is not listening on port ${f.s.port}`,
      evidence: [
        `systemctl show ${EPMD_SOCKET}: ActiveState=${socket.activeState}, SubState=${socket.subState}, Result=${socket.result}`,
        ...portEvidence(f),
      ],
      fix: [...clearPortFix(f), `systemctl start ${EPMD_SOCKET}`],
    },
  ];
};

export const portHeld: Rule = (f) =>
  f.foreignNonEpmd.map((h) => ({
    id: 'port-held',
    severity: 'error',
    title: `port ${f.s.port} is held by ${h.comm} (pid ${h.pid}), which is not epmd`,
    evidence: [
      `ss -Hltnp 'sport = :${f.s.port}': ${describeHolder(h, f.byPid)}`,
      ...f.portListeners.filter((l) => l.holders.some((x) => x.pid === h.pid)).map((l) => `listening on ${l.address}`),
    ],
    fix: [...holderFix(f, h), `systemctl start ${EPMD_SOCKET}`],
  }));

function strayEvidence(f: Facts, p: ProcessInfo): string[] {
  const evidence = [describeProcess(p), `cgroup: ${p.cgroup || '(unknown)'}`];
  if (f.portHolders.has(p.pid)) evidence.push(`it holds port ${f.s.port}, so ${EPMD_SOCKET} cannot listen`);
  return evidence;
}

export const epmdInAppCgroup: Rule = (f) =>
  f.stray.flatMap((p) => {
    const unit = appServiceOf(p.cgroup);
    if (!unit) return [];
    return [
      {
        id: 'epmd-in-app-cgroup',
        severity: 'error',
        title: `an epmd runs inside ${unit}'s cgroup: stopping ${unit} would kill it`,
        evidence: [
          ...strayEvidence(f, p),
          `stopping or restarting ${unit} kills this epmd, and every other node on the host drops out of epmd`,
        ],
        fix: strayFix(f, p),
      },
    ];
  });

export const epmdOutsideService: Rule = (f) =>
  f.stray.flatMap((p) => {
    if (appServiceOf(p.cgroup)) return [];
    const unit = unitOfCgroup(p.cgroup);
    return [
      {
        id: 'epmd-outside-service',
        severity: 'error',
        title: `an epmd runs outside ${EPMD_SERVICE}${unit ? ` (in ${unit})` : ''}`,
        evidence: strayEvidence(f, p),
        fix: strayFix(f, p),
      },
    ];
  });

export const multipleEpmd: Rule = (f) =>
  f.epmds.length <= 1
    ? []
    : [
        {
          id: 'multiple-epmd',
          severity: 'error',
          title: `${f.epmds.length} epmd processes are running; there must be one, in ${EPMD_SERVICE}`,
          evidence: f.epmds.map((p) => `${describeProcess(p)} [${unitOfCgroup(p.cgroup) ?? p.cgroup}]`),
          // Never a restart of epmd.service (it restarts every app that requires it): end the extra processes.
          fix:
            f.stray.length > 0
              ? f.stray.flatMap((p) => strayFix(f, p))
              : f.epmds.filter((p) => p.pid !== f.service?.mainPid).map((p) => `kill ${p.pid}`),
        },
      ];

export const epmdNotSdepmd: Rule = (f) => {
  const served = f.epmds.filter(f.inEpmdService);
  if (served.length === 0 || served.some(isSdepmd)) return [];
  return [
    {
      id: 'epmd-not-sdepmd',
      severity: 'warning',
      title: `${EPMD_SERVICE} runs the C epmd, not sdepmd`,
      evidence: [...served.map(describeProcess), `ExecStart: ${f.service?.execStart ?? '?'}`],
      fix: ['scripts/install.sh --enable   # from the sdepmd checkout'],
    },
  ];
};

export const epmdServiceFailing: Rule = (f) => {
  const trouble = serviceTrouble(f);
  const service = f.service;
  if (!trouble || !service) return [];
  const { failing, restarting } = trouble;
  const journal = journalEvidence(f.s);
  return [
    {
      id: 'epmd-service-failing',
      severity: failing || restarting ? 'error' : 'warning',
      title: failing
        ? `${EPMD_SERVICE} is failing (${service.activeState}/${service.subState})`
        : `${EPMD_SERVICE} has restarted ${service.nRestarts} time(s); every restart restarts the apps that require it`,
      evidence: [
        `systemctl show ${EPMD_SERVICE}: ActiveState=${service.activeState}, SubState=${service.subState}, Result=${service.result}, NRestarts=${service.nRestarts}`,
        ...(journal.length > 0 ? journal : ['journalctl -u epmd: no lines']),
      ],
      fix: failing
        ? [
            `journalctl -u ${EPMD_SERVICE} -n 50 --no-pager`,
            `systemctl reset-failed ${EPMD_SERVICE}`,
            `systemctl start ${EPMD_SOCKET} ${EPMD_SERVICE}`,
          ]
        : [`journalctl -u ${EPMD_SERVICE} -n 50 --no-pager`],
    },
  ];
};

export const appNotAttached: Rule = (f) =>
  [...f.vmsByUnit].flatMap(([unitId, vms]) => {
    const unit = f.units.get(unitId);
    const { gaps, spawning } = attachGaps(f, unitId, vms);
    const missing = [...gaps, ...(spawning.length > 0 ? ['-start_epmd false'] : [])];
    // Attached, but something overrides the drop-in: start-epmd-overridden says what (attach again would not help).
    if (missing.length === 0 || (gaps.length === 0 && overriddenStartEpmd(unit))) return [];
    const unitHasFlag = (unit?.environment ?? []).some((e) => /^ERL_[AZ]?FLAGS=.*-start_epmd\s+false/.test(e));
    const attached = gaps.length === 0 && unitHasFlag;
    // Attached but not restarted yet: its registration is fine; only its next start needs the settings.
    const holdsStray = f.stray.some((p) => unitOfCgroup(p.cgroup) === unitId);
    return [
      {
        id: 'app-not-attached',
        severity: attached && !holdsStray ? 'warning' : 'error',
        title: attached
          ? `${unitId} was attached to epmd.service but still runs with its old settings (they apply at its next restart)`
          : `${unitId} runs an Erlang VM without ${missing.join(', ')}`,
        evidence: [
          ...vms.map(describeProcess),
          unit
            ? `systemctl show ${unitId}: Requires=${unit.requires.join(' ')}; After=${unit.after.join(' ')}`
            : `${unitId}: not known to systemctl`,
          ...spawning.map(
            (p) =>
              `pid ${p.pid} starts its own epmd when none answers (no -start_epmd false on its command line or in ERL_AFLAGS/ERL_FLAGS/ERL_ZFLAGS)`,
          ),
        ],
        fix: [...(attached ? [] : [`sdepmd attach ${unitId}`]), ...restartFix(f, unitId)],
      },
    ];
  });

export const nodeNotRegistered: Rule = (f) =>
  [...f.vmsByUnit].flatMap(([unitId, vms]) => {
    const { gaps, spawning } = attachGaps(f, unitId, vms);
    return vms.flatMap((p): Finding[] => {
      const name = nodeNameOf(p);
      if (name === null || f.registered?.has(name)) return [];
      return [
        {
          id: 'node-not-registered',
          severity: 'error',
          title: `node ${name} (${unitId}) is not registered with epmd: no other node can reach it`,
          evidence: [
            describeProcess(p),
            f.s.registered === null
              ? `no epmd answers on port ${f.s.port}${f.s.registeredError ? ` (${f.s.registeredError})` : ''}`
              : `registered names on port ${f.s.port}: ${f.s.registered.map((r) => r.name).join(', ') || '(none)'}`,
            'nodes of OTP 23.3 and later retry every 2 s once epmd answers again; older ones never do',
          ],
          fix: [
            ...(gaps.length > 0 || spawning.length > 0 ? [`sdepmd attach ${unitId}`] : []),
            ...restartFix(f, unitId),
          ],
        },
      ];
    });
  });

/** Registered names that belong to no running unit's VM. */
export const orphanRegistration: Rule = (f) => {
  const unitNodes = new Set([...f.vmsByUnit.values()].flatMap((vms) => vms.map(nodeNameOf)));
  return (f.s.registered ?? [])
    .filter((r) => !unitNodes.has(r.name))
    .map((r): Finding => {
      const holder = (f.s.listeners ?? []).filter((l) => l.port === r.port).flatMap((l) => l.holders)[0];
      const owner = holder ? f.byPid.get(holder.pid) : undefined;
      const ownerUnit = owner ? unitOfCgroup(owner.cgroup) : null;
      return {
        id: 'orphan-registration',
        severity: 'warning',
        title: `registered name ${r.name} belongs to no running unit`,
        evidence: [
          `epmd: name ${r.name} at port ${r.port}`,
          holder
            ? `port ${r.port} is held by ${describeHolder(holder, f.byPid)}`
            : `nothing listens on port ${r.port}: a stale registration, or a node on another network namespace`,
        ],
        fix: !holder
          ? [`ss -tnp state established '( dport = :${f.s.port} )'`]
          : ownerUnit && ownerUnit.endsWith('.service')
            ? [`sdepmd attach ${ownerUnit}`, ...restartFix(f, ownerUnit)]
            : [`kill ${holder.pid}`],
      };
    });
};

/** No epmd answers although the socket is up (a broken activation, a foreign listener); a failing service says it. */
export const epmdNotAnswering: Rule = (f) =>
  f.s.registered !== null || f.socket?.activeState !== 'active' || serviceTrouble(f)
    ? []
    : [
        {
          id: 'epmd-not-answering',
          severity: 'error',
          title: `no epmd answers on port ${f.s.port}`,
          evidence: [f.s.registeredError ?? 'no answer', ...journalEvidence(f.s)],
          fix: [`journalctl -u ${EPMD_SERVICE} -n 50 --no-pager`, `systemctl start ${EPMD_SOCKET} ${EPMD_SERVICE}`],
        },
      ];

/**
 * A unit ordered after epmd (After=epmd.service or epmd.socket, as attach makes it) that epmd is itself ordered
 * after: an ordering cycle. systemd then drops a job to break it, and a restart can hang with jobs waiting, leaving
 * the apps down (attaching epmd.socket itself did this).
 */
export const dependencyCycle: Rule = (f) =>
  // epmd.service is ordered after epmd.socket by design: the cycle is on the other side.
  [...f.units.values()]
    .filter((u) => u.id !== EPMD_SERVICE)
    .flatMap((u) =>
      [EPMD_SERVICE, EPMD_SOCKET]
        .filter((epmd) => epmd !== u.id && u.after.includes(epmd) && (f.units.get(epmd)?.after ?? []).includes(u.id))
        .slice(0, 1)
        .map((epmd): Finding => ({
          id: 'dependency-cycle',
          severity: 'error',
          title: `${u.id} and ${epmd} are each ordered after the other: an ordering cycle`,
          evidence: [
            `systemctl show ${u.id}: After=${u.after.join(' ')}`,
            `systemctl show ${epmd}: After=${f.units.get(epmd)?.after.join(' ') ?? ''}`,
          ],
          fix: [`sdepmd detach ${u.id}`],
        })),
    );

/**
 * An attached unit whose ERL_AFLAGS / ERL_FLAGS / ERL_ZFLAGS (Environment= in a later drop-in, or an
 * EnvironmentFile=, which overrides Environment=) undo the drop-in's -start_epmd false: at its next start the VM
 * spawns its own epmd in its cgroup again, and stopping the app takes every other node's registration with it.
 */
export const startEpmdOverridden: Rule = (f) =>
  [...f.units.values()].flatMap((u): Finding[] => {
    const override = overriddenStartEpmd(u);
    if (!override) return [];
    const culprits = override.culprits;
    const running = f.vmsByUnit.get(u.id) ?? [];
    return [
      {
        id: 'start-epmd-overridden',
        severity: 'error',
        title: `${u.id} is attached, but its own ${culprits.length > 0 ? [...new Set(culprits.map((c) => c.name))].join('/') : 'ERL_*FLAGS'} override${culprits.length === 1 ? 's' : ''} the drop-in's -start_epmd false: it would start its own epmd in its cgroup`,
        evidence: [
          ...ERL_FLAG_VARS.filter((v) => override.effective[v] !== undefined).map(
            (v) => `effective ${v}=${override.effective[v]}`,
          ),
          override.value === null
            ? 'no -start_epmd in the effective flags: erl starts epmd -daemon when none answers'
            : `the last -start_epmd is ${override.value}`,
          ...culprits.map(
            (c) =>
              `${c.file} (${c.kind === 'drop-in' ? `a drop-in read after ${DROP_IN_NAME}` : 'an EnvironmentFile=, which overrides Environment='}) sets ${c.name}=${c.value}`,
          ),
          ...running
            .filter((p) => !startsNoEpmd(p))
            .map((p) => `${describeProcess(p)}: runs without -start_epmd false`),
        ],
        fix: [
          ...(culprits.length > 0
            ? [...new Set(culprits.map((c) => c.file))].map(
                (file) =>
                  `# end the ${[...new Set(culprits.filter((c) => c.file === file).map((c) => c.name))].join('/')} in ${file} with -start_epmd false`,
              )
            : [`# end the unit's ERL_ZFLAGS with -start_epmd false (systemctl cat ${u.id})`]),
          ...(culprits.some((c) => c.kind === 'drop-in') ? ['systemctl daemon-reload'] : []),
          ...(running.length > 0 ? restartFix(f, u.id) : []),
        ],
      },
    ];
  });

export const listenersUnknown: Rule = ({ s }) =>
  s.listeners !== null
    ? []
    : [
        {
          id: 'listeners-unknown',
          severity: 'warning',
          title: 'could not list listening sockets (ss failed): port checks were skipped',
          evidence: [s.listenersError ?? 'ss failed'],
          fix: ['apt-get install iproute2'],
        },
      ];

// ---- Exposure: who can reach epmd, and address settings that socket activation ignores ---------------------------

/** A Listen= entry's address, unbracketed: "[::]:4369 (Stream)" -> "::", "4369 (Stream)" -> "::" (every address). */
export function listenAddress(listen: string): string | null {
  const m = /^(?:\[([^\]]+)\]|([^\s[]*?)):?(\d+) \(Stream\)$/.exec(listen.trim());
  if (!m) return null;
  return m[1] ?? (m[2] || '::');
}

export function isLoopbackAddress(address: string): boolean {
  return address === '::1' || /^127\./.test(address) || /^::ffff:127\./i.test(address);
}

/** epmd.socket accepts connections from other hosts, and nothing on the socket says who may connect. */
export const socketExposed: Rule = (f) => {
  const socket = installedSocket(f);
  if (!socket || socket.activeState !== 'active' || socket.ipAddressAllow === undefined) return [];
  const open = socket.listen.filter((l) => {
    const address = listenAddress(l);
    return address !== null && !isLoopbackAddress(address);
  });
  const restricted = (socket.ipAddressAllow?.length ?? 0) > 0 || (socket.ipAddressDeny?.length ?? 0) > 0;
  if (open.length === 0 || restricted) return [];
  const networks = f.s.localNetworks ?? [];
  // With no network of its own, no other host reaches this one anyway: loopback alone loses nothing.
  const allow = networks.length > 0 ? networks.join(' ') : 'localhost';
  return [
    {
      id: 'socket-exposed',
      severity: 'warning',
      title: `${EPMD_SOCKET} accepts connections from any address (${open.map((l) => l.replace(/ \(Stream\)$/, '')).join(', ')}), with no IPAddressAllow=/IPAddressDeny=`,
      evidence: [
        `systemctl show ${EPMD_SOCKET}: Listen=${socket.listen.join(', ')}; IPAddressAllow=; IPAddressDeny=`,
        'anyone who can reach this port can list the nodes and their ports (NAMES) and look each one up',
        `the drop-in that restricts it to loopback${networks.length > 0 ? ` and this host's networks (${networks.join(', ')}; name your nodes' networks instead if they differ)` : ''}, written by the fix:`,
        `  /etc/systemd/system/${EPMD_SOCKET}.d/50-sdepmd-allow.conf`,
        '    [Socket]',
        '    IPAddressDeny=any',
        '    IPAddressAllow=localhost',
        ...networks.map((n) => `    IPAddressAllow=${n}`),
        'it applies at once (daemon-reload), with no restart of epmd or of any app; or listen on fewer addresses: sdepmd listen ADDRESS...',
      ],
      fix: [`sdepmd allow ${allow}`],
    },
  ];
};

/** ERL_EPMD_ADDRESS / -address where systemd's socket decides the addresses: it does nothing there. */
export const epmdAddressIgnored: Rule = (f) => {
  const socket = installedSocket(f);
  if (!socket || (socket.activeState !== 'active' && !socketEnabled(socket))) return [];
  const found: { where: string; value: string }[] = [];
  for (const u of f.s.units) {
    if (u.id === EPMD_SOCKET) continue;
    for (const e of u.environment)
      if (e.startsWith('ERL_EPMD_ADDRESS='))
        found.push({ where: `${u.id} Environment=`, value: e.slice('ERL_EPMD_ADDRESS='.length) });
    const args = u.execStart.split(/\s+/);
    const i = args.findIndex((a) => a === '-address' || a === '--address');
    if (i >= 0 && args[i + 1] !== undefined) found.push({ where: `${u.id} ExecStart= -address`, value: args[i + 1]! });
  }
  for (const p of f.s.processes) {
    const value = p.environ.ERL_EPMD_ADDRESS;
    if (value !== undefined)
      found.push({
        where: `the environment of pid ${p.pid} (${p.comm})${unitOfCgroup(p.cgroup) ? ` in ${unitOfCgroup(p.cgroup)}` : ''}`,
        value,
      });
  }
  for (const setting of f.s.epmdAddressSettings ?? []) found.push(setting);
  if (found.length === 0) return [];
  const addresses = [
    ...new Set(
      found.flatMap((x) => x.value.split(/[\s,]+/)).filter((a) => a && !isLoopbackAddress(a.replace(/^\[|\]$/g, ''))),
    ),
  ];
  return [
    {
      id: 'epmd-address-ignored',
      severity: 'warning',
      title: `ERL_EPMD_ADDRESS (or -address) is set, but ${EPMD_SOCKET} decides where epmd listens: it has no effect`,
      evidence: [
        ...found.map((x) => `${x.where}: ERL_EPMD_ADDRESS=${x.value}`),
        `${EPMD_SOCKET} listens on ${socket.listen.map((l) => l.replace(/ \(Stream\)$/, '')).join(', ') || '(nothing)'}: socket activation passes these sockets in, and epmd binds nothing itself`,
        'remove the setting where it is found, so that nobody relies on it',
      ],
      fix: addresses.length > 0 ? [`sdepmd listen ${addresses.join(' ')}`] : [],
    },
  ];
};

/** Every rule, in the order their findings are shown. A new check is a Rule above plus one line here. */
export const RULES: readonly Rule[] = [
  systemdUnavailable,
  socketMissing,
  socketNotEnabled,
  socketNotListening,
  portHeld,
  epmdInAppCgroup,
  epmdOutsideService,
  multipleEpmd,
  epmdNotSdepmd,
  epmdServiceFailing,
  appNotAttached,
  nodeNotRegistered,
  orphanRegistration,
  epmdNotAnswering,
  socketExposed,
  epmdAddressIgnored,
  startEpmdOverridden,
  dependencyCycle,
  listenersUnknown,
];

export function diagnose(s: HostSnapshot, rules: readonly Rule[] = RULES): Finding[] {
  const facts = factsOf(s);
  return rules.flatMap((rule) => rule(facts));
}

export function isHealthy(findings: readonly Finding[]): boolean {
  return !findings.some((f) => f.severity === 'error');
}

/** Human output: one block per finding. */
export function formatFindings(findings: readonly Finding[], s: HostSnapshot): string {
  const errors = findings.filter((f) => f.severity === 'error').length;
  const warnings = findings.length - errors;
  const lines: string[] = [];
  if (findings.length === 0) {
    const epmd = s.processes.filter(isEpmdProcess);
    lines.push(
      `sdepmd doctor: healthy. epmd.socket is listening on port ${s.port}; ` +
        `${epmd.length === 0 ? 'epmd.service waits for its first connection' : `epmd.service runs ${epmd.map((p) => `pid ${p.pid}`).join(', ')}`}; ` +
        `${s.registered?.length ?? 0} node(s) registered.`,
    );
    return `${lines.join('\n')}\n`;
  }
  lines.push(
    `sdepmd doctor: ${errors === 0 ? 'healthy, with ' : ''}${[errors ? `${errors} error(s)` : '', warnings ? `${warnings} warning(s)` : ''].filter(Boolean).join(', ')}`,
  );
  for (const f of findings) {
    lines.push('', `${f.severity}: ${f.title} [${f.id}]`);
    for (const e of f.evidence) lines.push(`  ${e}`);
    if (f.fix.length > 0) {
      lines.push('  fix:');
      for (const c of f.fix) lines.push(`    ${c}`);
    }
  }
  return `${lines.join('\n')}\n`;
}
