/** Runs the CLI's main() in-process with captured output: { code, stdout, stderr }. */
import { main, type CliIo } from '../../src/cli/cli';

export async function runCli(
  argv: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), env };
  const code = await main(argv, io);
  return { code, stdout, stderr };
}
