/**
 * `sdepmd attach UNIT...` / `sdepmd detach UNIT...`: write or remove the drop-in
 * /etc/systemd/system/UNIT.d/epmd-dependency.conf (Requires=/After=epmd.service, ERL_AFLAGS=-start_epmd false),
 * then `systemctl daemon-reload`. Idempotent; --dry-run changes nothing; units systemd does not know are refused.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const DROP_IN_NAME = 'epmd-dependency.conf';
/** What the drop-in makes the unit depend on: epmd.service (the default) or only epmd.socket (--wants). */
export type DropInVariant = 'requires' | 'wants';
const DROP_IN_SOURCES: Record<DropInVariant, string> = { requires: DROP_IN_NAME, wants: 'epmd-socket-dependency.conf' };
const INSTALLED_DIR = '/usr/local/share/sdepmd';
/** From dist/operator/attach.js (or src/operator/attach.ts under ts-jest): the repository's units/. */
const REPO_UNITS = path.resolve(__dirname, '..', '..', 'units');
export const INSTALLED_DROP_IN = path.join(INSTALLED_DIR, DROP_IN_NAME);
export const REPO_DROP_IN = path.join(REPO_UNITS, DROP_IN_NAME);

const UNIT_SUFFIXES = ['.service', '.socket', '.target', '.timer', '.path', '.mount', '.automount', '.swap', '.slice', '.scope', '.device'];

export function normalizeUnit(name: string): string {
  return UNIT_SUFFIXES.some((s) => name.endsWith(s)) ? name : `${name}.service`;
}

export interface AttachDeps {
  /** `systemctl ARGS...`: exit code and output. */
  systemctl(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

export interface AttachOptions {
  readonly dryRun: boolean;
  /** A root directory to write under instead of / (tests). With a root, systemd is not asked and not reloaded: a
   * unit "exists" when its unit file is found under ROOT/{etc,run,lib,usr/lib}/systemd/system. */
  readonly root?: string;
  /** With a root, ask systemd all the same (LoadState check, daemon-reload): for tests with a fake systemctl. */
  readonly askSystemd?: boolean;
  /** The drop-in's content (default: the installed copy, else the repository's units/epmd-dependency.conf). */
  readonly content?: string;
}

export function dropInContent(variant: DropInVariant = 'requires'): string {
  const name = DROP_IN_SOURCES[variant];
  for (const file of [path.join(INSTALLED_DIR, name), path.join(REPO_UNITS, name)]) {
    try {
      return fs.readFileSync(file, 'utf8');
    } catch {
      /* next */
    }
  }
  throw new Error(`cannot find the drop-in ${name} (looked in ${INSTALLED_DIR} and ${REPO_UNITS})`);
}

export function dropInPath(unit: string, root = '/'): string {
  return path.join(root, 'etc', 'systemd', 'system', `${unit}.d`, DROP_IN_NAME);
}

function readOrNull(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** Refuses units systemd does not know. Returns the messages for the refused ones. */
async function checkUnits(units: readonly string[], opts: AttachOptions, deps: AttachDeps): Promise<string[]> {
  const refused: string[] = [];
  for (const unit of units) {
    if (opts.root !== undefined && !opts.askSystemd) {
      const dirs = ['etc', 'run', 'lib', 'usr/lib'].map((d) => path.join(opts.root!, d, 'systemd', 'system', unit));
      if (!dirs.some((f) => fs.existsSync(f))) refused.push(`${unit}: no such unit (no unit file under ${opts.root})`);
      continue;
    }
    const r = await deps.systemctl(['show', '-p', 'LoadState', '--value', '--', unit]);
    const state = r.stdout.trim();
    if (r.code !== 0) refused.push(`${unit}: systemctl show failed (exit ${r.code}): ${r.stderr.trim()}`);
    else if (state === 'not-found' || state === '') refused.push(`${unit}: no such unit (systemctl show -p LoadState: ${state || 'nothing'})`);
  }
  return refused;
}

async function reload(opts: AttachOptions, deps: AttachDeps, verb: string): Promise<boolean> {
  if (opts.root !== undefined && !opts.askSystemd) {
    deps.stdout(`sdepmd ${verb}: --root given, not running systemctl daemon-reload\n`);
    return true;
  }
  const r = await deps.systemctl(['daemon-reload']);
  if (r.code !== 0) {
    deps.stderr(`sdepmd ${verb}: systemctl daemon-reload failed (exit ${r.code}): ${r.stderr.trim()}\n`);
    return false;
  }
  deps.stdout(`sdepmd ${verb}: ran systemctl daemon-reload\n`);
  return true;
}

/** Exit codes: 0 done (or nothing to do), 1 refused or failed. */
export async function attachUnits(names: readonly string[], opts: AttachOptions, deps: AttachDeps): Promise<number> {
  const units = [...new Set(names.map(normalizeUnit))];
  const refused = await checkUnits(units, opts, deps);
  if (refused.length > 0) {
    for (const r of refused) deps.stderr(`sdepmd attach: refusing ${r}\n`);
    deps.stderr('sdepmd attach: nothing changed\n');
    return 1;
  }
  let content: string;
  try {
    content = opts.content ?? dropInContent();
  } catch (err) {
    deps.stderr(`sdepmd attach: ${(err as Error).message}\n`);
    return 1;
  }
  const changed: string[] = [];
  for (const unit of units) {
    const file = dropInPath(unit, opts.root);
    const current = readOrNull(file);
    if (current === content) {
      deps.stdout(`${unit}: already attached (${file})\n`);
      continue;
    }
    if (opts.dryRun) {
      deps.stdout(`${unit}: would ${current === null ? 'write' : 'replace'} ${file}:\n`);
      deps.stdout(content.replace(/^/gm, '    ').replace(/ +$/gm, '') + (content.endsWith('\n') ? '' : '\n'));
    } else {
      try {
        fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
        const tmp = `${file}.tmp-${process.pid}`;
        fs.writeFileSync(tmp, content, { mode: 0o644 });
        fs.renameSync(tmp, file);
      } catch (err) {
        deps.stderr(`sdepmd attach: ${unit}: cannot write ${file}: ${(err as Error).message}\n`);
        return 1;
      }
      deps.stdout(`${unit}: ${current === null ? 'wrote' : 'replaced'} ${file}\n`);
    }
    changed.push(unit);
  }
  return finish('attach', changed, opts, deps);
}

export async function detachUnits(names: readonly string[], opts: AttachOptions, deps: AttachDeps): Promise<number> {
  const units = [...new Set(names.map(normalizeUnit))];
  const refused = await checkUnits(units, opts, deps);
  if (refused.length > 0) {
    for (const r of refused) deps.stderr(`sdepmd detach: refusing ${r}\n`);
    deps.stderr('sdepmd detach: nothing changed\n');
    return 1;
  }
  const changed: string[] = [];
  for (const unit of units) {
    const file = dropInPath(unit, opts.root);
    if (readOrNull(file) === null) {
      deps.stdout(`${unit}: not attached (no ${file})\n`);
      continue;
    }
    if (opts.dryRun) deps.stdout(`${unit}: would remove ${file}\n`);
    else {
      try {
        fs.unlinkSync(file);
        // Remove the UNIT.d directory too when this drop-in was all it held.
        if (fs.readdirSync(path.dirname(file)).length === 0) fs.rmdirSync(path.dirname(file));
      } catch (err) {
        deps.stderr(`sdepmd detach: ${unit}: cannot remove ${file}: ${(err as Error).message}\n`);
        return 1;
      }
      deps.stdout(`${unit}: removed ${file}\n`);
    }
    changed.push(unit);
  }
  return finish('detach', changed, opts, deps);
}

/** After attach or detach: reload systemd (or say it would), and tell how to apply the change. */
async function finish(verb: 'attach' | 'detach', changed: readonly string[], opts: AttachOptions, deps: AttachDeps): Promise<number> {
  if (changed.length === 0) return 0;
  if (opts.dryRun) {
    if (opts.root === undefined || opts.askSystemd) deps.stdout('would run: systemctl daemon-reload\n');
    deps.stdout(`then restart to apply: systemctl restart ${changed.join(' ')}\n`);
    return 0;
  }
  if (!(await reload(opts, deps, verb))) return 1;
  deps.stdout(`note: restart to apply (a running unit keeps its old settings): systemctl restart ${changed.join(' ')}\n`);
  return 0;
}
