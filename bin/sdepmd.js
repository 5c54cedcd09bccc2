#!/usr/bin/env node
'use strict';
// The sdepmd executable (bin/sdepmd links here): the compiled CLI (npm run build writes dist/).
/** @typedef {typeof import('../src/cli/cli')} Cli */
/** Kept in a variable: the type checker reads src/, and must not follow the require into dist/. */
const CLI_PATH = '../dist/cli/cli.js';
/** @type {(path: string) => Cli} */
const loadCli = require;
/** @type {Cli} */
let cli;
try {
  cli = loadCli(CLI_PATH);
} catch (err) {
  const e = /** @type {NodeJS.ErrnoException} */ (err);
  process.stderr.write(
    `sdepmd: cannot load dist/cli/cli.js (${e.code || e.message}); build first: npm ci && npm run build\n`,
  );
  process.exit(70);
}
cli.main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (/** @type {unknown} */ err) => {
    process.stderr.write(`sdepmd: internal error: ${(err instanceof Error && err.message) || String(err)}\n`);
    process.exit(70);
  },
);
