/**
 * Why `sdepmd status` (or names, or metrics) got no answer, and what to run next. Four causes look the same from
 * the client's side ("nothing answered on the control socket"), and each needs a different next step:
 *
 *  - idle: epmd.socket listens, epmd.service is not running; systemd starts it on the first connection;
 *  - permission: the control socket is there, but only root and the daemon's user may use it;
 *  - another epmd: something answers EPMD requests on the port, but not through this control socket (the C epmd,
 *    or an sdepmd started without one);
 *  - nothing listening: no socket on the port at all.
 *
 * gatherNoAnswer() collects the facts (systemd first: an EPMD request would start an idle daemon and hide the
 * cause); explainNoAnswer() is pure, for the unit tests.
 */
import * as fs from 'node:fs';
import { exchangeLocal, CannotConnectError } from '../cli/client';
import { decodeNamesReply } from '../protocol/codec';
import { encodeSimpleRequest } from '../protocol/codec';
import { NAMES_REQ } from '../protocol/constants';
import { parseSs, parseSystemctlShow, run } from './snapshot';
import { EPMD_SERVICE, EPMD_SOCKET, type UnitInfo } from './findings';

export type NoAnswerCause = 'idle' | 'permission' | 'other-epmd' | 'not-epmd' | 'nothing-listening' | 'no-reply';

export interface NoAnswerFacts {
  readonly port: number;
  readonly control: string;
  /** The control socket's error code (EACCES, ENOENT, ECONNREFUSED, ...) or message. */
  readonly controlError: string;
  readonly uid: number;
  /** epmd.socket and epmd.service as systemd sees them; null when systemctl cannot be asked. */
  readonly socketUnit: UnitInfo | null;
  readonly serviceUnit: UnitInfo | null;
  /** The EPMD NAMES probe on the port; null when it was not sent (the daemon is idle: a probe would start it). */
  readonly tcp:
    | null
    | { readonly kind: 'names'; readonly nodes: number }
    | { readonly kind: 'refused' }
    | { readonly kind: 'garbage'; readonly bytes: number }
    | { readonly kind: 'error'; readonly message: string };
  /** Who holds the port, from `ss -Hltnp` (empty when hidden from a non-root user). */
  readonly holders: readonly { readonly pid: number; readonly comm: string; readonly cmdline: string }[];
}

export interface NoAnswer {
  readonly cause: NoAnswerCause;
  readonly summary: string;
  readonly evidence: readonly string[];
  /** The commands to run next, in order. */
  readonly next: readonly string[];
}

function errorCode(err: unknown): string {
  const e = err as NodeJS.ErrnoException | undefined;
  return e?.code ?? e?.message ?? String(err);
}

export async function gatherNoAnswer(port: number, control: string, controlError: unknown): Promise<NoAnswerFacts> {
  let socketUnit: UnitInfo | null = null;
  let serviceUnit: UnitInfo | null = null;
  const show = await run(
    'systemctl',
    [
      'show',
      '--no-pager',
      '-p',
      'Id,LoadState,ActiveState,SubState,Result,MainPID,ExecStart,Listen,UnitFileState',
      '--',
      EPMD_SOCKET,
      EPMD_SERVICE,
    ],
    5000,
  );
  if (show.code === 0) {
    const units = parseSystemctlShow(show.stdout).filter((u) => u.loadState !== 'not-found');
    socketUnit = units.find((u) => u.id === EPMD_SOCKET) ?? null;
    serviceUnit = units.find((u) => u.id === EPMD_SERVICE) ?? null;
  }
  const idle =
    socketUnit?.activeState === 'active' &&
    listensOn(socketUnit, port) &&
    serviceUnit !== null &&
    serviceUnit.activeState !== 'active' &&
    serviceUnit.activeState !== 'activating';
  let tcp: NoAnswerFacts['tcp'] = null;
  if (!idle) {
    try {
      const reply = await exchangeLocal(port, encodeSimpleRequest(NAMES_REQ), 3000);
      const names = reply.length >= 4 ? decodeNamesReply(reply) : null;
      tcp =
        names?.epmdPort === port
          ? { kind: 'names', nodes: names.nodes.length }
          : { kind: 'garbage', bytes: reply.length };
    } catch (err) {
      tcp =
        err instanceof CannotConnectError ? { kind: 'refused' } : { kind: 'error', message: (err as Error).message };
    }
  }
  const holders: { pid: number; comm: string; cmdline: string }[] = [];
  const ss = await run('ss', ['-Hltnp', `sport = :${port}`], 5000);
  if (ss.code === 0) {
    for (const l of parseSs(ss.stdout)) {
      for (const h of l.holders) {
        if (holders.some((x) => x.pid === h.pid)) continue;
        let cmdline = '';
        try {
          cmdline = fs.readFileSync(`/proc/${h.pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
        } catch {
          /* gone, or hidden */
        }
        holders.push({ ...h, cmdline });
      }
    }
  }
  return {
    port,
    control,
    controlError: errorCode(controlError),
    uid: process.getuid?.() ?? -1,
    socketUnit,
    serviceUnit,
    tcp,
    holders,
  };
}

const describeListen = (u: UnitInfo): string => u.listen.map((l) => l.replace(/ \(Stream\)$/, '')).join(', ') || '?';

/** The ports of a socket unit's Listen= entries ("[::]:4369 (Stream)", "4369 (Stream)"). */
function listenPorts(u: UnitInfo): number[] {
  return u.listen.map((l) => Number(/(\d+) \(Stream\)$/.exec(l)?.[1] ?? NaN)).filter((p) => Number.isInteger(p));
}

function listensOn(u: UnitInfo, port: number): boolean {
  return listenPorts(u).includes(port);
}

export function explainNoAnswer(f: NoAnswerFacts): NoAnswer {
  const where = `no sdepmd answers on ${f.control} (${f.controlError})`;
  if (f.controlError === 'EACCES' || f.controlError === 'EPERM') {
    return {
      cause: 'permission',
      summary: "permission denied: the control socket is open to root and the daemon's user only",
      evidence: [where, `you are uid ${f.uid}`],
      next: [
        'sudo sdepmd status',
        'sdepmd names   # works without root, through the EPMD protocol (no creation numbers)',
      ],
    };
  }
  const s = f.socketUnit;
  const svc = f.serviceUnit;
  if (f.tcp === null && s && svc && listensOn(s, f.port)) {
    return {
      cause: 'idle',
      summary: `epmd.socket is listening, and epmd.service is idle (${svc.activeState}): systemd starts it on the first connection`,
      evidence: [
        where,
        `${EPMD_SOCKET}: ${s.activeState}/${s.subState} on ${describeListen(s)}`,
        `${EPMD_SERVICE}: ${svc.activeState}/${svc.subState}${svc.result && svc.result !== 'success' ? `, last result ${svc.result}` : ''}`,
      ],
      next: [`sdepmd names   # any epmd request starts it`, `systemctl start ${EPMD_SERVICE}`],
    };
  }
  const tcp = f.tcp;
  const holders = f.holders.map((h) => `pid ${h.pid} (${h.comm})${h.cmdline ? `: ${h.cmdline}` : ''}`);
  if (tcp?.kind === 'names') {
    const cEpmd = f.holders.find((h) => h.comm === 'epmd');
    const serviceRunsC = svc?.activeState === 'active' && svc.execStart !== '' && !/sdepmd/.test(svc.execStart);
    const sdepmd = f.holders.find((h) => /sdepmd/.test(h.cmdline));
    const who = cEpmd
      ? `the C epmd (pid ${cEpmd.pid})`
      : serviceRunsC
        ? `the C epmd (${EPMD_SERVICE}: ${svc.execStart})`
        : sdepmd
          ? `an sdepmd without this control socket (pid ${sdepmd.pid})`
          : 'another epmd';
    return {
      cause: 'other-epmd',
      summary: `${who} answers on port ${f.port}, not an sdepmd with a control socket at ${f.control}`,
      evidence: [
        where,
        `EPMD NAMES on port ${f.port}: answered, ${tcp.nodes} node(s)`,
        ...holders.map((h) => `port ${f.port} is held by ${h}`),
        ...(holders.length === 0 && f.uid !== 0 ? ['(run as root to see who holds the port)'] : []),
      ],
      next:
        sdepmd && !cEpmd
          ? [`sdepmd status --control_socket PATH   # the daemon's --control_socket`, 'sdepmd doctor']
          : [`epmd -port ${f.port} -names`, 'sudo sdepmd doctor   # says how to replace it with sdepmd'],
    };
  }
  if (tcp?.kind === 'refused') {
    // epmd.socket up, but on other ports: the question was about the wrong port.
    const elsewhere = s && s.activeState === 'active' && !listensOn(s, f.port) ? listenPorts(s) : [];
    const unitState = !s
      ? `${EPMD_SOCKET} is not installed`
      : elsewhere.length > 0
        ? `${EPMD_SOCKET} is ${s.activeState}, on ${describeListen(s)}, not on port ${f.port}`
        : `${EPMD_SOCKET} is ${s.activeState}/${s.subState}${s.unitFileState ? ` (${s.unitFileState})` : ''}`;
    return {
      cause: 'nothing-listening',
      summary: `nothing listens on port ${f.port}`,
      evidence: [where, `connecting to [::1]:${f.port} and 127.0.0.1:${f.port}: refused`, unitState],
      next: !s
        ? ['sudo scripts/install.sh --enable   # from the sdepmd checkout', 'sudo sdepmd doctor']
        : elsewhere.length > 0
          ? [`sdepmd status --port ${elsewhere[0]}`, 'sudo sdepmd doctor']
          : [`systemctl enable --now ${EPMD_SOCKET}`, 'sudo sdepmd doctor'],
    };
  }
  if (tcp?.kind === 'garbage') {
    return {
      cause: 'not-epmd',
      summary: `something that is not epmd answers on port ${f.port}`,
      evidence: [
        where,
        `EPMD NAMES on port ${f.port}: a reply of ${tcp.bytes} byte(s) that is not a NAMES reply`,
        ...holders.map((h) => `port ${f.port} is held by ${h}`),
      ],
      next: ['sudo sdepmd doctor'],
    };
  }
  return {
    cause: 'no-reply',
    summary: `a connection to port ${f.port} got no EPMD reply`,
    evidence: [
      where,
      tcp?.kind === 'error' ? tcp.message : 'no reply',
      ...holders.map((h) => `port ${f.port} is held by ${h}`),
    ],
    next: [`journalctl -u ${EPMD_SERVICE} -n 50 --no-pager`, 'sudo sdepmd doctor'],
  };
}

export function formatNoAnswer(verb: string, a: NoAnswer): string {
  const lines = [
    `sdepmd ${verb}: ${a.summary}`,
    ...a.evidence.map((e) => `  ${e}`),
    '  next:',
    ...a.next.map((c) => `    ${c}`),
  ];
  return `${lines.join('\n')}\n`;
}
