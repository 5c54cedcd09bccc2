#!/usr/bin/env node
/**
 * A tiny EPMD client run inside a network namespace (`ip netns exec NS node ns-client.js ...`), since a Node test
 * process cannot enter a namespace itself. Prints one JSON line and exits (every mode is bounded in time).
 *
 *   probe HOST PORT HEX_REQUEST [LOCAL_ADDRESS|-] [WAIT_MS=1500]
 *       -> {"reply":"<hex>","ended":"closed"|"open"|"refused"|"error","error":...}
 *   hold HOST PORT HEX_REQUEST
 *       -> prints {"reply":"<hex>"} once 2+ bytes arrive, then keeps the connection until stdin closes
 *   flood HOST PORT N HOLD_MS
 *       -> opens N idle connections, and after HOLD_MS reports {"opened":N,"closedByServer":K}
 */
'use strict';
const net = require('node:net');

const [mode, host, portText, arg = '', arg2, arg3] = process.argv.slice(2);
const port = Number(portText);
const out = (/** @type {Record<string, unknown>} */ o) => process.stdout.write(`${JSON.stringify(o)}\n`);

if (mode === 'probe') {
  const request = Buffer.from(arg, 'hex');
  const localAddress = arg2 && arg2 !== '-' ? arg2 : undefined;
  const waitMs = Number(arg3 ?? 1500);
  /** @type {Buffer[]} */
  const chunks = [];
  let done = false;
  const finish = (/** @type {string} */ ended, /** @type {string | undefined} */ error = undefined) => {
    if (done) return;
    done = true;
    socket.destroy();
    out({ reply: Buffer.concat(chunks).toString('hex'), ended, ...(error ? { error } : {}) });
    process.exit(0);
  };
  const socket = net.connect({ host, port, localAddress }, () => {
    socket.write(request);
    setTimeout(() => finish('open'), waitMs);
  });
  socket.on('data', (d) => chunks.push(d));
  socket.on('close', () => finish('closed'));
  socket.on('error', (/** @type {NodeJS.ErrnoException} */ e) => {
    if (e.code === 'ECONNREFUSED' || e.code === 'ETIMEDOUT' || e.code === 'EHOSTUNREACH' || e.code === 'ENETUNREACH')
      finish('refused', e.code);
    else if (e.code === 'ECONNRESET' || e.code === 'EPIPE') finish('closed');
    else finish('error', e.code || e.message);
  });
  setTimeout(() => finish('error', 'overall timeout'), waitMs + 5000);
} else if (mode === 'hold') {
  /** @type {Buffer[]} */
  const chunks = [];
  let printed = false;
  const socket = net.connect({ host, port }, () => socket.write(Buffer.from(arg, 'hex')));
  socket.on('data', (d) => {
    chunks.push(d);
    if (!printed && Buffer.concat(chunks).length >= 2) {
      printed = true;
      out({ reply: Buffer.concat(chunks).toString('hex') });
    }
  });
  socket.on('error', (/** @type {NodeJS.ErrnoException} */ e) => out({ error: e.code || e.message }));
  socket.on('close', () => process.exit(0));
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
  setTimeout(() => process.exit(0), 600_000);
} else if (mode === 'flood') {
  const n = Number(arg);
  let closed = 0;
  const sockets = [];
  for (let i = 0; i < n; i++) {
    const s = net.connect({ host, port });
    s.on('error', () => undefined);
    s.on('close', () => closed++);
    sockets.push(s);
  }
  setTimeout(
    () => {
      out({ opened: n, closedByServer: closed });
      process.exit(0);
    },
    Number(arg2 ?? 1000),
  );
} else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
