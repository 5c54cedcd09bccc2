#!/usr/bin/env node
/**
 * A well-behaved EPMD client under load, run in its own process so that an attacker in the test process cannot skew
 * it: PORT_PLEASE2 lookups of NAME (each on a new connection, CONCURRENCY at a time) for DURATION_MS, plus, every
 * REGISTER_EVERY_MS, one node that registers, checks that it resolves, and unregisters.
 *
 *   node lookup-load.js PORT NAME EXPECTED_PORT DURATION_MS [CONCURRENCY=8] [REGISTER_EVERY_MS=250] [HOST=127.0.0.1]
 *
 * Prints one JSON line: {lookups, lookupErrors, registrations, registrationErrors, seconds, rate, maxLatencyMs,
 * errorSamples}. Stops by itself after DURATION_MS (in-flight requests time out after 5 s).
 */
'use strict';
const net = require('node:net');

const [port, name = '', expectedPort, durationMs, concurrency = '8', registerEveryMs = '250', host = '127.0.0.1'] =
  process.argv.slice(2);
const PORT = Number(port);
const DEADLINE = Date.now() + Number(durationMs);
const TIMEOUT_MS = 5000;

/** @param {Buffer} body */
function frame(body) {
  const out = Buffer.alloc(2 + body.length);
  out.writeUInt16BE(body.length, 0);
  body.copy(out, 2);
  return out;
}
const lookupReq = frame(Buffer.concat([Buffer.from('z'), Buffer.from(name)]));

/** @param {string} nodeName @param {number} nodePort */
function alive2(nodeName, nodePort) {
  const n = Buffer.from(nodeName);
  const body = Buffer.alloc(11 + n.length + 2);
  body[0] = 0x78;
  body.writeUInt16BE(nodePort, 1);
  body[3] = 77;
  body[4] = 0;
  body.writeUInt16BE(6, 5);
  body.writeUInt16BE(5, 7);
  body.writeUInt16BE(n.length, 9);
  n.copy(body, 11);
  body.writeUInt16BE(0, 11 + n.length);
  return frame(body);
}

/**
 * One request on a new connection; resolves with the reply once `enough(reply)` or on close.
 * @param {Buffer} request
 * @param {(reply: Buffer) => boolean} enough
 * @returns {Promise<{ reply: Buffer, socket: net.Socket }>}
 */
function exchange(request, enough = () => false, keepOpen = false) {
  return new Promise((resolve, reject) => {
    /** @type {Buffer[]} */
    const chunks = [];
    const s = net.connect({ host, port: PORT, noDelay: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('timeout'));
    }, TIMEOUT_MS);
    s.on('connect', () => s.write(request));
    s.on('data', (d) => {
      chunks.push(d);
      const reply = Buffer.concat(chunks);
      if (enough(reply)) {
        clearTimeout(timer);
        resolve({ reply, socket: s });
        if (!keepOpen) s.destroy();
      }
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ reply: Buffer.concat(chunks), socket: s });
    });
  });
}

const stats = {
  lookups: 0,
  lookupErrors: 0,
  registrations: 0,
  registrationErrors: 0,
  maxLatencyMs: 0,
  errorSamples: /** @type {string[]} */ ([]),
};
const fail = (/** @type {string} */ what, /** @type {unknown} */ e) => {
  if (stats.errorSamples.length < 5) stats.errorSamples.push(`${what}: ${e instanceof Error ? e.message : String(e)}`);
};

async function lookupLoop() {
  while (Date.now() < DEADLINE) {
    const t0 = Date.now();
    try {
      const { reply } = await exchange(lookupReq);
      if (reply.length < 4 || reply[0] !== 0x77 || reply[1] !== 0 || reply.readUInt16BE(2) !== Number(expectedPort)) {
        throw new Error(`bad reply ${reply.toString('hex')}`);
      }
      stats.lookups++;
      stats.maxLatencyMs = Math.max(stats.maxLatencyMs, Date.now() - t0);
    } catch (e) {
      stats.lookupErrors++;
      fail('lookup', e);
    }
  }
}

async function registerLoop() {
  let i = 0;
  while (Date.now() < DEADLINE) {
    const nodeName = `load_${process.pid}_${i++}`;
    try {
      const { reply, socket } = await exchange(alive2(nodeName, 20000 + (i % 1000)), (r) => r.length >= 6, true);
      if (reply.length < 6 || reply[0] !== 0x76 || reply[1] !== 0)
        throw new Error(`bad ALIVE2 reply ${reply.toString('hex')}`);
      const found = await exchange(frame(Buffer.concat([Buffer.from('z'), Buffer.from(nodeName)])));
      if (found.reply[1] !== 0) throw new Error(`registered ${nodeName} does not resolve`);
      socket.destroy();
      stats.registrations++;
    } catch (e) {
      stats.registrationErrors++;
      fail('register', e);
    }
    await new Promise((r) => setTimeout(r, Number(registerEveryMs)));
  }
}

const started = Date.now();
void Promise.all([...Array.from({ length: Number(concurrency) }, lookupLoop), registerLoop()]).then(() => {
  const seconds = (Date.now() - started) / 1000;
  process.stdout.write(`${JSON.stringify({ ...stats, seconds, rate: Math.round(stats.lookups / seconds) })}\n`);
});
