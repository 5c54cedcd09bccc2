/**
 * The live-upgrade hand-over is JSON read by another program (the new code): a wrong shape is refused with an
 * error that names the wrong field, before the old code lets go of anything (the check run reads a preview).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseUpgradeState } from '../../src/daemon/handover';
import { checkHandOverPreview, UPGRADE_PREVIEW_ENV } from '../../src/daemon/upgrade';

const record = {
  name: Buffer.from('billing_prod').toString('hex'),
  port: 4711,
  nodeType: 77,
  protocol: 0,
  highestVersion: 6,
  lowestVersion: 5,
  extra: '',
  creation: 9,
  registeredAt: 1,
  peer: '127.0.0.1',
  fdName: null,
};
const good = {
  format: 1,
  fromVersion: '0.1.0',
  pid: 10,
  startedAt: 1,
  handOverAt: 2,
  upgrades: 1,
  creationCounter: 5,
  stats: {
    connections: 0,
    lookups: 0,
    lookupsFound: 0,
    namesRequests: 0,
    registrations: 1,
    unregistrations: 0,
    refused: 0,
    limitHits: 0,
  },
  listeners: [{ fd: 3, name: 'epmd.socket', fromSystemd: true }],
  registrations: [{ fd: 4, record }],
};

test('a good state parses, and keeps every field', () => {
  expect(parseUpgradeState(JSON.stringify(good))).toEqual({ ok: true, value: good });
});

test.each([
  [
    'a port out of range',
    { ...good, registrations: [{ fd: 4, record: { ...record, port: 70000 } }] },
    'registrations[0].record.port: expected an integer from 0 to 65535, got 70000',
  ],
  [
    'a name the registry would refuse',
    { ...good, registrations: [{ fd: 4, record: { ...record, name: 'ff' } }] },
    'registrations[0].record.name: name is not valid UTF-8',
  ],
  [
    'a counter missing',
    { ...good, stats: { ...good.stats, refused: undefined } },
    'stats.refused: expected an integer',
  ],
  ['another format', { ...good, format: 2 }, 'format: expected 1, got 2'],
  [
    'a name that is not hex',
    { ...good, registrations: [{ fd: 4, record: { ...record, name: 'zz' } }] },
    'registrations[0].record.name: expected a hex node name',
  ],
  [
    'a listener on stdio',
    { ...good, listeners: [{ fd: 2, name: 'x', fromSystemd: false }] },
    'listeners[0].fd: expected an integer from 3',
  ],
  ['no listening socket', { ...good, listeners: [] }, 'no listening socket'],
  ['an fd handed over twice', { ...good, registrations: [{ fd: 3, record }] }, 'fd 3 is handed over twice'],
])('refused with a clear error: %s', (_what, state, error) => {
  const parsed = parseUpgradeState(JSON.stringify(state));
  expect(parsed.ok).toBe(false);
  expect(parsed.ok ? '' : parsed.error).toContain(error);
});

test('not JSON', () => {
  expect(parseUpgradeState('{')).toMatchObject({
    ok: false,
    error: expect.stringMatching(/^an invalid upgrade state: not JSON/) as unknown,
  });
});

describe('check mode reads the preview of the hand-over', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdepmd-handover-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('no preview (an older running daemon): nothing to refuse', () => {
    expect(checkHandOverPreview({})).toBeNull();
  });
  test('a preview it can read', () => {
    const file = path.join(dir, 'preview.json');
    fs.writeFileSync(file, JSON.stringify(good));
    expect(checkHandOverPreview({ [UPGRADE_PREVIEW_ENV]: file })).toBeNull();
  });
  test('a preview of the wrong shape: why, naming the field', () => {
    const file = path.join(dir, 'preview.json');
    fs.writeFileSync(file, JSON.stringify({ ...good, creationCounter: -1 }));
    expect(checkHandOverPreview({ [UPGRADE_PREVIEW_ENV]: file })).toBe(
      "this code cannot take over the running daemon's hand-over: an invalid upgrade state: creationCounter: expected an integer from 0 to 4294967295, got -1",
    );
  });
  test('a preview that is gone', () => {
    expect(checkHandOverPreview({ [UPGRADE_PREVIEW_ENV]: path.join(dir, 'missing.json') })).toMatch(
      /^cannot read the hand-over preview: ENOENT/,
    );
  });
});
