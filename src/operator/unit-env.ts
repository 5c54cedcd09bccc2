/**
 * Where an Erlang VM's `-start_epmd` comes from under systemd, shared by `sdepmd attach` (which writes the drop-in)
 * and `sdepmd doctor` (which checks that nothing overrides it). Pure: the callers read the files.
 *
 * erlexec reads ERL_AFLAGS, then the command line, then ERL_FLAGS, then ERL_ZFLAGS, and the last `-start_epmd`
 * wins. The attach drop-in puts `-start_epmd false` in ERL_ZFLAGS. In the unit's environment, the last assignment
 * of a variable wins: a drop-in read after the attach drop-in (its name sorts later) replaces its ERL_ZFLAGS, and
 * a variable an EnvironmentFile= sets overrides every Environment= of the same name.
 */

/** The attach drop-in's file name, in /etc/systemd/system/UNIT.d/. */
export const DROP_IN_NAME = 'epmd-dependency.conf';

/** The variables erlexec reads flags from, in its order (the command line comes between the first two). */
export const ERL_FLAG_VARS = ['ERL_AFLAGS', 'ERL_FLAGS', 'ERL_ZFLAGS'] as const;
export type ErlFlagVar = (typeof ERL_FLAG_VARS)[number];

/** One place that sets an ERL_*FLAGS variable for a unit. */
export interface ErlFlagSource {
  /** The drop-in or environment file. */
  readonly file: string;
  readonly kind: 'drop-in' | 'environment-file';
  readonly name: ErlFlagVar;
  readonly value: string;
}

/** Splits a systemd-quoted list such as `HOME=/root "ERL_AFLAGS=-start_epmd false"` into its words, unquoted. */
export function splitQuoted(text: string): string[] {
  const words: string[] = [];
  let current = '';
  let inWord = false;
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === '\\' && i + 1 < text.length) current += text[++i];
      else if (c === quote) quote = null;
      else current += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(current);
      current = '';
      inWord = false;
    } else {
      if (c === '\\' && i + 1 < text.length) current += text[++i];
      else current += c;
      inWord = true;
    }
  }
  if (inWord) words.push(current);
  return words;
}

function isErlFlagVar(name: string): name is ErlFlagVar {
  return (ERL_FLAG_VARS as readonly string[]).includes(name);
}

/** The value of VAR in a systemd Environment= list (the last assignment wins), or ''. */
export function environmentValue(assignments: readonly string[], name: string): string {
  let value = '';
  for (const a of assignments) if (a.startsWith(`${name}=`)) value = a.slice(name.length + 1);
  return value;
}

/** The ERL_*FLAGS a unit file or drop-in sets with Environment= lines, in order. */
export function unitFileErlFlags(file: string, text: string): ErlFlagSource[] {
  const out: ErlFlagSource[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*Environment\s*=(.*)$/.exec(line);
    if (!m) continue;
    for (const word of splitQuoted(m[1]!)) {
      const eq = word.indexOf('=');
      const name = word.slice(0, eq);
      if (eq > 0 && isErlFlagVar(name)) out.push({ file, kind: 'drop-in', name, value: word.slice(eq + 1) });
    }
  }
  return out;
}

/** The ERL_*FLAGS an EnvironmentFile= sets (`VAR=value` lines, `#` and `;` comments, optional quotes). */
export function environmentFileErlFlags(file: string, text: string): ErlFlagSource[] {
  const out: ErlFlagSource[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(?:export\s+)?(ERL_[AZ]?FLAGS)\s*=\s*(.*?)\s*$/.exec(line);
    if (m && isErlFlagVar(m[1]!))
      out.push({ file, kind: 'environment-file', name: m[1], value: splitQuoted(m[2]!).join(' ') });
  }
  return out;
}

/** The value of the last `-start_epmd` in these argument lists, read in order; null when none says. */
export function lastStartEpmd(lists: readonly (readonly string[])[]): string | null {
  let value: string | null = null;
  for (const args of lists) {
    for (let i = 0; i < args.length - 1; i++) if (args[i] === '-start_epmd') value = args[i + 1]!;
  }
  return value;
}

/** The drop-ins systemd reads after the attach drop-in (their file names sort after it): they can override it. */
export function dropInsAfterAttach(dropInPaths: readonly string[]): string[] {
  return dropInPaths.filter((p) => basename(p) > DROP_IN_NAME);
}

function basename(file: string): string {
  return file.slice(file.lastIndexOf('/') + 1);
}

/** Whether the attach drop-in is among a unit's drop-ins. */
export function hasAttachDropIn(dropInPaths: readonly string[]): boolean {
  return dropInPaths.some((p) => basename(p) === DROP_IN_NAME);
}

export interface StartEpmdOverride {
  /** What the VM would get: `-start_epmd VALUE`, or null when nothing says (erl then starts epmd). */
  readonly value: string | null;
  /** The effective values of the variables, and where the deciding one comes from. */
  readonly effective: Readonly<Partial<Record<ErlFlagVar, string>>>;
  /**
   * What sets the effective ERL_ZFLAGS after the attach drop-in (a later drop-in, an EnvironmentFile=): erlexec
   * reads ERL_ZFLAGS last, so whatever else is set, the drop-in's -start_epmd false is lost only when its ERL_ZFLAGS
   * is replaced.
   */
  readonly culprits: readonly ErlFlagSource[];
}

/**
 * What `-start_epmd` an attached unit's VM gets from its unit: its Environment= (merged by systemd, the last
 * assignment winning), then its EnvironmentFile= values (which override Environment=), around its ExecStart=.
 * Null when the result is `false`, as the drop-in intends; otherwise what overrides it.
 */
export function startEpmdOverride(unit: {
  readonly environment: readonly string[];
  readonly execStart: string;
  readonly dropInPaths?: readonly string[];
  readonly erlFlagSources?: readonly ErlFlagSource[];
}): StartEpmdOverride | null {
  const effective: Partial<Record<ErlFlagVar, string>> = {};
  for (const name of ERL_FLAG_VARS) {
    if (unit.environment.some((a) => a.startsWith(`${name}=`)))
      effective[name] = environmentValue(unit.environment, name);
  }
  const sources = unit.erlFlagSources ?? [];
  for (const s of sources) if (s.kind === 'environment-file') effective[s.name] = s.value;
  const words = (name: ErlFlagVar) => splitQuoted(effective[name] ?? '');
  const value = lastStartEpmd([
    words('ERL_AFLAGS'),
    splitQuoted(unit.execStart),
    words('ERL_FLAGS'),
    words('ERL_ZFLAGS'),
  ]);
  if (value === 'false') return null;
  const later = new Set(dropInsAfterAttach(unit.dropInPaths ?? []));
  return {
    value,
    effective,
    culprits: sources.filter((s) => s.name === 'ERL_ZFLAGS' && (s.kind === 'environment-file' || later.has(s.file))),
  };
}
