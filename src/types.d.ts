declare module 'systemd-socket' {
  /** Maps the index-th socket passed by systemd to `{ fd }`, or null when LISTEN_FDS has no such socket. */
  function systemdSocket(index?: number): { fd: number } | null;
  export = systemdSocket;
}

declare module 'sd-notify' {
  export function ready(): void;
  export function stopping(pid: number): void;
  export function watchdog(): void;
  /** The watchdog interval in ms when WATCHDOG_USEC is set for this process, else 0. */
  export function watchdogInterval(): number;
  export function sendStatus(text: string): void;
  export function sendState(state: string): void;
}
