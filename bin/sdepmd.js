#!/usr/bin/env node
'use strict';
// The sdepmd executable (bin/sdepmd links here): the compiled CLI (npm run build writes dist/). npm run build also
// bundles it into one file, dist/cli/cli.bundle.js, which starts faster (one file to read and compile, no module
// resolution). The bundle is a copy of dist/ and package.json (the version): it is used only while neither has a
// file newer than it, so that a tsc run without the bundle step, or a file replaced in place, is never shadowed.
/** @typedef {typeof import('../src/cli/cli')} Cli */
const path = require('path');
const fs = require('fs');
/** Kept in variables: the type checker reads src/, and must not follow the require into dist/. */
const CLI_PATH = path.join(__dirname, '..', 'dist', 'cli', 'cli.js');
const BUNDLE_PATH = path.join(__dirname, '..', 'dist', 'cli', 'cli.bundle.js');
const DIST = path.join(__dirname, '..', 'dist');
const PACKAGE_JSON = path.join(__dirname, '..', 'package.json');
/** @type {(path: string) => Cli} */
const loadCli = require;
/**
 * @param {string} dir
 * @param {number} since
 * @returns {boolean} whether a .js file below `dir` (the bundle aside) changed after `since`
 */
function changedSince(dir, since) {
  // Runs at every start, before anything is served: a plain loop and string paths (DIST is already normal), since
  // path.join and a closure per entry cost several milliseconds of cold code here.
  for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = `${dir}/${d.name}`;
    if (d.isDirectory()) {
      if (changedSince(file, since)) return true;
    } else if (d.name.endsWith('.js') && file !== BUNDLE_PATH && fs.statSync(file).mtimeMs > since) return true;
  }
  return false;
}
/** @returns {string} the bundle when it is there and up to date, else the compiled tree */
function entry() {
  try {
    const built = fs.statSync(BUNDLE_PATH).mtimeMs;
    return fs.statSync(PACKAGE_JSON).mtimeMs > built || changedSince(DIST, built) ? CLI_PATH : BUNDLE_PATH;
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
