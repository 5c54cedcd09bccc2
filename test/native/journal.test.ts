/**
 * The journal addon (native/sdepmd/journal.c) against a real AF_UNIX datagram socket at journald's own path:
 * a private mount namespace (unshare -m) puts a tmpfs on /run/systemd/journal, a python3 sink binds
 * /run/systemd/journal/socket there, and a child node process sends through sd_journal_sendv. The sink prints
 * the datagram it got: journald's native protocol, "KEY=value" lines, binary-safe for values with newlines.
 * Also: bad arguments throw a TypeError, never crash.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { loadAddon } from '../../src/native/addon';
import { journalFields, MESSAGE_IDS } from '../../src/daemon/log';
import { peerDescribe } from '../support/peers';

const ADDON = path.join(__dirname, '..', '..', 'native', 'sdepmd', 'build', 'Release', 'sdepmd.node');

const SCRIPT = String.raw`
set -e
mount -t tmpfs tmpfs /run/systemd/journal 2>/dev/null || { mkdir -p /run/systemd/journal && mount -t tmpfs tmpfs /run/systemd/journal; }
python3 - "$@" <<'PY' &
import socket, sys, json, os
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('/run/systemd/journal/socket')
open('/run/systemd/journal/ready', 'w').close()
s.settimeout(10)
data = s.recv(1 << 20)
sys.stdout.write(json.dumps({'hex': data.hex()}) + '\n')
PY
while [ ! -e /run/systemd/journal/ready ]; do sleep 0.01; done
node -e "
const a = require(process.argv[1]);
const r = a.journalSend(JSON.parse(process.argv[2]));
process.stderr.write('sent ' + r + '\n');
" "$ADDON" "$FIELDS"
wait
`;

function unshareAvailable(): { ok: boolean; reason?: string } {
  if (process.getuid?.() !== 0) return { ok: false, reason: 'needs root for a private mount namespace' };
  const r = spawnSync('unshare', ['-m', 'true']);
  return r.status === 0 ? { ok: true } : { ok: false, reason: `unshare -m failed: ${r.stderr.toString()}` };
}

/** Parses journald's native protocol: KEY=value\n, or KEY\n<64-bit LE length><value>\n for binary values. */
function parseNative(buf: Buffer): [string, string][] {
  const out: [string, string][] = [];
  let i = 0;
  while (i < buf.length) {
    const nl = buf.indexOf(0x0a, i);
    const line = buf.subarray(i, nl).toString('utf8');
    const eq = line.indexOf('=');
    if (eq >= 0) {
      out.push([line.slice(0, eq), line.slice(eq + 1)]);
      i = nl + 1;
    } else {
      const len = Number(buf.readBigUInt64LE(nl + 1));
      out.push([line, buf.subarray(nl + 9, nl + 9 + len).toString('utf8')]);
      i = nl + 9 + len + 1;
    }
  }
  return out;
}

peerDescribe('root + unshare -m + python3', unshareAvailable())('journalSend through a journald socket', () => {
  test('the fields arrive as sent, a value with a newline too', () => {
    const fields = journalFields(6, 'registered app1 port 4711', {
      event: 'registered',
      node: 'app\n1',
      port: 4711,
      peer: '127.0.0.1',
      creation: 42,
    });
    const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'bash', '-c', SCRIPT], {
      env: { ...process.env, ADDON, FIELDS: JSON.stringify(fields) },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.stderr).toContain('sent 0');
    const got = parseNative(Buffer.from((JSON.parse(r.stdout.trim()) as { hex: string }).hex, 'hex'));
    expect(got).toEqual([
      ['MESSAGE', 'registered app1 port 4711'],
      ['PRIORITY', '6'],
      ['SYSLOG_IDENTIFIER', 'sdepmd'],
      ['MESSAGE_ID', MESSAGE_IDS.registered],
      ['EPMD_EVENT', 'registered'],
      ['EPMD_NODE', 'app\n1'],
      ['EPMD_PORT', '4711'],
      ['EPMD_PEER', '127.0.0.1'],
      ['EPMD_CREATION', '42'],
    ]);
  });
});

describe('journalSend arguments', () => {
  const addon = loadAddon(ADDON);
  // The addon's TypeError comes from Node's own realm, not jest's sandbox: check the name, not the constructor.
  test('bad arguments throw a TypeError', () => {
    if (addon instanceof Error) throw addon;
    const send = addon.journalSend.bind(addon) as (...a: unknown[]) => number;
    for (const bad of [
      [],
      [[]],
      ['MESSAGE=x'],
      [[1]],
      [['nokey']],
      [['_X=1']],
      [['lower=1']],
      [['X=a\0b']],
      [new Array(33).fill('A=1')],
      [['1X=1']],
      [['=x']],
    ]) {
      let thrown: unknown = null;
      try {
        send(...bad);
      } catch (err) {
        thrown = err;
      }
      expect({ bad, name: (thrown as Error | null)?.name }).toEqual({ bad, name: 'TypeError' });
    }
  });

  test('MESSAGE_IDs are distinct 128-bit ids', () => {
    const ids = Object.values(MESSAGE_IDS);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
