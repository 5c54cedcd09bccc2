/**
 * sd_notify(3) through the sd-notify package: READY=1, STATUS=, STOPPING=1, watchdog pings.
 * Outside systemd (no NOTIFY_SOCKET) every call is a no-op and the native module is never loaded.
 */
import type * as SdNotify from 'sd-notify';

export interface Notifier {
  /** False outside systemd: then every method does nothing. */
  readonly active: boolean;
  ready(): void;
  status(text: string): void;
  stopping(): void;
  /** A live upgrade began (RELOADING=1). */
  reloading(): void;
  /** A live upgrade ended: `pid` is the new main process, and it is ready (MAINPID=, READY=1). */
  handOver(pid: number): void;
  /** Starts pinging at half of WATCHDOG_USEC, when the unit sets WatchdogSec=. Returns the ping interval in ms, or 0. */
  startWatchdog(): number;
  stopWatchdog(): void;
}

/** Parses WATCHDOG_USEC (for this pid) the way sd_watchdog_enabled(3) does; the result is in ms, or 0 when off. */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv, pid: number): number {
  const usec = env.WATCHDOG_USEC;
  if (!usec || !/^\d+$/.test(usec) || Number(usec) === 0) return 0;
  if (env.WATCHDOG_PID !== undefined && Number(env.WATCHDOG_PID) !== pid) return 0;
  return Math.floor(Number(usec) / 1000);
}

export interface StatusCounts {
  readonly registered: number;
  readonly lookups: number;
  readonly refused: number;
}

/** The STATUS= text `systemctl status epmd` shows, e.g. "3 nodes registered, 1,204 lookups served". */
export function composeStatus(counts: StatusCounts): string {
  const n = (value: number) => value.toLocaleString('en-US');
  const nodes = `${n(counts.registered)} node${counts.registered === 1 ? '' : 's'} registered`;
  const lookups = `${n(counts.lookups)} lookup${counts.lookups === 1 ? '' : 's'} served`;
  return counts.refused > 0 ? `${nodes}, ${lookups}, ${n(counts.refused)} refused` : `${nodes}, ${lookups}`;
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

export function openNotifier(env: NodeJS.ProcessEnv = process.env): Notifier {
  if (!env.NOTIFY_SOCKET) return NOOP;
  // Loaded only under systemd: it is a native module, and costs start-up time elsewhere.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const sd = require('sd-notify') as typeof SdNotify;
  let timer: NodeJS.Timeout | null = null;
  return {
    active: true,
    ready: () => sd.sendState('READY=1'),
    status: (text) => sd.sendState(`STATUS=${text.replace(/\n/g, ' ')}`),
    stopping: () => sd.sendState('STOPPING=1'),
    reloading: () => sd.sendState('RELOADING=1'),
    handOver: (pid) => sd.sendState(`MAINPID=${pid}\nREADY=1`),
    startWatchdog() {
      const interval = watchdogIntervalMs(env, process.pid);
      if (interval === 0) return 0;
      const every = Math.max(1, Math.floor(interval / 2));
      timer = setInterval(() => sd.watchdog(), every);
      timer.unref();
      sd.watchdog();
      return every;
    },
    stopWatchdog() {
      if (timer) clearInterval(timer);
      timer = null;
    },
  };
}
