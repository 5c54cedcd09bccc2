/**
 * The operator subcommands' names and one-line summaries, and the wording every usage error shares.
 * Kept apart from src/operator/commands.ts (which loads doctor's modules) so that the top-level help and typo
 * suggestions cost nothing at the daemon's start.
 */

export interface VerbSummary {
  readonly name: string;
  /** Shown after the name in `sdepmd --help` and in the verb's own help. */
  readonly args: string;
  readonly summary: string;
}

export const VERBS: readonly VerbSummary[] = [
  {
    name: 'names',
    args: '[--json]',
    summary: 'List the registered nodes: name, port, type, versions, creation, extra',
  },
  {
    name: 'status',
    args: '[--json]',
    summary: "The daemon's version, uptime, sockets, counters, log level and fd store; says why when nothing answers",
  },
  {
    name: 'metrics',
    args: '[--output FILE]',
    summary: "The daemon's counters and gauges in the Prometheus text format (for node_exporter's textfile collector)",
  },
  {
    name: 'doctor',
    args: '[--json | --snapshot]',
    summary: 'Inspect this host and print each problem with its evidence and the commands that fix it',
  },
  {
    name: 'attach',
    args: '[--dry-run] [--wants] [--force] UNIT...',
    summary:
      "Make Erlang units depend on epmd.service (a drop-in with Requires=, After=, -start_epmd false merged into the unit's ERL_ZFLAGS)",
  },
  { name: 'detach', args: '[--dry-run] UNIT...', summary: 'Remove the drop-in that attach wrote' },
  {
    name: 'reload',
    args: '[--port N]',
    summary:
      'Live-upgrade the running daemon to the installed code and wait: exit 1 when the new code fails its check (the old code then still serves)',
  },
  {
    name: 'adopt',
    args: '[--pid N] [--dry-run] [--no-start]',
    summary:
      "As root: take over a running C epmd's registrations (pidfd_getfd), end it, start sdepmd, and hand them over",
  },
  {
    name: 'listen',
    args: '[--dry-run] ADDRESS...',
    summary: 'Make epmd.socket listen only on these addresses (plus loopback), without restarting any app',
  },
  {
    name: 'allow',
    args: '[--dry-run] CIDR...',
    summary: 'Let only these networks (plus loopback) reach epmd.socket (IPAddressAllow=/IPAddressDeny=)',
  },
];

export const SUBCOMMANDS: readonly string[] = VERBS.map((v) => v.name);

/** One wording for every usage error: exit code 1, and where to read more. */
export const USAGE_EXIT_CODE = 1;

export function usageMessage(message: string, verb?: string): string {
  return `sdepmd: ${message} (see sdepmd ${verb ? `${verb} ` : ''}--help)\n`;
}

/** The closest candidate within a small edit distance, for "did you mean ...?", or null. */
export function suggest(word: string, candidates: readonly string[]): string | null {
  const w = word.replace(/^-+/, '').toLowerCase();
  if (w.length === 0) return null;
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(w, c.replace(/^-+/, '').toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  // A third of the word, at least 1 and at most 3 edits: "doctr" -> "doctor", but "x" suggests nothing.
  return best !== null && bestDistance <= Math.min(3, Math.max(1, Math.floor(w.length / 3))) ? best : null;
}

/** Damerau-Levenshtein distance (optimal string alignment): a swap of two neighbours counts as one edit. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 0; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The usage error for a flag nobody knows, with the closest known one (names without dashes). */
export function unknownFlagMessage(word: string, known: readonly string[], dashes: '-' | '--'): string {
  const name = word.replace(/^--?/, '').split('=')[0]!;
  const hint = suggest(name, known);
  return `unknown flag ${word}${hint ? `; did you mean ${dashes}${hint}?` : ''}`;
}

/** Word-wraps `text` to `width` columns, every line after the first indented by `indent` spaces. */
export function wrapText(text: string, width: number, indent: number): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line && line.length + 1 + word.length > width - indent) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines.join(`\n${' '.repeat(indent)}`);
}
