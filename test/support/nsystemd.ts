/**
 * A real systemd (as PID 1) in fresh PID/mount/net/UTS namespaces, over a
 * copy-on-write overlay of "/", for end-to-end tests.
 *
 *   const sb = await bootSystemd();
 *   await sb.writeFile('/etc/systemd/system/foo.service', '...');
 *   await sb.exec('systemctl daemon-reload && systemctl start foo');
 *   await sb.stop();
 *
 * Safety: the boot script (scripts/ns-boot.sh) mounts a tmpfs over the sandbox
 * dir inside its private mount namespace, gives systemd its own /tmp, /run, /dev
 * and a read-only /sys and /proc/sys, and moves it into a private cgroup subtree.
 * The host's /tmp (where jest itself keeps caches) is never touched. Writes inside
 * the sandbox never reach the host filesystem.
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { killQuietly } from './processes';

export interface Availability {
  ok: boolean;
  reason?: string;
}

export interface ExecOptions {
  /** Data written to the command's stdin. */
  input?: string;
  /** Extra environment variables (the base environment is a clean root login env). */
  env?: Record<string, string>;
  /** Kill the command (SIGKILL) after this many ms. Default 60 000. */
  timeoutMs?: number;
  /** Reject when the exit code is non-zero. Default false. */
  check?: boolean;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface BootOptions {
  /** Target to boot (systemd --unit=). Default basic.target. */
  target?: string;
  /** Extra units to mask (symlink to /dev/null) before boot, e.g. ['epmd.socket']. */
  mask?: string[];
  /** Hostname inside the UTS namespace. Default 'sdepmd-sandbox'. */
  hostname?: string;
  /** Give up booting after this many ms. Default 60 000. */
  bootTimeoutMs?: number;
}

export interface SystemdSandbox {
  /** Host PID of the sandbox's systemd (PID 1 inside). */
  readonly pid: number;
  /** Host-side scratch directory (empty on the host; the overlay lives in a tmpfs inside). */
  readonly dir: string;
  /** Name of the private cgroup subtree systemd uses as its root. */
  readonly cgroup: string;
  /** Time from spawn until `is-system-running` answered, in ms. */
  readonly bootMs: number;
  /** State reported at boot: 'running' or 'degraded'. */
  readonly bootState: string;
  /** `systemctl --failed` output at boot when degraded (diagnostics), else ''. */
  readonly bootFailedUnits: string;
  /** Run a command inside (string => `bash -c`). Never rejects on exit code unless opts.check. */
  exec(cmd: string[] | string, opts?: ExecOptions): Promise<ExecResult>;
  /** Write a file inside the sandbox (parent dirs are created). */
  writeFile(file: string, content: string, mode?: number): Promise<void>;
  /** Read a file inside the sandbox. */
  readFile(file: string): Promise<string>;
  /** `systemctl ARGS...` inside. */
  systemctl(...args: string[]): Promise<ExecResult>;
  /** Write /etc/systemd/system/NAME and run daemon-reload. */
  installUnit(name: string, content: string): Promise<void>;
  /** `journalctl -u UNIT --no-pager -o cat` inside (for diagnostics). */
  journal(unit?: string, lines?: number): Promise<string>;
  /**
   * Cgroup path of an in-sandbox PID, in the same form as systemd's `ControlGroup`
   * property (it includes the sandbox's private root, e.g.
   * '/sdepmd-ns-AbC123/system.slice/foo.service').
   */
  cgroupOf(sandboxPid: number): Promise<string>;
  /** `ControlGroup` of a unit (same form as cgroupOf). */
  unitCgroup(unit: string): Promise<string>;
  /** Main PID (sandbox numbering) of a service, 0 when none. */
  mainPid(unit: string): Promise<number>;
  /** Wait until systemd answers `is-system-running --wait` (running or degraded). */
  waitRunning(timeoutMs?: number): Promise<string>;
  /** Shut down: `systemctl exit 0`, wait, SIGKILL the namespace on timeout, clean up. Idempotent. */
  stop(timeoutMs?: number): Promise<void>;
}

const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const NS_BOOT_SCRIPT = path.join(REPO_ROOT, 'scripts', 'ns-boot.sh');
const SYSTEMD_BIN = '/lib/systemd/systemd';
const SCRATCH_PARENT = '/var/tmp';
const CGROUP_ROOT = '/sys/fs/cgroup';

const SANDBOX_ENV: Record<string, string> = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
  USER: 'root',
  LOGNAME: 'root',
  LANG: 'C.UTF-8',
  TERM: 'dumb',
  SYSTEMD_PAGER: '',
  SYSTEMD_COLORS: '0',
};

function which(bin: string): string | undefined {
  for (const d of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/bin', '/sbin', '/bin'])) {
    if (!d) continue;
    const p = path.join(d, bin);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

export function systemdSandboxAvailable(): Availability {
  if (process.platform !== 'linux') return { ok: false, reason: `platform is ${process.platform}, not linux` };
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    return { ok: false, reason: 'not running as root (needs CAP_SYS_ADMIN for namespaces, overlayfs and cgroups)' };
  }
  for (const bin of ['unshare', 'nsenter', 'ip', 'bash']) {
    if (!which(bin)) return { ok: false, reason: `'${bin}' not found in PATH` };
  }
  if (!fs.existsSync(SYSTEMD_BIN)) return { ok: false, reason: `${SYSTEMD_BIN} not found (systemd not installed)` };
  if (!fs.existsSync(NS_BOOT_SCRIPT)) return { ok: false, reason: `${NS_BOOT_SCRIPT} missing` };
  try {
    if (!/\soverlay$/m.test(fs.readFileSync('/proc/filesystems', 'utf8'))) {
      return { ok: false, reason: 'kernel lacks overlayfs' };
    }
  } catch (e) {
    return { ok: false, reason: `cannot read /proc/filesystems: ${String(e)}` };
  }
  if (cgroupHierarchies().length === 0) return { ok: false, reason: `no cgroup hierarchy under ${CGROUP_ROOT}` };
  const probe = spawnSync('unshare', ['--mount', '--pid', '--net', '--uts', '--fork', 'true'], { timeout: 10000 });
  if (probe.status !== 0) {
    return { ok: false, reason: `unshare probe failed: ${probe.stderr?.toString().trim() || probe.error?.message}` };
  }
  return { ok: true };
}

/** All mounted cgroup hierarchies (directories that have a cgroup.procs). */
function cgroupHierarchies(): string[] {
  if (fs.existsSync(path.join(CGROUP_ROOT, 'cgroup.procs'))) return [CGROUP_ROOT];
  let names: string[] = [];
  try {
    names = fs.readdirSync(CGROUP_ROOT);
  } catch {
    return [];
  }
  return names.map((n) => path.join(CGROUP_ROOT, n)).filter((d) => fs.existsSync(path.join(d, 'cgroup.procs')));
}

/** The cgroup v2 directory for the sandbox subtree (pure v2 or hybrid 'unified'). */
function unifiedDir(cg: string): string | undefined {
  for (const base of [CGROUP_ROOT, path.join(CGROUP_ROOT, 'unified')]) {
    if (
      fs.existsSync(path.join(base, 'cgroup.controllers')) ||
      fs.existsSync(path.join(base, 'cgroup.subtree_control'))
    ) {
      return path.join(base, cg);
    }
  }
  return undefined;
}

function rmdirTree(dir: string): boolean {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return true; // gone
  }
  let ok = true;
  for (const e of entries) if (e.isDirectory()) ok = rmdirTree(path.join(dir, e.name)) && ok;
  try {
    fs.rmdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') ok = false;
  }
  return ok;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves true when p settles within ms, false on timeout; never leaves a timer behind. */
function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    p.then(
      () => {
        clearTimeout(t);
        resolve(true);
      },
      () => {
        clearTimeout(t);
        resolve(true);
      },
    );
  });
}

/** Sandboxes still alive; SIGKILLed if the test process exits without stop(). */
const live = new Set<{ pid: number; unsharePid: number }>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const s of live) killQuietly(s.pid);
  });
}

function runHost(cmd: string, args: string[], opts: ExecOptions & { env: NodeJS.ProcessEnv }): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 60000);
    // nsenter forks: when it is SIGKILLed on timeout, its child (inside the sandbox)
    // may keep our pipes open, so 'close' would not come. Stop waiting for output then.
    child.on('exit', () => {
      if (!timedOut) return;
      child.stdout.destroy();
      child.stderr.destroy();
    });
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.stdin.on('error', () => undefined); // EPIPE when the command ignores stdin
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const res: ExecResult = {
        code: code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : -1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr:
          Buffer.concat(err).toString('utf8') + (timedOut ? `\n[killed after ${opts.timeoutMs ?? 60000} ms]` : ''),
      };
      if (opts.check && res.code !== 0) {
        reject(new Error(`command failed (${res.code}): ${cmd} ${args.join(' ')}\n${res.stdout}\n${res.stderr}`));
      } else {
        resolve(res);
      }
    });
    child.stdin.end(opts.input ?? '');
  });
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export async function bootSystemd(opts: BootOptions = {}): Promise<SystemdSandbox> {
  const avail = systemdSandboxAvailable();
  if (!avail.ok) throw new Error(`systemd sandbox unavailable: ${avail.reason}`);
  installExitHook();

  const target = opts.target ?? 'basic.target';
  // Scratch dir outside /tmp: /tmp is where jest keeps caches, and a sandbox that
  // ever escaped the overlay would run tmpfiles --remove on it.
  const dir = fs.mkdtempSync(path.join(SCRATCH_PARENT, 'sdepmd-ns-'));
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  const logFile = path.join(dir, 'boot.log');
  const cgroup = path.basename(dir);
  const logFd = fs.openSync(logFile, 'a');

  const t0 = Date.now();
  const child = spawn(
    'unshare',
    ['--mount', '--pid', '--net', '--uts', '--fork', '--propagation', 'private', NS_BOOT_SCRIPT, mnt, target],
    {
      detached: true, // setsid: own session and process group
      stdio: ['ignore', logFd, logFd],
      env: {
        ...SANDBOX_ENV,
        NSBOOT_CGROUP: cgroup,
        NSBOOT_MASK: (opts.mask ?? []).join(' '),
        NSBOOT_HOSTNAME: opts.hostname ?? 'sdepmd-sandbox',
        // The checkout, read-only at the same path, wherever it lies (a tmpfs covers the sandbox's /tmp).
        NSBOOT_BIND: REPO_ROOT,
      },
    },
  );
  fs.closeSync(logFd);
  child.unref();
  const unsharePid = child.pid;
  if (unsharePid === undefined) throw new Error('failed to spawn unshare');
  let exited = false;
  const exitPromise = new Promise<void>((resolve) => {
    child.on('exit', () => {
      exited = true;
      resolve();
    });
    child.on('error', () => {
      exited = true;
      resolve();
    });
  });

  const bootLog = (): string => {
    try {
      return fs.readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };

  const cleanupHost = async (): Promise<void> => {
    for (let i = 0; i < 50; i++) {
      const ok = cgroupHierarchies().every((h) => rmdirTree(path.join(h, cgroup)));
      if (ok) break;
      await sleep(100);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };

  // Find the namespace's PID 1: the only child of unshare.
  let pid = 0;
  const deadline = t0 + (opts.bootTimeoutMs ?? 60000);
  while (!pid) {
    if (exited || Date.now() > deadline) {
      await cleanupHost().catch(() => undefined);
      throw new Error(`sandbox did not start (unshare ${exited ? 'exited' : 'timed out'}):\n${bootLog()}`);
    }
    try {
      const kids = fs.readFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`, 'utf8').trim();
      if (kids) pid = Number(kids.split(/\s+/)[0]);
    } catch {
      /* not yet */
    }
    if (!pid) await sleep(10);
  }
  const rec = { pid, unsharePid };
  live.add(rec);

  const nsenterArgs = ['-t', String(pid), '-m', '-p', '-n', '-u', '-r', '-w'];
  let stopped = false;

  const exec = (cmd: string[] | string, o: ExecOptions = {}): Promise<ExecResult> => {
    const argv = typeof cmd === 'string' ? ['bash', '-c', cmd] : cmd;
    return runHost('nsenter', [...nsenterArgs, '--', ...argv], { ...o, env: { ...SANDBOX_ENV, ...(o.env ?? {}) } });
  };

  const waitRunning = async (timeoutMs = 60000): Promise<string> => {
    const end = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < end) {
      if (exited) throw new Error(`sandbox systemd exited during boot:\n${bootLog()}`);
      const r = await exec(['systemctl', 'is-system-running', '--wait'], {
        timeoutMs: Math.max(1000, end - Date.now()),
      });
      const state = r.stdout.trim();
      if (state === 'running' || state === 'degraded') return state;
      last = `${state} ${r.stderr.trim()}`;
      await sleep(50);
    }
    throw new Error(`sandbox did not reach running within ${timeoutMs} ms (last: ${last})\n${bootLog()}`);
  };

  const killNamespace = async (): Promise<void> => {
    // Killing PID 1 of a PID namespace kills every process in it.
    killQuietly(pid);
    const ud = unifiedDir(cgroup);
    if (ud && fs.existsSync(path.join(ud, 'cgroup.kill'))) {
      try {
        fs.writeFileSync(path.join(ud, 'cgroup.kill'), '1');
      } catch {
        /* gone */
      }
    }
    await settlesWithin(exitPromise, 10000);
  };

  const stop = async (timeoutMs = 20000): Promise<void> => {
    if (stopped) return;
    stopped = true;
    try {
      if (!exited && processAlive(pid)) {
        await exec(['systemctl', 'exit', '0'], { timeoutMs: Math.min(5000, timeoutMs) }).catch(() => undefined);
        if (!(await settlesWithin(exitPromise, timeoutMs))) {
          process.stderr.write(`[nsystemd] systemctl exit did not finish within ${timeoutMs} ms; SIGKILL\n`);
          await killNamespace();
        }
      }
      if (!exited) await killNamespace();
    } finally {
      live.delete(rec);
      await cleanupHost();
    }
  };

  const sb: SystemdSandbox = {
    pid,
    dir,
    cgroup,
    bootMs: 0,
    bootState: '',
    bootFailedUnits: '',
    exec,
    async writeFile(file, content, mode) {
      const m = mode === undefined ? '' : ` && chmod ${mode.toString(8)} ${shellQuote(file)}`;
      await exec(`mkdir -p "$(dirname ${shellQuote(file)})" && cat > ${shellQuote(file)}${m}`, {
        input: content,
        check: true,
      });
    },
    async readFile(file) {
      return (await exec(['cat', '--', file], { check: true })).stdout;
    },
    systemctl(...args) {
      return exec(['systemctl', '--no-pager', ...args]);
    },
    async installUnit(name, content) {
      await sb.writeFile(`/etc/systemd/system/${name}`, content);
      await exec(['systemctl', 'daemon-reload'], { check: true });
    },
    async journal(unit, lines = 200) {
      const args = ['journalctl', '--no-pager', '-o', 'short-monotonic', '-n', String(lines)];
      if (unit) args.push('-u', unit);
      const r = await exec(args);
      return r.stdout + r.stderr;
    },
    async cgroupOf(sandboxPid) {
      const text = await sb.readFile(`/proc/${sandboxPid}/cgroup`);
      const lines = text.split('\n');
      const line = lines.find((l) => l.includes(':name=systemd:')) ?? lines.find((l) => l.startsWith('0::')) ?? '';
      return line.slice(line.indexOf(':', line.indexOf(':') + 1) + 1);
    },
    async unitCgroup(unit) {
      const r = await exec(['systemctl', 'show', '-p', 'ControlGroup', '--value', unit], { check: true });
      return r.stdout.trim();
    },
    async mainPid(unit) {
      const r = await exec(['systemctl', 'show', '-p', 'MainPID', '--value', unit], { check: true });
      return Number(r.stdout.trim()) || 0;
    },
    waitRunning,
    stop,
  };

  try {
    const state = await waitRunning(Math.max(1000, deadline - Date.now()));
    const failed = state === 'degraded' ? (await exec(['systemctl', '--no-pager', '--failed'])).stdout : '';
    if (failed) process.stderr.write(`[nsystemd] sandbox booted degraded; failed units:\n${failed}\n`);
    Object.assign(sb, { bootMs: Date.now() - t0, bootState: state, bootFailedUnits: failed });
  } catch (e) {
    await stop().catch(() => undefined);
    throw e;
  }
  return sb;
}

/**
 * Stops a sandbox and asserts that nothing leaked: the namespace's PID 1 (and so every process in it), its cgroups
 * and its scratch directory are gone. For afterAll hooks.
 */
export async function stopAndCheckClean(sb: SystemdSandbox | undefined): Promise<void> {
  if (!sb) return;
  const { pid, dir, cgroup } = sb;
  await sb.stop();
  expect(() => process.kill(pid, 0)).toThrow();
  expect(fs.existsSync(dir)).toBe(false);
  for (const h of ['/sys/fs/cgroup', '/sys/fs/cgroup/unified', '/sys/fs/cgroup/systemd']) {
    expect(fs.existsSync(`${h}/${cgroup}`)).toBe(false);
  }
}
