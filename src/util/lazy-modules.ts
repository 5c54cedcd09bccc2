/**
 * Node modules loaded on first use, not at start-up: the daemon serves its first request without them (the engine
 * is native), and each costs milliseconds to compile at every start.
 * - node:net, with the streams it pulls in: the control socket, the clients, connections handed back by the fd
 *   store or adopted from another epmd, and -address's checks load it.
 * - node:child_process (which loads net too): `-daemon` and the live upgrade's check run load it.
 */
let net: typeof import('node:net') | undefined;
let childProcess: typeof import('node:child_process') | undefined;

export function lazyNet(): typeof import('node:net') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a lazy load: import() would make every caller async
  return (net ??= require('node:net') as typeof import('node:net'));
}

export function lazyChildProcess(): typeof import('node:child_process') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a lazy load, as above
  return (childProcess ??= require('node:child_process') as typeof import('node:child_process'));
}
