/**
 * A fake NOTIFY_SOCKET: notify-sink.py binds an AF_UNIX datagram socket and reports each datagram it receives
 * (text and SCM_RIGHTS fds, fstat()ed) as a JSON line.
 */
import { spawn, ChildProcessWithoutNullStreams } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';

const SINK = path.join(__dirname, 'notify-sink.py');

export interface ReceivedFd {
  dev: string;
  ino: string;
  mode: number;
  peer: [string, number] | null;
}
export interface Datagram {
  message: string;
  flags: number;
  ctrunc: boolean;
  fds: ReceivedFd[];
}

export interface Sink {
  path: string;
  next(): Promise<Datagram>;
  close(): Promise<void>;
}

export async function startSink(dir: string, count: number): Promise<Sink> {
  const sockPath = path.join(dir, 'notify.sock');
  const child: ChildProcessWithoutNullStreams = spawn('python3', [SINK, sockPath, String(count)]);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const lines: string[] = [];
  const waiters: Array<(line: string | null) => void> = [];
  let ended = false;
  const rl = readline.createInterface({ input: child.stdout });
  rl.on('line', (line) => {
    const w = waiters.shift();
    if (w) w(line);
    else lines.push(line);
  });
  rl.on('close', () => {
    ended = true;
    for (const w of waiters.splice(0)) w(null);
  });
  const nextLine = (): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const done = (line: string | null): void => {
        if (line === null) reject(new Error(`notify sink ended early; stderr: ${stderr}`));
        else resolve(JSON.parse(line));
      };
      const queued = lines.shift();
      if (queued !== undefined) done(queued);
      else if (ended) done(null);
      else waiters.push(done);
    });
  const ready = await nextLine();
  expect(ready).toEqual({ ready: true });
  return {
    path: sockPath,
    async next(): Promise<Datagram> {
      const msg = (await nextLine()) as Datagram & { error?: string };
      if (msg.error !== undefined) throw new Error(`notify sink: ${msg.error}`);
      return msg;
    },
    async close(): Promise<void> {
      if (child.exitCode === null && child.signalCode === null) child.kill();
      await exited;
    },
  };
}
