/**
 * `sdepmd adopt`: takes over a running C epmd (Debian's epmd.service, or a stray `epmd -daemon` in an app's
 * cgroup) without losing a registration. Run as root: the hardened epmd.service has no capabilities, so this
 * process does the copying.
 *
 *   1. DUMP on the old epmd gives each registration's fd in that process; PORT_PLEASE2 gives its data.
 *   2. pidfd_getfd copies each of those fds here: the nodes' connections now outlive the old epmd.
 *   3. The old epmd is ended (SIGTERM; systemd counts that as a clean exit, so it restarts nothing).
 *   4. epmd.socket and epmd.service are started (start jobs: no app is restarted).
 *   5. The copies go to sdepmd over its control socket (SCM_RIGHTS); it registers them with new creations and
 *      keeps them in its fd store. The nodes never see their connection close.
 */
import * as fs from 'node:fs';
import { readOrNull } from '../util/files';
import { createConnection, type Socket } from 'node:net';
import { exchangeLocal } from '../cli/client';
import {
  decodeDumpReply,
  decodePort2Reply,
  encodeNameRequest,
  encodeSimpleRequest,
  type DumpedNode,
} from '../protocol/codec';
import { DUMP_REQ, PORT_PLEASE2_REQ } from '../protocol/constants';
import { decodeControlReply, queryControl, type AdoptReply } from '../daemon/control';
import { sendAdoptFrames, type NodeInfoRecord } from '../daemon/handover';
import { socketFd } from '../engine/socket-fd';
import { closeFd, pidfdGetfd, pidfdOpen } from '../native/fdpass';
import { run } from './snapshot';

export interface AdoptOptions {
  readonly port: number;
  readonly controlPath: string;
  /** The old epmd's pid; found by its name (`epmd`) when not given. */
  readonly pid?: number;
  readonly dryRun: boolean;
  /** Start epmd.socket and epmd.service once the old epmd is gone (default when systemd runs). */
  readonly startUnits: boolean;
}

export interface AdoptIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

/** Processes named `epmd` (the C epmd; sdepmd runs as node). */
export function findCEpmds(): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === 'epmd') pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

/** Inodes of the TCP sockets listening on `port` (IPv4 and IPv6). */
export function listeningInodes(
  port: number,
  tables: readonly string[] = ['/proc/net/tcp', '/proc/net/tcp6'],
): Set<string> {
  const inodes = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const table of tables) {
    for (const line of (readOrNull(table) ?? '').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st ... inode (field 9)
      if (f.length > 9 && f[1]?.endsWith(`:${hexPort}`) && f[3] === '0A') inodes.add(f[9]!);
    }
  }
  return inodes;
}

/** The C epmd processes that hold a socket listening on `port`. */
export function cEpmdsOnPort(port: number): number[] {
  const inodes = listeningInodes(port);
  return findCEpmds().filter((pid) => {
    try {
      return fs.readdirSync(`/proc/${pid}/fd`).some((fd) => {
        const m = /^socket:\[(\d+)\]$/.exec(safeReadlink(`/proc/${pid}/fd/${fd}`));
        return m !== null && inodes.has(m[1]!);
      });
    } catch {
      return false;
    }
  });
}

function safeReadlink(file: string): string {
  try {
    return fs.readlinkSync(file);
  } catch {
    return '';
  }
}

export interface Taken {
  readonly info: NodeInfoRecord;
  readonly display: string;
  readonly fd: number;
}

/** Exit codes: 0 every registration adopted (or nothing to adopt), 1 otherwise. */
export async function adoptCommand(opts: AdoptOptions, io: AdoptIo): Promise<number> {
  const say = (text: string) => io.stdout(`sdepmd adopt: ${text}\n`);
  const fail = (text: string) => {
    io.stderr(`sdepmd adopt: ${text}\n`);
    return 1;
  };
  let pid = opts.pid;
  if (pid === undefined) {
    const found = cEpmdsOnPort(opts.port);
    if (found.length === 0) {
      say(`no C epmd serves port ${opts.port}; nothing to adopt`);
      return 0;
    }
    if (found.length > 1)
      return fail(`several epmd processes serve port ${opts.port} (${found.join(', ')}): choose one with --pid`);
    pid = found[0]!;
  }

  // 1. What the old epmd holds.
  let dumped: DumpedNode[];
  try {
    dumped = decodeDumpReply(await exchangeLocal(opts.port, encodeSimpleRequest(DUMP_REQ)));
  } catch (err) {
    return fail(`the epmd on port ${opts.port} does not answer DUMP: ${(err as Error).message}`);
  }
  let pidfd: number;
  try {
    pidfd = pidfdOpen(pid);
  } catch (err) {
    return fail(`cannot open process ${pid}: ${(err as Error).message}`);
  }
  // 2. Copy each registration's connection.
  const taken: Taken[] = [];
  const lost: string[] = [];
  for (const node of dumped) {
    const display = node.name.toString('utf8');
    try {
      const reply = decodePort2Reply(await exchangeLocal(opts.port, encodeNameRequest(PORT_PLEASE2_REQ, node.name)));
      if (!reply.found) continue; // unregistered meanwhile
      const fd = pidfdGetfd(pidfd, node.fd);
      if (!fs.fstatSync(fd).isSocket()) {
        closeFd(fd);
        lost.push(`${display} (fd ${node.fd} is not a socket)`);
        continue;
      }
      const info: NodeInfoRecord = {
        name: reply.name.toString('hex'),
        port: reply.port,
        nodeType: reply.nodeType,
        protocol: reply.protocol,
        highestVersion: reply.highestVersion,
        lowestVersion: reply.lowestVersion,
        extra: reply.extra.toString('hex'),
      };
      taken.push({ info, display, fd });
    } catch (err) {
      lost.push(`${display} (${(err as Error).message})`);
    }
  }
  closeFd(pidfd);
  say(
    `epmd pid ${pid} holds ${dumped.length} registration(s); copied ${taken.length}: ${taken.map((t) => t.display).join(', ') || 'none'}`,
  );
  if (lost.length > 0) io.stderr(`sdepmd adopt: could not copy: ${lost.join(', ')}\n`);
  if (opts.dryRun) {
    for (const t of taken) closeFd(t.fd);
    say('--dry-run: nothing changed');
    return lost.length > 0 ? 1 : 0;
  }

  // 3. End the old epmd.
  const ended = await endProcess(pid);
  say(`ended epmd pid ${pid} (${ended})`);
  // 4. Start sdepmd (start jobs only: no app that requires epmd.service is restarted).
  if (opts.startUnits) {
    const started = await run('systemctl', ['start', 'epmd.socket', 'epmd.service'], 60_000);
    if (started.code !== 0)
      io.stderr(`sdepmd adopt: systemctl start epmd.socket epmd.service: ${started.stderr.trim()}\n`);
  }
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await queryControl(opts.controlPath, 'status', 2000);
      break;
    } catch (err) {
      if (Date.now() > deadline) {
        for (const t of taken) closeFd(t.fd);
        return fail(
          `sdepmd does not answer on ${opts.controlPath} (${(err as Error).message}); the ${taken.length} copied registration(s) are lost: their nodes must register again`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  // 5. Hand the copies to sdepmd.
  let reply: AdoptReply;
  try {
    reply = await sendToDaemon(opts.controlPath, taken);
  } catch (err) {
    return fail(`handing the registrations to sdepmd failed: ${(err as Error).message}`);
  } finally {
    for (const t of taken) closeFd(t.fd);
  }
  say(
    `sdepmd adopted ${reply.adopted.length} registration(s)${reply.adopted.length ? `: ${reply.adopted.join(', ')}` : ''}`,
  );
  for (const r of reply.refused) io.stderr(`sdepmd adopt: refused ${r.name}: ${r.reason}\n`);
  return reply.refused.length === 0 && lost.length === 0 ? 0 : 1;
}

async function endProcess(pid: number): Promise<string> {
  const alive = () => {
    try {
      process.kill(pid, 0);
      return !fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z');
    } catch {
      return false;
    }
  };
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return 'already gone';
  }
  for (let i = 0; i < 50 && alive(); i++) await new Promise((r) => setTimeout(r, 100));
  if (!alive()) return 'SIGTERM';
  process.kill(pid, 'SIGKILL');
  return 'SIGKILL after 5 s';
}

/** Hands copied registrations to the daemon behind `controlPath` (the `adopt` control command). */
export function sendToDaemon(controlPath: string, taken: readonly Taken[]): Promise<AdoptReply> {
  return new Promise((resolve, reject) => {
    let input = '';
    let sent = false;
    const socket: Socket = createConnection(controlPath, () => socket.write('adopt\n'));
    socket.setTimeout(30_000, () => socket.destroy(new Error('no answer within 30 s')));
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      input += chunk.toString('utf8');
      if (!sent && input.startsWith('ready\n')) {
        sent = true;
        input = input.slice('ready\n'.length);
        try {
          sendAdoptFrames(
            socketFd(socket),
            taken.map((t) => ({ info: t.info, fd: t.fd })),
          );
        } catch (err) {
          socket.destroy(err as Error);
        }
      }
    });
    socket.on('close', () => {
      if (!sent && !input) return reject(new Error('the daemon did not accept adopt'));
      try {
        resolve(decodeControlReply('adopt', input, controlPath));
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}
