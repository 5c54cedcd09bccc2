/**
 * Operator subcommands: `sdepmd names`, `sdepmd status`, `sdepmd doctor`, `sdepmd attach`, `sdepmd detach`.
 * Each has --help, a --json form for scripts, and exit codes a script can use.
 */
import yargs from 'yargs/yargs';
import type { CliIo } from '../cli/cli';
import { resolvePort } from '../daemon/config';
import { controlSocketPath, describeNodeType, queryControl, type NodeRecord, type StatusRecord } from '../daemon/control';
import { CannotConnectError, names, portPlease } from '../cli/client';
import { attachUnits, detachUnits, dropInContent, type AttachDeps } from './attach';
import { diagnose, formatFindings, isHealthy } from './findings';
import { gatherSnapshot, run } from './snapshot';


export async function runSubcommand(argv: readonly string[], io: CliIo): Promise<number> {
  let failure: string | null = null;
  let output = '';
  let code = 0;
  const parser = yargs([...argv])
    .scriptName('sdepmd')
    .parserConfiguration({ 'camel-case-expansion': false })
    .option('port', { type: 'string', describe: 'The epmd port (default: ERL_EPMD_PORT, else 4369)', global: true })
    .option('json', { type: 'boolean', default: false, describe: 'Print JSON for scripts', global: true })
    .option('control_socket', { type: 'string', describe: 'The daemon\'s control socket (default: derived from the port)', global: true })
    .command('names', 'List the registered nodes (name, port, type, versions, extra, creation)', {}, async (a) => {
      code = await namesCommand(a as CommonArgs, io);
    })
    .command('status', 'Report the daemon\'s version, uptime, sockets, counters, log level and systemd state', {}, async (a) => {
      code = await statusCommand(a as CommonArgs, io);
    })
    .command(
      'doctor',
      'Inspect this host (epmd.socket, epmd processes and their cgroups, Erlang units, registrations) and print each problem with its evidence and the commands that fix it. Exit 0 when healthy, 1 when not.',
      (y) => y.option('snapshot', { type: 'boolean', default: false, describe: 'Print the gathered host snapshot (the inputs of the checks) as JSON instead of the findings, e.g. for a bug report' }),
      async (a) => {
        code = await doctorCommand(a as CommonArgs & { snapshot?: boolean }, io);
      },
    )
    .command(
      'attach <units...>',
      'Make Erlang units depend on epmd.service: write /etc/systemd/system/UNIT.d/epmd-dependency.conf (Requires=, After=, ERL_AFLAGS=-start_epmd false), then daemon-reload',
      (y) => attachOptions(y),
      async (a) => {
        code = await attachCommand('attach', a as unknown as AttachArgs, io);
      },
    )
    .command(
      'detach <units...>',
      'Remove the drop-in that `sdepmd attach` wrote, then daemon-reload',
      (y) => attachOptions(y),
      async (a) => {
        code = await attachCommand('detach', a as unknown as AttachArgs, io);
      },
    )
    .demandCommand(1)
    .strict()
    .help()
    .exitProcess(false)
    .fail((message, error) => {
      failure = message || error?.message || 'invalid arguments';
      // Throwing stops yargs here: without it, it would still run the command's handler.
      throw new Error(failure);
    });
  try {
    await parser.parseAsync([...argv], {}, (_e, _a, out) => {
      output = out;
    });
  } catch (err) {
    failure ??= (err as Error).message;
  }
  if (output) io.stdout(output.endsWith('\n') ? output : `${output}\n`);
  if (failure) {
    io.stderr(`sdepmd: ${failure} (see sdepmd ${argv[0]} --help)\n`);
    return 2;
  }
  return code;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function attachOptions(y: any): any {
  return y
    .positional('units', { type: 'string', array: true, describe: 'Unit names (".service" is added when there is no suffix)' })
    .option('dry-run', { type: 'boolean', default: false, describe: 'Print what would change, change nothing' })
    .option('root', { type: 'string', describe: 'Write under this directory instead of / (for tests; skips systemctl)' })
    .option('wants', { type: 'boolean', default: false, describe: 'Depend on epmd.socket only (Wants=/After=epmd.socket): epmd restarts are never passed on to the app' });
}

interface AttachArgs {
  units: string[];
  'dry-run'?: boolean;
  root?: string;
  wants?: boolean;
}

async function attachCommand(verb: 'attach' | 'detach', args: AttachArgs, io: CliIo): Promise<number> {
  const deps: AttachDeps = {
    systemctl: (a) => run('systemctl', ['--no-pager', ...a], 60_000),
    stdout: io.stdout,
    stderr: io.stderr,
  };
  const opts = {
    dryRun: Boolean(args['dry-run']),
    ...(args.root !== undefined ? { root: args.root } : {}),
    ...(args.wants ? { content: dropInContent('wants') } : {}),
  };
  return verb === 'attach' ? attachUnits(args.units.map(String), opts, deps) : detachUnits(args.units.map(String), opts, deps);
}

/** Exit codes: 0 healthy (warnings allowed), 1 at least one error finding. */
async function doctorCommand(args: CommonArgs & { snapshot?: boolean }, io: CliIo): Promise<number> {
  const port = resolvePort(args.port, io.env);
  if (!port.ok) return usageError(io, port.error);
  const snapshot = await gatherSnapshot(port.value);
  if (args.snapshot) {
    io.stdout(`${JSON.stringify(snapshot, null, 2)}\n`);
    return 0;
  }
  const findings = diagnose(snapshot);
  const healthy = isHealthy(findings);
  if (args.json) io.stdout(`${JSON.stringify({ healthy, findings }, null, 2)}\n`);
  else io.stdout(formatFindings(findings, snapshot));
  return healthy ? 0 : 1;
}

interface CommonArgs {
  port?: string;
  json?: boolean;
  control_socket?: string;
}

function target(args: CommonArgs, io: CliIo): { port: number; control: string } | string {
  const port = resolvePort(args.port, io.env);
  if (!port.ok) return port.error;
  return { port: port.value, control: args.control_socket ?? controlSocketPath(port.value, io.env) };
}

/** Exit codes: 0 listed, 1 no epmd answers. */
async function namesCommand(args: CommonArgs, io: CliIo): Promise<number> {
  const t = target(args, io);
  if (typeof t === 'string') return usageError(io, t);
  let nodes: NodeRecord[];
  try {
    nodes = await queryControl(t.control, 'names');
  } catch {
    // No control socket (another epmd, or no access): the EPMD protocol gives all but the creation.
    try {
      nodes = await namesOverEpmd(t.port);
    } catch (err) {
      return cannotConnect(io, t.port, err);
    }
  }
  if (args.json) io.stdout(`${JSON.stringify(nodes, null, 2)}\n`);
  else if (nodes.length === 0) io.stdout('no nodes registered\n');
  else {
    const rows = nodes.map((n) => [n.name, String(n.port), String(n.nodeType), `${n.lowestVersion}-${n.highestVersion}`, n.creation === null ? '?' : String(n.creation), n.extra || '-']);
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

/** Exit codes: 0 running, 1 no sdepmd answers on the control socket. */
async function statusCommand(args: CommonArgs, io: CliIo): Promise<number> {
  const t = target(args, io);
  if (typeof t === 'string') return usageError(io, t);
  let status: StatusRecord;
  try {
    status = await queryControl(t.control, 'status');
  } catch (err) {
    io.stderr(`sdepmd: no sdepmd answers on ${t.control}: ${(err as Error).message}\n`);
    return 1;
  }
  if (args.json) {
    io.stdout(`${JSON.stringify(status, null, 2)}\n`);
    return 0;
  }
  const c = status.counts;
  io.stdout(
    [
      `sdepmd ${status.version}, pid ${status.pid}, up ${formatDuration(status.uptimeSeconds)}${status.underSystemd ? ', under systemd' : ''}`,
      `sockets:       ${status.sockets.map(describeSocket).join(', ')}`,
      `registered:    ${status.registered} node(s)`,
      `lookups:       ${c.lookups} (${c.lookupsFound} found), NAMES ${c.namesRequests}`,
      `registrations: ${c.registrations}, unregistrations ${c.unregistrations}`,
      `refused:       ${c.refused}, limit hits ${c.limitHits}`,
      `connections:   ${status.openConnections} open, ${c.connections} since start`,
      `log level:     ${status.logLevel}`,
      ...(status.fdStore ? [`fd store:      ${status.fdStore.enabled ? `${status.fdStore.stored} stored, ${status.fdStore.restored} restored at start` : `off${status.fdStore.detail ? ` (${status.fdStore.detail})` : ''}`}`] : []),
    ].join('\n') + '\n',
  );
  return 0;
}

function describeSocket(s: StatusRecord['sockets'][number]): string {
  const address = `${s.address.includes(':') ? `[${s.address}]` : s.address}:${s.port}`;
  return s.source === address ? address : `${address} (${s.source})`;
}

function usageError(io: CliIo, message: string): number {
  io.stderr(`sdepmd: ${message}\n`);
  return 2;
}

function cannotConnect(io: CliIo, port: number, err: unknown): number {
  const why = err instanceof CannotConnectError ? 'nothing listens there' : (err as Error).message;
  io.stderr(`sdepmd: cannot reach epmd on port ${port}: ${why}\n`);
  return 1;
}

export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

export function formatDuration(seconds: number): string {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return d > 0 ? `${d}d ${h}h ${m}m` : h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${s}s` : `${s}s`;
}
