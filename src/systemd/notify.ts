/**
 * sd_notify(3) through the project's addon (sd_pid_notify_with_fds, with no fds): READY=1, STATUS=, STOPPING=1,
 * RELOADING=1, MAINPID=, and the watchdog's WATCHDOG=1.
 * Outside systemd (no NOTIFY_SOCKET) every call is a no-op and the native addon is never loaded.
 */
import { errnoName, loadAddon, type SdepmdAddon } from '../native/addon';

export interface Notifier {
  /** False outside systemd: then every method does nothing. */
  readonly active: boolean;
  ready(): void;
  status(text: string): void;
  stopping(): void;
  /** A live upgrade began (RELOADING=1, with MONOTONIC_USEC= as Type=notify-reload wants it). */
  reloading(): void;
  /** A live upgrade ended: `pid` is the new main process, and it is ready (MAINPID=, READY=1). */
  handOver(pid: number): void;
  /** Starts pinging at half of WATCHDOG_USEC, when the unit sets WatchdogSec=. Returns the ping interval in ms, or 0. */
  startWatchdog(): number;
  stopWatchdog(): void;
}

export type WatchdogSetting =
  { readonly ok: true; readonly usec: number } | { readonly ok: false; readonly error: string };

/**
 * WATCHDOG_USEC and WATCHDOG_PID read as sd_watchdog_enabled(3) does: `usec` is 0 when the watchdog is off (no
 * WATCHDOG_USEC, or WATCHDOG_PID names another process); a value that is not a number, 0 or infinity, or a
 * WATCHDOG_PID that is not a pid, is an error. The variables stay set: a live upgrade's next process needs them.
 */
export function watchdogSetting(env: NodeJS.ProcessEnv, pid: number): WatchdogSetting {
  const usec = env.WATCHDOG_USEC;
  if (usec === undefined) return { ok: true, usec: 0 };
  if (!/^\d+$/.test(usec) || BigInt(usec) === 0n || BigInt(usec) >= 2n ** 64n - 1n) {
    return { ok: false, error: `WATCHDOG_USEC is not a time in microseconds: ${JSON.stringify(usec)}` };
  }
  const watchdogPid = env.WATCHDOG_PID;
  if (watchdogPid !== undefined) {
    if (!/^\d+$/.test(watchdogPid) || Number(watchdogPid) < 1) {
      return { ok: false, error: `WATCHDOG_PID is not a pid: ${JSON.stringify(watchdogPid)}` };
    }
    if (Number(watchdogPid) !== pid) return { ok: true, usec: 0 };
  }
  return { ok: true, usec: Number(usec) };
}

export interface StatusCounts {
  readonly registered: number;
  readonly lookups: number;
  readonly refused: number;
}

/** The STATUS= text `systemctl status epmd` shows, e.g. "3 nodes registered, 1,204 lookups served". */
export function composeStatus(counts: StatusCounts): string {
  const n = groupThousands;
  const nodes = `${n(counts.registered)} node${counts.registered === 1 ? '' : 's'} registered`;
  const lookups = `${n(counts.lookups)} lookup${counts.lookups === 1 ? '' : 's'} served`;
  return counts.refused > 0 ? `${nodes}, ${lookups}, ${n(counts.refused)} refused` : `${nodes}, ${lookups}`;
}

/** RELOADING=1 with the time on CLOCK_MONOTONIC (what libuv's hrtime reads), in µs. */
export function composeReloading(monotonicNs: bigint = process.hrtime.bigint()): string {
  return `RELOADING=1\nMONOTONIC_USEC=${monotonicNs / 1000n}`;
}

const NOOP: Notifier = {
  active: false,
  ready() {},
  status() {},
  stopping() {},
  reloading() {},
  handOver() {},
  startWatchdog: () => 0,
  stopWatchdog() {},
};

export interface NotifierOptions {
  /** Told when a message cannot be sent (once per kind of failure, until a send succeeds again). */
  readonly onError?: (message: string) => void;
  /** The addon (tests); by default the built one, loaded only when NOTIFY_SOCKET is set. */
  readonly addon?: Pick<SdepmdAddon, 'notifyWithFds'> | Error;
}

/** A notifier for NOTIFY_SOCKET; throws when it is set but the native addon cannot be loaded. */
export function openNotifier(env: NodeJS.ProcessEnv = process.env, options: NotifierOptions = {}): Notifier {
  if (!env.NOTIFY_SOCKET) return NOOP;
  // Loaded only under systemd: it is a native module, and costs start-up time elsewhere.
  const addon = options.addon ?? loadAddon();
  if (addon instanceof Error)
    throw new Error(`NOTIFY_SOCKET is set, but systemd cannot be told anything: ${addon.message}`);
  let lastFailure: string | null = null;
  const send = (state: string): void => {
    let failure: string | null;
    try {
      const r = addon.notifyWithFds(state, []);
      failure = r < 0 ? errnoName(-r) : r === 0 ? 'NOTIFY_SOCKET is not set' : null;
    } catch (err) {
      failure = (err as Error).message;
    }
    if (failure !== null && failure !== lastFailure) options.onError?.(`sd_notify ${state.split('\n')[0]}: ${failure}`);
    lastFailure = failure;
  };
  let timer: NodeJS.Timeout | null = null;
  return {
    active: true,
    ready: () => send('READY=1'),
    status: (text) => send(`STATUS=${text.replace(/\n/g, ' ')}`),
    stopping: () => send('STOPPING=1'),
    reloading: () => send(composeReloading()),
    handOver: (pid) => send(`MAINPID=${pid}\nREADY=1`),
    startWatchdog() {
      const setting = watchdogSetting(env, process.pid);
      if (!setting.ok) {
        options.onError?.(`watchdog off: ${setting.error}`);
        return 0;
      }
      if (setting.usec === 0) return 0;
      const every = Math.max(1, Math.floor(setting.usec / 2000));
      timer = setInterval(() => send('WATCHDOG=1'), every);
      timer.unref();
      send('WATCHDOG=1');
      return every;
    },
    stopWatchdog() {
      if (timer) clearInterval(timer);
      timer = null;
    },
  };
}

/** 1204 -> "1,204", as toLocaleString('en-US') writes it, without ICU's start-up cost (about 25 ms). */
export function groupThousands(value: number): string {
  const digits = String(Math.trunc(Math.abs(value)));
  let out = '';
  for (let i = 0; i < digits.length; i++) {
    if (i > 0 && (digits.length - i) % 3 === 0) out += ',';
    out += digits[i];
  }
  return value < 0 ? `-${out}` : out;
}
