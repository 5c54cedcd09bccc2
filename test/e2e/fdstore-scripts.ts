/**
 * Scripts for fdstore.e2e.test.ts, run INSIDE the systemd sandbox with the node binary only (node core modules).
 * Like systemd-e2e-probe.ts, their paths and texts avoid the letters "e-p-m-d" in a row.
 */

/** A raw-protocol client that registers once and never re-registers, as an old node would. */
export const RAW_PATH = '/root/fdstore-raw.js';

/**
 *   node RAW NAME PORT HIGHEST STATEFILE
 * Registers NAME (ALIVE2_REQ, lowest version 5, highest HIGHEST) and keeps the connection open for ever. Every event
 * is appended to STATEFILE as a JSON line: {"ev":"connect","localPort"}, {"ev":"reply","hex","result","creation"},
 * {"ev":"data"} (anything after the reply), {"ev":"error"}, {"ev":"CLOSED"} (then it exits 3).
 */
export const RAW_SCRIPT = String.raw`'use strict';
const net = require('net');
const fs = require('fs');
const [name, portArg, hiArg, stateFile] = process.argv.slice(2);
const hi = Number(hiArg);
const log = (o) => {
  const line = JSON.stringify({ t: Date.now(), ...o });
  fs.appendFileSync(stateFile, line + '\n');
  console.log(line);
};
const nameBuf = Buffer.from(name, 'utf8');
const body = Buffer.alloc(1 + 2 + 1 + 1 + 2 + 2 + 2 + nameBuf.length + 2);
let o = 0;
o = body.writeUInt8(0x78, o);
o = body.writeUInt16BE(Number(portArg), o);
o = body.writeUInt8(77, o);
o = body.writeUInt8(0, o);
o = body.writeUInt16BE(hi, o);
o = body.writeUInt16BE(5, o);
o = body.writeUInt16BE(nameBuf.length, o);
o += nameBuf.copy(body, o);
body.writeUInt16BE(0, o);
const head = Buffer.alloc(2);
head.writeUInt16BE(body.length);
let replied = false;
const s = net.connect(4369, '127.0.0.1');
s.on('connect', () => {
  log({ ev: 'connect', localPort: s.localPort });
  s.write(Buffer.concat([head, body]));
});
s.on('data', (d) => {
  if (replied) return log({ ev: 'data', hex: d.toString('hex') });
  replied = true;
  const tag = String.fromCharCode(d[0]);
  const creation = tag === 'v' ? d.readUInt32BE(2) : tag === 'y' ? d.readUInt16BE(2) : -1;
  log({ ev: 'reply', hex: d.toString('hex'), tag, result: d[1], creation });
});
s.on('error', (e) => log({ ev: 'error', message: e.message }));
s.on('close', () => {
  log({ ev: 'CLOSED' });
  process.exit(3);
});
// Never writes again, never re-registers.
setInterval(() => {}, 1 << 30);
`;

/** The lookup hammer. */
export const HAMMER_PATH = '/root/fdstore-hammer.js';

/**
 *   node HAMMER STOPFILE NAME...
 * PORT_PLEASE2 lookups in a tight loop, a fresh connection each, round robin over NAMEs, until STOPFILE exists.
 * A NAME written "?name" may be absent: "not found" then counts as an answer (only whether epmd answers matters).
 * Prints one JSON object: ok, failed (connection errors or timeouts), notFound (a listed name answered "not found"),
 * maxGapMs (longest time between two successive successful replies), worstMs (slowest successful lookup), the
 * first failures' texts, and the time of the first and last failure relative to the start.
 */
export const HAMMER_SCRIPT = String.raw`'use strict';
const net = require('net');
const fs = require('fs');
const [stopFile, ...names] = process.argv.slice(2);
const now = () => Number(process.hrtime.bigint()) / 1e6;

function lookup(name) {
  return new Promise((resolve) => {
    const t0 = now();
    const chunks = [];
    let done = false;
    const finish = (r) => {
      if (done) return;
      done = true;
      s.destroy();
      resolve({ ...r, ms: now() - t0 });
    };
    const s = net.connect(4369, '127.0.0.1');
    s.setTimeout(15000, () => finish({ kind: 'failed', why: 'timeout' }));
    s.on('connect', () => {
      const n = Buffer.from(name, 'utf8');
      const h = Buffer.alloc(3);
      h.writeUInt16BE(n.length + 1);
      h.writeUInt8(0x7a, 2);
      s.write(Buffer.concat([h, n]));
    });
    s.on('data', (d) => chunks.push(d));
    s.on('error', (e) => finish({ kind: 'failed', why: e.code || e.message }));
    s.on('close', () => {
      const r = Buffer.concat(chunks);
      if (r.length >= 2 && r[0] === 0x77 && r[1] === 0 && r.length >= 4) finish({ kind: 'ok', port: r.readUInt16BE(2) });
      else if (r.length === 2 && r[0] === 0x77 && r[1] === 1) finish({ kind: 'notFound', why: 'not found: ' + name });
      else finish({ kind: 'failed', why: 'reply ' + r.toString('hex') });
    });
  });
}

async function main() {
  const start = now();
  const out = { ok: 0, failed: 0, notFound: 0, maxGapMs: 0, gapAt: 0, worstMs: 0, firstFailAt: -1, lastFailAt: -1, whys: {} };
  let lastOk = start;
  let i = 0;
  while (!fs.existsSync(stopFile)) {
    const listed = names[i++ % names.length];
    const mayBeAbsent = listed.startsWith('?');
    const r = await lookup(mayBeAbsent ? listed.slice(1) : listed);
    if (mayBeAbsent && r.kind === 'notFound') r.kind = 'ok';
    const t = now();
    if (r.kind === 'ok') {
      out.ok++;
      if (t - lastOk > out.maxGapMs) {
        out.maxGapMs = t - lastOk;
        out.gapAt = lastOk - start;
      }
      lastOk = t;
      out.worstMs = Math.max(out.worstMs, r.ms);
    } else {
      out[r.kind]++;
      if (out.firstFailAt < 0) out.firstFailAt = t - start;
      out.lastFailAt = t - start;
      out.whys[r.why] = (out.whys[r.why] || 0) + 1;
    }
  }
  out.ms = now() - start;
  for (const k of ['maxGapMs', 'gapAt', 'worstMs', 'firstFailAt', 'lastFailAt', 'ms']) out[k] = Math.round(out[k] * 10) / 10;
  console.log(JSON.stringify(out));
}
main();
`;

export interface HammerResult {
  ok: number;
  failed: number;
  notFound: number;
  maxGapMs: number;
  gapAt: number;
  worstMs: number;
  firstFailAt: number;
  lastFailAt: number;
  whys: Record<string, number>;
  ms: number;
}

export interface RawEvent {
  t: number;
  ev: 'connect' | 'reply' | 'data' | 'error' | 'CLOSED';
  localPort?: number;
  hex?: string;
  tag?: string;
  result?: number;
  creation?: number;
  message?: string;
}

export function parseRawState(text: string): RawEvent[] {
  return text
    .split('\n')
    .filter((l) => l.trim().startsWith('{'))
    .map((l) => JSON.parse(l) as RawEvent);
}
