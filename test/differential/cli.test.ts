/**
 * The client verbs, differentially: the C `epmd` client and sdepmd's own client (`node bin/sdepmd ...`), each run
 * against the C epmd and against sdepmd. All four combinations must print the same stdout/stderr and exit with the
 * same code; only the daemon's port number is masked (and DUMP's fd numbers).
 */
import { spawn } from 'node:child_process';
import { freePort, SDEPMD_BIN, startDaemon, stopAll, type DaemonKind, type TestDaemon } from '../support/daemons';
import { cEpmdAvailable, findCEpmd, peerDescribe } from '../support/peers';
import { alive2, Session, sleep } from './harness';
import { main, type CliIo } from '../../src/cli/cli';

type ClientKind = 'C client' | 'sdepmd client';
interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** The first chunk a pipe reader got from each client's stdout, in the last runClient() call of each. */
const firstChunk: Partial<Record<ClientKind, string>> = {};

function runClient(client: ClientKind, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const [cmd, argv] = client === 'C client' ? [findCEpmd()!, args] : [process.execPath, [SDEPMD_BIN, ...args]];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    delete firstChunk[client];
    child.stdout.on('data', (d: Buffer) => {
      firstChunk[client] ??= d.toString('latin1');
      stdout += d.toString('latin1');
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('latin1')));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const maskPort = (text: string, port: number) => text.split(String(port)).join('<PORT>');
const maskRun = (r: Run, port: number) => ({
  code: r.code,
  stdout: maskPort(r.stdout, port).replace(/fd = \d+/g, 'fd = <FD>'),
  stderr: maskPort(r.stderr, port),
});

/** A scenario: given a fresh daemon and a client, returns the transcript of the client runs. */
type Scenario = (
  d: TestDaemon,
  client: ClientKind,
  session: Session,
) => Promise<Record<string, ReturnType<typeof maskRun>>>;

const SCENARIOS: { name: string; relaxed: boolean; run: Scenario }[] = [
  {
    name: 'strict: -names empty, -names with nodes, -dump, -kill refused, -stop refused, -kill when empty',
    relaxed: false,
    run: async (d, client, s) => {
      const p = ['-port', String(d.port)];
      const out: Record<string, ReturnType<typeof maskRun>> = {};
      out['-names (empty)'] = maskRun(await runClient(client, [...p, '-names']), d.port);
      const r1 = await s.register('n1', alive2('node1', { port: 40001 }));
      const r2 = await s.register('n2', alive2('node2', { port: 40002, type: 72 }));
      out['-names'] = maskRun(await runClient(client, [...p, '-names']), d.port);
      out['-dump'] = maskRun(await runClient(client, [...p, '-dump']), d.port);
      out['-kill (nodes live)'] = maskRun(await runClient(client, [...p, '-kill']), d.port);
      out['-stop node1 (strict)'] = maskRun(await runClient(client, [...p, '-stop', 'node1']), d.port);
      out['-names after'] = maskRun(await runClient(client, [...p, '-names']), d.port);
      await r1.eof('eof 1');
      await r2.eof('eof 2');
      out['-kill (empty)'] = maskRun(await runClient(client, [...p, '-kill']), d.port);
      out['daemon exit'] = {
        code: await Promise.race([d.exited, sleep(3000).then(() => null)]),
        stdout: '',
        stderr: '',
      };
      return out;
    },
  },
  {
    name: 'relaxed: -stop NAME (STOPPED), -stop unknown (NOEXIST), -names, -kill with nodes (Killed)',
    relaxed: true,
    run: async (d, client, s) => {
      const p = ['-port', String(d.port)];
      const out: Record<string, ReturnType<typeof maskRun>> = {};
      const victim = await s.register('victim', alive2('victim', { port: 40003 }));
      await s.register('other', alive2('other', { port: 40004 }));
      out['-stop victim'] = maskRun(await runClient(client, [...p, '-stop', 'victim']), d.port);
      await victim.expectClosed('victim closed');
      out['-stop nosuch'] = maskRun(await runClient(client, [...p, '-stop', 'nosuch']), d.port);
      out['-stop (1001 chars)'] = maskRun(await runClient(client, [...p, '-stop', 'x'.repeat(1001)]), d.port);
      out['-names'] = maskRun(await runClient(client, [...p, '-names']), d.port);
      out['-kill (nodes live, relaxed)'] = maskRun(await runClient(client, [...p, '-kill']), d.port);
      out['daemon exit'] = {
        code: await Promise.race([d.exited, sleep(3000).then(() => null)]),
        stdout: '',
        stderr: '',
      };
      return out;
    },
  },
];

const d = peerDescribe('C epmd', cEpmdAvailable());

d('epmd client verbs: C client and sdepmd client, against C epmd and sdepmd', () => {
  afterAll(stopAll);

  for (const scenario of SCENARIOS) {
    test(
      scenario.name,
      async () => {
        const combos: [ClientKind, DaemonKind][] = [
          ['C client', 'c-epmd'],
          ['C client', 'sdepmd'],
          ['sdepmd client', 'c-epmd'],
          ['sdepmd client', 'sdepmd'],
        ];
        const transcripts = await Promise.all(
          combos.map(async ([client, kind]) => {
            const daemon = await startDaemon(kind, { args: scenario.relaxed ? ['-relaxed_command_check'] : [] });
            const session = new Session(daemon);
            try {
              return await scenario.run(daemon, client, session);
            } finally {
              session.closeAll();
              await daemon.stop();
            }
          }),
        );
        const reference = transcripts[0]!;
        if (process.env.SHOW_TRANSCRIPT) process.stdout.write(JSON.stringify(reference, null, 1) + '\n');
        // Sanity: the reference itself looks like the C client's documented output.
        expect(
          Object.values(reference).some((r) => r.stdout.includes('epmd: up and running on port <PORT> with data:\n')),
        ).toBe(true);
        combos.forEach(([client, kind], i) => {
          expect({ who: `${client} vs ${kind}`, ...transcripts[i] }).toEqual({
            who: `${client} vs ${kind}`,
            ...reference,
          });
        });
      },
      60_000,
    );
  }

  test('cannot connect (nothing listening): both clients print "epmd: Cannot connect to local epmd" and exit 1', async () => {
    const port = await freePort();
    for (const verb of [['-names'], ['-kill'], ['-stop', 'x'], ['-dump']]) {
      const c = await runClient('C client', ['-port', String(port), ...verb]);
      const s = await runClient('sdepmd client', ['-port', String(port), ...verb]);
      expect(c).toEqual({ code: 1, stdout: '', stderr: 'epmd: Cannot connect to local epmd\n' });
      expect(s).toEqual(c);
    }
    // ERL_EPMD_PORT is honoured by both clients too.
    const c = await runClient('C client', ['-names'], { ERL_EPMD_PORT: String(port) });
    const s = await runClient('sdepmd client', ['-names'], { ERL_EPMD_PORT: String(port) });
    expect(c).toEqual({ code: 1, stdout: '', stderr: 'epmd: Cannot connect to local epmd\n' });
    expect(s).toEqual(c);
  });

  test('ERL_EPMD_PORT selects the daemon for both clients', async () => {
    const daemon = await startDaemon('sdepmd');
    const c = await runClient('C client', ['-names'], { ERL_EPMD_PORT: String(daemon.port) });
    const s = await runClient('sdepmd client', ['-names'], { ERL_EPMD_PORT: String(daemon.port) });
    expect(c).toEqual({ code: 0, stdout: `epmd: up and running on port ${daemon.port} with data:\n`, stderr: '' });
    expect(s).toEqual(c);
    await daemon.stop();
  });

  test("-stop with no name: the C client's usage on stderr, exit 1, from both clients", async () => {
    for (const args of [['-stop'], ['-port', '1', '-stop'], ['-relaxed_command_check', '-stop']]) {
      const c = await runClient('C client', args);
      const s = await runClient('sdepmd client', args);
      expect(c.code).toBe(1);
      expect(c.stdout).toBe('');
      expect(c.stderr).toMatch(/^usage: epmd /);
      expect({ args, ...s }).toEqual({ args, ...c });
    }
  });

  test('-names and -dump: a pipe reader gets the header and the names in its first chunk, as from the C client', async () => {
    const daemon = await startDaemon('sdepmd');
    const session = new Session(daemon);
    try {
      await session.register('a', alive2('chunk_a', { port: 40011 }));
      await session.register('b', alive2('chunk_b', { port: 40012 }));
      for (const verb of ['-names', '-dump']) {
        const c = await runClient('C client', ['-port', String(daemon.port), verb]);
        const cFirst = firstChunk['C client'];
        const s = await runClient('sdepmd client', ['-port', String(daemon.port), verb]);
        const sFirst = firstChunk['sdepmd client'];
        expect(c.stdout).toContain('chunk_a');
        expect(cFirst).toBe(c.stdout);
        expect(s).toEqual(c);
        expect(sFirst).toBe(c.stdout);
        // In process: the verb writes its output in one call (the pipe test above can miss two quick writes).
        const writes: string[] = [];
        const io: CliIo = { stdout: (t) => writes.push(t), stderr: (t) => writes.push(`stderr: ${t}`), env: {} };
        expect(await main(['-port', String(daemon.port), verb], io)).toBe(0);
        expect(writes).toEqual([c.stdout]);
      }
    } finally {
      session.closeAll();
      await daemon.stop();
    }
  });

  test.each([[['-bogus']], [['-port', 'abc']], [['-port', 'abc', '-names']], [['-packet_timeout']]])(
    'bad flags %j: one-line error on stderr, non-zero exit, no stack trace',
    async (args) => {
      const r = await runClient('sdepmd client', args);
      expect(r.code).not.toBe(0);
      expect(r.code).not.toBeNull();
      expect(r.stderr.trim().length).toBeGreaterThan(0);
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stderr).not.toMatch(/\n\s+at |internal error|Error:/);
      expect(r.stdout).toBe('');
    },
  );
});
