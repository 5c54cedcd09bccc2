/*
 * bench/run.ts - compare sdepmd against OTP's C epmd in one run.
 *
 *   npm run bench               full mode (2 s per point x 3 reps, ~2.5-3 min)
 *   npm run bench -- --short    CI smoke (~1 s per point, small N, no 100k)
 *
 * Options:
 *   --short            smoke mode
 *   --chart            also write docs/perf-lookups.svg in --short mode (full mode always does)
 *   --epmd PATH        C epmd binary (default: $EPMD, /usr/bin/epmd, or `epmd` on PATH)
 *   --only NAME        run only one target: epmd | sdepmd
 *   --sdepmd PATH      sdepmd entry script, run as `node PATH -port P` (default bin/sdepmd)
 *
 * `npm run bench` compiles bench/ (bench/tsconfig.json) to bench/out/js/ and runs it from there.
 * See bench/README.md for what each scenario measures.
 */
import { spawn, execFileSync, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { SourceBudget } from './sources';

/** bench/, from bench/out/js/ where the compiled script runs. */
const BENCH = path.resolve(__dirname, '..', '..');
const ROOT = path.join(BENCH, '..');
const OUT = path.join(BENCH, 'out');
const LOADGEN_SRC = path.join(BENCH, 'loadgen.c');
const LOADGEN = path.join(OUT, 'loadgen');
const HOST = '127.0.0.1';

// ---------------------------------------------------------------- options
const argv = process.argv.slice(2);
const flag = (f: string): boolean => argv.includes(f);
function opt(f: string, d: string): string;
function opt(f: string, d: null): string | null;
function opt(f: string, d: string | null): string | null {
  const i = argv.indexOf(f);
  return i >= 0 && i + 1 < argv.length ? (argv[i + 1] ?? d) : d;
}
if (flag('-h') || flag('--help')) {
  console.log('usage: npm run bench -- [--short] [--chart] [--epmd PATH] [--sdepmd PATH] [--only epmd|sdepmd]');
  process.exit(0);
}
const SHORT = flag('--short');
interface Config {
  secs: number;
  warm: number;
  reps: number;
  conc: number[];
  capN: number[];
  rssN: number;
  coldReps: number;
  names: number[];
}
const CFG: Config = SHORT
  ? { secs: 1, warm: 0.2, reps: 1, conc: [1, 4, 16], capN: [1000, 10000], rssN: 10000, coldReps: 3, names: [10, 1000] }
  : {
      secs: 2,
      warm: 0.5,
      reps: 3,
      conc: [1, 4, 16],
      capN: [1000, 10000, 100000],
      rssN: 10000,
      coldReps: 5,
      names: [10, 1000],
    };
const CAP_CONC = 4; // lookup concurrency used for the capacity and NAMES scenarios
const ONLY = opt('--only', null);
const SDEPMD = path.resolve(opt('--sdepmd', path.join(ROOT, 'bin', 'sdepmd')));

// ---------------------------------------------------------------- utilities
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const median = (xs: readonly (number | null | undefined)[]): number | null => {
  const v = xs.filter((x): x is number => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
};
const log = (...a: string[]): void => {
  process.stderr.write(a.join(' ') + '\n');
};

/** A spawned process, with the tail of its stderr when it is piped. */
type Proc = ChildProcess & { stderrTail?: string };

const children = new Set<ChildProcess>();
function track<T extends ChildProcess>(cp: T): T {
  children.add(cp);
  cp.on('exit', () => children.delete(cp));
  return cp;
}
function killAll() {
  for (const cp of children) {
    try {
      cp.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
}
process.on('exit', killAll);
for (const s of ['SIGINT', 'SIGTERM'])
  process.on(s, () => {
    killAll();
    process.exit(130);
  });

function waitExit(cp: ChildProcess, ms: number): Promise<boolean> {
  if (cp.exitCode !== null || cp.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    cp.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}
async function stop(cp: ChildProcess | null | undefined): Promise<void> {
  if (!cp || cp.exitCode !== null || cp.signalCode !== null) return;
  try {
    cp.kill('SIGTERM');
  } catch {
    return;
  }
  if (!(await waitExit(cp, 2000))) {
    try {
      cp.kill('SIGKILL');
    } catch {
      /* gone */
    }
    await waitExit(cp, 2000);
  }
}
const alive = (cp: ChildProcess | null | undefined): boolean => !!cp && cp.exitCode === null && cp.signalCode === null;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '0.0.0.0', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function fdHardLimit(): number {
  try {
    const v = execFileSync('bash', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
    return v === 'unlimited' ? 1048576 : parseInt(v, 10);
  } catch {
    return 1024;
  }
}

// /proc helpers: sum over the process and its descendants (in case a daemon forks workers)
function procTree(pid: number): number[] {
  const kids = new Map<number, number[]>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = parseInt(st.slice(st.lastIndexOf(')') + 2).split(' ')[1] ?? '', 10);
      const list = kids.get(ppid) ?? [];
      list.push(parseInt(d, 10));
      kids.set(ppid, list);
    } catch {
      /* raced */
    }
  }
  const out: number[] = [];
  const stack = [pid];
  for (let p = stack.pop(); p !== undefined; p = stack.pop()) {
    out.push(p);
    for (const k of kids.get(p) ?? []) stack.push(k);
  }
  return out;
}
/**
 * Resident memory of a process and its children, in kB: all of it (VmRSS), or with `anonymous` only the pages that
 * are the process's own (RssAnon: heap, stacks), not those of the files it maps, such as the node binary, which the
 * page cache shares between every process that runs it.
 */
function rssKB(pid: number, anonymous = false): number | null {
  const field = anonymous ? /RssAnon:\s+(\d+)\s+kB/ : /VmRSS:\s+(\d+)\s+kB/;
  let total = 0;
  let any = false;
  for (const p of procTree(pid)) {
    try {
      const m = field.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m && m[1]) {
        total += parseInt(m[1], 10);
        any = true;
      }
    } catch {
      /* raced */
    }
  }
  return any ? total : null;
}
let CLK_TCK = 100;
try {
  CLK_TCK = parseInt(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }), 10) || 100;
} catch {
  /* default */
}
function cpuSecs(pid: number): number {
  let t = 0;
  for (const p of procTree(pid)) {
    try {
      const st = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      t += (parseInt(f[11] ?? '0', 10) + parseInt(f[12] ?? '0', 10)) / CLK_TCK; // utime, stime
    } catch {
      /* raced */
    }
  }
  return t;
}

// ---------------------------------------------------------------- build
function build(): void {
  fs.mkdirSync(OUT, { recursive: true });
  const stale = !fs.existsSync(LOADGEN) || fs.statSync(LOADGEN).mtimeMs < fs.statSync(LOADGEN_SRC).mtimeMs;
  if (stale) {
    log('building bench/out/loadgen ...');
    execFileSync('cc', ['-O2', '-pthread', '-Wall', '-o', LOADGEN, LOADGEN_SRC], { stdio: 'inherit' });
  }
}

// ---------------------------------------------------------------- targets
function findEpmd(): string | null {
  const cands = [opt('--epmd', null), process.env.EPMD, '/usr/bin/epmd'].filter((c): c is string => !!c);
  for (const c of cands) if (fs.existsSync(c)) return c;
  try {
    return execFileSync('bash', ['-c', 'command -v epmd'], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

const EPMD_BIN = findEpmd();

/** NODE_OPTIONS as units/epmd.service sets it, so that sdepmd runs here as it is shipped. */
function shippedNodeOptions(): string | null {
  try {
    const unit = fs.readFileSync(path.join(ROOT, 'units', 'epmd.service'), 'utf8');
    return /^Environment=NODE_OPTIONS=(.*)$/m.exec(unit)?.[1]?.trim() ?? null;
  } catch {
    return null;
  }
}
const NODE_OPTIONS = shippedNodeOptions();
/** What the bench runs: a daemon, or the trivial C sink. `missing` says why it cannot run. */
interface Target {
  key: 'epmd' | 'sdepmd' | 'sink' | 'node';
  label: string;
  missing: string | null;
  isSink?: boolean;
  argv: (port: number) => string[];
  /** Environment variables added to this process's own (for sdepmd, to its own without Node's, as under systemd). */
  env?: Record<string, string> | undefined;
}
const TARGETS: Target[] = (
  [
    {
      key: 'epmd',
      label: 'C epmd',
      missing: EPMD_BIN ? null : 'epmd binary not found',
      argv: (port) => [EPMD_BIN ?? 'epmd', '-port', String(port)],
    },
    {
      key: 'sdepmd',
      label: 'sdepmd',
      missing: fs.existsSync(SDEPMD) ? null : `${path.relative(ROOT, SDEPMD)} not found`,
      argv: (port) => [process.execPath, SDEPMD, '-port', String(port)],
      env: NODE_OPTIONS ? { NODE_OPTIONS } : undefined,
    },
  ] satisfies Target[]
).filter((t) => !ONLY || t.key === ONLY);
// the ceiling reference: a trivial C server, measured under the same conditions (ABAB...)
const SINK: Target = {
  key: 'sink',
  label: 'sink',
  missing: null,
  isSink: true,
  argv: (port) => [LOADGEN, 'sink', String(port), '1'],
};
/**
 * Node's own floor: a bare `net` server answering every request with 4 bytes, started as sdepmd is (same node, same
 * environment and NODE_OPTIONS). Measured for start-up and idle memory only, beside sdepmd, so that what Node itself
 * costs on this machine is in the same run as what sdepmd adds to it.
 */
const NODE_FLOOR: Target = {
  key: 'node',
  label: 'bare Node server',
  missing: null,
  argv: (port) => [
    process.execPath,
    '-e',
    "require('net').createServer((s) => s.end(Buffer.alloc(4))).listen(+process.argv[1])",
    String(port),
  ],
  env: NODE_OPTIONS ? { NODE_OPTIONS } : undefined,
};

// Ask the daemon for NAMES; resolves true if it answered with at least the 4-byte port.
function probe(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: HOST, port });
    let n = 0;
    const done = (ok: boolean): void => {
      clearTimeout(t);
      s.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), timeoutMs);
    s.on('connect', () => s.write(Buffer.from([0, 1, 0x6e])));
    s.on('data', (b: Buffer) => {
      n += b.length;
    });
    s.on('end', () => done(n >= 4));
    s.on('error', () => done(false));
  });
}

/**
 * This process's environment without Node's own variables (NODE_OPTIONS, NODE_EXTRA_CA_CERTS, ...): a service gets
 * only what its unit sets, and NODE_EXTRA_CA_CERTS alone (a CA bundle parsed at start) made every start here about
 * 50 ms slower.
 */
function withoutNodeVariables(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !name.startsWith('NODE_')));
}

function spawnDaemon(t: Target, port: number): Proc & { stderrTail: string } {
  const args = t.argv(port);
  // raise the fd limit as far as we may (the hard limit may be below 1048576 without CAP_SYS_RESOURCE)
  const sh = 'ulimit -n 1048576 2>/dev/null || ulimit -n hard 2>/dev/null; exec "$0" "$@"';
  // the sink runs until its stdin closes
  const cp: Proc & { stderrTail: string } = Object.assign(
    track(
      spawn('bash', ['-c', sh, ...args], {
        stdio: [t.isSink ? 'pipe' : 'ignore', 'ignore', 'pipe'],
        cwd: ROOT,
        env: {
          ...(t.key === 'sdepmd' || t.key === 'node' ? withoutNodeVariables(process.env) : process.env),
          ...t.env,
        },
      }),
    ),
    { stderrTail: '' },
  );
  cp.stderr?.on('data', (b: Buffer) => {
    cp.stderrTail = (cp.stderrTail + b.toString()).slice(-2000);
  });
  return cp;
}

/** A started daemon, or why it did not start. */
type Daemon = { proc: Proc; port: number; pid: number; target: Target; error?: undefined } | { error: string };
type Running = Extract<Daemon, { proc: Proc }>;

// Start a daemon on a fresh port; resolves {proc, port, pid} or {error}.
async function startDaemon(t: Target, readyMs = 15000): Promise<Daemon> {
  if (t.missing) return { error: t.missing };
  if (t.isSink) return startSink();
  let lastErr = 'did not start';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const proc = spawnDaemon(t, port);
    const t0 = Date.now();
    while (Date.now() - t0 < readyMs) {
      if (!alive(proc)) break;
      if (await probe(port)) return { proc, port, pid: proc.pid ?? 0, target: t };
      await sleep(20);
    }
    const hung = alive(proc);
    lastErr = hung
      ? `no reply within ${readyMs} ms`
      : `exited (code ${proc.exitCode}, signal ${proc.signalCode}) ${proc.stderrTail.trim().split('\n').pop() ?? ''}`.trim();
    await stop(proc);
    if (hung) break; // a busy port makes a daemon exit, so only an exit is worth retrying on another port
  }
  // do not wait for a broken daemon again in later scenarios
  t.missing = `failed to start: ${lastErr}`;
  return { error: t.missing };
}

async function startSink(): Promise<Daemon> {
  const proc = track(spawn(LOADGEN, ['sink', '0', '1'], { stdio: ['pipe', 'pipe', 'inherit'] }));
  const line = await firstLine(proc, 5000);
  if (!line) {
    await stop(proc);
    return { error: 'sink did not start' };
  }
  const port = (JSON.parse(line) as { port: number }).port;
  return { proc, port, pid: proc.pid ?? 0, target: SINK };
}

function firstLine(proc: ChildProcess, ms: number): Promise<string | null> {
  return new Promise((resolve) => {
    let buf = '';
    const t = setTimeout(() => resolve(null), ms);
    proc.stdout?.on('data', (b: Buffer) => {
      buf += b.toString();
      const i = buf.indexOf('\n');
      if (i >= 0) {
        clearTimeout(t);
        resolve(buf.slice(0, i));
      }
    });
    proc.on('exit', () => {
      clearTimeout(t);
      resolve(buf.includes('\n') ? buf.slice(0, buf.indexOf('\n')) : null);
    });
  });
}

// ---------------------------------------------------------------- loadgen wrappers
/** One JSON line from loadgen: a load run's result. */
interface LoadResult {
  rps?: number;
  ok?: number;
  fail?: number;
  p50_us?: number;
  p99_us?: number;
  cpu_pct?: number;
  first_error?: string;
  error?: string;
  daemon_cpu_pct?: number;
  daemon_cpu_us_per_req?: number | null;
  daemon_died?: boolean;
}

function loadgen(args: string[], timeoutMs: number): Promise<LoadResult> {
  return new Promise((resolve) => {
    const cp = track(spawn(LOADGEN, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    let err = '';
    cp.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    cp.stderr.on('data', (b: Buffer) => {
      err += b.toString();
    });
    const t = setTimeout(() => cp.kill('SIGKILL'), timeoutMs);
    cp.on('exit', (code) => {
      clearTimeout(t);
      const line = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line) as LoadResult);
      } catch {
        resolve({ error: `loadgen exit ${code}: ${err.trim().slice(-300)}` });
      }
    });
  });
}

// One measured load run against a running daemon d, with daemon CPU accounting.
interface RunOptions {
  name?: string;
  secs?: number;
  warm?: number;
  timeoutMs?: number;
}
async function loadRun(
  d: Daemon | null,
  mode: 'lookup' | 'names' | 'register',
  conc: number,
  extra: RunOptions = {},
): Promise<LoadResult> {
  if (!d || d.error !== undefined) return { error: d ? d.error : 'not started' };
  if (!alive(d.proc)) return { error: 'daemon not running' };
  const secs = extra.secs || CFG.secs;
  const warm = extra.warm === undefined ? CFG.warm : extra.warm;
  const args = ['-w', String(warm), '-T', String(extra.timeoutMs || 2000), mode, HOST, String(d.port)];
  if (mode === 'lookup') args.push(extra.name ?? 'bench0_0');
  args.push(String(conc), String(secs));
  const c0 = cpuSecs(d.pid);
  const t0 = process.hrtime.bigint();
  const r = await loadgen(args, (secs + warm + 20) * 1000);
  const el = Number(process.hrtime.bigint() - t0) / 1e9;
  // daemon CPU over the whole loadgen lifetime (warm-up included): an approximation
  const cpu = cpuSecs(d.pid) - c0;
  r.daemon_cpu_pct = Math.round((1000 * cpu) / el) / 10;
  // daemon CPU per request, warm-up included on both sides (loadgen's rate times its whole run)
  r.daemon_cpu_us_per_req = r.rps ? Math.round((cpu * 1e6) / (r.rps * (secs + warm))) : null;
  if (!alive(d.proc)) r.daemon_died = true;
  return r;
}

// Registrations held by loadgen `hold` processes, chunked below the fd limit.
class Holder {
  procs: ChildProcess[] = [];
  held = 0;
  failed = 0;
  capped = false;
  error: string | undefined;
  private readonly sources = new SourceBudget();
  private seq = 0;
  private readonly chunkMax = Math.max(100, FD_HARD - 200);

  constructor(readonly d: Running) {}

  // register n more names; resolves with the first name registered (or null)
  async add(n: number, prefix: string): Promise<string | null> {
    let first: string | null = null;
    while (n > 0 && !this.capped) {
      if (!alive(this.d.proc)) {
        this.capped = true;
        this.error = 'daemon exited';
        break;
      }
      const source = this.sources.take(Math.min(n, this.chunkMax));
      if (!source) {
        this.capped = true;
        this.error = 'no source address left';
        break;
      }
      const { octet, count: k } = source;
      const pfx = `${prefix}${this.seq++}_`;
      const cp = track(
        spawn(LOADGEN, ['-a', String(octet), 'hold', HOST, String(this.d.port), String(k), pfx], {
          stdio: ['pipe', 'pipe', 'ignore'],
        }),
      );
      this.procs.push(cp);
      const line = await firstLine(cp, 300000);
      let r: { held: number; fail: number; first_error?: string };
      try {
        r = JSON.parse(line ?? '') as typeof r;
      } catch {
        r = { held: 0, fail: k, first_error: 'hold process failed' };
      }
      this.held += r.held;
      this.failed += r.fail;
      if (first === null && r.held > 0) first = `${pfx}0`;
      if (r.held < k) {
        this.capped = true;
        this.error = r.first_error;
      }
      n -= k;
    }
    return first;
  }
  async release(): Promise<void> {
    for (const cp of this.procs) {
      try {
        cp.stdin?.end();
      } catch {
        /* gone */
      }
    }
    await Promise.all(this.procs.map((cp) => waitExit(cp, 3000).then((ok) => (ok ? null : stop(cp)))));
    this.procs = [];
  }
}

// ---------------------------------------------------------------- scenarios
/** The median of a point's runs, or why there is none. */
interface Summary {
  rps: number | null;
  error?: string;
  p50_us?: number | null;
  p99_us?: number | null;
  fail?: number;
  loadgen_cpu_pct?: number | null;
  daemon_cpu_pct?: number | null;
  daemon_cpu_us_per_req?: number | null;
  runs: LoadResult[];
}
type TargetKey = Target['key'];
/** Per point key (`c4`, `n10`, ...), per target. */
type PointResults = Record<string, Partial<Record<TargetKey, Summary>>>;
interface CapacityPoint {
  skipped?: string;
  held?: number;
  fill_secs?: number;
  rss_kb?: number | null;
  capped?: boolean;
  error?: string | undefined;
  lookup?: Summary;
  vs_empty?: number | null;
}
interface Capacity {
  points: Record<number, CapacityPoint>;
  error?: string;
  empty?: Summary;
  cap?: number;
}
interface Rss {
  error?: string;
  idle_kb?: number | null;
  /** RssAnon at the same moments as idle_kb, loaded_kb and after_kb. */
  idle_anon_kb?: number | null;
  loaded_anon_kb?: number | null;
  after_anon_kb?: number | null;
  held?: number;
  loaded_kb?: number | null;
  capped?: string | undefined;
  per_reg_bytes?: number | null;
  after_kb?: number | null;
}
interface ColdStart {
  median_ms: number | null;
  samples_ms: number[];
  /** CPU time (user + system) the process had used when it answered: less sensitive to load than wall time. */
  median_cpu_ms: number | null;
  samples_cpu_ms: number[];
  error: string | undefined;
}
interface Meta {
  mode?: string;
  date?: string;
  cpus?: number;
  cpu_model?: string | null;
  kernel?: string;
  node?: string;
  epmd?: string | null;
  sdepmd_node_options?: string | null;
  erlang_base?: string | null;
  fd_hard_limit?: number;
  ephemeral_ports?: number[] | null;
  loadavg_start?: number[];
  loadavg_end?: number[];
  total_secs?: number;
  config?: Config;
}
const results: {
  meta: Meta;
  ceiling: {
    lookups?: Record<string, Summary | undefined>;
    names?: Summary | undefined;
    register?: Summary | undefined;
  };
  lookups: PointResults;
  names: PointResults;
  register: PointResults;
  capacity: Partial<Record<TargetKey, Capacity>>;
  rss: Partial<Record<TargetKey, Rss>>;
  cold_start: Partial<Record<TargetKey, ColdStart>>;
} = {
  meta: {},
  ceiling: {},
  lookups: {},
  names: {},
  register: {},
  capacity: {},
  rss: {},
  cold_start: {},
};
let FD_HARD = 1024;

function summarize(runs: LoadResult[]): Summary {
  const ok = runs.filter((r) => !r.error && (r.ok ?? 0) > 0);
  if (!ok.length) {
    const e = runs.find((r) => r.error || r.fail);
    return { rps: null, error: e ? e.error || `all ${e.fail} requests failed (${e.first_error})` : 'no runs', runs };
  }
  return {
    rps: median(ok.map((r) => r.rps)),
    p50_us: median(ok.map((r) => r.p50_us)),
    p99_us: median(ok.map((r) => r.p99_us)),
    fail: runs.reduce((a, r) => a + (r.fail ?? 0), 0),
    loadgen_cpu_pct: median(ok.map((r) => r.cpu_pct)),
    daemon_cpu_pct: median(ok.map((r) => r.daemon_cpu_pct)),
    daemon_cpu_us_per_req: median(ok.map((r) => r.daemon_cpu_us_per_req)),
    runs,
  };
}

// Start every target (daemons + sink), run setup, then ABAB over the points, then tear down.
/** One measured point of a group: what to do to each daemon before it, and one run. */
interface Point<Ctx> {
  key: string;
  before?: (d: Running, h: Holder, ctx: Ctx) => Promise<void>;
  run: (d: Daemon, ctx: Ctx | null) => Promise<LoadResult>;
}

async function group<Ctx>(
  name: string,
  targets: Target[],
  setup: (d: Running, h: Holder) => Promise<Ctx>,
  points: Point<Ctx>[],
): Promise<PointResults> {
  const ds: { d: Daemon; t: Target; h: Holder | null; ctx: Ctx | null }[] = [];
  for (const t of targets) {
    const d = await startDaemon(t);
    if (d.error !== undefined) {
      log(`  ${t.label}: n/a (${d.error})`);
      ds.push({ d, t, h: null, ctx: null });
    } else {
      const h = new Holder(d);
      ds.push({ d, t, h, ctx: await setup(d, h) });
    }
  }
  const out: PointResults = {};
  for (const p of points) {
    if (p.before) {
      for (const { d, h, ctx } of ds) if (d.error === undefined && h && ctx !== null) await p.before(d, h, ctx);
    }
    const runs: LoadResult[][] = ds.map(() => []);
    for (let rep = 0; rep < CFG.reps; rep++) {
      for (let i = 0; i < ds.length; i++) {
        const e = ds[i]!;
        runs[i]!.push(await p.run(e.d, e.ctx));
      }
    }
    const byTarget: Partial<Record<TargetKey, Summary>> = {};
    out[p.key] = byTarget;
    ds.forEach(({ d, t }, i) => {
      const s = summarize(runs[i]!);
      if (d.error !== undefined) s.error = d.error;
      byTarget[t.key] = s;
      log(
        `  ${name} ${p.key} ${t.label}: ${s.rps === null ? `n/a (${s.error})` : `${Math.round(s.rps)}/s p50 ${s.p50_us}us p99 ${s.p99_us}us`}`,
      );
    });
  }
  for (const { h } of ds) if (h) await h.release();
  for (const { d } of ds) if (d.error === undefined) await stop(d.proc);
  return out;
}

async function scenarioThroughput() {
  const targets = [...TARGETS, SINK];
  // lookups at several concurrency levels, against one registered name
  log('lookups (PORT_PLEASE2 on fresh connections) ...');
  results.lookups = await group(
    'lookup',
    targets,
    async (d, h) => ({ name: (await h.add(1, 'bench')) || 'bench0_0' }),
    CFG.conc.map((c): Point<{ name: string }> => ({
      key: `c${c}`,
      run: (d, ctx) => loadRun(d, 'lookup', c, ctx ? { name: ctx.name } : {}),
    })),
  );

  log('NAMES ...');
  const sizes = CFG.names;
  results.names = await group(
    'names',
    targets,
    () => Promise.resolve({ n: 0 }),
    sizes.map((n): Point<{ n: number }> => ({
      key: `n${n}`,
      before: async (d, h, ctx) => {
        if (!d.target.isSink) {
          await h.add(n - ctx.n, `nm${n}x`);
          ctx.n = n;
        }
      },
      run: (d) => loadRun(d, 'names', CAP_CONC),
    })),
  );

  log('register/unregister cycles ...');
  results.register = await group('register', targets, () => Promise.resolve({}), [
    { key: `c${CAP_CONC}`, run: (d) => loadRun(d, 'register', CAP_CONC) },
  ]);

  results.ceiling = {
    lookups: Object.fromEntries(CFG.conc.map((c) => [`c${c}`, results.lookups[`c${c}`]?.sink])),
    names: results.names[`n${sizes[0]}`]?.sink,
    register: results.register[`c${CAP_CONC}`]?.sink,
  };
}

// capacity: lookup rate as the table fills, per daemon, fresh daemon
async function scenarioCapacity() {
  log('capacity ...');
  for (const t of TARGETS) {
    const res: Capacity = { points: {} };
    results.capacity[t.key] = res;
    const d = await startDaemon(t);
    if (d.error !== undefined) {
      res.error = d.error;
      log(`  ${t.label}: n/a (${d.error})`);
      continue;
    }
    const h = new Holder(d);
    const target = (await h.add(1, 'cap')) || 'cap0_0';
    res.empty = summarize([await loadRun(d, 'lookup', CAP_CONC, { name: target })]);
    log(`  ${t.label} empty table: ${res.empty.rps === null ? 'n/a' : Math.round(res.empty.rps) + '/s'}`);
    let have = 1;
    for (const N of CFG.capN) {
      const p: CapacityPoint = {};
      res.points[N] = p;
      if (h.capped) {
        p.skipped = `capped at ${h.held}`;
        continue;
      }
      const t0 = Date.now();
      await h.add(N - have, `c${N}x`);
      have = N;
      p.held = h.held;
      p.fill_secs = (Date.now() - t0) / 1000;
      p.rss_kb = alive(d.proc) ? rssKB(d.pid) : null;
      if (h.capped) {
        p.capped = true;
        p.error = h.error;
        res.cap = h.held;
      }
      const lr = await loadRun(
        d,
        'lookup',
        CAP_CONC,
        h.capped ? { name: target, secs: 1, warm: 0, timeoutMs: 1000 } : { name: target },
      );
      p.lookup = summarize([lr]);
      p.vs_empty = p.lookup.rps !== null && res.empty.rps ? p.lookup.rps / res.empty.rps : null;
      log(
        `  ${t.label} N=${N}: held ${h.held}${h.capped ? ' (CAPPED: ' + h.error + ')' : ''}, lookups ${p.lookup.rps === null ? 'n/a (' + p.lookup.error + ')' : Math.round(p.lookup.rps) + '/s'}`,
      );
    }
    await h.release();
    await stop(d.proc);
  }
}

// RSS idle and with rssN registrations, fresh daemon, no lookup traffic in between
async function scenarioRss() {
  log('RSS ...');
  for (const t of [...TARGETS, SINK, NODE_FLOOR]) {
    const r: Rss = {};
    results.rss[t.key] = r;
    const d = await startDaemon(t);
    if (d.error !== undefined) {
      r.error = d.error;
      continue;
    }
    await sleep(300);
    r.idle_kb = rssKB(d.pid);
    r.idle_anon_kb = rssKB(d.pid, true);
    if (t === NODE_FLOOR) {
      log(`  ${t.label}: idle ${r.idle_kb} kB (${r.idle_anon_kb} kB anonymous)`);
      await stop(d.proc);
      continue;
    }
    const h = new Holder(d);
    await h.add(CFG.rssN, 'rss');
    await sleep(500);
    r.held = h.held;
    r.loaded_kb = alive(d.proc) ? rssKB(d.pid) : null;
    r.loaded_anon_kb = alive(d.proc) ? rssKB(d.pid, true) : null;
    if (h.capped) r.capped = h.error;
    r.per_reg_bytes =
      r.loaded_kb !== null && r.idle_kb !== null && r.held > 0 ? ((r.loaded_kb - r.idle_kb) * 1024) / r.held : null;
    await h.release();
    await sleep(1000);
    r.after_kb = alive(d.proc) ? rssKB(d.pid) : null;
    r.after_anon_kb = alive(d.proc) ? rssKB(d.pid, true) : null;
    log(
      `  ${t.label}: idle ${r.idle_kb} kB, ${r.held} regs ${r.loaded_kb} kB, ${r.per_reg_bytes === null ? 'n/a' : Math.round(r.per_reg_bytes)} B/reg, after they unregister ${r.after_kb} kB`,
    );
    await stop(d.proc);
  }
}

// cold start: spawn -> first successful NAMES reply, alternating targets
async function scenarioCold() {
  log('cold start ...');
  const targets = [...TARGETS, SINK, NODE_FLOOR];
  const samples: Partial<Record<TargetKey, number[]>> = {};
  const cpuSamples: Partial<Record<TargetKey, number[]>> = {};
  const errors: Partial<Record<TargetKey, string>> = {};
  for (let rep = 0; rep < CFG.coldReps; rep++) {
    for (const t of targets) {
      if (t.missing) {
        errors[t.key] = t.missing;
        continue;
      }
      const port = await freePort();
      const t0 = process.hrtime.bigint();
      const proc = spawnDaemon(t, port);
      let ms: number | null = null;
      while (alive(proc) && Number(process.hrtime.bigint() - t0) / 1e6 < 15000) {
        if (await probe(port, 1000)) {
          ms = Number(process.hrtime.bigint() - t0) / 1e6;
          if (proc.pid !== undefined) (cpuSamples[t.key] ??= []).push(cpuSecs(proc.pid) * 1000);
          break;
        }
        await sleep(1);
      }
      if (ms === null)
        errors[t.key] = alive(proc)
          ? 'no reply in 15 s'
          : `exited: ${proc.stderrTail.trim().split('\n').pop() || String(proc.exitCode)}`;
      else (samples[t.key] ??= []).push(ms);
      await stop(proc);
    }
  }
  for (const t of targets) {
    const ms = samples[t.key] ?? [];
    const m = median(ms);
    const cpu = cpuSamples[t.key] ?? [];
    const mc = median(cpu);
    results.cold_start[t.key] = {
      median_ms: m,
      samples_ms: ms,
      median_cpu_ms: mc,
      samples_cpu_ms: cpu,
      error: errors[t.key],
    };
    log(
      `  ${t.label}: ${m === null ? 'n/a' : `${m.toFixed(1)} ms`}, CPU ${mc === null ? 'n/a' : `${mc.toFixed(0)} ms`}`,
    );
  }
}

// ---------------------------------------------------------------- report
type Value = number | null | undefined;
type Fmt = (v: Value) => string;
const fmtInt: Fmt = (v) => (v === null || v === undefined ? 'n/a' : Math.round(v).toLocaleString('en-US'));
const fmtMs: Fmt = (v) => (v === null || v === undefined ? 'n/a' : `${v.toFixed(1)} ms`);
const fmtUs: Fmt = (v) => (v === null || v === undefined ? 'n/a' : `${Math.round(v)} us`);
const fmtKB: Fmt = (v) => (v === null || v === undefined ? 'n/a' : `${(v / 1024).toFixed(1)} MiB`);

/** One row of the table: the value for each of C epmd, sdepmd and the sink, and notes for the first two. */
interface Row {
  label: string;
  a: Value;
  b: Value;
  s: Value;
  fmt: Fmt;
  notes: (string | null | undefined)[] | undefined;
}

function rows(): Row[] {
  const R: Row[] = [];
  const g = (obj: Partial<Record<TargetKey, Summary>> | undefined, k: TargetKey): Partial<Summary> => obj?.[k] ?? {};
  // one row: the value for each of C epmd, sdepmd and the sink (null where not measured)
  const row = (label: string, fmt: Fmt, extractor: (k: TargetKey) => Value, notes?: (string | null | undefined)[]) => {
    R.push({ label, a: extractor('epmd'), b: extractor('sdepmd'), s: extractor('sink'), fmt, notes });
  };
  for (const c of CFG.conc) {
    const p = results.lookups[`c${c}`] || {};
    row(`lookup c=${c} req/s`, fmtInt, (k) => g(p, k).rps ?? null);
    row(`lookup c=${c} p50`, fmtUs, (k) => g(p, k).p50_us ?? null);
    row(`lookup c=${c} p99`, fmtUs, (k) => g(p, k).p99_us ?? null);
    row(`lookup c=${c} CPU per lookup`, fmtUs, (k) => g(p, k).daemon_cpu_us_per_req ?? null);
  }
  for (const n of CFG.names) {
    const p = results.names[`n${n}`] || {};
    row(`NAMES with ${n} registered req/s`, fmtInt, (k) => (k === 'sink' ? null : (g(p, k).rps ?? null)));
  }
  {
    const p = results.register[`c${CAP_CONC}`] || {};
    row(`register+unregister cycles/s`, fmtInt, (k) => g(p, k).rps ?? null);
  }
  row(`lookup c=${CAP_CONC}, 1 registered req/s`, fmtInt, (k) =>
    results.capacity[k]?.empty ? results.capacity[k].empty.rps : null,
  );
  for (const N of CFG.capN) {
    const pt = (k: TargetKey): CapacityPoint | null => results.capacity[k]?.points[N] ?? null;
    row(
      `capacity N=${N.toLocaleString('en-US')}: held`,
      fmtInt,
      (k) => pt(k)?.held ?? null,
      DAEMONS.map((k) => {
        const p = pt(k);
        return p && (p.capped ? 'CAPPED' : p.skipped ? p.skipped : '');
      }),
    );
    row(
      `  lookup req/s at N (vs empty)`,
      fmtInt,
      (k) => pt(k)?.lookup?.rps ?? null,
      DAEMONS.map((k) => {
        const p = pt(k);
        return p && p.vs_empty !== null && p.vs_empty !== undefined ? `${Math.round(p.vs_empty * 100)}%` : '';
      }),
    );
  }
  const rss = (k: TargetKey): Rss => results.rss[k] ?? {};
  row('RSS idle', fmtKB, (k) => rss(k).idle_kb ?? null);
  row(
    `RSS with ${CFG.rssN.toLocaleString('en-US')} registrations`,
    fmtKB,
    (k) => rss(k).loaded_kb ?? null,
    DAEMONS.map((k) => {
      const held = rss(k).held;
      return held !== undefined && held < CFG.rssN ? `only ${held} held` : '';
    }),
  );
  row('RSS once they have unregistered', fmtKB, (k) => rss(k).after_kb ?? null);
  row('  anonymous (own pages): idle', fmtKB, (k) => rss(k).idle_anon_kb ?? null);
  row(`  anonymous: with ${CFG.rssN.toLocaleString('en-US')}`, fmtKB, (k) => rss(k).loaded_anon_kb ?? null);
  row('  anonymous: once they have unregistered', fmtKB, (k) => rss(k).after_anon_kb ?? null);
  row('bytes per registration', fmtInt, (k) => rss(k).per_reg_bytes ?? null);
  row('start to first reply (median)', fmtMs, (k) => results.cold_start[k]?.median_ms ?? null);
  row(
    `  CPU used by then (median, ${1000 / CLK_TCK} ms ticks)`,
    fmtMs,
    (k) => results.cold_start[k]?.median_cpu_ms ?? null,
  );
  return R;
}

const DAEMONS: TargetKey[] = ['epmd', 'sdepmd'];
const ratio = (x: Value, y: Value): string =>
  typeof x === 'number' && typeof y === 'number' && y > 0 ? `${(x / y).toFixed(2)}x` : 'n/a';

function printTable() {
  const R = rows();
  const cells = R.map((r) => {
    const fa = r.fmt(r.a) + (r.notes && r.notes[0] ? ` (${r.notes[0]})` : '');
    const fb = r.fmt(r.b) + (r.notes && r.notes[1] ? ` (${r.notes[1]})` : '');
    return [r.label, fa, fb, r.fmt(r.s), ratio(r.b, r.a), ratio(r.b, r.s)];
  });
  const head = ['scenario', 'C epmd', 'sdepmd', 'C sink', 'sdepmd/C epmd', 'sdepmd/sink'];
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
  const line = (c: string[]): string =>
    c.map((x, i) => (i === 0 ? x.padEnd(w[i] ?? 0) : x.padStart(w[i] ?? 0))).join(' | ');
  console.log('');
  console.log(line(head));
  console.log(w.map((n) => '-'.repeat(n)).join('-|-'));
  for (const c of cells) console.log(line(c));
  console.log('ratios: higher is better for rates, lower for latency, CPU, memory and start time');
  const load = results.meta.loadavg_start;
  if (load && (load[0] ?? 0) > os.cpus().length / 2) {
    console.log(
      `note: the machine was loaded (load average ${load.map((x) => x.toFixed(1)).join(' ')} at the start): compare within this run only`,
    );
  }
  if (FD_HARD < Math.max(...CFG.capN)) {
    console.log(
      `note: the fd hard limit here is ${FD_HARD} (no CAP_SYS_RESOURCE to raise it), so no daemon can hold more than ~${FD_HARD} registrations`,
    );
  }
  for (const t of TARGETS) if (t.missing) console.log(`note: ${t.label} n/a: ${t.missing}`);
  const floorStart = results.cold_start.node?.median_ms;
  const floorRss = results.rss.node;
  console.log(
    `Node's own floor (a bare net server, same node and NODE_OPTIONS, same run): start to first reply ${fmtMs(floorStart)}` +
      `, sdepmd ${ratio(results.cold_start.sdepmd?.median_ms, floorStart)} of it; RSS idle ${fmtKB(floorRss?.idle_kb)}` +
      ` (${fmtKB(floorRss?.idle_anon_kb)} anonymous), sdepmd ${ratio(results.rss.sdepmd?.idle_kb, floorRss?.idle_kb)} of it`,
  );

  // generator ceiling
  console.log('');
  console.log('load generator ceiling (trivial C sink server, same runs interleaved ABAB):');
  const cl = results.ceiling;
  const ceil: [string, Summary | undefined, Summary | undefined][] = [];
  for (const c of CFG.conc) ceil.push([`lookup c=${c}`, cl.lookups?.[`c${c}`], results.lookups[`c${c}`]?.epmd]);
  ceil.push([`NAMES (1 line)`, cl.names, undefined]);
  ceil.push([`register c=${CAP_CONC}`, cl.register, results.register[`c${CAP_CONC}`]?.epmd]);
  for (const [label, s, e] of ceil) {
    if (!s || s.rps === null) {
      console.log(`  ${label.padEnd(16)} n/a`);
      continue;
    }
    const pct = e && e.rps ? `; C epmd reached ${Math.round((100 * e.rps) / s.rps)}% of it` : '';
    console.log(
      `  ${label.padEnd(16)} ${fmtInt(s.rps).padStart(8)} req/s, loadgen CPU ${s.loadgen_cpu_pct}% of ${os.cpus().length * 100}%, sink CPU ${s.daemon_cpu_pct}%${pct}`,
    );
  }
}

function renderSvg(file: string): void {
  const W = 700,
    H = 400,
    ml = 70,
    mr = 160,
    mt = 40,
    mb = 50;
  const pw = W - ml - mr,
    ph = H - mt - mb;
  const series: { key: TargetKey; label: string; color: string; dash: string }[] = [
    { key: 'epmd', label: 'C epmd', color: '#1f77b4', dash: '' },
    { key: 'sdepmd', label: 'sdepmd', color: '#d62728', dash: '' },
    { key: 'sink', label: 'C sink (ceiling)', color: '#7f7f7f', dash: '6,4' },
  ];
  const xs = CFG.conc;
  const val = (k: TargetKey, c: number): number | null => results.lookups[`c${c}`]?.[k]?.rps ?? null;
  let ymax = 0;
  for (const s of series) for (const c of xs) ymax = Math.max(ymax, val(s.key, c) || 0);
  const step = niceStep(ymax || 1);
  ymax = Math.ceil((ymax || 1) / step) * step;
  const x0 = xs[0] ?? 1;
  const x1 = xs[xs.length - 1] ?? 1;
  const lx = (c: number): number => ml + (xs.length === 1 ? pw / 2 : (pw * Math.log2(c / x0)) / Math.log2(x1 / x0));
  const ly = (v: number): number => mt + ph - (ph * v) / ymax;
  const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const o: string[] = [];
  o.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
  );
  o.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  o.push(
    `<text x="${ml}" y="22" font-size="14" font-weight="bold">PORT_PLEASE2 lookups/s (fresh TCP connection each) vs concurrency</text>`,
  );
  for (let v = 0; v <= ymax + 1e-9; v += step) {
    o.push(`<line x1="${ml}" y1="${ly(v).toFixed(1)}" x2="${ml + pw}" y2="${ly(v).toFixed(1)}" stroke="#e5e5e5"/>`);
    o.push(
      `<text x="${ml - 6}" y="${(ly(v) + 4).toFixed(1)}" text-anchor="end">${Math.round(v).toLocaleString('en-US')}</text>`,
    );
  }
  for (const c of xs) {
    o.push(
      `<line x1="${lx(c).toFixed(1)}" y1="${mt + ph}" x2="${lx(c).toFixed(1)}" y2="${mt + ph + 5}" stroke="#000"/>`,
    );
    o.push(`<text x="${lx(c).toFixed(1)}" y="${mt + ph + 18}" text-anchor="middle">${c}</text>`);
  }
  o.push(`<line x1="${ml}" y1="${mt + ph}" x2="${ml + pw}" y2="${mt + ph}" stroke="#000"/>`);
  o.push(`<line x1="${ml}" y1="${mt}" x2="${ml}" y2="${mt + ph}" stroke="#000"/>`);
  o.push(`<text x="${ml + pw / 2}" y="${H - 12}" text-anchor="middle">concurrent connections (log scale)</text>`);
  o.push(`<text transform="translate(16 ${mt + ph / 2}) rotate(-90)" text-anchor="middle">requests/s</text>`);
  series.forEach((s, si) => {
    const pts = xs.flatMap((c): [number, number][] => {
      const v = val(s.key, c);
      return v === null ? [] : [[c, v]];
    });
    const ly0 = mt + 10 + si * 20;
    o.push(
      `<line x1="${ml + pw + 12}" y1="${ly0}" x2="${ml + pw + 36}" y2="${ly0}" stroke="${s.color}" stroke-width="2" stroke-dasharray="${s.dash}"/>`,
    );
    o.push(`<text x="${ml + pw + 40}" y="${ly0 + 4}">${esc(s.label)}${pts.length ? '' : ' (n/a)'}</text>`);
    if (!pts.length) return;
    o.push(
      `<polyline fill="none" stroke="${s.color}" stroke-width="2" stroke-dasharray="${s.dash}" points="${pts.map(([c, v]) => `${lx(c).toFixed(1)},${ly(v).toFixed(1)}`).join(' ')}"/>`,
    );
    for (const [c, v] of pts)
      o.push(
        `<circle cx="${lx(c).toFixed(1)}" cy="${ly(v).toFixed(1)}" r="3" fill="${s.color}"><title>${esc(s.label)} c=${c}: ${Math.round(v)}/s</title></circle>`,
      );
  });
  const m = results.meta;
  o.push(
    `<text x="${ml}" y="${mt - 6}" font-size="10" fill="#555">${esc(`${m.cpus} CPUs, ${m.kernel}, node ${m.node}, ${m.mode} mode, ${m.date}`)}</text>`,
  );
  o.push('</svg>');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, o.join('\n') + '\n');
}
function niceStep(max: number): number {
  const raw = max / 5;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * p) return m * p;
  return 10 * p;
}

// ---------------------------------------------------------------- main
async function main() {
  const tStart = Date.now();
  build();
  FD_HARD = fdHardLimit();
  let epmdVersion = null;
  try {
    epmdVersion = execFileSync('dpkg-query', ['-W', '-f=${Version}', 'erlang-base'], { encoding: 'utf8' });
  } catch {
    /* not Debian */
  }
  results.meta = {
    mode: SHORT ? 'short' : 'full',
    date: new Date().toISOString().slice(0, 19) + 'Z',
    cpus: os.cpus().length,
    cpu_model: os.cpus()[0]?.model ?? null,
    kernel: os.release(),
    node: process.version,
    sdepmd_node_options: NODE_OPTIONS,
    epmd: EPMD_BIN,
    erlang_base: epmdVersion,
    fd_hard_limit: FD_HARD,
    ephemeral_ports: (() => {
      try {
        return fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
      } catch {
        return null;
      }
    })(),
    loadavg_start: os.loadavg(),
    config: CFG,
  };
  log(
    `sdepmd bench (${results.meta.mode} mode): ${TARGETS.map((t) => t.label + (t.missing ? ' [n/a: ' + t.missing + ']' : '')).join(' vs ')}; fd hard limit ${FD_HARD}`,
  );
  if (FD_HARD < Math.max(...CFG.capN))
    log(
      `  note: RLIMIT_NOFILE hard limit ${FD_HARD} caps any daemon below ${Math.max(...CFG.capN)} registrations on this machine`,
    );

  const load1 = os.loadavg()[0] ?? 0;
  if (load1 > 1)
    log(`  note: load average is ${load1.toFixed(2)} before starting; other work on this machine adds noise`);
  await scenarioThroughput();
  await scenarioCapacity();
  await scenarioRss();
  await scenarioCold();

  results.meta.loadavg_end = os.loadavg();
  results.meta.total_secs = (Date.now() - tStart) / 1000;
  fs.writeFileSync(path.join(OUT, 'results.json'), JSON.stringify(results, null, 2) + '\n');
  const svg =
    SHORT && !flag('--chart') ? path.join(OUT, 'perf-lookups.svg') : path.join(ROOT, 'docs', 'perf-lookups.svg');
  renderSvg(svg);
  printTable();
  console.log('');
  console.log(
    `results: ${path.relative(ROOT, path.join(OUT, 'results.json'))}, chart: ${path.relative(ROOT, svg)}, ${results.meta.total_secs.toFixed(0)} s`,
  );
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  killAll();
  process.exit(1);
});
