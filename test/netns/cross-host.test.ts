/**
 * Cross-host behaviour, with two "hosts" built from network namespaces and a veth pair (see hosts.ts):
 *
 *  - a peer on another host can look names up and list them (IPv4 and IPv6);
 *  - it cannot register, DUMP, KILL or STOP, and neither can a peer on a non-loopback address of the same host,
 *    unless it is the socket's own local address: checked byte for byte against the C epmd in the same places;
 *  - `-address` and `ERL_EPMD_ADDRESS` bind only what they say, plus loopback (same sockets as the C epmd);
 *  - --max_connections_per_peer applies to a remote peer, is logged, and exempts loopback;
 *  - real Erlang nodes (longnames) on the two hosts find and ping each other through each host's sdepmd.
 *
 * Needs root and iproute2 (and erl for the last part): in CI a missing peer fails the suite.
 */
import { encodeAlive2Request, encodeNameRequest, encodeSimpleRequest } from '../../src/protocol/codec';
import { DUMP_REQ, KILL_REQ, NAMES_REQ, PORT_PLEASE2_REQ, STOP_REQ } from '../../src/protocol/constants';
import { SDEPMD_BIN } from '../support/daemons';
import { allOf, cEpmdAvailable, erlAvailable, findCEpmd, peerDescribe } from '../support/peers';
import {
  A,
  B,
  createHosts,
  listening,
  netnsAvailable,
  nsClient,
  nsHold,
  nsProbe,
  nsSpawn,
  stopAllNs,
  type Hosts,
  type NsProcess,
} from './hosts';

jest.setTimeout(120_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let hosts: Hosts | undefined;
afterAll(async () => {
  await stopAllNs();
  hosts?.destroy();
});

async function waitAnswering(ns: string, port: number, proc: NsProcess, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const r = await nsProbe(ns, host, port, encodeSimpleRequest(NAMES_REQ), undefined, 1000);
    if (r.reply.length >= 8) return;
    if (proc.child.exitCode !== null) throw new Error(`daemon exited: ${proc.output()}`);
    if (Date.now() > deadline) throw new Error(`no answer on ${host}:${port} in ${ns}: ${proc.output()}`);
    await sleep(100);
  }
}

function startSdepmd(ns: string, port: number, args: string[] = [], env: NodeJS.ProcessEnv = {}): NsProcess {
  return nsSpawn(ns, [process.execPath, SDEPMD_BIN, '-port', String(port), '--control_socket', 'none', ...args], env);
}
function startCEpmd(ns: string, port: number, args: string[] = [], env: NodeJS.ProcessEnv = {}): NsProcess {
  return nsSpawn(ns, [findCEpmd()!, '-port', String(port), ...args], env);
}

const NODE = { name: 'alpha', port: 4711, nodeType: 77, protocol: 0, highestVersion: 6, lowestVersion: 5 };
const INTRUDER = { ...NODE, name: 'intruder', port: 4712 };

peerDescribe('network namespaces (root, iproute2) and the C epmd', allOf(netnsAvailable(), cEpmdAvailable()))(
  'two hosts in network namespaces',
  () => {
    let sd: NsProcess;
    let c: NsProcess;
    let sdPort: number;
    let cPort: number;
    const held: { close(): void }[] = [];

    beforeAll(async () => {
      hosts = createHosts();
      // A fresh namespace has every port free: fixed, distinct ports (freePort() looks at the host's namespace).
      sdPort = 4370;
      cPort = 4371;
      // Both relaxed, so that only the locality check stands between a remote peer and STOP / KILL.
      sd = startSdepmd(hosts.a, sdPort, ['-relaxed_command_check']);
      c = startCEpmd(hosts.a, cPort, ['-relaxed_command_check']);
      await waitAnswering(hosts.a, sdPort, sd);
      await waitAnswering(hosts.a, cPort, c);
      for (const port of [sdPort, cPort]) {
        const h = await nsHold(hosts.a, '127.0.0.1', port, encodeAlive2Request(NODE));
        expect(h.reply.slice(0, 4)).toBe('7600');
        held.push(h);
      }
    });
    afterAll(() => held.forEach((h) => h.close()));

    test.each([
      ['IPv4', A.v4],
      ['IPv6', A.v6],
    ])('a peer on another host can list names and look them up (%s), as with the C epmd', async (_family, address) => {
      for (const port of [sdPort, cPort]) {
        const names = await nsProbe(hosts!.b, address, port, encodeSimpleRequest(NAMES_REQ));
        expect(names.ended).toBe('closed');
        const body = Buffer.from(names.reply, 'hex');
        expect(body.readUInt32BE(0)).toBe(port);
        expect(body.subarray(4).toString()).toBe(`name alpha at port ${NODE.port}\n`);
      }
      const [sdLookup, cLookup] = await Promise.all(
        [sdPort, cPort].map((p) => nsProbe(hosts!.b, address, p, encodeNameRequest(PORT_PLEASE2_REQ, 'alpha'))),
      );
      expect(sdLookup).toEqual(cLookup);
      expect(Buffer.from(sdLookup!.reply, 'hex').readUInt16BE(2)).toBe(NODE.port);
    });

    const forbidden: [string, Buffer][] = [
      ['ALIVE2 (register)', encodeAlive2Request(INTRUDER)],
      ['DUMP', encodeSimpleRequest(DUMP_REQ)],
      ['KILL', encodeSimpleRequest(KILL_REQ)],
      ['STOP', encodeNameRequest(STOP_REQ, 'alpha')],
    ];

    test.each(forbidden)(
      'a peer on another host cannot %s (closed without a reply, like the C epmd)',
      async (_what, request) => {
        for (const address of [A.v4, A.v6]) {
          const [sdR, cR] = await Promise.all(
            [sdPort, cPort].map((p) => nsProbe(hosts!.b, address, p, request, undefined, 1000)),
          );
          expect({ address, ...sdR }).toEqual({ address, reply: '', ended: 'closed' });
          expect(cR).toEqual(sdR);
        }
        await expectAlphaIntact();
      },
    );

    test.each(forbidden)(
      "a peer on another non-loopback address of the same host cannot %s; from the socket's own address it can, as with the C epmd",
      async (what, request) => {
        for (const [target, from] of [
          [A.v4, A.v4b],
          [A.v6, A.v6b],
        ] as const) {
          const [sdR, cR] = await Promise.all(
            [sdPort, cPort].map((p) => nsProbe(hosts!.a, target, p, request, from, 1000)),
          );
          expect({ from, ...sdR }).toEqual({ from, reply: '', ended: 'closed' });
          expect(cR).toEqual(sdR);
        }
        await expectAlphaIntact();
        if (what === 'KILL' || what === 'STOP') return; // accepted from the own address: would kill the daemon / stop alpha
        for (const own of [A.v4, A.v6]) {
          const [sdR, cR] = await Promise.all([sdPort, cPort].map((p) => nsProbe(hosts!.a, own, p, request, own, 500)));
          expect(sdR!.reply.length).toBeGreaterThan(0);
          if (what === 'DUMP') {
            // Same lines; the fd numbers differ between the two daemons.
            const text = (r: string) =>
              Buffer.from(r, 'hex')
                .subarray(4)
                .toString('latin1')
                .replace(/fd = -?\d+/g, 'fd = N');
            expect(text(sdR!.reply)).toBe(text(cR!.reply));
          } else {
            expect(sdR!.reply.slice(0, 4)).toBe('7600');
            expect(cR!.reply.slice(0, 4)).toBe('7600');
          }
        }
      },
    );

    test('STOP from the own address is accepted (relaxed), as with the C epmd', async () => {
      const [sdR, cR] = await Promise.all(
        [sdPort, cPort].map((p) => nsProbe(hosts!.a, A.v4, p, encodeNameRequest(STOP_REQ, 'nobody'), A.v4)),
      );
      expect(Buffer.from(sdR!.reply, 'hex').toString()).toBe('NOEXIST');
      // The C epmd's known fall-through sends "NOEXISTSTOPPED" (a documented divergence, see the differential suite).
      expect(Buffer.from(cR!.reply, 'hex').toString()).toBe('NOEXISTSTOPPED');
    });

    async function expectAlphaIntact(): Promise<void> {
      expect(sd.child.exitCode).toBeNull();
      expect(c.child.exitCode).toBeNull();
      for (const port of [sdPort, cPort]) {
        const names = await nsProbe(hosts!.a, '127.0.0.1', port, encodeSimpleRequest(NAMES_REQ));
        expect(Buffer.from(names.reply, 'hex').subarray(4).toString()).toBe(`name alpha at port ${NODE.port}\n`);
      }
    }

    test.each([
      ['-address 198.51.100.1', ['-address', A.v4], {}, [A.v4]],
      ['ERL_EPMD_ADDRESS=fd00:5df::1', [], { ERL_EPMD_ADDRESS: A.v6 }, [A.v6]],
      ['-address "198.51.100.11,fd00:5df::1"', ['-address', `${A.v4b},${A.v6}`], {}, [A.v4b, A.v6]],
    ] as [string, string[], NodeJS.ProcessEnv, string[]][])(
      '%s binds only that, plus loopback (the same sockets as the C epmd)',
      async (_label, args, env, bound) => {
        const port = 4372;
        const cport = 4373;
        const d = startSdepmd(hosts!.a, port, args, env);
        const cd = startCEpmd(hosts!.a, cport, args, env);
        try {
          await waitAnswering(hosts!.a, port, d);
          await waitAnswering(hosts!.a, cport, cd);
          const expected = [...bound, '127.0.0.1', '::1']
            .map((a) => (a.includes(':') ? `[${a}]:${port}` : `${a}:${port}`))
            .sort();
          expect(listening(hosts!.a, port)).toEqual(expected);
          expect(listening(hosts!.a, cport).map((s) => s.replace(`:${cport}`, `:${port}`))).toEqual(expected);
          // From the other host: reachable on the bound addresses only.
          for (const address of [A.v4, A.v4b, A.v6, A.v6b]) {
            const r = await nsProbe(hosts!.b, address, port, encodeSimpleRequest(NAMES_REQ));
            expect({ address, ended: r.ended }).toEqual({
              address,
              ended: bound.includes(address) ? 'closed' : 'refused',
            });
          }
        } finally {
          await d.stop();
          await cd.stop();
        }
      },
    );

    test('--max_connections_per_peer limits a remote peer, logs it, and exempts loopback', async () => {
      const port = 4374;
      const d = startSdepmd(hosts!.a, port, ['--max_connections_per_peer', '3', '-packet_timeout', '30']);
      try {
        await waitAnswering(hosts!.a, port, d);
        const remote = await nsClient(hosts!.b, ['flood', A.v4, String(port), '5', '1500']);
        expect(remote).toEqual({ opened: 5, closedByServer: 2 });
        expect(d.output()).toContain(`refused ${B.v4}: per-peer connection limit (3) reached`);
        const local = await nsClient(hosts!.a, ['flood', '127.0.0.1', String(port), '5', '1500']);
        expect(local).toEqual({ opened: 5, closedByServer: 0 });
      } finally {
        await d.stop();
      }
    });
  },
);

peerDescribe('network namespaces (root, iproute2) and erl', allOf(netnsAvailable(), erlAvailable()))(
  'real Erlang nodes on two hosts',
  () => {
    const COOKIE = 'sdf_cross_host_cookie';
    const erlEnv = { HOME: process.env.HOME ?? '/root', ERL_EPMD_PORT: '4369' };
    const erl = (ns: string, node: string, evalText: string) =>
      nsSpawn(
        ns,
        [
          erlAvailable().path!,
          '-name',
          node,
          '-setcookie',
          COOKIE,
          '-start_epmd',
          'false',
          '-noshell',
          '-noinput',
          '-eval',
          evalText,
        ],
        erlEnv,
      );

    async function waitFor(p: NsProcess, pattern: RegExp, ms = 30_000): Promise<string> {
      const deadline = Date.now() + ms;
      while (!pattern.test(p.output())) {
        if (Date.now() > deadline) throw new Error(`waited for ${pattern}: ${p.output()}`);
        await sleep(100);
      }
      return p.output();
    }

    test("longnames nodes find and ping each other through each host's sdepmd on port 4369", async () => {
      hosts ??= createHosts();
      // One sdepmd per host, on the standard port (each namespace has its own).
      const epmdA = startSdepmd(hosts.a, 4369);
      const epmdB = startSdepmd(hosts.b, 4369);
      await waitAnswering(hosts.a, 4369, epmdA);
      await waitAnswering(hosts.b, 4369, epmdB);
      // Long-lived nodes, one on each host.
      const stay = 'io:format("up~n"), timer:sleep(120000), halt().';
      const alpha = erl(hosts.a, `alpha@${A.v4}`, stay);
      const beta = erl(hosts.b, `beta@${B.v4}`, stay);
      await waitFor(alpha, /up/);
      await waitFor(beta, /up/);
      // Each is registered with its own host's sdepmd, and visible from the other host.
      for (const [ns, host, name] of [
        [hosts.b, A.v4, 'alpha'],
        [hosts.a, B.v4, 'beta'],
      ] as const) {
        const names = await nsProbe(ns, host, 4369, encodeSimpleRequest(NAMES_REQ));
        expect(Buffer.from(names.reply, 'hex').subarray(4).toString()).toMatch(
          new RegExp(`^name ${name} at port \\d+\\n$`),
        );
      }
      // A node on each host pings the node on the other: the lookup goes to the other host's sdepmd.
      const pinger = (target: string) =>
        `R = (fun Loop(0) -> pang; Loop(N) -> case net_adm:ping('${target}') of pong -> pong; pang -> timer:sleep(500), Loop(N - 1) end end)(20), ` +
        `{ok, Names} = net_adm:names("${target.split('@')[1]}"), io:format("result ~p ~p~n", [R, Names]), halt().`;
      const fromA = erl(hosts.a, `probe_a@${A.v4}`, pinger(`beta@${B.v4}`));
      const fromB = erl(hosts.b, `probe_b@${B.v4}`, pinger(`alpha@${A.v4}`));
      const outA = await waitFor(fromA, /result /);
      const outB = await waitFor(fromB, /result /);
      // The other host's sdepmd lists its node (and the pinger from that host, if it is still up).
      expect(outA).toMatch(/result pong \[.*\{"beta",\d+\}.*\]/);
      expect(outB).toMatch(/result pong \[.*\{"alpha",\d+\}.*\]/);
      // Both daemons logged the registrations they hold.
      expect(epmdA.output()).toMatch(/registered alpha port \d+/);
      expect(epmdB.output()).toMatch(/registered beta port \d+/);
      await Promise.all([alpha.stop(), beta.stop(), fromA.stop(), fromB.stop(), epmdA.stop(), epmdB.stop()]);
    });
  },
);
