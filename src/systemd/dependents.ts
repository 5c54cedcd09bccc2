/**
 * Which units systemd restarts together with epmd.service: those with Requires= or BindsTo= on it, found in the
 * unit files and drop-ins of /etc/systemd/system and /run/systemd/system (where `sdepmd attach` and the installer
 * write). Read from the files, not asked over D-Bus: the hardened service has no bus access to rely on.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

const UNIT_DIRS = ['/etc/systemd/system', '/run/systemd/system'];

/** Unit names whose files or drop-ins require `unit` (e.g. "billing.service", "erlang-app@.service"). */
export function requiringUnits(unit = 'epmd.service', dirs: readonly string[] = UNIT_DIRS): string[] {
  const wanted = new RegExp(
    `^[ \\t]*(Requires|BindsTo)[ \\t]*=([^\\n]*[ \\t])?${unit.replace(/[.@]/g, '\\$&')}([ \\t]|$)`,
    'm',
  );
  const found = new Set<string>();
  const check = (name: string, file: string) => {
    try {
      if (wanted.test(fs.readFileSync(file, 'utf8'))) found.add(name);
    } catch {
      // unreadable or gone
    }
  };
  for (const dir of dirs) {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      if (e.name === unit || e.name === `${unit}.d`) continue;
      if (e.isFile() && e.name.endsWith('.service')) check(e.name, path.join(dir, e.name));
      else if (e.isDirectory() && e.name.endsWith('.service.d')) {
        for (const conf of safeList(path.join(dir, e.name))) {
          if (conf.endsWith('.conf')) check(e.name.slice(0, -2), path.join(dir, e.name, conf));
        }
      }
    }
  }
  return [...found].sort();
}

function safeList(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}
