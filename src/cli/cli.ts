/**
 * The command line. It speaks the C epmd's dialect (single-dash long flags: `-port 4369 -names`), so that sdepmd
 * can stand in wherever `epmd` is invoked, and offers the same options with modern spellings (`--port`).
 *
 *   sdepmd [-port N] [-address LIST] [-d ...] [-relaxed_command_check] [-systemd] [-daemon] ...   run the daemon
 *   sdepmd -names | -kill | -stop NAME                                                             ask a running one
 */
import type { Argv } from 'yargs';
import { resolveDaemonConfig, resolvePort, type DaemonFlags, UPGRADE_CHECK_ENV } from '../daemon/config';
import { CannotConnectError, exchangeLocal } from './client';
import { C_EPMD_USAGE, needsCUsage } from './c-usage';
import { decodePortHeaderReply, encodeNameRequest, encodeSimpleRequest } from '../protocol/codec';
import { DUMP_REQ, KILL_REQ, NAMES_REQ, STOP_REQ } from '../protocol/constants';
import { VERSION } from '../version';
import { parseDaemonFlags } from './fast-flags';
import { SUBCOMMANDS, suggest, unknownFlagMessage, usageMessage, USAGE_EXIT_CODE, VERBS, wrapText } from './verbs';
import { either, literal, object, string, type Shape } from '../util/shape';
import { lazyChildProcess } from '../util/lazy-modules';

export { SUBCOMMANDS } from './verbs';

export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: NodeJS.ProcessEnv;
}

const PROCESS_IO: CliIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
};

/** The parsed command line. */
export interface CliArgs extends DaemonFlags {
  readonly names?: boolean;
  readonly kill?: boolean;
  readonly stop?: string;
  readonly dump?: boolean;
  readonly started?: boolean;
  readonly daemon?: boolean;
}

interface FlagSpec {
  readonly name: string;
  readonly type: 'string' | 'boolean' | 'count';
  readonly describe: string;
  readonly alias?: string;
  /** What a string flag's value is called in the help. */
  readonly arg?: string;
}

/** The daemon's flags and the C client's verbs: one table for the parser, the help, and typo suggestions. */
export const FLAGS: readonly FlagSpec[] = [
  {
    name: 'port',
    type: 'string',
    arg: 'N',
    describe: 'Port to listen on / to ask (default: ERL_EPMD_PORT, else 4369)',
  },
  {
    name: 'address',
    type: 'string',
    arg: 'LIST',
    describe:
      'Comma-separated addresses to listen on (loopback is always added; default: ERL_EPMD_ADDRESS, else all). Ignored under socket activation: see sdepmd listen',
  },
  {
    name: 'debug',
    alias: 'd',
    type: 'count',
    describe: 'More log detail; repeat for more (-d: every request, -d -d: packet hex)',
  },
  {
    name: 'relaxed_command_check',
    type: 'boolean',
    describe: 'Allow -kill with nodes registered, and -stop (also ERL_EPMD_RELAXED_COMMAND_CHECK)',
  },
  { name: 'systemd', type: 'boolean', describe: 'Require sockets passed by systemd (epmd.socket)' },
  { name: 'daemon', type: 'boolean', describe: 'Detach into the background once listening' },
  {
    name: 'packet_timeout',
    type: 'string',
    arg: 'SECONDS',
    describe: "Idle seconds allowed before a connection's request is complete (default 60)",
  },
  {
    name: 'delay_accept',
    type: 'string',
    arg: 'SECONDS',
    describe: 'Seconds to wait before serving a new connection (testing)',
  },
  {
    name: 'delay_write',
    type: 'string',
    arg: 'SECONDS',
    describe: 'Seconds to wait before each write of a reply (testing)',
  },
  {
    name: 'request_budget',
    type: 'string',
    arg: 'SECONDS',
    describe: 'Seconds a connection may take to send its whole request, however slowly it dribbles (default 60)',
  },
  { name: 'max_connections', type: 'string', arg: 'N', describe: 'Most open connections (0: no limit)' },
  {
    name: 'max_connections_per_peer',
    type: 'string',
    arg: 'N',
    describe: 'Most open connections per non-loopback peer (0: no limit)',
  },
  { name: 'max_registrations', type: 'string', arg: 'N', describe: 'Most registered nodes (0: no limit)' },
  {
    name: 'fdstore_max',
    type: 'string',
    arg: 'N',
    describe:
      "Keep up to N registrations in systemd's fd store, so that they survive restarts (needs FileDescriptorStoreMax=N and RuntimeDirectory= in the unit; default 0: off)",
  },
  {
    name: 'control_socket',
    type: 'string',
    arg: 'PATH',
    describe:
      'Path of the local control socket for sdepmd status and metrics (default: $RUNTIME_DIRECTORY or /run/sdepmd, control-PORT.sock; "none" for none)',
  },
  { name: 'names', type: 'boolean', describe: 'List the names registered with the running epmd' },
  {
    name: 'kill',
    type: 'boolean',
    describe: 'Kill the running epmd (refused while nodes are registered, unless relaxed)',
  },
  {
    name: 'stop',
    type: 'string',
    arg: 'NAME',
    describe: 'Unregister NAME by closing its connection (needs relaxed command check)',
  },
  {
    name: 'dump',
    type: 'boolean',
    describe: "Dump the running epmd's table, as the C epmd does (NUL-separated lines)",
  },
  { name: 'started', type: 'boolean', describe: 'Exit 0 if an epmd answers, 1 if not; print nothing' },
];

/** Every spelling the top level accepts, without dashes (for "did you mean"). */
const FLAG_NAMES: readonly string[] = [
  ...FLAGS.flatMap((f) => (f.alias ? [f.name, f.alias] : [f.name])),
  'help',
  'h',
  'version',
];

const HELP_WIDTH = 110;

/** `sdepmd --help`: every way to run sdepmd, every command and every flag. Rendered without yargs (fast). */
export function topLevelHelp(): string {
  const verbWidth = Math.max(...VERBS.map((v) => v.name.length));
  const flag = (f: FlagSpec) => `-${f.name}${f.alias ? `, -${f.alias}` : ''}${f.arg ? ` ${f.arg}` : ''}`;
  const flagWidth = Math.max(...FLAGS.map((f) => flag(f).length));
  const row = (left: string, width: number, text: string) =>
    `  ${left.padEnd(width)}  ${wrapText(text, HELP_WIDTH, width + 4)}`;
  return [
    'sdepmd: a systemd-native Erlang Port Mapper Daemon (epmd)',
    '',
    'Usage:',
    '  sdepmd [-port N] [-address LIST] [-d ...] [-relaxed_command_check] [-systemd] [-daemon] ...   run the daemon',
    '  sdepmd [-port N] -names | -kill | -stop NAME | -dump | -started                             ask a running epmd',
    '  sdepmd COMMAND [OPTIONS]                                                                    operator commands',
    '',
    'Commands (sdepmd COMMAND --help for each):',
    ...VERBS.map((v) => row(v.name, verbWidth, v.summary)),
    '',
    'Flags (one dash, as for the C epmd, or two):',
    ...FLAGS.map((f) => row(flag(f), flagWidth, f.describe)),
    row('-help, -h', flagWidth, 'Print this help'),
    row('-version', flagWidth, "Print sdepmd's version"),
    '',
    'Exit codes: 0 success; 1 failure, no answer, or a usage error. Manual: man 8 sdepmd.',
    '',
  ].join('\n');
}

export function buildParser(argv: readonly string[]): Argv<CliArgs> {
  // Loaded here, not at start-up: the daemon's own flags are read without it (fast-flags.ts).
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a lazy load: import() would make every caller async
  const yargs = require('yargs/yargs') as typeof import('yargs/yargs');
  let parser = yargs([...argv])
    .scriptName('sdepmd')
    .parserConfiguration({ 'short-option-groups': false, 'camel-case-expansion': false, 'dot-notation': false });
  for (const f of FLAGS)
    parser = parser.option(f.name, { type: f.type, describe: f.describe, ...(f.alias ? { alias: f.alias } : {}) });
  return parser
    .conflicts('names', ['kill', 'stop', 'dump', 'started'])
    .conflicts('kill', ['stop', 'dump', 'started'])
    .conflicts('stop', ['dump', 'started'])
    .conflicts('dump', 'started')
    .version(VERSION)
    .help('help')
    .alias('help', 'h')
    .strict()
    .wrap(Math.min(110, process.stdout.columns || 110));
}

/**
 * The usage error for words the top level does not know: a misspelt command or flag gets a suggestion.
 * Returns null when every word is known (the parser's own message then stands).
 */
export function unknownWordsMessage(argv: readonly string[]): string | null {
  const first = argv[0];
  if (first !== undefined && !first.startsWith('-')) {
    const hint = suggest(first, SUBCOMMANDS);
    return `unknown command ${JSON.stringify(first)}${hint ? `; did you mean ${JSON.stringify(hint)}?` : ''}`;
  }
  for (const word of argv) {
    if (!/^--?[A-Za-z]/.test(word)) continue;
    const name = word.replace(/^--?/, '').split('=')[0]!;
    if (FLAG_NAMES.includes(name)) continue;
    // A command typed as a flag: point at the command.
    const verb = suggest(name, SUBCOMMANDS);
    if (verb !== null && suggest(name, FLAG_NAMES) === null)
      return `unknown flag ${word}; did you mean the command ${JSON.stringify(verb)}?`;
    return unknownFlagMessage(word, FLAG_NAMES, '-');
  }
  return null;
}

/** Runs the command line; resolves with the exit code (the daemon resolves only when it stops). */
export async function main(argv: readonly string[], io: CliIo = PROCESS_IO): Promise<number> {
  // Modern subcommands (`sdepmd status`, `sdepmd doctor`, ...) have their own parser; the rest is the C dialect.
  // Loaded only for them, so that the daemon and the C-dialect verbs do not pay for doctor's modules at start-up.
  if (argv[0] !== undefined && SUBCOMMANDS.includes(argv[0])) {
    const { runSubcommand } = await import('../operator/commands');
    return runSubcommand(argv, io);
  }
  // `-stop` with no name: the C client's usage and exit 1, as `epmd -stop` does.
  if (needsCUsage(argv)) {
    io.stderr(C_EPMD_USAGE);
    return 1;
  }
  // Help and version need no parser: answered before yargs is loaded.
  if (argv.some((a) => ['--help', '-help', '-h'].includes(a)) || (argv.length === 1 && argv[0] === 'help')) {
    io.stdout(topLevelHelp());
    return 0;
  }
  if (argv.length === 1 && ['--version', '-version'].includes(argv[0]!)) {
    io.stdout(`${VERSION}\n`);
    return 0;
  }
  const fast = parseDaemonFlags(argv);
  if (fast) return runDaemon(argv, fast, io);
  let parseError: string | null = null;
  let helpOrVersion = false;
  const parser = buildParser(argv)
    .exitProcess(false)
    .fail((message, error) => {
      parseError = message || error?.message || 'invalid arguments';
    });
  let args: CliArgs;
  let output = '';
  try {
    args = await parser.parseAsync([...argv], {}, (_err, _argv, out) => {
      output = out;
    });
  } catch (err) {
    parseError ??= (err as Error).message;
    args = {};
  }
  if (output) {
    helpOrVersion = true;
    io.stdout(output.endsWith('\n') ? output : `${output}\n`);
  }
  if (parseError) {
    io.stderr(usageMessage(unknownWordsMessage(argv) ?? parseError));
    return USAGE_EXIT_CODE;
  }
  if (helpOrVersion) return 0;

  if (args.names || args.kill || args.stop !== undefined || args.dump || args.started) return clientVerb(args, io);
  return runDaemon(argv, args, io);
}

async function runDaemon(argv: readonly string[], args: CliArgs, io: CliIo): Promise<number> {
  const resolved = resolveDaemonConfig(args, io.env);
  if (!resolved.ok) {
    io.stderr(usageMessage(resolved.error));
    return USAGE_EXIT_CODE;
  }
  if (args.daemon) return detach(argv, io);
  if (io.env[UPGRADE_CHECK_ENV] === '1') return upgradeCheck(io);
  // Loaded here so that the client verbs do not pay for the daemon's modules.
  const { startDaemon, StartupError, AlreadyRunningError } = await import('../daemon/daemon');
  try {
    const daemon = await startDaemon(resolved.value, {
      env: io.env,
      handleSignals: true,
      command: [entryScript(), ...argv],
    });
    tellParent({ type: 'ready' });
    return await daemon.stopped;
  } catch (err) {
    if (err instanceof StartupError) {
      io.stderr(`sdepmd: ${err.message}\n`);
      // Like the C epmd, finding another epmd on the port is not a failure (`erl` starts `epmd -daemon` blindly).
      const code = err instanceof AlreadyRunningError ? 0 : 1;
      tellParent(code === 0 ? { type: 'ready' } : { type: 'error', message: err.message });
      return code;
    }
    throw err;
  }
}

/**
 * Check mode, run by a live upgrade before it execs this code: load everything the daemon needs (its modules and
 * the native addon), read the hand-over the running code would leave, then say which version this is.
 */
async function upgradeCheck(io: CliIo): Promise<number> {
  await import('../daemon/daemon');
  const { loadAddon } = await import('../native/addon');
  const addon = loadAddon();
  if (addon instanceof Error) {
    io.stderr(`sdepmd: ${addon.message}\n`);
    return 1;
  }
  const { checkHandOverPreview } = await import('../daemon/upgrade');
  const refusal = checkHandOverPreview(io.env);
  if (refusal) {
    io.stderr(`sdepmd: ${refusal}\n`);
    return 1;
  }
  io.stdout(`sdepmd ${VERSION}\n`);
  return 0;
}

type DetachMessage = { type: 'ready' } | { type: 'error'; message: string };
const DETACH_MESSAGE: Shape<DetachMessage> = either(
  object({ type: literal('ready') }),
  object({ type: literal('error'), message: string }),
  '{"type":"ready"} or {"type":"error","message":...}',
);

/** With -daemon, the detached child reports to its parent over the IPC channel, then lets go of it. */
function tellParent(message: DetachMessage): void {
  if (!process.send || process.env.SDEPMD_DETACHED !== '1') return;
  process.send(message);
  process.disconnect?.();
}

/** The longest name `-stop` sends, as in the C epmd client. */
const MAX_STOP_NAME_BYTES = 1000;

/** The C epmd's client verbs, with its exact output lines, streams and exit codes. */
async function clientVerb(args: CliArgs, io: CliIo): Promise<number> {
  const port = resolvePort(args.port, io.env);
  if (!port.ok) {
    io.stderr(usageMessage(port.error));
    return USAGE_EXIT_CODE;
  }
  const noAnswer = () => {
    io.stdout('epmd: local epmd responded with <>\n');
    return 1;
  };
  try {
    if (args.names || args.dump || args.started) {
      const reply = await exchangeLocal(port.value, encodeSimpleRequest(args.dump ? DUMP_REQ : NAMES_REQ));
      if (args.started) return reply.length >= 4 ? 0 : 1;
      if (reply.length < 4) {
        io.stdout('epmd: no response from local epmd\n');
        return 1;
      }
      // One write, so that a pipe's reader gets the header and the names together, as from the C client (whose
      // stdout is buffered until it exits).
      const { epmdPort, text } = decodePortHeaderReply(reply);
      io.stdout(`epmd: up and running on port ${epmdPort} with data:\n${text}`);
      return 0;
    }
    if (args.kill) {
      const answer = await exchangeLocal(port.value, encodeSimpleRequest(KILL_REQ));
      if (answer.length < 2) return noAnswer();
      if (answer.subarray(0, 2).toString('latin1') === 'OK') {
        io.stdout('Killed\n');
        return 0;
      }
      io.stdout('Killing not allowed - living nodes in database.\n');
      return 1;
    }
    const name = Buffer.from(args.stop ?? '', 'utf8');
    if (name.length > MAX_STOP_NAME_BYTES) {
      io.stdout('epmd: Name too long!');
      return 1;
    }
    const answer = await exchangeLocal(port.value, encodeNameRequest(STOP_REQ, name));
    if (answer.length < 7) return noAnswer();
    // The C client prints the 7 bytes as a C string.
    const text = answer.subarray(0, 7).toString('latin1');
    io.stdout(`${text.split('\0')[0]}\n`);
    return 0;
  } catch (err) {
    if (args.started) return 1;
    if (err instanceof CannotConnectError) {
      io.stderr('epmd: Cannot connect to local epmd\n');
      return 1;
    }
    io.stdout('epmd: failed to read answer from local epmd\n');
    return 1;
  }
}

/**
 * -daemon: start the same command line without -daemon in a new session, detached from the terminal, and return
 * once it is listening, or say why it could not start.
 */
async function detach(argv: readonly string[], io: CliIo): Promise<number> {
  const rest = argv.filter((a) => a !== '-daemon' && a !== '--daemon');
  const entry = entryScript();
  const child = lazyChildProcess().spawn(process.execPath, [entry, ...rest], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    env: { ...io.env, SDEPMD_DETACHED: '1' },
  });
  const outcome = await new Promise<DetachMessage | { type: 'exit'; code: number }>((resolve) => {
    child.once('message', (m: unknown) => {
      try {
        resolve(DETACH_MESSAGE(m, 'message'));
      } catch (err) {
        resolve({ type: 'error', message: `the daemon sent an unexpected ${(err as Error).message}` });
      }
    });
    child.once('exit', (code) => resolve({ type: 'exit', code: code ?? 1 }));
  });
  child.unref();
  child.disconnect?.();
  if (outcome.type === 'ready') return 0;
  io.stderr(`sdepmd: ${outcome.type === 'error' ? outcome.message : `the daemon exited with code ${outcome.code}`}\n`);
  return 1;
}

/** The script that started this process, as it was invoked (a live upgrade runs it again, to get new code). */
function entryScript(): string {
  return process.argv[1] ?? require.main?.filename ?? __filename;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`sdepmd: internal error: ${(err as Error)?.message ?? String(err)}\n`);
      process.exit(70);
    },
  );
}
