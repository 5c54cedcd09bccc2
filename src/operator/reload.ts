/**
 * `sdepmd reload`: a live upgrade of the running daemon, waited for. epmd.service runs it as ExecReload=, so
 * `systemctl reload epmd` succeeds only when the new code serves, and fails (the old code still serving) when the
 * new code does not pass its check.
 */
import { createConnection } from 'node:net';
import {
  ControlRefusal,
  decodeControlReply,
  queryControl,
  type StatusRecord,
  type UpgradeReply,
} from '../daemon/control';

export interface ReloadIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

/** Sends `upgrade` and reads the daemon's one answer. */
export function requestUpgrade(controlPath: string, timeoutMs: number): Promise<UpgradeReply> {
  return new Promise((resolve, reject) => {
    let output = '';
    const socket = createConnection(controlPath, () => socket.write('upgrade\n'));
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no answer on ${controlPath} within ${timeoutMs} ms`)));
    socket.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    socket.on('error', reject);
    socket.on('close', () => {
      if (!output) return reject(new Error(`the daemon closed ${controlPath} without answering`));
      try {
        resolve(decodeControlReply('upgrade', output, controlPath));
      } catch (err) {
        // A daemon that cannot upgrade (an older one: "unknown command") refused: the old code still serves.
        if (err instanceof ControlRefusal) resolve({ ok: false, error: err.message });
        else reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

/** Exit codes: 0 the new code serves, 1 the upgrade failed (the old code, if it answered, still serves). */
export async function reloadCommand(controlPath: string, io: ReloadIo, timeoutMs = 90_000): Promise<number> {
  let before: StatusRecord;
  try {
    before = await queryControl(controlPath, 'status');
  } catch (err) {
    io.stderr(`sdepmd reload: no sdepmd answers on ${controlPath}: ${(err as Error).message}\n`);
    return 1;
  }
  let reply: UpgradeReply;
  try {
    reply = await requestUpgrade(controlPath, timeoutMs);
  } catch (err) {
    io.stderr(`sdepmd reload: ${(err as Error).message}\n`);
    return 1;
  }
  if (!reply.ok) {
    io.stderr(
      `sdepmd reload: live upgrade failed; ${before.version} (pid ${before.pid}) still serves: ${reply.error}\n`,
    );
    return 1;
  }
  const deadline = Date.now() + timeoutMs;
  const upgradesBefore = before.upgrades ?? 0;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    let after: StatusRecord;
    try {
      after = await queryControl(controlPath, 'status', 2000);
    } catch {
      continue; // the new code is not serving the control socket yet
    }
    if ((after.upgrades ?? 0) > upgradesBefore) {
      io.stdout(
        `live upgrade: ${before.version} (pid ${before.pid}) → ${after.version} (pid ${after.pid}); ${after.registered} registration(s)\n`,
      );
      return 0;
    }
  }
  io.stderr(`sdepmd reload: the new code ${reply.toVersion} did not answer within ${timeoutMs} ms\n`);
  return 1;
}
