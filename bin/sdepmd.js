#!/usr/bin/env node
'use strict';
// The sdepmd executable (bin/sdepmd links here): the compiled CLI (npm run build writes dist/). npm run build also
// bundles it into one file, dist/cli/cli.bundle.js, which starts faster (one file to read and compile, no module
// resolution); it is used unless it is older than dist/cli/cli.js (a tsc run without the bundle step).
/** @typedef {typeof import('../src/cli/cli')} Cli */
const path = require('path');
const fs = require('fs');
/** Kept in variables: the type checker reads src/, and must not follow the require into dist/. */
const CLI_PATH = path.join(__dirname, '..', 'dist', 'cli', 'cli.js');
const BUNDLE_PATH = path.join(__dirname, '..', 'dist', 'cli', 'cli.bundle.js');
/** @type {(path: string) => Cli} */
const loadCli = require;
/** @returns {string} the bundle when it is there and up to date, else the compiled tree */
function entry() {
  try {
    return fs.statSync(BUNDLE_PATH).mtimeMs >= fs.statSync(CLI_PATH).mtimeMs ? BUNDLE_PATH : CLI_PATH;
  } catch {
    return CLI_PATH;
  }
}
/** @type {Cli} */
let cli;
try {
  cli = loadCli(entry());
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
