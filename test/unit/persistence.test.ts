/**
 * Unit tests of src/systemd/persistence.ts: the journal (replayJournal) and Persistence against a fake fd store
 * and a temporary RUNTIME_DIRECTORY. Real fds (opened on /dev/null) stand in for the connections systemd hands
 * back, so that "closed" can be checked with fstat (EBADF).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  isRegistrationFd,
  Persistence,
  REGISTRATION_FD_PREFIX,
  replayJournal,
  type StoredRecord,
} from '../../src/systemd/persistence';
import type { FdStore } from '../../src/systemd/fdstore';
import type { RegistrationRecord } from '../../src/registry/registration-record';

const hexName = (s: string): string => Buffer.from(s, 'utf8').toString('hex');

const rec = (name: string, creation = 7, over: Partial<RegistrationRecord> = {}): RegistrationRecord => ({
  name: hexName(name),
  port: 40000,
  nodeType: 77,
  protocol: 0,
  highestVersion: 6,
  lowestVersion: 5,
  extra: '',
  creation,
  registeredAt: 1_700_000_000_000,
  peer: '127.0.0.1',
  fdName: null,
  ...over,
});

const stored = (name: string, fdName: string, creation = 7): StoredRecord => ({ ...rec(name, creation), fdName });

type Call =
  | { op: 'store'; name: string; fd: number; journalAtCall: string }
  | { op: 'remove'; name: string; journalAtCall: string };

/** A fake FdStore that records calls, with a snapshot of the journal at each call. */
class FakeStore implements FdStore {
  available = true;
  unavailableReason?: string;
  readonly calls: Call[] = [];
  failStore = false;
  constructor(private readonly journal: () => string) {}
  store(name: string, fd: number): void {
    this.calls.push({ op: 'store', name, fd, journalAtCall: this.journal() });
    if (this.failStore) throw new Error('fd store: sd_pid_notify_with_fds failed: EAGAIN');
  }
  remove(name: string): void {
    this.calls.push({ op: 'remove', name, journalAtCall: this.journal() });
  }
  get removed(): string[] {
    return this.calls.filter((c) => c.op === 'remove').map((c) => c.name);
  }
}

/** Identity of the file each test fd was opened on: a closed fd number may be reused by the journal. */
const identity = new Map<number, string>();
const idOf = (st: fs.Stats): string => `${st.dev}:${st.ino}`;
const isClosed = (fd: number): boolean => {
  try {
    return idOf(fs.fstatSync(fd)) !== identity.get(fd); // reused for another file: ours was closed
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EBADF') return true;
    throw e;
  }
};

describe('replayJournal', () => {
  test('add, remove and header lines rebuild the table, the creation counter and the next sequence number', () => {
    const lines = [
      { op: 'header', creationCounter: 100, nextSeq: 3 },
      { op: 'add', counter: 101, ...stored('a', 'reg-3', 101) },
      { op: 'add', counter: 150, ...stored('b', 'reg-4', 102) },
      { op: 'add', ...stored('c', 'reg-a', 120) },
      { op: 'remove', fdName: 'reg-4' },
    ];
    const st = replayJournal(lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    expect([...st.records.keys()].sort()).toEqual(['reg-3', 'reg-a']);
    expect(st.records.get('reg-3')).toEqual(stored('a', 'reg-3', 101));
    // The records carry no journal-only fields.
    expect(st.records.get('reg-3')).not.toHaveProperty('op');
    expect(st.records.get('reg-3')).not.toHaveProperty('counter');
    // max(header 100, creations 101/102/120, counters 101/150): a removed registration's counter still counts.
    expect(st.creationCounter).toBe(150);
    // reg-a is 10 in base 36: the next name must be past it.
    expect(st.nextSeq).toBe(11);
    expect(st.skipped).toBe(0);
  });

  test('a cut last line (a crash in the middle of a write) is skipped and counted; the rest stands', () => {
    const good = [
      JSON.stringify({ op: 'add', ...stored('a', 'reg-0', 5) }),
      JSON.stringify({ op: 'add', ...stored('b', 'reg-1', 6) }),
    ];
    const cut = JSON.stringify({ op: 'remove', fdName: 'reg-0' }).slice(0, 12);
    const st = replayJournal(`${good.join('\n')}\n${cut}`);
    expect([...st.records.keys()]).toEqual(['reg-0', 'reg-1']);
    expect(st.skipped).toBe(1);
    expect(st.creationCounter).toBe(6);
    expect(st.nextSeq).toBe(2);
  });

  test('the creation counter is the maximum, whatever the order; blank lines and unknown ops are harmless', () => {
    const text = [
      JSON.stringify({ op: 'add', counter: 900, ...stored('a', 'reg-0', 900) }),
      '',
      JSON.stringify({ op: 'header', creationCounter: 10, nextSeq: 0 }),
      JSON.stringify({ op: 'bogus' }),
      JSON.stringify({ op: 'add', ...stored('b', 'reg-1', 4) }),
      '   ',
    ].join('\n');
    const st = replayJournal(text);
    expect(st.creationCounter).toBe(900);
    expect(st.nextSeq).toBe(2);
    expect(st.skipped).toBe(1);
  });

  test('a line of the wrong shape is skipped with its reason; the good lines before and after it all stand', () => {
    const bad = [
      { op: 'add', ...stored('x', 'reg-5'), name: 'not hex' },
      { op: 'add', ...stored('x', 'reg-6'), port: 70000 },
      { op: 'add', ...stored('x', 'reg-7'), creation: -1 },
      { op: 'add', fdName: 'reg-8' },
      { op: 'add', ...stored('x', 'reg-9'), extra: 'zz' },
      { op: 'add', ...stored('x', '../etc/passwd') },
      { op: 'remove', fdName: 7 },
      { op: 'header', creationCounter: '5', nextSeq: 0 },
      ['op', 'add'],
      null,
    ];
    const lines = [
      JSON.stringify({ op: 'add', ...stored('a', 'reg-0', 5) }),
      ...bad.map((b) => JSON.stringify(b)),
      JSON.stringify({ op: 'add', ...stored('b', 'reg-1', 6) }),
    ];
    const st = replayJournal(lines.join('\n'));
    expect([...st.records.keys()]).toEqual(['reg-0', 'reg-1']);
    expect(st.records.get('reg-1')).toEqual(stored('b', 'reg-1', 6));
    expect(st.skipped).toBe(bad.length);
    expect(st.problems).toEqual([
      'line 2: not a journal "add" entry: name: expected a hex node name (1 to 1020 bytes), got "not hex"',
      'line 3: not a journal "add" entry: port: expected an integer from 0 to 65535, got 70000',
      'line 4: not a journal "add" entry: creation: expected an integer from 0 to 4294967295, got -1',
      'line 5: not a journal "add" entry: name: expected a hex node name (1 to 1020 bytes), got nothing',
      'line 6: not a journal "add" entry: extra: expected hex bytes (at most 1020), got "zz"',
      'line 7: not a journal "add" entry: fdName: expected a registration fd name (reg-<base 36>), got "../etc/passwd"',
      'line 8: not a journal "remove" entry: fdName: expected a registration fd name (reg-<base 36>), got 7',
      'line 9: not a journal "header" entry: creationCounter: expected an integer from 0 to 4294967295, got "5"',
      'line 10: not a journal entry: the document: expected an object, got ["op","add"]',
      'line 11: not a journal entry: the document: expected an object, got null',
    ]);
  });

  test('extra fields in a line are dropped, not carried into the record', () => {
    const st = replayJournal(JSON.stringify({ op: 'add', ...stored('a', 'reg-0'), injected: { x: 1 } }));
    expect(st.records.get('reg-0')).toEqual(stored('a', 'reg-0'));
  });

  test('creation numbers above 2^31 stay unsigned', () => {
    const st = replayJournal(JSON.stringify({ op: 'add', ...stored('a', 'reg-0', 0xfffffff0) }));
    expect(st.creationCounter).toBe(0xfffffff0);
  });

  test('empty text: empty state', () => {
    expect(replayJournal('')).toEqual({ records: new Map(), creationCounter: 0, nextSeq: 0, skipped: 0, problems: [] });
  });
});

describe('isRegistrationFd', () => {
  test('only reg- names are registrations (the socket unit names its fds otherwise)', () => {
    expect(isRegistrationFd(`${REGISTRATION_FD_PREFIX}0`)).toBe(true);
    expect(isRegistrationFd('epmd.socket')).toBe(false);
    expect(isRegistrationFd('unknown')).toBe(false);
  });
});

describe('Persistence', () => {
  let dir: string;
  let journal: string;
  let store: FakeStore;
  const opened: number[] = [];
  const devNull = (): number => {
    const fd = fs.openSync('/dev/null', 'r');
    identity.set(fd, idOf(fs.fstatSync(fd)));
    opened.push(fd);
    return fd;
  };
  const readJournal = (): string => {
    try {
      return fs.readFileSync(journal, 'utf8');
    } catch {
      return '';
    }
  };
  const errors: string[] = [];
  const onError = (m: string) => errors.push(m);
  const make = (max = 8192, runtimeDirectory: string | undefined | null = dir): Persistence =>
    new Persistence({ store, runtimeDirectory: runtimeDirectory ?? undefined, max });

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdepmd-persistence-'));
    journal = path.join(dir, 'registrations.jsonl');
    store = new FakeStore(readJournal);
    errors.length = 0;
  });
  afterEach(() => {
    for (const fd of opened.splice(0)) {
      try {
        fs.closeSync(fd);
      } catch {
        /* closed by the code under test */
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('enabled with a store, a runtime directory and max > 0; the journal lives in the first runtime directory', () => {
    const p = new Persistence({ store, runtimeDirectory: `${dir}:/somewhere/else`, max: 10 });
    expect(p.enabled).toBe(true);
    expect(p.detail).toMatch(/10 registrations/);
    expect(p.journalPath).toBe(journal);
  });

  test('added() appends the journal line BEFORE handing the fd to the store, and names it reg-<seq>', () => {
    const p = make();
    p.recover([]);
    const fd = devNull();
    const name = p.added(rec('alpha', 42), fd, 42, onError);
    expect(name).toBe('reg-0');
    expect(errors).toEqual([]);
    expect(store.calls).toHaveLength(1);
    const call = store.calls[0]!;
    expect(call).toMatchObject({ op: 'store', name: 'reg-0', fd });
    // At the moment store() ran, the journal already held the record.
    const atCall = replayJournal(call.journalAtCall);
    expect(atCall.records.get('reg-0')).toMatchObject({ name: hexName('alpha'), creation: 42, fdName: 'reg-0' });
    expect(p.record('reg-0')).toMatchObject({ name: hexName('alpha'), fdName: 'reg-0' });
    expect(p.stats.stored).toBe(1);
    // Names are unique: the next one is reg-1.
    expect(p.added(rec('beta', 43), devNull(), 43, onError)).toBe('reg-1');
  });

  test('added() records the registry creation counter, so the next process starts past it', () => {
    const p = make();
    p.recover([]);
    p.added(rec('alpha', 5), devNull(), 999, onError);
    expect(p.creationCounter).toBe(999);
    p.close();
    const q = make();
    q.load();
    expect(q.creationCounter).toBe(999);
  });

  test('removed() sends FDSTOREREMOVE for the name and journals the removal first', () => {
    const p = make();
    p.recover([]);
    const name = p.added(rec('alpha'), devNull(), 7, onError)!;
    p.removed(name, onError);
    expect(store.calls.map((c) => `${c.op} ${c.name}`)).toEqual([`store ${name}`, `remove ${name}`]);
    expect(replayJournal(store.calls[1]!.journalAtCall).records.has(name)).toBe(false);
    expect(p.record(name)).toBeUndefined();
    expect(p.stats.stored).toBe(0);
    // null (never stored) is a no-op.
    p.removed(null, onError);
    expect(store.calls).toHaveLength(2);
    expect(errors).toEqual([]);
  });

  test('recover() matches handed-back fds with records, closes and drops orphans, forgets missing records', () => {
    // The previous run: three registrations kept.
    const before = make();
    before.recover([]);
    const n1 = before.added(rec('alpha', 11), devNull(), 11, onError)!;
    const n2 = before.added(rec('beta', 12), devNull(), 12, onError)!;
    const n3 = before.added(rec('gamma', 13), devNull(), 13, onError)!;
    before.close();
    store.calls.length = 0;

    // systemd hands back alpha and beta (gamma's connection is gone), plus an fd the journal never heard of,
    // after the socket unit's own fd.
    const [fa, fb, forphan, flisten] = [devNull(), devNull(), devNull(), devNull()];
    const p = make();
    const r = p.recover([
      { fd: flisten, name: 'epmd.socket' },
      { fd: fa, name: n1 },
      { fd: forphan, name: 'reg-zz' },
      { fd: fb, name: n2 },
    ]);
    expect(r.adopt.map((a) => [a.fd, a.record.fdName, Buffer.from(a.record.name, 'hex').toString()])).toEqual([
      [fa, n1, 'alpha'],
      [fb, n2, 'beta'],
    ]);
    expect(r.adopt[0]!.record).toMatchObject({ creation: 11, port: 40000, peer: '127.0.0.1' });
    expect(r.orphans.map((o) => o.name)).toEqual(['reg-zz']);
    expect(r.missing.map((m) => m.fdName)).toEqual([n3]);
    // The orphan is closed; the adopted and the listening fds are not.
    expect(isClosed(forphan)).toBe(true);
    expect(isClosed(fa)).toBe(false);
    expect(isClosed(fb)).toBe(false);
    expect(isClosed(flisten)).toBe(false);
    // "closed and removed from the store": systemd still holds a duplicate of the orphan, which keeps the
    // connection open and comes back at every start unless FDSTOREREMOVE is sent.
    expect(store.removed).toEqual(['reg-zz']);
    expect(p.stats.restored).toBe(2);
    expect(p.creationCounter).toBeGreaterThanOrEqual(13);
    expect(p.journalProblems).toEqual([]);
    // The journal now holds exactly the adopted ones.
    const after = replayJournal(readJournal());
    expect([...after.records.keys()].sort()).toEqual([n1, n2].sort());
    // And new names continue past the old ones.
    expect(p.added(rec('delta'), devNull(), 14, onError)).toBe(`reg-${(3).toString(36)}`);
  });

  test('recover(): an fd name handed back twice keeps the first, and the record survives for the next start', () => {
    const before = make();
    before.recover([]);
    const n1 = before.added(rec('alpha', 11), devNull(), 11, onError)!;
    before.close();
    const [f1, f2] = [devNull(), devNull()];
    const p = make();
    const r = p.recover([
      { fd: f1, name: n1 },
      { fd: f2, name: n1 },
    ]);
    expect(r.adopt.map((a) => a.fd)).toEqual([f1]);
    expect(isClosed(f2)).toBe(true);
    expect(isClosed(f1)).toBe(false);
    // The adopted registration must still be in the journal, or it is lost at the next restart.
    expect(p.record(n1)).toBeDefined();
    expect(replayJournal(readJournal()).records.has(n1)).toBe(true);
  });

  test('recover() with a damaged journal line: the good registrations are adopted, the bad line is reported', () => {
    const before = make();
    before.recover([]);
    const n1 = before.added(rec('alpha', 11), devNull(), 11, onError)!;
    const n2 = before.added(rec('beta', 12), devNull(), 12, onError)!;
    before.close();
    // Damage alpha's line (a hand edit, a bug in an older version): beta's must still come back.
    const lines = readJournal().split('\n');
    const at = lines.findIndex((l) => l.includes(`"fdName":"${n1}"`));
    lines[at] = lines[at]!.replace(/"port":\d+/, '"port":"40000"');
    fs.writeFileSync(journal, lines.join('\n'));
    const [f1, f2] = [devNull(), devNull()];
    const p = make();
    const r = p.recover([
      { fd: f1, name: n1 },
      { fd: f2, name: n2 },
    ]);
    expect(r.adopt.map((a) => [a.fd, a.record.fdName])).toEqual([[f2, n2]]);
    // Without a record alpha's connection cannot be served: it is an orphan, closed and dropped from the store.
    expect(r.orphans.map((o) => o.name)).toEqual([n1]);
    expect(p.journalProblems).toEqual([
      `line ${at + 1}: not a journal "add" entry: port: expected an integer from 0 to 65535, got "40000"`,
    ]);
    expect(replayJournal(readJournal()).records.has(n2)).toBe(true);
  });

  test('compaction keeps the content: many adds and removes, then a fresh Persistence replays the same table', () => {
    const p = make();
    p.recover([]);
    const live = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const name = p.added(rec(`n${i}`, 1000 + i), devNull(), 1000 + i, onError)!;
      live.set(name, 1000 + i);
      if (i % 3 !== 0) {
        p.removed(name, onError);
        live.delete(name);
      }
      // keep fds bounded
      fs.closeSync(opened.pop()!);
    }
    expect(errors).toEqual([]);
    const text = readJournal();
    // Compacted: far fewer lines than the 5000 changes made.
    expect(text.trim().split('\n').length).toBeLessThan(2 * live.size + 1024 + 2 + 10);
    const st = replayJournal(text);
    expect(st.skipped).toBe(0);
    expect(new Map([...st.records].map(([k, v]) => [k, v.creation]))).toEqual(live);
    expect(st.creationCounter).toBe(3999);
    expect(st.nextSeq).toBe(3000);
    p.close();
    const q = make();
    q.load();
    expect(q.stats.stored).toBe(live.size);
    expect(q.creationCounter).toBe(3999);
    expect(fs.existsSync(`${journal}.tmp`)).toBe(false);
  });

  test('store full: past --fdstore_max the registration is not kept (null), warned once, nothing sent', () => {
    const p = make(2);
    p.recover([]);
    expect(p.added(rec('a'), devNull(), 1, onError)).not.toBeNull();
    expect(p.added(rec('b'), devNull(), 2, onError)).not.toBeNull();
    expect(p.added(rec('c'), devNull(), 3, onError)).toBeNull();
    expect(p.added(rec('d'), devNull(), 4, onError)).toBeNull();
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/fd store full \(2\)/);
    expect(store.calls.filter((c) => c.op === 'store')).toHaveLength(2);
    expect(replayJournal(readJournal()).records.size).toBe(2);
    // A freed slot can be used again.
    p.removed('reg-0', onError);
    expect(p.added(rec('e'), devNull(), 5, onError)).not.toBeNull();
  });

  test('a failing store() is reported, counted, and leaves no live record behind', () => {
    const p = make();
    p.recover([]);
    store.failStore = true;
    expect(p.added(rec('alpha'), devNull(), 1, onError)).toBeNull();
    expect(errors).toEqual([expect.stringMatching(/cannot keep registration .*EAGAIN/)]);
    expect(p.stats.failures).toBe(1);
    expect(p.stats.stored).toBe(0);
    expect(p.record('reg-0')).toBeUndefined();
  });

  describe('disabled', () => {
    const cases: [string, () => Persistence, RegExp][] = [
      ['--fdstore_max 0', () => make(0), /fdstore_max 0/],
      ['no RUNTIME_DIRECTORY', () => make(8192, null), /RUNTIME_DIRECTORY/],
      [
        'store unavailable',
        () => {
          store.available = false;
          store.unavailableReason = 'NOTIFY_SOCKET is not set';
          return make();
        },
        /NOTIFY_SOCKET is not set/,
      ],
    ];
    test.each(cases)('%s: every call is a no-op; registration fds handed back are closed', (_what, build, detail) => {
      const p = build();
      expect(p.enabled).toBe(false);
      expect(p.detail).toMatch(detail);
      expect(p.journalPath).toBeNull();
      const [freg, flisten] = [devNull(), devNull()];
      const r = p.recover([
        { fd: flisten, name: 'epmd.socket' },
        { fd: freg, name: 'reg-0' },
      ]);
      expect(r.adopt).toEqual([]);
      expect(r.orphans.map((o) => o.name)).toEqual(['reg-0']);
      expect(isClosed(freg)).toBe(true);
      expect(isClosed(flisten)).toBe(false);
      expect(p.added(rec('alpha'), devNull(), 1, onError)).toBeNull();
      p.removed('reg-0', onError);
      expect(store.calls.filter((c) => c.op === 'store')).toEqual([]);
      expect(errors).toEqual([]);
      expect(fs.readdirSync(dir)).toEqual([]);
    });
  });
});
