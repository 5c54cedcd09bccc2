/** What `ss` says about sockets on this machine (or, run inside a sandbox, about its own). */
import { execFileSync } from 'node:child_process';

/** The backlog of the TCP socket listening on `port`, as `ss -ltn` shows it (Send-Q), or null if none listens. */
export function ssBacklog(port: number): number | null {
  const out = execFileSync('ss', ['-ltnH', `( sport = :${port} )`], { encoding: 'utf8' });
  const fields = out.trim().split(/\s+/);
  return fields.length >= 4 ? Number(fields[2]) : null;
}
