/**
 * Operator subcommands: names, status, metrics, doctor, attach, detach, listen, allow.
 * Each has its own --help listing only its own options, a --json form where there is data, and exit codes a script
 * can use: 0 success (or healthy), 1 failure, no answer, or a usage error (the same wording everywhere).
 */
import yargs from 'yargs/yargs';
import type { Argv, Options } from 'yargs';
import type { CliIo } from '../cli/cli';
import { unknownFlagMessage, usageMessage, USAGE_EXIT_CODE, VERBS } from '../cli/verbs';
import { resolvePort } from '../daemon/config';
import {
  controlSocketPath,
  describeNodeType,
  queryControl,
  type NodeRecord,
  type StatusRecord,
} from '../daemon/control';
import { names, portPlease } from '../cli/client';
import { attachUnits, detachUnits, dropInContent, type AttachDeps } from './attach';
import { diagnose, formatFindings, isHealthy } from './findings';
import { gatherSnapshot, run } from './snapshot';
import { explainNoAnswer, formatNoAnswer, gatherNoAnswer } from './no-answer';
import { formatDown, formatMetrics, writeAtomically } from './metrics';
import { applyExposure, type ExposureVerb } from './exposure';
import { formatEndpoint } from '../policy/policy';

const PORT: Options = { type: 'string', describe: 'The epmd port (default: ERL_EPMD_PORT, else 4369)' };
/** An on/off option (`--X`, `--no-X`), off unless `on`. */
function flag(describe: string, on = false): Options {
  return { type: 'boolean', default: on, describe };
}

const JSON_OUT = flag('Print JSON for scripts');
const CONTROL: Options = { type: 'string', describe: "The daemon's control socket (default: derived from the port)" };
const DRY_RUN = flag('Print what would change, change nothing');
const ROOT: Options = {
  type: 'string',
  describe: 'Write under this directory instead of / (for tests; skips systemctl)',
};

interface VerbSpec {
  readonly options: Readonly<Record<string, Options>>;
  /** Positional words: at least `min`, described as `label`. */
  readonly positionals?: { readonly min: number; readonly label: string };
  readonly run: (args: VerbArgs, io: CliIo) => Promise<number>;
}

/** What the verbs' parsers give: options by name, positional words in `_`. */
export interface VerbArgs {
  readonly _: readonly (string | number)[];
  readonly [option: string]: unknown;
}

const SPECS: Readonly<Record<string, VerbSpec>> = {
  names: { options: { port: PORT, json: JSON_OUT, control_socket: CONTROL }, run: namesCommand },
  status: { options: { port: PORT, json: JSON_OUT, control_socket: CONTROL }, run: statusCommand },
  metrics: {
    options: {
      port: PORT,
      control_socket: CONTROL,
      output: {
        type: 'string',
        describe:
          "Write to FILE atomically (a temporary file, then rename), as node_exporter's textfile collector needs",
      },
    },
    run: metricsCommand,
  },
  doctor: {
    options: {
      port: PORT,
      json: JSON_OUT,
      snapshot: flag(
        'Print the gathered host snapshot (the inputs of the checks) as JSON instead of the findings, e.g. for a bug report',
      ),
    },
    run: doctorCommand,
  },
  attach: {
    options: {
      'dry-run': DRY_RUN,
      root: ROOT,
      wants: flag(
        'Depend on epmd.socket only (Wants=/After=epmd.socket): epmd restarts are never passed on to the app',
      ),
      force: flag('Attach a unit that does not look like an Erlang VM, or whose EnvironmentFile= sets ERL_ZFLAGS'),
    },
    positionals: { min: 1, label: 'UNIT' },
    run: (a, io) => attachCommand('attach', a, io),
  },
  detach: {
    options: { 'dry-run': DRY_RUN, root: ROOT },
    positionals: { min: 1, label: 'UNIT' },
    run: (a, io) => attachCommand('detach', a, io),
  },
  reload: { options: { port: PORT, control_socket: CONTROL }, run: reloadVerb },
  adopt: {
    options: {
      port: PORT,
      control_socket: CONTROL,
      pid: { type: 'number', describe: "The old epmd's pid (default: the C epmd that holds the port)" },
      'dry-run': DRY_RUN,
      start: flag(
        'Start epmd.socket and epmd.service once the old epmd is gone (--no-start: sdepmd is started another way)',
        true,
      ),
    },
    run: adoptVerb,
  },
  listen: {
    options: {
      port: PORT,
      'dry-run': DRY_RUN,
      root: ROOT,
      reset: flag("Remove the drop-in: listen on every address again (the shipped epmd.socket's ListenStream=4369)"),
      later: flag(
        'Write the drop-in and reload only: the addresses apply at the next start of epmd.socket (a boot), with no gap now',
      ),
    },
    positionals: { min: 0, label: 'ADDRESS' },
    run: (a, io) => exposureCommand('listen', a, io),
  },
  allow: {
    options: {
      'dry-run': DRY_RUN,
      root: ROOT,
      reset: flag('Remove the drop-in: let every address reach epmd.socket again'),
    },
    positionals: { min: 0, label: 'CIDR' },
    run: (a, io) => exposureCommand('allow', a, io),
  },
};

/** The options a verb takes (without --help), as its help lists them. */
export function verbOptions(verb: string): string[] {
  return Object.keys(SPECS[verb]?.options ?? {});
}

export async function runSubcommand(argv: readonly string[], io: CliIo): Promise<number> {
  const verb = argv[0]!;
  const spec = SPECS[verb];
  const summary = VERBS.find((v) => v.name === verb);
  if (!spec || !summary) {
    io.stderr(usageMessage(`unknown command ${JSON.stringify(verb)}`));
    return USAGE_EXIT_CODE;
  }
  let failure: string | null = null;
  let output = '';
  const parser = (yargs([...argv.slice(1)]) as Argv<Record<string, unknown>>)
    .scriptName(`sdepmd ${verb}`)
    .usage(`Usage: sdepmd ${verb} ${summary.args}\n\n${summary.summary}.`)
    .parserConfiguration({ 'camel-case-expansion': false, 'short-option-groups': false, 'dot-notation': false })
    .options(spec.options)
    .version(false)
    .help('help')
    .alias('help', 'h')
    // Unknown options are errors; positional words are checked below, against the verb's own count.
    .strictOptions()
    .exitProcess(false)
    .wrap(Math.min(110, process.stdout.columns || 110))
    .fail((message, error) => {
      failure = message || error?.message || 'invalid arguments';
      throw new Error(failure);
    });
  let args: VerbArgs | null = null;
  try {
    args = await parser.parseAsync([...argv.slice(1)], {}, (_e, _a, out) => {
      output = out;
    });
  } catch (err) {
    failure ??= (err as Error).message;
  }
  if (output) {
    io.stdout(output.endsWith('\n') ? output : `${output}\n`);
    if (!failure) return 0;
  }
  const positionals = args?._.map(String) ?? [];
  if (!failure && args) {
    const want = spec.positionals;
    if (!want && positionals.length > 0) failure = `unexpected argument ${JSON.stringify(positionals[0])}`;
    else if (want && positionals.length < want.min) failure = `give at least ${want.min} ${want.label}`;
  }
  if (failure !== null && /^Unknown arguments?:/.test(failure))
    failure = unknownWords(argv.slice(1), Object.keys(spec.options)) ?? failure;
  if (failure || !args) {
    io.stderr(usageMessage(failure ?? 'invalid arguments', verb));
    return USAGE_EXIT_CODE;
  }
  return spec.run(args, io);
}

/** yargs says "Unknown argument: x" without the dashes: name the word as typed, with the closest option. */
function unknownWords(words: readonly string[], known: readonly string[]): string | null {
  const names = [...known, 'help', 'h'];
  const flag = words.find((w) => /^--?[A-Za-z]/.test(w) && !names.includes(w.replace(/^--?/, '').split('=')[0]!));
  if (flag !== undefined) return unknownFlagMessage(flag, names, '--');
  const word = words.find((w) => !w.startsWith('-'));
  return word === undefined ? null : `unexpected argument ${JSON.stringify(word)}`;
}

/** A usage error found after parsing (a bad port, a bad address): same wording and exit code as the parser's. */
function usageError(io: CliIo, message: string, verb: string): number {
  io.stderr(usageMessage(message, verb));
  return USAGE_EXIT_CODE;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

async function attachCommand(verb: 'attach' | 'detach', args: VerbArgs, io: CliIo): Promise<number> {
  const deps: AttachDeps = {
    systemctl: (a) => run('systemctl', ['--no-pager', ...a], 60_000),
    stdout: io.stdout,
    stderr: io.stderr,
  };
  const root = str(args.root);
  const opts = {
    dryRun: args['dry-run'] === true,
    ...(root !== undefined ? { root } : {}),
    ...(args.wants === true ? { content: dropInContent('wants') } : {}),
    force: args.force === true,
  };
  const units = args._.map(String);
  return verb === 'attach' ? attachUnits(units, opts, deps) : detachUnits(units, opts, deps);
}

async function exposureCommand(verb: ExposureVerb, args: VerbArgs, io: CliIo): Promise<number> {
  const port = resolvePort(args.port, io.env);
  if (!port.ok) return usageError(io, port.error, verb);
  const words = args._.map(String);
  if (args.reset === true && words.length > 0) return usageError(io, '--reset takes no addresses', verb);
  if (args.reset !== true && words.length === 0)
    return usageError(io, `give at least one ${verb === 'listen' ? 'ADDRESS' : 'CIDR'}, or --reset`, verb);
  const root = str(args.root);
  return applyExposure(
    verb,
    {
      words,
      reset: args.reset === true,
      dryRun: args['dry-run'] === true,
      later: args.later === true,
      port: port.value,
      ...(root !== undefined ? { root } : {}),
    },
    { systemctl: (a) => run('systemctl', ['--no-pager', ...a], 120_000), stdout: io.stdout, stderr: io.stderr },
  );
}

/** `sdepmd reload` (the unit's ExecReload=): exit 0 once the new code serves, 1 when the upgrade failed. */
async function reloadVerb(args: VerbArgs, io: CliIo): Promise<number> {
  const t = target(args, io);
  if (typeof t === 'string') return usageError(io, t, 'reload');
  const { reloadCommand } = await import('./reload');
  return reloadCommand(t.control, io);
}

/** `sdepmd adopt`: exit 0 when every registration of the old epmd was adopted (or there was none). */
async function adoptVerb(args: VerbArgs, io: CliIo): Promise<number> {
  const t = target(args, io);
  if (typeof t === 'string') return usageError(io, t, 'adopt');
  const pid = typeof args.pid === 'number' && Number.isInteger(args.pid) && args.pid > 0 ? args.pid : undefined;
  if (args.pid !== undefined && pid === undefined) return usageError(io, '--pid must be a process id', 'adopt');
  const { adoptCommand } = await import('./adopt');
  return adoptCommand(
    { port: t.port, controlPath: t.control, pid, dryRun: args['dry-run'] === true, startUnits: args.start !== false },
    io,
  );
}

/** Exit codes: 0 healthy (warnings allowed), 1 at least one error finding. */
async function doctorCommand(args: VerbArgs, io: CliIo): Promise<number> {
  const port = resolvePort(args.port, io.env);
  if (!port.ok) return usageError(io, port.error, 'doctor');
  const snapshot = await gatherSnapshot(port.value);
  if (args.snapshot === true) {
    io.stdout(`${JSON.stringify(snapshot, null, 2)}\n`);
    return 0;
  }
  const findings = diagnose(snapshot);
  const healthy = isHealthy(findings);
  if (args.json === true) io.stdout(`${JSON.stringify({ healthy, findings }, null, 2)}\n`);
  else io.stdout(formatFindings(findings, snapshot));
  return healthy ? 0 : 1;
}

function target(args: VerbArgs, io: CliIo): { port: number; control: string } | string {
  const port = resolvePort(args.port, io.env);
  if (!port.ok) return port.error;
  return { port: port.value, control: str(args.control_socket) ?? controlSocketPath(port.value, io.env) };
}

/** Says why nothing answered (and what to run next); exit code 1. */
async function noAnswer(
  io: CliIo,
  verb: string,
  t: { port: number; control: string },
  controlError: unknown,
  json: boolean,
): Promise<number> {
  const explained = explainNoAnswer(await gatherNoAnswer(t.port, t.control, controlError));
  if (json) io.stdout(`${JSON.stringify({ answering: false, ...explained }, null, 2)}\n`);
  else io.stderr(formatNoAnswer(verb, explained));
  return 1;
}

/** Exit codes: 0 listed, 1 no epmd answers. */
async function namesCommand(args: VerbArgs, io: CliIo): Promise<number> {
  const t = target(args, io);
  if (typeof t === 'string') return usageError(io, t, 'names');
  let nodes: NodeRecord[];
  try {
    nodes = await queryControl(t.control, 'names');
  } catch (controlError) {
    // No control socket (another epmd, or no access): the EPMD protocol gives all but the creation.
    try {
      nodes = await namesOverEpmd(t.port);
    } catch {
      return noAnswer(io, 'names', t, controlError, args.json === true);
    }
  }
  if (args.json === true) io.stdout(`${JSON.stringify(nodes, null, 2)}\n`);
  else if (nodes.length === 0) io.stdout('no nodes registered\n');
  else {
    const rows = nodes.map((n) => [
      n.name,
      String(n.port),
      String(n.nodeType),
      `${n.lowestVersion}-${n.highestVersion}`,
      n.creation === null ? '?' : String(n.creation),
      n.extra || '-',
    ]);
    io.stdout(table(['NAME', 'PORT', 'TYPE', 'VERSIONS', 'CREATION', 'EXTRA'], rows));
  }
  return 0;
}

async function namesOverEpmd(port: number): Promise<NodeRecord[]> {
  const endpoint = { host: '127.0.0.1', port };
  const listed = await names(endpoint);
  const records: NodeRecord[] = [];
  for (const { name } of listed.nodes) {
    const found = await portPlease(endpoint, name);
    if (!found.found) continue;
    records.push({
      name,
      port: found.port,
      nodeType: describeNodeType(found.nodeType),
      protocol: found.protocol,
      highestVersion: found.highestVersion,
      lowestVersion: found.lowestVersion,
      extra: found.extra.toString('hex'),
      creation: null,
    });
  }
  return records;
}

/** Exit codes: 0 running, 1 no sdepmd answers on the control socket (the cause is printed). */
async function statusCommand(args: VerbArgs, io: CliIo): Promise<number> {
  const t = target(args, io);
  if (typeof t === 'string') return usageError(io, t, 'status');
  let status: StatusRecord;
  try {
    status = await queryControl(t.control, 'status');
  } catch (err) {
    return noAnswer(io, 'status', t, err, args.json === true);
  }
  if (args.json === true) {
    io.stdout(`${JSON.stringify(status, null, 2)}\n`);
    return 0;
  }
  const c = status.counts;
  const fd = status.fdStore;
  io.stdout(
    [
      `sdepmd ${status.version}, pid ${status.pid}, up ${formatDuration(status.uptimeSeconds)}${status.underSystemd ? ', under systemd' : ''}`,
      `sockets:       ${status.sockets.map(describeSocket).join(', ')}`,
      `registered:    ${status.registered} node(s)`,
      `lookups:       ${c.lookups} (${c.lookupsFound} found), NAMES ${c.namesRequests}`,
      `registrations: ${c.registrations}, unregistrations ${c.unregistrations}`,
      `refused:       ${c.refused}${describeRefusals(status.refusals)}, limit hits ${c.limitHits}`,
      `connections:   ${status.openConnections} open, ${c.connections} since start`,
      `log level:     ${status.logLevel}`,
      ...(fd
        ? [
            `fd store:      ${
              fd.enabled
                ? `${fd.stored} stored, ${fd.restored} restored at start${fd.notRestored ? `, ${fd.notRestored} not restored (their nodes went away while epmd was down)` : ''}`
                : `off${fd.detail ? ` (${fd.detail})` : ''}`
            }`,
          ]
        : []),
    ].join('\n') + '\n',
  );
  return 0;
}

function describeRefusals(refusals: StatusRecord['refusals']): string {
  const parts = Object.entries(refusals ?? {})
    .filter(([, n]) => n > 0)
    .map(([why, n]) => `${why} ${n}`);
  return parts.length > 0 ? ` (${parts.join(', ')})` : '';
}

/**
 * Exit codes: 0 printed (or written), 1 no sdepmd answers (with --output: sdepmd_up 0 is written and the exit code
 * is 0, so that a timer does not fail every minute while epmd is idle), or the file could not be written.
 */
async function metricsCommand(args: VerbArgs, io: CliIo): Promise<number> {
  const t = target(args, io);
  if (typeof t === 'string') return usageError(io, t, 'metrics');
  const output = str(args.output);
  let text: string;
  try {
    text = formatMetrics(await queryControl(t.control, 'status'));
  } catch (err) {
    const code = await noAnswer(io, 'metrics', t, err, false);
    if (output === undefined) return code;
    text = formatDown();
  }
  if (output === undefined) {
    io.stdout(text);
    return 0;
  }
  try {
    writeAtomically(output, text);
  } catch (err) {
    io.stderr(`sdepmd metrics: cannot write ${output}: ${(err as Error).message}\n`);
    return 1;
  }
  return 0;
}

function describeSocket(s: StatusRecord['sockets'][number]): string {
  const address = formatEndpoint(s.address, s.port);
  return s.source === address ? address : `${address} (${s.source})`;
}

export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

export function formatDuration(seconds: number): string {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return d > 0 ? `${d}d ${h}h ${m}m` : h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${s}s` : `${s}s`;
}
