import { isIPv4 } from 'node:net';
import fc from 'fast-check';
import {
  formatEndpoint,
  isDottedQuad,
  isLocalOnly,
  isLocalPeer,
  isLoopback,
  normaliseAddress,
} from '../../src/policy/policy';
import { runtimeDirectory } from '../../src/systemd/runtime-directory';

describe('local-peer policy', () => {
  test('normalises IPv4-mapped IPv6 and zone indexes', () => {
    expect(normaliseAddress('::ffff:127.0.0.1')).toBe('127.0.0.1');
    expect(normaliseAddress('::FFFF:10.0.0.5')).toBe('10.0.0.5');
    expect(normaliseAddress('fe80::1%eth0')).toBe('fe80::1');
    expect(normaliseAddress('::ffff:abcd')).toBe('::ffff:abcd');
    expect(normaliseAddress(undefined)).toBe('');
  });

  test('isDottedQuad says what net.isIPv4 says (it replaces it, so that the first request need not load node:net)', () => {
    for (const a of ['0.0.0.0', '255.255.255.255', '127.0.0.1', '10.0.0.5', '1.2.3.4'])
      expect([a, isDottedQuad(a)]).toEqual([a, true]);
    for (const a of [
      '',
      '.',
      '1.2.3',
      '1.2.3.4.5',
      '1.2.3.',
      '.1.2.3',
      '1..2.3',
      '256.0.0.1',
      '01.2.3.4',
      '1.2.3.04',
      '1.2.3.4 ',
      ' 1.2.3.4',
      '1.2.3.a',
      '+1.2.3.4',
      '1.2.3.1000',
      '0x1.2.3.4',
      '::1',
      '１.2.3.4',
    ])
      expect([a, isDottedQuad(a)]).toEqual([a, false]);
    const octet = fc.oneof(
      fc.integer({ min: 0, max: 300 }).map(String),
      fc.constantFrom('', '00', '01', '007', 'a', ' 1', '-1', '1e1'),
    );
    fc.assert(
      fc.property(fc.array(octet, { minLength: 0, maxLength: 6 }), (parts) => {
        const text = parts.join('.');
        expect(isDottedQuad(text)).toBe(isIPv4(text));
      }),
      { numRuns: 5000 },
    );
    fc.assert(
      fc.property(fc.string(), (text) => expect(isDottedQuad(text)).toBe(isIPv4(text))),
      { numRuns: 5000 },
    );
  });

  test('loopback: all of 127/8 and ::1, mapped or not', () => {
    for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1', '::ffff:127.9.9.9'])
      expect(isLoopback(a)).toBe(true);
    for (const a of ['10.0.0.1', '::ffff:10.0.0.1', '128.0.0.1', 'fe80::1', '', undefined])
      expect(isLoopback(a)).toBe(false);
  });

  test('a peer is local when loopback, or when it dialled from the address it dialled', () => {
    expect(isLocalPeer('127.0.0.1', '127.0.0.1')).toBe(true);
    expect(isLocalPeer('::ffff:127.0.0.1', '::ffff:127.0.0.1')).toBe(true);
    expect(isLocalPeer('192.0.2.2', '192.0.2.2')).toBe(true);
    expect(isLocalPeer('::ffff:192.0.2.2', '192.0.2.2')).toBe(true);
    expect(isLocalPeer('::1', 'fd00::2')).toBe(true);
    expect(isLocalPeer('192.0.2.2', '127.0.0.1')).toBe(false);
    expect(isLocalPeer('192.0.2.3', '192.0.2.2')).toBe(false);
    expect(isLocalPeer('fd00::2', '::1')).toBe(false);
    expect(isLocalPeer(undefined, undefined)).toBe(false);
  });

  test('ALIVE2, DUMP, KILL and STOP are local-only; PORT_PLEASE2 and NAMES are not', () => {
    expect(['alive2', 'dump', 'kill', 'stop'].every((k) => isLocalOnly(k as never))).toBe(true);
    expect(isLocalOnly('port_please2')).toBe(false);
    expect(isLocalOnly('names')).toBe(false);
  });
});

describe('shared formatting', () => {
  test('host:port, IPv6 in brackets', () => {
    expect(formatEndpoint('127.0.0.1', 4369)).toBe('127.0.0.1:4369');
    expect(formatEndpoint('::1', 4369)).toBe('[::1]:4369');
    expect(formatEndpoint('0.0.0.0', 0)).toBe('0.0.0.0:0');
  });

  test('the first directory of RUNTIME_DIRECTORY', () => {
    expect(runtimeDirectory('/run/sdepmd')).toBe('/run/sdepmd');
    expect(runtimeDirectory('/run/a:/run/b')).toBe('/run/a');
    expect(runtimeDirectory('')).toBeUndefined();
    expect(runtimeDirectory(undefined)).toBeUndefined();
  });
});
