/**
 * `sdepmd attach UNIT...` / `sdepmd detach UNIT...`: write or remove the drop-in
 * /etc/systemd/system/UNIT.d/epmd-dependency.conf (Requires=/After=epmd.service, -start_epmd false), then
 * `systemctl daemon-reload`. Idempotent; --dry-run changes nothing.
 *
 * Refused: units systemd does not know; epmd's own units, and units epmd.service or epmd.socket is ordered after
 * (the drop-in would make an ordering cycle); unless --force, units that do not run an Erlang VM, and units whose
 * EnvironmentFile= sets ERL_ZFLAGS (it would override the drop-in's).
 *
 * -start_epmd false goes in ERL_ZFLAGS, merged with the unit's own ERL_ZFLAGS: erlexec reads ERL_AFLAGS, the
 * command line (and its -args_file, e.g. a release's vm.args), ERL_FLAGS, then ERL_ZFLAGS, and the last
 * -start_epmd wins, so the unit's ERL_AFLAGS (a -setcookie, say) is left as it is, and a -start_epmd true anywhere
 * before cannot undo it.
 */
import * as fs from 'node:fs';
import { readOrNull } from '../util/files';
import * as path from 'node:path';
import { environmentFilePaths, execStartCommand } from './snapshot';
import {
  DROP_IN_NAME,
  dropInsAfterAttach,
  environmentFileErlFlags,
  startEpmdOverride,
  environmentValue,
  splitQuoted,
  unitFileErlFlags,
} from './unit-env';

export { DROP_IN_NAME, environmentValue };
/** What the drop-in makes the unit depend on: epmd.service (the default) or only epmd.socket (--wants). */
export type DropInVariant = 'requires' | 'wants';
const DROP_IN_SOURCES: Record<DropInVariant, string> = { requires: DROP_IN_NAME, wants: 'epmd-socket-dependency.conf' };
const INSTALLED_DIR = '/usr/local/share/sdepmd';
/** From dist/operator/attach.js (or src/operator/attach.ts under ts-jest): the repository's units/. */
const REPO_UNITS = path.resolve(__dirname, '..', '..', 'units');
export const INSTALLED_DROP_IN = path.join(INSTALLED_DIR, DROP_IN_NAME);
export const REPO_DROP_IN = path.join(REPO_UNITS, DROP_IN_NAME);

const UNIT_SUFFIXES = [
  '.service',
  '.socket',
  '.target',
  '.timer',
  '.path',
  '.mount',
  '.automount',
  '.swap',
  '.slice',
  '.scope',
  '.device',
];

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
  /** Attach units that do not look like an Erlang VM, or whose EnvironmentFile= sets ERL_ZFLAGS. */
  readonly force?: boolean;
}

/** epmd's own units: attaching them would make the dependency point at itself. */
const EPMD_UNITS = ['epmd.service', 'epmd.socket'];
/** What runs an Erlang VM: erl, erlexec, beam.smp, Elixir's tools, rebar3, or a release script (bin/NAME foreground). */
const ERLANG_EXEC =
  /(^|[\s/])(erl|erlexec|beam(\.smp)?|elixir|iex|mix|rebar3?)(\s|;|$)|\bbin\/\S+ (foreground|console|start|daemon)\b|\/erts-[\d.]+\//;

/** -start_epmd false added to (or set in) a flags value, keeping every other flag. */
export function mergeStartEpmd(flags: string): string {
  const words = splitQuoted(flags);
  const kept: string[] = [];
  for (let i = 0; i < words.length; i++) {
    if (words[i] === '-start_epmd') {
      i++;
      continue;
    }
    kept.push(/[\s"\\]/.test(words[i]!) ? JSON.stringify(words[i]) : words[i]!);
  }
  return [...kept, '-start_epmd', 'false'].join(' ');
}

/** The drop-in for one unit: the template with its flags line carrying the unit's merged ERL_ZFLAGS. */
export function contentFor(template: string, zflags: string): string {
  const line = `Environment=${JSON.stringify(`ERL_ZFLAGS=${mergeStartEpmd(zflags)}`)}`;
  return /^Environment="?ERL_[AZ]?FLAGS=.*$/m.test(template)
    ? template.replace(/^Environment="?ERL_[AZ]?FLAGS=.*$/m, line)
    : `${template.trimEnd()}\n${line}\n`;
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

interface Checked {
  readonly refused: string[];
  /** What would still undo the drop-in's -start_epmd false once written (a later drop-in, an EnvironmentFile=). */
  readonly warnings: string[];
  /** Each accepted unit's own ERL_ZFLAGS (to merge with). */
  readonly zflags: Map<string, string>;
}

/** Refuses units systemd does not know, epmd's own, cycles, and (unless --force) non-Erlang units. */
async function checkUnits(
  units: readonly string[],
  opts: AttachOptions,
  deps: AttachDeps,
  verb: 'attach' | 'detach',
): Promise<Checked> {
  const refused: string[] = [];
  const warnings: string[] = [];
  const zflags = new Map<string, string>();
  const askSystemd = opts.root === undefined || opts.askSystemd === true;
  let orderedBefore: Set<string> | null = null;
  for (const unit of units) {
    if (verb === 'attach' && EPMD_UNITS.includes(unit)) {
      refused.push(`${unit}: it is epmd's own unit (the drop-in would make epmd depend on itself)`);
      continue;
    }
    if (!askSystemd) {
      const dirs = ['etc', 'run', 'lib', 'usr/lib'].map((d) => path.join(opts.root!, d, 'systemd', 'system', unit));
      if (!dirs.some((f) => fs.existsSync(f))) refused.push(`${unit}: no such unit (no unit file under ${opts.root})`);
      continue;
    }
    const r = await deps.systemctl([
      'show',
      '-p',
      'LoadState,ExecStart,Environment,EnvironmentFiles,DropInPaths',
      '--',
      unit,
    ]);
    const info = showProperties(r.stdout);
    const state = info.LoadState ?? '';
    if (r.code !== 0) {
      refused.push(`${unit}: systemctl show failed (exit ${r.code}): ${r.stderr.trim()}`);
      continue;
    }
    if (state === 'not-found' || state === '') {
      refused.push(`${unit}: no such unit (systemctl show -p LoadState: ${state || 'nothing'})`);
      continue;
    }
    if (verb === 'detach') continue;
    orderedBefore ??= await unitsBeforeEpmd(deps);
    if (orderedBefore.has(unit)) {
      refused.push(
        `${unit}: epmd.service or epmd.socket is ordered after it, so the drop-in would make an ordering cycle`,
      );
      continue;
    }
    if (!opts.force && !ERLANG_EXEC.test(info.ExecStart ?? '')) {
      refused.push(
        `${unit}: it does not run an Erlang VM (ExecStart: ${(info.ExecStart ?? '').slice(0, 120) || 'none'}); --force attaches it anyway`,
      );
      continue;
    }
    const fromFiles = environmentFilePaths([info.EnvironmentFiles ?? '']).find((f) =>
      environmentFileErlFlags(f, readOrNull(f) ?? '').some((x) => x.name === 'ERL_ZFLAGS'),
    );
    if (!opts.force && fromFiles) {
      refused.push(
        `${unit}: its EnvironmentFile ${fromFiles} sets ERL_ZFLAGS, which would override the drop-in: add -start_epmd false there, or --force`,
      );
      continue;
    }
    const environment = splitQuoted(info.Environment ?? '');
    const own = environmentValue(environment, 'ERL_ZFLAGS');
    zflags.set(unit, own);
    const overriding = overrideAfterAttach(unit, info, environment, mergeStartEpmd(own));
    if (overriding) warnings.push(overriding);
  }
  return { refused, warnings, zflags };
}

/**
 * What the unit's VM would get once the drop-in is written: its ERL_ZFLAGS (unless a drop-in read after ours sets
 * it again), its other flags and its environment files; a warning naming what overrides -start_epmd false, or null.
 */
function overrideAfterAttach(
  unit: string,
  info: Partial<Record<string, string>>,
  environment: readonly string[],
  merged: string,
): string | null {
  const dropInPaths = [...(info.DropInPaths ?? '').split(/\s+/).filter(Boolean), dropInPath(unit)];
  const sources = [
    ...dropInsAfterAttach(dropInPaths).flatMap((f) => unitFileErlFlags(f, readOrNull(f) ?? '')),
    ...environmentFilePaths([info.EnvironmentFiles ?? '']).flatMap((f) =>
      environmentFileErlFlags(f, readOrNull(f) ?? ''),
    ),
  ];
  const laterZflags = sources.some((x) => x.kind === 'drop-in' && x.name === 'ERL_ZFLAGS');
  const override = startEpmdOverride({
    environment: laterZflags ? environment : [...environment, `ERL_ZFLAGS=${merged}`],
    execStart: execStartCommand(info.ExecStart ?? ''),
    dropInPaths,
    erlFlagSources: sources,
  });
  if (!override) return null;
  const where = override.culprits.map((c) => `${c.file} sets ${c.name}=${c.value}`);
  return (
    `${unit}: -start_epmd false in the drop-in is overridden${where.length > 0 ? ` (${where.join('; ')})` : ''}: ` +
    `the app would still start its own epmd; end that setting with -start_epmd false (sdepmd doctor checks it)`
  );
}

/** `systemctl show -p ... UNIT` of one unit: KEY=VALUE lines (the first of each key). */
function showProperties(text: string): Partial<Record<string, string>> {
  const props: Partial<Record<string, string>> = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) props[line.slice(0, eq)] ??= line.slice(eq + 1);
  }
  return props;
}

/** Every unit epmd.service and epmd.socket are ordered after, transitively (After=). */
async function unitsBeforeEpmd(deps: AttachDeps): Promise<Set<string>> {
  const r = await deps.systemctl([
    'list-dependencies',
    '--after',
    '--plain',
    '--all',
    '--no-legend',
    '--no-pager',
    ...EPMD_UNITS,
  ]);
  return new Set(
    r.code === 0
      ? r.stdout
          .split('\n')
          .map((l) => l.trim().replace(/^[●○*\s]+/, ''))
          .filter(Boolean)
      : [],
  );
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
  const { refused, warnings, zflags } = await checkUnits(units, opts, deps, 'attach');
  if (refused.length > 0) {
    for (const r of refused) deps.stderr(`sdepmd attach: refusing ${r}\n`);
    deps.stderr('sdepmd attach: nothing changed\n');
    return 1;
  }
  for (const w of warnings) deps.stderr(`sdepmd attach: warning: ${w}\n`);
  let template: string;
  try {
    template = opts.content ?? dropInContent();
  } catch (err) {
    deps.stderr(`sdepmd attach: ${(err as Error).message}\n`);
    return 1;
  }
  const changed: string[] = [];
  for (const unit of units) {
    const content = contentFor(template, zflags.get(unit) ?? '');
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
  const { refused } = await checkUnits(units, opts, deps, 'detach');
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
async function finish(
  verb: 'attach' | 'detach',
  changed: readonly string[],
  opts: AttachOptions,
  deps: AttachDeps,
): Promise<number> {
  if (changed.length === 0) return 0;
  if (opts.dryRun) {
    if (opts.root === undefined || opts.askSystemd) deps.stdout('would run: systemctl daemon-reload\n');
    deps.stdout(`then restart to apply: systemctl restart ${changed.join(' ')}\n`);
    return 0;
  }
  if (!(await reload(opts, deps, verb))) return 1;
  deps.stdout(
    `note: restart to apply (a running unit keeps its old settings): systemctl restart ${changed.join(' ')}\n`,
  );
  return 0;
}
