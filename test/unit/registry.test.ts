import { Registry, validateName } from '../../src/registry/registry';
import { codePoints } from '../../src/protocol/codec';

const info = (name: string | Buffer, highestVersion = 6) => ({
  name: typeof name === 'string' ? Buffer.from(name) : name,
  port: 5000,
  nodeType: 77,
  protocol: 0,
  highestVersion,
  lowestVersion: 5,
  extra: Buffer.alloc(0),
});

describe('Registry', () => {
  test('registers, looks up by exact bytes, refuses duplicates, unregisters', () => {
    const r = new Registry<string>({ creationSeed: 100 });
    const a = r.register(info('alpha'), 'owner-a');
    expect(a).toMatchObject({ ok: true, registration: { displayName: 'alpha', owner: 'owner-a', creation: 101 } });
    expect(r.lookup(Buffer.from('alpha'))?.owner).toBe('owner-a');
    expect(r.lookup(Buffer.from('ALPHA'))).toBeUndefined();
    expect(r.register(info('alpha'), 'other')).toEqual({ ok: false, reason: 'duplicate name' });
    if (!a.ok) throw new Error('unreachable');
    expect(r.unregister(a.registration)).toBe(true);
    expect(r.unregister(a.registration)).toBe(false);
    expect(r.lookup(Buffer.from('alpha'))).toBeUndefined();
    expect(r.size).toBe(0);
  });

  test('displayName is the name decoded as UTF-8, for ASCII and non-ASCII names alike', () => {
    const r = new Registry<null>();
    const names = ['alpha', 'nöde', '節点', 'a\u007fz'];
    for (const name of names) {
      const result = r.register(info(name), null);
      expect(result).toMatchObject({ ok: true, registration: { displayName: name } });
    }
    expect(r.lookup(Buffer.from('nöde'))?.displayName).toBe('nöde');
  });

  test('creation differs between successive registrations of a name, and is never 0', () => {
    const r = new Registry<null>({ creationSeed: 0xfffffffe });
    const seen: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = r.register(info('n'), null);
      if (!res.ok) throw new Error(res.reason);
      seen.push(res.registration.creation);
      r.unregister(res.registration);
    }
    expect(new Set(seen).size).toBe(4);
    expect(seen).not.toContain(0);
  });

  test('nodes older than version 6 get creations 1..3 that still change', () => {
    const r = new Registry<null>({ creationSeed: 7 });
    let last = 0;
    for (let i = 0; i < 6; i++) {
      const res = r.register(info('old', 5), null);
      if (!res.ok) throw new Error(res.reason);
      expect([1, 2, 3]).toContain(res.registration.creation);
      expect(res.registration.creation).not.toBe(last);
      last = res.registration.creation;
      r.unregister(res.registration);
    }
  });

  test('names are limited to 255 characters and 1020 bytes of valid UTF-8', () => {
    expect(validateName(Buffer.from('é'.repeat(255)))).toBeNull();
    expect(validateName(Buffer.from('😀'.repeat(255)))).toBeNull(); // 1020 bytes
    expect(validateName(Buffer.from('a'.repeat(256)))).toBe('name too long');
    expect(validateName(Buffer.from('é'.repeat(256)))).toBe('name too long');
    expect(validateName(Buffer.from([0xc3]))).toBe('name is not valid UTF-8');
    expect(validateName(Buffer.from([0xed, 0xa0, 0x80]))).toBe('name is not valid UTF-8'); // a surrogate
    const r = new Registry<null>();
    expect(r.register(info('a'.repeat(256)), null)).toEqual({ ok: false, reason: 'name too long' });
    expect(r.register({ ...info('x'), extra: Buffer.alloc(1021) }, null)).toEqual({
      ok: false,
      reason: 'extra too long',
    });
    expect(r.register({ ...info('x'), extra: Buffer.alloc(1020) }, null)).toMatchObject({ ok: true });
    expect(codePoints(Buffer.from('a😀é'))).toBe(3);
  });

  test('the optional registration limit', () => {
    const r = new Registry<null>({ maxRegistrations: 2 });
    expect(r.register(info('a'), null).ok).toBe(true);
    expect(r.register(info('b'), null).ok).toBe(true);
    expect(r.register(info('c'), null)).toEqual({ ok: false, reason: 'registry full' });
  });

  test('holds 100,000 registrations with O(1) lookups; lists newest first', () => {
    const r = new Registry<number>();
    for (let i = 0; i < 100_000; i++) expect(r.register(info(`node${i}`), i).ok).toBe(true);
    expect(r.size).toBe(100_000);
    expect(r.lookup(Buffer.from('node99999'))?.owner).toBe(99_999);
    expect(r.lookup(Buffer.from('node0'))?.owner).toBe(0);
    const listed = r.newestFirst();
    expect(listed[0]?.owner).toBe(99_999);
    expect(listed[listed.length - 1]?.owner).toBe(0);
  });

  test('remembers unregistered names oldest first; re-registering removes them', () => {
    const r = new Registry<null>();
    const a = r.register(info('a'), null);
    const b = r.register(info('b'), null);
    if (!a.ok || !b.ok) throw new Error('register');
    r.unregister(a.registration);
    r.unregister(b.registration);
    expect(r.unused().map((u) => u.name.toString())).toEqual(['a', 'b']);
    r.register(info('a'), null);
    expect(r.unused().map((u) => u.name.toString())).toEqual(['b']);
  });

  test('the unused list: new names take the oldest entry once it is over its limit (the C epmd with -d: 5)', () => {
    const r = new Registry<null>({ maxUnused: 5 });
    for (let i = 0; i < 8; i++) {
      const res = r.register(info(`u${i}`), null);
      if (!res.ok) throw new Error(res.reason);
      r.unregister(res.registration);
    }
    expect(r.unused().map((u) => u.name.toString())).toEqual(['u2', 'u3', 'u4', 'u5', 'u6', 'u7']);
  });

  test('restore keeps the creation and moves the counter past it', () => {
    const r = new Registry<null>({ creationSeed: 10 });
    const restored = { ...info('kept'), creation: 5000, displayName: 'kept', registeredAt: 0, owner: null };
    expect(r.restore(restored)).toMatchObject({ ok: true });
    expect(r.lookup(Buffer.from('kept'))?.creation).toBe(5000);
    const next = r.register(info('new'), null);
    expect(next.ok && next.registration.creation).toBe(5001);
  });

  test('version changes on every registration and unregistration', () => {
    const r = new Registry<null>();
    const v0 = r.version;
    const a = r.register(info('a'), null);
    expect(r.version).toBeGreaterThan(v0);
    const v1 = r.version;
    if (a.ok) r.unregister(a.registration);
    expect(r.version).toBeGreaterThan(v1);
  });
});
