/**
 * bin/sdepmd.js chooses between the bundle (dist/cli/cli.bundle.js) and the compiled tree (dist/cli/cli.js): the
 * bundle only while no .js file of dist/ and not package.json is newer than it, so that a tsc run without the bundle
 * step, or a file replaced in place, is never shadowed by a stale bundle. Run here on a small tree whose two entry
 * points say which of them was loaded.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const BIN = path.join(__dirname, '..', '..', 'bin', 'sdepmd.js');

let root: string;

function write(relative: string, text: string, mtimeSeconds: number): void {
  const file = path.join(root, relative);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  fs.utimesSync(file, mtimeSeconds, mtimeSeconds);
}

function entryModule(which: string): string {
  return `exports.main = async () => { process.stdout.write(${JSON.stringify(which)}); return 0; };\n`;
}

/** Which entry point bin/sdepmd.js loaded. */
function loaded(): string {
  return execFileSync(process.execPath, [path.join(root, 'bin', 'sdepmd.js')], { encoding: 'utf8' });
}

const BUILT = 1_700_000_000;

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'sdepmd-bin-'));
  fs.mkdirSync(path.join(root, 'bin'));
  fs.copyFileSync(BIN, path.join(root, 'bin', 'sdepmd.js'));
  write('package.json', '{}\n', BUILT - 10);
  write('dist/cli/cli.js', entryModule('tree'), BUILT - 10);
  write('dist/daemon/daemon.js', '', BUILT - 10);
  write('dist/daemon/deeper/more.js', '', BUILT - 10);
  write('dist/cli/cli.bundle.js', entryModule('bundle'), BUILT);
});

afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

test('an up-to-date bundle is loaded', () => {
  expect(loaded()).toBe('bundle');
});

test('a .js file newer than the bundle, however deep in dist/, makes it load the tree', () => {
  write('dist/daemon/deeper/more.js', '', BUILT + 1);
  expect(loaded()).toBe('tree');
});

test('a file replaced in place at the top of the tree makes it load the tree', () => {
  write('dist/cli/cli.js', entryModule('tree'), BUILT + 1);
  expect(loaded()).toBe('tree');
});

test('a newer package.json (the version) makes it load the tree', () => {
  write('package.json', '{}\n', BUILT + 1);
  expect(loaded()).toBe('tree');
});

test('files that are not code (source maps) do not count', () => {
  write('dist/daemon/daemon.js.map', '{}', BUILT + 1);
  expect(loaded()).toBe('bundle');
});

test('without a bundle, the tree is loaded', () => {
  fs.rmSync(path.join(root, 'dist', 'cli', 'cli.bundle.js'));
  expect(loaded()).toBe('tree');
});
