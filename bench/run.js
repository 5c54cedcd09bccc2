#!/usr/bin/env node
'use strict';
/*
 * bench/run.js - compare sdepmd against OTP's C epmd in one run.
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
 * See bench/README.md for what each scenario measures.
 */
const { spawn, execFileSync } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

const ROOT = path.join(__dirname, '..');
const OUT = path.join(__dirname, 'out');
const LOADGEN_SRC = path.join(__dirname, 'loadgen.c');
const LOADGEN = path.join(OUT, 'loadgen');
const HOST = '127.0.0.1';

// ---------------------------------------------------------------- options
const argv = process.argv.slice(2);
const flag = (f) => argv.includes(f);
const opt = (f, d) => {
  const i = argv.indexOf(f);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : d;
};
if (flag('-h') || flag('--help')) {
  console.log('usage: node bench/run.js [--short] [--chart] [--epmd PATH] [--sdepmd PATH] [--only epmd|sdepmd]');
  process.exit(0);
}
const SHORT = flag('--short');
const CFG = SHORT
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
const PER_SOURCE = 15000; // held connections per source address 127.0.0.x (the ephemeral-port budget)
const ONLY = opt('--only', null);
const SDEPMD = path.resolve(opt('--sdepmd', path.join(ROOT, 'bin', 'sdepmd')));

// ---------------------------------------------------------------- utilities
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const log = (...a) => process.stderr.write(a.join(' ') + '\n');

const children = new Set();
function track(cp) {
  children.add(cp);
  cp.on('exit', () => children.delete(cp));
  return cp;
}
function killAll() {
  for (const cp of children) {
    try {
      cp.kill('SIGKILL');
    } catch (_) {
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

function waitExit(cp, ms) {
  if (cp.exitCode !== null || cp.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    cp.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}
async function stop(cp) {
  if (!cp || cp.exitCode !== null || cp.signalCode !== null) return;
  try {
    cp.kill('SIGTERM');
  } catch (_) {
    return;
  }
  if (!(await waitExit(cp, 2000))) {
    try {
      cp.kill('SIGKILL');
    } catch (_) {
      /* gone */
    }
    await waitExit(cp, 2000);
  }
}
const alive = (cp) => cp && cp.exitCode === null && cp.signalCode === null;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '0.0.0.0', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function fdHardLimit() {
  try {
    const v = execFileSync('bash', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
    return v === 'unlimited' ? 1048576 : parseInt(v, 10);
  } catch (_) {
    return 1024;
  }
}

// /proc helpers: sum over the process and its descendants (in case a daemon forks workers)
function procTree(pid) {
  const kids = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = parseInt(st.slice(st.lastIndexOf(')') + 2).split(' ')[1], 10);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(parseInt(d, 10));
    } catch (_) {
      /* raced */
    }
  }
  const out = [];
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop();
    out.push(p);
    for (const k of kids.get(p) || []) stack.push(k);
  }
  return out;
}
function rssKB(pid) {
  let total = 0;
  let any = false;
  for (const p of procTree(pid)) {
    try {
      const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) {
        total += parseInt(m[1], 10);
        any = true;
      }
    } catch (_) {
      /* raced */
    }
  }
  return any ? total : null;
}
let CLK_TCK = 100;
try {
  CLK_TCK = parseInt(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }), 10) || 100;
} catch (_) {
  /* default */
}
function cpuSecs(pid) {
  let t = 0;
  for (const p of procTree(pid)) {
    try {
      const st = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      t += (parseInt(f[11], 10) + parseInt(f[12], 10)) / CLK_TCK; // utime, stime
    } catch (_) {
      /* raced */
    }
  }
  return t;
}

// ---------------------------------------------------------------- build
function build() {
  fs.mkdirSync(OUT, { recursive: true });
  const stale = !fs.existsSync(LOADGEN) || fs.statSync(LOADGEN).mtimeMs < fs.statSync(LOADGEN_SRC).mtimeMs;
  if (stale) {
    log('building bench/out/loadgen ...');
    execFileSync('cc', ['-O2', '-pthread', '-Wall', '-o', LOADGEN, LOADGEN_SRC], { stdio: 'inherit' });
  }
}

// ---------------------------------------------------------------- targets
function findEpmd() {
  const cands = [opt('--epmd', null), process.env.EPMD, '/usr/bin/epmd'].filter(Boolean);
  for (const c of cands) if (fs.existsSync(c)) return c;
  try {
    return execFileSync('bash', ['-c', 'command -v epmd'], { encoding: 'utf8' }).trim() || null;
  } catch (_) {
    return null;
  }
}

const EPMD_BIN = findEpmd();
const TARGETS = [
  {
    key: 'epmd',
    label: 'C epmd',
    missing: EPMD_BIN ? null : 'epmd binary not found',
    argv: (port) => [EPMD_BIN, '-port', String(port)],
  },
  {
    key: 'sdepmd',
    label: 'sdepmd',
    missing: fs.existsSync(SDEPMD) ? null : `${path.relative(ROOT, SDEPMD)} not found`,
    argv: (port) => [process.execPath, SDEPMD, '-port', String(port)],
  },
].filter((t) => !ONLY || t.key === ONLY);
// the ceiling reference: a trivial C server, measured under the same conditions (ABAB...)
const SINK = {
  key: 'sink',
  label: 'sink',
  missing: null,
  isSink: true,
  argv: (port) => [LOADGEN, 'sink', String(port), '1'],
};

// Ask the daemon for NAMES; resolves true if it answered with at least the 4-byte port.
function probe(port, timeoutMs = 500) {
  return new Promise((resolve) => {
    const s = net.connect({ host: HOST, port });
    let n = 0;
    const done = (ok) => {
      clearTimeout(t);
      s.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), timeoutMs);
    s.on('connect', () => s.write(Buffer.from([0, 1, 0x6e])));
    s.on('data', (b) => {
      n += b.length;
    });
    s.on('end', () => done(n >= 4));
    s.on('error', () => done(false));
  });
}

function spawnDaemon(t, port) {
  const args = t.argv(port);
  // raise the fd limit as far as we may (the hard limit may be below 1048576 without CAP_SYS_RESOURCE)
  const sh = 'ulimit -n 1048576 2>/dev/null || ulimit -n hard 2>/dev/null; exec "$0" "$@"';
  // the sink runs until its stdin closes
  const cp = track(
    spawn('bash', ['-c', sh, ...args], { stdio: [t.isSink ? 'pipe' : 'ignore', 'ignore', 'pipe'], cwd: ROOT }),
  );
  cp.stderrTail = '';
  cp.stderr.on('data', (b) => {
    cp.stderrTail = (cp.stderrTail + b.toString()).slice(-2000);
  });
  return cp;
}

// Start a daemon on a fresh port; resolves {proc, port, pid} or {error}.
async function startDaemon(t, readyMs = 15000) {
  if (t.missing) return { error: t.missing };
  if (t.isSink) return startSink();
  let lastErr = 'did not start';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const proc = spawnDaemon(t, port);
    const t0 = Date.now();
    while (Date.now() - t0 < readyMs) {
      if (!alive(proc)) break;
      if (await probe(port)) return { proc, port, pid: proc.pid, target: t };
      await sleep(20);
    }
    const hung = alive(proc);
    lastErr = hung
      ? `no reply within ${readyMs} ms`
      : `exited (code ${proc.exitCode}, signal ${proc.signalCode}) ${proc.stderrTail.trim().split('\n').pop() || ''}`.trim();
    await stop(proc);
    if (hung) break; // a busy port makes a daemon exit, so only an exit is worth retrying on another port
  }
  // do not wait for a broken daemon again in later scenarios
  t.missing = `failed to start: ${lastErr}`;
  return { error: t.missing };
}

async function startSink() {
  const proc = track(spawn(LOADGEN, ['sink', '0', '1'], { stdio: ['pipe', 'pipe', 'inherit'] }));
  const line = await firstLine(proc, 5000);
  if (!line) {
    await stop(proc);
    return { error: 'sink did not start' };
  }
  const port = JSON.parse(line).port;
  return { proc, port, pid: proc.pid, target: SINK };
}

function firstLine(proc, ms) {
  return new Promise((resolve) => {
    let buf = '';
    const t = setTimeout(() => resolve(null), ms);
    proc.stdout.on('data', (b) => {
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
function loadgen(args, timeoutMs) {
  return new Promise((resolve) => {
    const cp = track(spawn(LOADGEN, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    let err = '';
    cp.stdout.on('data', (b) => {
      out += b;
    });
    cp.stderr.on('data', (b) => {
      err += b;
    });
    const t = setTimeout(() => cp.kill('SIGKILL'), timeoutMs);
    cp.on('exit', (code) => {
      clearTimeout(t);
      const line = out.trim().split('\n').pop();
      try {
        resolve(JSON.parse(line));
      } catch (_) {
        resolve({ error: `loadgen exit ${code}: ${err.trim().slice(-300)}` });
      }
    });
  });
}

// One measured load run against a running daemon d, with daemon CPU accounting.
async function loadRun(d, mode, conc, extra = {}) {
  if (!d || d.error) return { error: d ? d.error : 'not started' };
  if (!alive(d.proc)) return { error: 'daemon not running' };
  const secs = extra.secs || CFG.secs;
  const warm = extra.warm === undefined ? CFG.warm : extra.warm;
  const args = ['-w', String(warm), '-T', String(extra.timeoutMs || 2000), mode, HOST, String(d.port)];
  if (mode === 'lookup') args.push(extra.name);
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
  constructor(d) {
    this.d = d;
    this.procs = [];
    this.held = 0;
    this.failed = 0;
    this.capped = false;
    this.octetUse = new Map(); // connections per source address 127.0.0.x (ephemeral-port budget)
    this.seq = 0;
    this.chunkMax = Math.max(100, FD_HARD - 200);
  }
  // A source address 127.0.0.x with room left (at most PER_SOURCE connections each, for the ephemeral ports),
  // and how much room; null when every address is full.
  pickOctet() {
    for (let o = 1; o < 255; o++) {
      const used = this.octetUse.get(o) || 0;
      if (used < PER_SOURCE) return { octet: o, room: PER_SOURCE - used };
    }
    return null;
  }
  // register n more names; resolves with the first name registered (or null)
  async add(n, prefix) {
    let first = null;
    while (n > 0 && !this.capped) {
      if (!alive(this.d.proc)) {
        this.capped = true;
        this.error = 'daemon exited';
        break;
      }
      const source = this.pickOctet();
      if (!source) {
        this.capped = true;
        this.error = 'no source address left';
        break;
      }
      const k = Math.min(n, this.chunkMax, source.room);
      const octet = source.octet;
      this.octetUse.set(octet, (this.octetUse.get(octet) || 0) + k);
      const pfx = `${prefix}${this.seq++}_`;
      const cp = track(
        spawn(LOADGEN, ['-a', String(octet), 'hold', HOST, String(this.d.port), String(k), pfx], {
          stdio: ['pipe', 'pipe', 'ignore'],
        }),
      );
      this.procs.push(cp);
      const line = await firstLine(cp, 300000);
      let r;
      try {
        r = JSON.parse(line);
      } catch (_) {
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
  async release() {
    for (const cp of this.procs) {
      try {
        cp.stdin.end();
      } catch (_) {
        /* gone */
      }
    }
    await Promise.all(this.procs.map((cp) => waitExit(cp, 3000).then((ok) => (ok ? null : stop(cp)))));
    this.procs = [];
  }
}

// ---------------------------------------------------------------- scenarios
const results = {
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

function summarize(runs) {
  const ok = runs.filter((r) => r && !r.error && r.ok > 0);
  if (!ok.length) {
    const e = runs.find((r) => r && (r.error || r.fail));
    return { rps: null, error: e ? e.error || `all ${e.fail} requests failed (${e.first_error})` : 'no runs', runs };
  }
  return {
    rps: median(ok.map((r) => r.rps)),
    p50_us: median(ok.map((r) => r.p50_us)),
    p99_us: median(ok.map((r) => r.p99_us)),
    fail: runs.reduce((a, r) => a + (r && r.fail ? r.fail : 0), 0),
    loadgen_cpu_pct: median(ok.map((r) => r.cpu_pct)),
    daemon_cpu_pct: median(ok.map((r) => r.daemon_cpu_pct)),
    daemon_cpu_us_per_req: median(ok.map((r) => r.daemon_cpu_us_per_req)),
    runs,
  };
}

// Start every target (daemons + sink), run setup, then ABAB over the points, then tear down.
async function group(name, targets, setup, points) {
  const ds = [];
  for (const t of targets) {
    const d = await startDaemon(t);
    if (d.error) log(`  ${t.label}: n/a (${d.error})`);
    ds.push(d);
  }
  const holders = [];
  const ctx = [];
  for (const d of ds) {
    const h = d.error ? null : new Holder(d);
    if (h) holders.push(h);
    ctx.push(d.error ? null : await setup(d, h));
  }
  const out = {};
  for (const p of points) {
    if (p.before) {
      for (let i = 0; i < ds.length; i++)
        if (!ds[i].error)
          await p.before(
            ds[i],
            holders.find((h) => h.d === ds[i]),
            ctx[i],
          );
    }
    const runs = ds.map(() => []);
    for (let rep = 0; rep < CFG.reps; rep++) {
      for (let i = 0; i < ds.length; i++) {
        runs[i].push(await p.run(ds[i], ctx[i]));
      }
    }
    out[p.key] = {};
    ds.forEach((d, i) => {
      const s = summarize(runs[i]);
      if (d.error) s.error = d.error;
      out[p.key][targets[i].key] = s;
      log(
        `  ${name} ${p.key} ${targets[i].label}: ${s.rps === null ? 'n/a (' + s.error + ')' : Math.round(s.rps) + '/s p50 ' + s.p50_us + 'us p99 ' + s.p99_us + 'us'}`,
      );
    });
  }
  for (const h of holders) await h.release();
  for (const d of ds) if (!d.error) await stop(d.proc);
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
    CFG.conc.map((c) => ({ key: `c${c}`, run: (d, ctx) => loadRun(d, 'lookup', c, { name: ctx && ctx.name }) })),
  );

  log('NAMES ...');
  const sizes = CFG.names;
  results.names = await group(
    'names',
    targets,
    async () => ({ n: 0 }),
    sizes.map((n) => ({
      key: `n${n}`,
      before: async (d, h, ctx) => {
        if (!d.target.isSink && h) {
          await h.add(n - ctx.n, `nm${n}x`);
          ctx.n = n;
        }
      },
      run: (d) => loadRun(d, 'names', CAP_CONC),
    })),
  );

  log('register/unregister cycles ...');
  results.register = await group('register', targets, async () => ({}), [
    { key: `c${CAP_CONC}`, run: (d) => loadRun(d, 'register', CAP_CONC) },
  ]);

  results.ceiling = {
    lookups: Object.fromEntries(CFG.conc.map((c) => [`c${c}`, results.lookups[`c${c}`].sink])),
    names: results.names[`n${sizes[0]}`].sink,
    register: results.register[`c${CAP_CONC}`].sink,
  };
}

// capacity: lookup rate as the table fills, per daemon, fresh daemon
async function scenarioCapacity() {
  log('capacity ...');
  for (const t of TARGETS) {
    const res = { points: {} };
    results.capacity[t.key] = res;
    const d = await startDaemon(t);
    if (d.error) {
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
      const p = {};
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
  for (const t of [...TARGETS, SINK]) {
    const r = {};
    results.rss[t.key] = r;
    const d = await startDaemon(t);
    if (d.error) {
      r.error = d.error;
      continue;
    }
    await sleep(300);
    r.idle_kb = rssKB(d.pid);
    const h = new Holder(d);
    await h.add(CFG.rssN, 'rss');
    await sleep(500);
    r.held = h.held;
    r.loaded_kb = alive(d.proc) ? rssKB(d.pid) : null;
    if (h.capped) r.capped = h.error;
    r.per_reg_bytes = r.loaded_kb !== null && r.held > 0 ? ((r.loaded_kb - r.idle_kb) * 1024) / r.held : null;
    await h.release();
    await sleep(1000);
    r.after_kb = alive(d.proc) ? rssKB(d.pid) : null;
    log(
      `  ${t.label}: idle ${r.idle_kb} kB, ${r.held} regs ${r.loaded_kb} kB, ${r.per_reg_bytes === null ? 'n/a' : Math.round(r.per_reg_bytes)} B/reg, after they unregister ${r.after_kb} kB`,
    );
    await stop(d.proc);
  }
}

// cold start: spawn -> first successful NAMES reply, alternating targets
async function scenarioCold() {
  log('cold start ...');
  const targets = [...TARGETS, SINK];
  const samples = Object.fromEntries(targets.map((t) => [t.key, []]));
  const errors = {};
  for (let rep = 0; rep < CFG.coldReps; rep++) {
    for (const t of targets) {
      if (t.missing) {
        errors[t.key] = t.missing;
        continue;
      }
      const port = await freePort();
      const t0 = process.hrtime.bigint();
      const proc = spawnDaemon(t, port);
      let ms = null;
      while (alive(proc) && Number(process.hrtime.bigint() - t0) / 1e6 < 15000) {
        if (await probe(port, 1000)) {
          ms = Number(process.hrtime.bigint() - t0) / 1e6;
          break;
        }
        await sleep(1);
      }
      if (ms === null)
        errors[t.key] = alive(proc)
          ? 'no reply in 15 s'
          : `exited: ${proc.stderrTail.trim().split('\n').pop() || proc.exitCode}`;
      else samples[t.key].push(ms);
      await stop(proc);
    }
  }
  for (const t of targets) {
    results.cold_start[t.key] = { median_ms: median(samples[t.key]), samples_ms: samples[t.key], error: errors[t.key] };
    log(`  ${t.label}: ${median(samples[t.key]) === null ? 'n/a' : median(samples[t.key]).toFixed(1) + ' ms'}`);
  }
}

// ---------------------------------------------------------------- report
const fmtInt = (v) => (v === null || v === undefined ? 'n/a' : Math.round(v).toLocaleString('en-US'));
const fmtMs = (v) => (v === null || v === undefined ? 'n/a' : `${v.toFixed(1)} ms`);
const fmtUs = (v) => (v === null || v === undefined ? 'n/a' : `${Math.round(v)} us`);
const fmtKB = (v) => (v === null || v === undefined ? 'n/a' : `${(v / 1024).toFixed(1)} MiB`);

function rows() {
  const R = [];
  const g = (obj, k) => (obj && obj[k] ? obj[k] : {});
  // one row: the value for each of C epmd, sdepmd and the sink (null where not measured)
  const row = (label, fmt, extractor, notes) => {
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
    results.capacity[k] && results.capacity[k].empty ? results.capacity[k].empty.rps : null,
  );
  for (const N of CFG.capN) {
    const pt = (k) => (results.capacity[k] && results.capacity[k].points ? results.capacity[k].points[N] : null);
    row(
      `capacity N=${N.toLocaleString('en-US')}: held`,
      fmtInt,
      (k) => (pt(k) ? (pt(k).held ?? null) : null),
      ['epmd', 'sdepmd'].map((k) => {
        const p = pt(k);
        return p && (p.capped ? 'CAPPED' : p.skipped ? p.skipped : '');
      }),
    );
    row(
      `  lookup req/s at N (vs empty)`,
      fmtInt,
      (k) => (pt(k) && pt(k).lookup ? pt(k).lookup.rps : null),
      ['epmd', 'sdepmd'].map((k) => {
        const p = pt(k);
        return p && p.vs_empty !== null && p.vs_empty !== undefined ? `${Math.round(p.vs_empty * 100)}%` : '';
      }),
    );
  }
  const rss = (k) => results.rss[k] || {};
  row('RSS idle', fmtKB, (k) => rss(k).idle_kb ?? null);
  row(
    `RSS with ${CFG.rssN.toLocaleString('en-US')} registrations`,
    fmtKB,
    (k) => rss(k).loaded_kb ?? null,
    ['epmd', 'sdepmd'].map((k) =>
      rss(k).held !== undefined && rss(k).held < CFG.rssN ? `only ${rss(k).held} held` : '',
    ),
  );
  row('RSS once they have unregistered', fmtKB, (k) => rss(k).after_kb ?? null);
  row('bytes per registration', fmtInt, (k) => rss(k).per_reg_bytes ?? null);
  row('start to first reply (median)', fmtMs, (k) => (results.cold_start[k] ? results.cold_start[k].median_ms : null));
  return R;
}

const ratio = (x, y) => (typeof x === 'number' && typeof y === 'number' && y > 0 ? `${(x / y).toFixed(2)}x` : 'n/a');

function printTable() {
  const R = rows();
  const cells = R.map((r) => {
    const fa = r.fmt(r.a) + (r.notes && r.notes[0] ? ` (${r.notes[0]})` : '');
    const fb = r.fmt(r.b) + (r.notes && r.notes[1] ? ` (${r.notes[1]})` : '');
    return [r.label, fa, fb, r.fmt(r.s), ratio(r.b, r.a), ratio(r.b, r.s)];
  });
  const head = ['scenario', 'C epmd', 'sdepmd', 'C sink', 'sdepmd/C epmd', 'sdepmd/sink'];
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c) => c.map((x, i) => (i === 0 ? x.padEnd(w[i]) : x.padStart(w[i]))).join(' | ');
  console.log('');
  console.log(line(head));
  console.log(w.map((n) => '-'.repeat(n)).join('-|-'));
  for (const c of cells) console.log(line(c));
  console.log('ratios: higher is better for rates, lower for latency, CPU, memory and start time');
  const load = results.meta.loadavg_start;
  if (load && load[0] > os.cpus().length / 2) {
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

  // generator ceiling
  console.log('');
  console.log('load generator ceiling (trivial C sink server, same runs interleaved ABAB):');
  const cl = results.ceiling || {};
  const ceil = [];
  for (const c of CFG.conc) {
    const s = cl.lookups && cl.lookups[`c${c}`];
    const e = results.lookups[`c${c}`] && results.lookups[`c${c}`].epmd;
    ceil.push([`lookup c=${c}`, s, e]);
  }
  ceil.push([`NAMES (1 line)`, cl.names, null]);
  ceil.push([
    `register c=${CAP_CONC}`,
    cl.register,
    results.register[`c${CAP_CONC}`] && results.register[`c${CAP_CONC}`].epmd,
  ]);
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

function renderSvg(file) {
  const W = 700,
    H = 400,
    ml = 70,
    mr = 160,
    mt = 40,
    mb = 50;
  const pw = W - ml - mr,
    ph = H - mt - mb;
  const series = [
    { key: 'epmd', label: 'C epmd', color: '#1f77b4', dash: '' },
    { key: 'sdepmd', label: 'sdepmd', color: '#d62728', dash: '' },
    { key: 'sink', label: 'C sink (ceiling)', color: '#7f7f7f', dash: '6,4' },
  ];
  const xs = CFG.conc;
  const val = (k, c) => {
    const p = results.lookups[`c${c}`];
    return p && p[k] && p[k].rps !== null ? p[k].rps : null;
  };
  let ymax = 0;
  for (const s of series) for (const c of xs) ymax = Math.max(ymax, val(s.key, c) || 0);
  const step = niceStep(ymax || 1);
  ymax = Math.ceil((ymax || 1) / step) * step;
  const lx = (c) =>
    ml + (xs.length === 1 ? pw / 2 : (pw * Math.log2(c / xs[0])) / Math.log2(xs[xs.length - 1] / xs[0]));
  const ly = (v) => mt + ph - (ph * v) / ymax;
  const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const o = [];
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
    const pts = xs.map((c) => [c, val(s.key, c)]).filter(([, v]) => v !== null);
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
function niceStep(max) {
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
  } catch (_) {
    /* not Debian */
  }
  results.meta = {
    mode: SHORT ? 'short' : 'full',
    date: new Date().toISOString().slice(0, 19) + 'Z',
    cpus: os.cpus().length,
    cpu_model: os.cpus()[0] ? os.cpus()[0].model : null,
    kernel: os.release(),
    node: process.version,
    epmd: EPMD_BIN,
    erlang_base: epmdVersion,
    fd_hard_limit: FD_HARD,
    ephemeral_ports: (() => {
      try {
        return fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
      } catch (_) {
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

  if (os.loadavg()[0] > 1)
    log(`  note: load average is ${os.loadavg()[0].toFixed(2)} before starting; other work on this machine adds noise`);
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

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  killAll();
  process.exit(1);
});
