/**
 * The operator surface of the command line: help that lists everything, typo suggestions, each verb's own options,
 * one wording and exit code for every usage error, and no message naming a flag that does not exist.
 */
import * as fs from 'fs';
import * as path from 'path';
import { FLAGS, topLevelHelp, unknownWordsMessage } from '../../src/cli/cli';
import { runCli } from '../support/run-cli';
import { editDistance, suggest, SUBCOMMANDS, VERBS } from '../../src/cli/verbs';
import { verbOptions } from '../../src/operator/commands';
import { resolveDaemonConfig } from '../../src/daemon/config';

const run = runCli;

const USAGE_ERROR = /^sdepmd: [^\n]+ \(see sdepmd (?:[a-z]+ )?--help\)\n$/;
const FLAG_NAMES = new Set(FLAGS.flatMap((f) => [f.name, ...(f.alias ? [f.alias] : [])]));

describe('sdepmd --help', () => {
  test('lists every subcommand and every flag, and needs no parser', async () => {
    for (const argv of [['--help'], ['-help'], ['-h'], ['help'], ['-port', '4370', '--help']]) {
      const r = await run(argv);
      expect({ argv, code: r.code, stderr: r.stderr }).toEqual({ argv, code: 0, stderr: '' });
      expect(r.stdout).toBe(topLevelHelp());
    }
    const help = topLevelHelp();
    for (const verb of SUBCOMMANDS) expect(help).toMatch(new RegExp(`^  ${verb} +\\S`, 'm'));
    for (const f of FLAGS) expect(help).toMatch(new RegExp(`^  -${f.name}\\b`, 'm'));
    expect(SUBCOMMANDS).toEqual([
      'names',
      'status',
      'metrics',
      'doctor',
      'attach',
      'detach',
      'reload',
      'adopt',
      'listen',
      'allow',
    ]);
    // No line wider than the terminal width it was laid out for.
    for (const line of help.split('\n')) expect(line.length).toBeLessThanOrEqual(112);
  });

  test('--version', async () => {
    const r = await run(['--version']);
    expect(r).toEqual({ code: 0, stdout: expect.stringMatching(/^\d+\.\d+\.\d+\n$/), stderr: '' });
  });
});

describe('typos get a suggestion', () => {
  test.each([
    [['doctr'], 'unknown command "doctr"; did you mean "doctor"?'],
    [['statsu'], 'unknown command "statsu"; did you mean "status"?'],
    [['nmaes'], 'unknown command "nmaes"; did you mean "names"?'],
    [['frobnicate'], 'unknown command "frobnicate"'],
    [['-prot', '4370'], 'unknown flag -prot; did you mean -port?'],
    [['-nmaes'], 'unknown flag -nmaes; did you mean -names?'],
    [['-statsu'], 'unknown flag -statsu; did you mean the command "status"?'],
    [['-dd'], 'unknown flag -dd; did you mean -d?'],
    [['--relaxed-command-check'], 'unknown flag --relaxed-command-check; did you mean -relaxed_command_check?'],
  ])('%j', async (argv, message) => {
    expect(unknownWordsMessage(argv)).toBe(message);
    const r = await run(argv);
    expect(r).toEqual({ code: 1, stdout: '', stderr: `sdepmd: ${message} (see sdepmd --help)\n` });
  });

  test('in a verb: the closest of its own options', async () => {
    expect(await run(['status', '--jsno'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'sdepmd: unknown flag --jsno; did you mean --json? (see sdepmd status --help)\n',
    });
    // --wants is attach's: detach does not know it, and does not suggest it.
    const r = await run(['detach', '--wants', 'x']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^sdepmd: unknown flag --wants(;| \(see)/);
  });

  test('edit distance counts a swap as one edit', () => {
    expect(editDistance('doctor', 'doctor')).toBe(0);
    expect(editDistance('docotr', 'doctor')).toBe(1);
    expect(editDistance('x', 'names')).toBe(5);
    expect(suggest('x', SUBCOMMANDS)).toBeNull();
  });
});

describe('each verb lists only its own options', () => {
  test.each(VERBS.map((v) => [v.name]))('%s --help', async (verb) => {
    const r = await run([verb, '--help']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain(`Usage: sdepmd ${verb} `);
    const listed = [...r.stdout.matchAll(/^\s+(?:-\w, )?--([\w-]+)/gm)].map((m) => m[1]).filter((o) => o !== 'help');
    expect(listed.sort()).toEqual(verbOptions(verb).sort());
  });

  test('the options each verb has', () => {
    expect(verbOptions('attach').sort()).toEqual(['dry-run', 'force', 'root', 'wants']);
    expect(verbOptions('detach').sort()).toEqual(['dry-run', 'root']);
    for (const v of ['attach', 'detach'])
      for (const o of ['port', 'json', 'control_socket']) expect(verbOptions(v)).not.toContain(o);
  });
});

describe('usage errors: exit 1 and the same wording everywhere', () => {
  test.each([
    [['-bogus']],
    [['-port', 'abc']],
    [['-port', 'abc', '-names']],
    [['-max_connections', 'x']],
    [['-names', '-kill']],
    [['status', '--port', 'abc']],
    [['names', '--port', '0']],
    [['metrics', '--port', '70000']],
    [['doctor', '--bogus']],
    [['doctor', 'extra']],
    [['attach']],
    [['listen']],
    [['listen', 'not-an-address']],
    [['allow', '10.0.0.0/99']],
    [['allow', '--reset', '10.0.0.0/8']],
  ])('%j', async (argv) => {
    const r = await run(argv);
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 1, stdout: '' });
    expect(r.stderr).toMatch(USAGE_ERROR);
  });
});

describe('every flag a message names exists', () => {
  const named = (text: string) =>
    [...text.matchAll(/(?:^|[\s(`'"])(--?[a-z][a-z_-]*)/g)].map((m) => m[1]!.replace(/^--?/, ''));

  test('in the errors of every daemon flag', () => {
    const bad: Record<string, string> = {
      port: 'x',
      packet_timeout: '0',
      request_budget: '0',
      delay_accept: 'x',
      delay_write: 'x',
      max_connections: 'x',
      max_connections_per_peer: 'x',
      max_registrations: 'x',
      fdstore_max: 'x',
      address: 'nonsense',
    };
    for (const [flag, value] of Object.entries(bad)) {
      const r = resolveDaemonConfig({ [flag]: value }, {});
      expect(r.ok).toBe(false);
      if (r.ok) continue;
      expect({ flag, named: named(r.error) }).toEqual({ flag, named: expect.arrayContaining([flag]) });
      for (const n of named(r.error))
        expect({ message: r.error, flag: n, exists: FLAG_NAMES.has(n) }).toEqual({
          message: r.error,
          flag: n,
          exists: true,
        });
    }
  });

  test('in the sources: every quoted flag name in the daemon config and CLI is a real flag', () => {
    const src = path.join(__dirname, '..', '..', 'src');
    for (const file of ['daemon/config.ts', 'cli/cli.ts']) {
      const text = fs.readFileSync(path.join(src, file), 'utf8');
      for (const m of text.matchAll(/['`](--?[a-z][a-z_]+)\b/g)) {
        const name = m[1]!.replace(/^--?/, '');
        if (['help', 'h', 'version'].includes(name)) continue;
        expect({ file, flag: m[1], exists: FLAG_NAMES.has(name) }).toEqual({ file, flag: m[1], exists: true });
      }
    }
  });
});
