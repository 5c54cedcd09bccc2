/**
 * Helpers for systemd.e2e.test.ts: a small Node script run INSIDE the sandbox (there is no TS toolchain on the
 * sandbox's PATH that we want to depend on, but `node` is there, since sdepmd needs it), and parsers for its output.
 *
 * The script's path and text deliberately never contain the letters "e-p-m-d" in a row, so that its own process
 * never looks like an epmd in the process listing it produces.
 */

/** Where the probe script is written inside the sandbox. */
export const PROBE_PATH = '/root/systemd-e2e-probe.js';

/**
 * Modes:
 *   node PROBE names                 one NAMES_REQ; prints {"ms": connect->first reply byte, "text": reply after the port}
 *   node PROBE lookup NAME [COUNT]   COUNT PORT_PLEASE2_REQs; prints {"count", "found", "port"} of the last one
 *   node PROBE ps                    every process: {"pid","comm","argv","cgroup"} (JSON array)
 */
export const PROBE_SCRIPT = String.raw`'use strict';
const net = require('net');
const fs = require('fs');
const PORT = 4369;

function request(body) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    let first = 0n;
    const chunks = [];
    const s = net.connect(PORT, '127.0.0.1');
    s.setTimeout(30000, () => s.destroy(new Error('no reply within 30 s')));
    s.on('connect', () => {
      const h = Buffer.alloc(2);
      h.writeUInt16BE(body.length);
      s.write(Buffer.concat([h, body]));
    });
    s.on('data', (d) => {
      if (!first) first = process.hrtime.bigint();
      chunks.push(d);
    });
    s.on('error', reject);
    s.on('close', () => resolve({ ms: first ? Number(first - t0) / 1e6 : -1, reply: Buffer.concat(chunks) }));
  });
}

function cgroupOf(pid) {
  const lines = fs.readFileSync('/proc/' + pid + '/cgroup', 'utf8').split('\n');
  const line = lines.find((l) => l.includes(':name=systemd:')) || lines.find((l) => l.startsWith('0::')) || '';
  return line.slice(line.indexOf(':', line.indexOf(':') + 1) + 1);
}

async function main() {
  const [mode, arg, countArg] = process.argv.slice(2);
  if (mode === 'names') {
    const r = await request(Buffer.from('n'));
    if (r.reply.length < 4) throw new Error('short NAMES reply: ' + r.reply.toString('hex'));
    console.log(JSON.stringify({ ms: r.ms, port: r.reply.readUInt32BE(0), text: r.reply.subarray(4).toString('utf8') }));
  } else if (mode === 'lookup') {
    const count = Number(countArg || 1);
    let last = { found: false, port: 0 };
    for (let i = 0; i < count; i++) {
      const r = await request(Buffer.concat([Buffer.from('z'), Buffer.from(arg, 'utf8')]));
      if (r.reply[0] !== 0x77) throw new Error('bad PORT2 reply: ' + r.reply.toString('hex'));
      last = r.reply[1] === 0 ? { found: true, port: r.reply.readUInt16BE(2) } : { found: false, port: 0 };
    }
    console.log(JSON.stringify({ count, ...last }));
  } else if (mode === 'ps') {
    const out = [];
    for (const e of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      try {
        const comm = fs.readFileSync('/proc/' + e + '/comm', 'utf8').trim();
        const argv = fs.readFileSync('/proc/' + e + '/cmdline', 'utf8').split('\0').filter((a) => a !== '');
        out.push({ pid: Number(e), comm, argv, cgroup: cgroupOf(e) });
      } catch (err) {
        /* exited meanwhile */
      }
    }
    console.log(JSON.stringify(out));
  } else {
    throw new Error('usage: names | lookup NAME [COUNT] | ps');
  }
}
main().catch((e) => {
  console.error(String(e && e.message ? e.message : e));
  process.exit(1);
});
`;

export interface ProcInfo {
  pid: number;
  comm: string;
  argv: string[];
  cgroup: string;
}

/** True for anything that is an epmd: the C epmd (`epmd`, `epmd -daemon`, any path) or sdepmd (`node .../sdepmd`). */
export function looksLikeEpmd(p: ProcInfo): boolean {
  if (p.comm === 'epmd' || p.comm === 'sdepmd') return true;
  // Path-like arguments ending in epmd or sdepmd (argv[0] of the C epmd; argv[1] of `node /usr/local/bin/sdepmd`).
  // An Erlang VM's "-start_epmd" flag does not match.
  return p.argv.slice(0, 2).some((a) => /(^|\/)s?d?epmd$/.test(a));
}

export interface JournalEntry {
  PRIORITY?: string;
  MESSAGE?: string | number[];
  SYSLOG_IDENTIFIER?: string;
  _PID?: string;
  __CURSOR?: string;
  [k: string]: unknown;
}

/** Parses `journalctl -o json` output (one JSON object per line). */
export function parseJournalJson(text: string): JournalEntry[] {
  const out: JournalEntry[] = [];
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (!t.startsWith('{')) continue;
    try {
      out.push(JSON.parse(t) as JournalEntry);
    } catch {
      /* a truncated line */
    }
  }
  return out;
}

export function messageOf(e: JournalEntry): string {
  const m = e.MESSAGE;
  if (typeof m === 'string') return m;
  if (Array.isArray(m)) return Buffer.from(m).toString('utf8');
  return '';
}
