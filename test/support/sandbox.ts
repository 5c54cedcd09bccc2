/** What the end-to-end suites ask of a booted systemd sandbox (test/support/nsystemd.ts), written once. */
import type { ExecResult, SystemdSandbox } from './nsystemd';

export interface SandboxShell {
  /** The sandbox; throws when it has not booted (beforeAll failed). */
  readonly box: () => SystemdSandbox;
  /** A command inside, with a timeout. */
  readonly sh: (cmd: string | string[], timeoutMs?: number) => Promise<ExecResult>;
  /** `systemctl show -p PROP --value UNIT`. */
  readonly show: (unit: string, prop: string) => Promise<string>;
  /** `systemctl is-active UNIT`. */
  readonly isActive: (unit: string) => Promise<string>;
  /** `epmd -names` inside. */
  readonly names: () => Promise<ExecResult>;
  /** `epmd -names` when every wanted node is listed in it, else undefined (for waitFor). */
  readonly registered: (...want: string[]) => Promise<string | undefined>;
  /** Runs `fn`; if it throws, reports the last `lines` of the journal (of `unit`, or all) before rethrowing. */
  readonly dumpOnFailure: <T>(
    fn: () => Promise<T>,
    report: (line: string) => void,
    lines?: number,
    unit?: string,
  ) => Promise<T>;
}

/** Helpers over the sandbox `current()` returns (a suite boots it in beforeAll). */
export function sandboxShell(current: () => SystemdSandbox | undefined): SandboxShell {
  const box = (): SystemdSandbox => {
    const sb = current();
    if (!sb) throw new Error('sandbox not booted');
    return sb;
  };
  const sh = (cmd: string | string[], timeoutMs = 60000): Promise<ExecResult> => box().exec(cmd, { timeoutMs });
  const names = (): Promise<ExecResult> => sh(['epmd', '-names']);
  return {
    box,
    sh,
    show: async (unit, prop) => (await sh(['systemctl', 'show', '-p', prop, '--value', unit])).stdout.trim(),
    isActive: async (unit) => (await sh(['systemctl', 'is-active', unit])).stdout.trim(),
    names,
    registered: async (...want) => {
      const r = await names();
      return r.code === 0 && want.every((n) => r.stdout.includes(`name ${n} at port`)) ? r.stdout : undefined;
    },
    dumpOnFailure: async (fn, report, lines = 80, unit) => {
      try {
        return await fn();
      } catch (e) {
        const sb = current();
        if (sb) report(`journal${unit ? ` of ${unit}` : ''} (last ${lines} lines):\n${await sb.journal(unit, lines)}`);
        throw e;
      }
    },
  };
}

/** A unit running a real Erlang node named `name` (no epmd dependency of its own). */
export function erlangAppUnit(name: string, description: string): string {
  return `[Unit]
Description=Erlang app ${name} (${description})

[Service]
Environment=HOME=/root
ExecStart=/usr/bin/erl -sname ${name} -noshell -noinput
`;
}
