/**
 * node:net, loaded on first use. With the streams it pulls in, it costs several milliseconds to compile at start,
 * and the daemon serves its first request without it (the engine is native). The control socket, the clients,
 * connections handed back by the fd store or adopted from another epmd, and -address's checks load it.
 */
let loaded: typeof import('node:net') | undefined;

export function lazyNet(): typeof import('node:net') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a lazy load: import() would make every caller async
  return (loaded ??= require('node:net') as typeof import('node:net'));
}
