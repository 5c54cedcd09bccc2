/**
 * A stock Debian host, booted for real: the cached debootstrap minbase root of scripts/debian-root.sh (nothing in it
 * beyond debootstrap's minbase plus systemd, systemd-sysv and dbus), a copy-on-write overlay over it for this test
 * only, booted with `systemd-nspawn --boot`, so systemd is PID 1 of the guest with its own journal, cgroups and units.
 *
 * Network: the guest boots with a private network namespace (only `lo`), so that its epmd on port 4369 and its
 * Erlang nodes can neither collide with nor reach anything on this machine. Commands that need the network the way
 * an operator's shell has it (apt-get, npm) run with `hostNet: true`: in the guest's mount, PID, UTS, IPC and cgroup
 * namespaces (its files, its systemd, its apt and dpkg) but on the machine's network. This machine's resolv.conf
 * (and, when NODE_EXTRA_CA_CERTS names one, that CA bundle, for npm) are copied in, as on a real server.
 *
 * The checkout is copied in as a clean tree (tracked and untracked-but-not-ignored files, no node_modules, no
 * build output) at /root/sdepmd, as a user's clone would be.
 *
 * apt's downloaded archives and npm's cache are kept per release under the cache directory, so that a second run does
 * not download again; every package is still installed by the guest's own apt. npm's cache is bound into the guest
 * (npm's cache is safe for concurrent users). apt's archives are not shared: apt locks its archives directory for a
 * whole download and install, and a guest that bound the shared directory while another guest (another run on this
 * machine) installed failed with "Could not get lock /var/cache/apt/archives/lock. It is held by process 0" (pid 0:
 * a holder outside the guest's PID namespace). Instead, the cached .deb files are hard-linked into the overlay's upper
 * layer before it is mounted (each guest has its own archives directory and lock, nothing is copied), and what the
 * guest downloaded is hard-linked back into the cache when it shuts down.
 * dpkg runs with force-unsafe-io in the guest (no fsync per file): the overlay is thrown away after the test.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawn, spawnSync } from 'child_process';
import type { Availability } from '../support/peers';

export type Suite = 'bookworm' | 'trixie';

export const REPO = path.resolve(__dirname, '..', '..');
export const GUEST_REPO = '/root/sdepmd';
const GUEST_EXTRA_CA = '/etc/ssl/sdepmd-test-extra-ca.pem';
const CACHE = process.env.SDEPMD_PLATFORM_CACHE ?? '/var/cache/sdepmd-platform';
const APT_ARCHIVES = '/var/cache/apt/archives';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface ExecOptions {
  /** Run on this machine's network (for apt-get and npm) instead of the guest's private one. */
  hostNet?: boolean;
  timeoutMs?: number;
  /** Extra environment variables. */
  env?: Record<string, string>;
}

function which(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Root, debootstrap (or a cached root), systemd-nspawn, nsenter, overlayfs. */
export function debianHostAvailable(suite: Suite): Availability {
  if (process.platform !== 'linux') return { ok: false, reason: 'not Linux' };
  if (process.getuid?.() !== 0)
    return { ok: false, reason: 'needs root (debootstrap, overlay mounts, systemd-nspawn)' };
  const wanted = (process.env.SDEPMD_PLATFORMS ?? 'bookworm,trixie').split(',').map((s) => s.trim());
  if (!wanted.includes(suite))
    return { ok: false, reason: `SDEPMD_PLATFORMS=${process.env.SDEPMD_PLATFORMS} leaves out ${suite}` };
  for (const cmd of ['systemd-nspawn', 'nsenter', 'mount', 'umount', 'tar', 'git']) {
    if (!which(cmd))
      return { ok: false, reason: `${cmd} is not installed (scripts/install-deps.sh --test installs it)` };
  }
  const cached = fs.existsSync(path.join(CACHE, suite, '.complete'));
  if (!cached && !which('debootstrap'))
    return { ok: false, reason: 'debootstrap is not installed and no root is cached' };
  if (!fs.readFileSync('/proc/filesystems', 'utf8').includes('overlay')) return { ok: false, reason: 'no overlayfs' };
  return { ok: true };
}

function run(cmd: string, args: string[], timeoutMs: number, env?: NodeJS.ProcessEnv): Promise<ExecResult> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env, detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => {
      stderr += `\n[debian-host] timed out after ${timeoutMs} ms: ${cmd} ${args.join(' ')}\n`;
      try {
        process.kill(-(child.pid ?? 0), 'SIGKILL');
      } catch {
        /* gone */
      }
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class DebianHost {
  /** Milliseconds from starting systemd-nspawn to `systemctl is-system-running --wait` answering. */
  bootMs = 0;
  bootState = '';
  private constructor(
    readonly suite: Suite,
    readonly dir: string,
    readonly merged: string,
    readonly nspawnPid: number,
    readonly leader: number,
    readonly machine: string,
  ) {}

  static async boot(suite: Suite): Promise<DebianHost> {
    const rootRes = await run(path.join(REPO, 'scripts', 'debian-root.sh'), [suite], 15 * 60_000);
    if (rootRes.code !== 0) throw new Error(`debian-root.sh ${suite} failed: ${rootRes.stderr}`);
    const root = rootRes.stdout.trim().split('\n').pop() ?? '';
    const dir = fs.mkdtempSync(path.join('/var/tmp', `sdepmd-platform-${suite}.`));
    const merged = path.join(dir, 'merged');
    for (const d of ['upper', 'work', 'merged']) fs.mkdirSync(path.join(dir, d));
    linkDebs(path.join(CACHE, suite, 'apt-archives'), path.join(dir, 'upper', APT_ARCHIVES.slice(1)));
    const m = spawnSync(
      'mount',
      ['-t', 'overlay', 'overlay', '-o', `lowerdir=${root},upperdir=${dir}/upper,workdir=${dir}/work`, merged],
      { encoding: 'utf8' },
    );
    if (m.status !== 0) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error(`overlay mount failed: ${m.stderr}`);
    }
    try {
      return await DebianHost.start(suite, dir, merged);
    } catch (e) {
      // Whatever failed, leave no mount, no directory and no guest behind.
      await cleanup(dir, merged, 0, 0).catch(() => undefined);
      throw e;
    }
  }

  private static async start(suite: Suite, dir: string, merged: string): Promise<DebianHost> {
    const machine = `sdepmd-${suite}`;
    // What a real server has: a resolver, its name in /etc/hosts (erl -sname resolves it), the CA bundle.
    fs.rmSync(path.join(merged, 'etc/resolv.conf'), { force: true });
    fs.copyFileSync('/etc/resolv.conf', path.join(merged, 'etc/resolv.conf'));
    fs.writeFileSync(path.join(merged, 'etc/hostname'), `${machine}\n`);
    fs.writeFileSync(
      path.join(merged, 'etc/hosts'),
      `127.0.0.1\tlocalhost\n127.0.1.1\t${machine}\n::1\tlocalhost ip6-localhost ip6-loopback\n`,
    );
    // The guest is thrown away after the test: dpkg need not fsync every file (as in Debian's container images).
    fs.writeFileSync(path.join(merged, 'etc/dpkg/dpkg.cfg.d/sdepmd-test-unsafe-io'), 'force-unsafe-io\n');
    // This machine's extra CAs (NODE_EXTRA_CA_CERTS; e.g. a TLS-inspecting proxy in front of the npm registry), at a
    // path no Debian package owns: installing ca-certificates inside rewrites /etc/ssl/certs/ca-certificates.crt.
    const ca = process.env.NODE_EXTRA_CA_CERTS;
    if (ca && fs.existsSync(ca)) {
      fs.mkdirSync(path.join(merged, path.dirname(GUEST_EXTRA_CA)), { recursive: true });
      fs.copyFileSync(ca, path.join(merged, GUEST_EXTRA_CA.slice(1)));
    }
    copyCheckout(path.join(merged, GUEST_REPO.slice(1)));
    // npm's download cache (see the header comment; apt's archives were linked into the upper layer).
    const npmCache = path.join(CACHE, suite, 'npm-cache');
    fs.mkdirSync(npmCache, { recursive: true });
    return DebianHost.launch(suite, dir, merged, machine, [`--bind=${npmCache}:/root/.npm`]);
  }

  private static async launch(
    suite: Suite,
    dir: string,
    merged: string,
    machine: string,
    binds: string[],
  ): Promise<DebianHost> {
    const t0 = Date.now();
    const console = fs.openSync(path.join(dir, 'console.log'), 'w');
    // One guest at a time per cgroup: nspawn (--keep-unit, with no systemd on this machine to ask for a scope) puts
    // the guest at `/payload` of this machine's cgroup tree, so two guests at once would share unit cgroups (see
    // docs/platforms.md); the platform files run one after the other (--runInBand).
    const nspawn = spawn(
      'systemd-nspawn',
      [
        '-D',
        merged,
        '--register=no',
        '--keep-unit',
        '-q',
        '--boot',
        '--private-network',
        `--machine=${machine}`,
        ...binds,
      ],
      { stdio: ['ignore', console, console], detached: true },
    );
    fs.closeSync(console);
    nspawn.unref();
    const nspawnPid = nspawn.pid ?? 0;
    // nspawn's first child is a short-lived intermediate; the guest's PID 1 is the child that runs systemd.
    let leader = 0;
    for (let i = 0; i < 600 && isAlive(nspawnPid); i++) {
      const c = childOf(nspawnPid);
      if (c && comm(c) === 'systemd') {
        leader = c;
        break;
      }
      await sleep(100);
    }
    if (!leader) {
      const log = fs.readFileSync(path.join(dir, 'console.log'), 'utf8');
      await cleanup(dir, merged, nspawnPid, childOf(nspawnPid)).catch(() => undefined);
      throw new Error(`systemd-nspawn did not boot ${suite} (no systemd as its child):\n${log}`);
    }
    const host = new DebianHost(suite, dir, merged, nspawnPid, leader, machine);
    // Until systemd answers on its bus at all, systemctl prints nothing (or "offline"): ask again.
    for (let i = 0; i < 600; i++) {
      const st = await host.exec('systemctl is-system-running --wait', { timeoutMs: 120_000 });
      host.bootState = st.stdout.trim();
      if (['running', 'degraded', 'maintenance', 'stopping'].includes(host.bootState)) break;
      await sleep(100);
    }
    host.bootMs = Date.now() - t0;
    // apt-daily and apt-daily-upgrade would run apt in the guest at random times and hold apt's locks while a test
    // runs apt itself (seen: "Could not get lock /var/cache/apt/archives/lock").
    await host.exec(
      'systemctl mask --now apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service',
    );
    return host;
  }

  /** Runs a bash command line in the guest as root, in /root, with a clean environment. */
  exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const ns = ['-m', '-u', '-i', '-p', '-C', ...(opts.hostNet ? [] : ['-n'])];
    const env: Record<string, string> = {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: '/root',
      LANG: 'C.UTF-8',
      TERM: 'dumb',
      DEBIAN_FRONTEND: 'noninteractive',
      SYSTEMD_PAGER: '',
      ...(process.env.NODE_EXTRA_CA_CERTS ? { NODE_EXTRA_CA_CERTS: GUEST_EXTRA_CA } : {}),
      ...(opts.env ?? {}),
    };
    const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    return run(
      'nsenter',
      ['-t', String(this.leader), ...ns, '-r', '-w', 'env', '-i', ...envArgs, 'bash', '-c', `cd /root && ${command}`],
      opts.timeoutMs ?? 60_000,
    );
  }

  /** exec, failing with its output unless it exits 0. */
  async ok(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.exec(command, opts);
    if (r.code !== 0) {
      throw new Error(
        `[${this.suite}] \`${command}\` exited ${r.code}\n--- stdout\n${r.stdout.slice(-4000)}\n--- stderr\n${r.stderr.slice(-4000)}`,
      );
    }
    return r;
  }

  writeFile(guestPath: string, content: string): void {
    // The overlay's merged tree is the guest's root.
    const p = path.join(this.merged, guestPath);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, content);
  }

  copyIn(hostPath: string, guestPath: string): void {
    fs.copyFileSync(hostPath, path.join(this.merged, guestPath));
  }

  async journal(unit?: string, lines = 60): Promise<string> {
    return (await this.exec(`journalctl --no-pager -n ${lines} ${unit ? `-u ${unit}` : ''}`)).stdout;
  }

  /** Powers the guest off, unmounts the overlay, deletes its directory; throws if anything is left. */
  async shutdown(): Promise<void> {
    await this.exec('systemctl poweroff', { timeoutMs: 10_000 });
    // What apt downloaded in this guest, for the next run (the upper layer holds exactly the guest's new files).
    linkDebs(path.join(this.dir, 'upper', APT_ARCHIVES.slice(1)), path.join(CACHE, this.suite, 'apt-archives'));
    await cleanup(this.dir, this.merged, this.nspawnPid, this.leader);
  }
}

/** Our `nsenter -t LEADER ...` processes (see DebianHost.exec). */
function nsentersInto(leader: number): number[] {
  const want = `nsenter\0-t\0${leader}\0`;
  const found: number[] = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').startsWith(want)) found.push(Number(p));
    } catch {
      /* gone */
    }
  }
  return found;
}

function childOf(pid: number): number {
  try {
    for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
      const kids = fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
      if (kids.length > 0) return Number(kids[0]);
    }
  } catch {
    /* not yet, or gone */
  }
  return 0;
}

/** Hard-links every .deb file of `from` into `to` (same filesystem) that `to` does not have; nothing is copied. */
function linkDebs(from: string, to: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(from).filter((n) => n.endsWith('.deb'));
  } catch {
    return; // nothing cached (yet), or nothing downloaded
  }
  fs.mkdirSync(to, { recursive: true });
  for (const n of names) {
    const src = path.join(from, n);
    const dst = path.join(to, n);
    if (!fs.lstatSync(src).isFile() || fs.existsSync(dst)) continue;
    try {
      fs.linkSync(src, dst);
    } catch {
      fs.copyFileSync(src, dst); // another filesystem
    }
  }
}

function comm(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2] !== 'Z';
  } catch {
    return false;
  }
}

async function cleanup(dir: string, merged: string, nspawnPid: number, leader: number): Promise<void> {
  for (let i = 0; i < 300 && isAlive(nspawnPid); i++) await sleep(100);
  if (isAlive(nspawnPid)) {
    // Killing the guest's PID 1 ends every process of its PID namespace; nspawn then exits.
    if (leader) spawnSync('kill', ['-KILL', String(leader)]);
    for (let i = 0; i < 100 && isAlive(nspawnPid); i++) await sleep(100);
    // The guest's PID namespace ends only when every process in it is reaped: a command of ours entered with nsenter
    // whose nsenter parent is stopped (seen in state T after the guest went away mid-command) never reaps its child.
    if (leader && isAlive(nspawnPid)) {
      for (const pid of nsentersInto(leader)) spawnSync('kill', ['-KILL', String(pid)]);
      for (let i = 0; i < 50 && isAlive(nspawnPid); i++) await sleep(100);
    }
    if (isAlive(nspawnPid)) spawnSync('kill', ['-KILL', String(nspawnPid)]);
  }
  const mounted = () => fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${merged} `);
  for (let i = 0; i < 50 && mounted(); i++) {
    spawnSync('umount', [merged]);
    if (mounted()) await sleep(200);
  }
  if (mounted()) spawnSync('umount', ['-l', merged]);
  if (mounted()) throw new Error(`overlay still mounted at ${merged}`);
  fs.rmSync(dir, { recursive: true, force: true });
  if (fs.existsSync(dir)) throw new Error(`could not remove ${dir}`);
  if (isAlive(nspawnPid)) throw new Error(`systemd-nspawn (pid ${nspawnPid}) still running`);
}

/** The checkout as a clone would have it: tracked files plus untracked, non-ignored ones, as they are now. */
function copyCheckout(dest: string): void {
  fs.mkdirSync(dest, { recursive: true });
  const files = spawnSync('git', ['ls-files', '-z', '-c', '-o', '--exclude-standard'], {
    cwd: REPO,
    encoding: 'buffer',
    maxBuffer: 64 << 20,
  });
  if (files.status !== 0) throw new Error(`git ls-files failed: ${files.stderr.toString()}`);
  const list = files.stdout
    .toString()
    .split('\0')
    .filter((f) => f && fs.existsSync(path.join(REPO, f)));
  const listFile = path.join(os.tmpdir(), `sdepmd-platform-files-${process.pid}`);
  fs.writeFileSync(listFile, list.join('\0'));
  try {
    const t = spawnSync(
      'bash',
      ['-c', `tar -C "$1" --null -T "$2" -cf - | tar -C "$3" -xf -`, 'copy', REPO, listFile, dest],
      { encoding: 'utf8' },
    );
    if (t.status !== 0) throw new Error(`copying the checkout failed: ${t.stderr}`);
  } finally {
    fs.rmSync(listFile, { force: true });
  }
}
