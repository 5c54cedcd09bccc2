/**
 * Connection policy: who may ask what, and the limits that keep one peer from hurting the others.
 * Pure functions and plain data; the server applies them.
 */
import type { RequestKind } from '../protocol/codec';

/** Limits on connections and requests. 0 means "no limit" for the counts. */
export interface Limits {
  /**
   * The C epmd's -packet_timeout, in whole seconds: a connection that has not sent its whole request is closed
   * once it has been idle for longer (the exact rule is in timeouts.ts).
   */
  readonly packetTimeoutSeconds: number;
  /**
   * Most time a connection may take to send its whole request, however it dribbles it (the packet timeout alone
   * restarts with every byte).
   */
  readonly requestBudgetMs: number;
  /** Most connections open at once (registrations included). */
  readonly maxConnections: number;
  /** Most connections open at once from one peer address (loopback peers are exempt: every local node needs one). */
  readonly maxConnectionsPerPeer: number;
  /** Most registrations held at once. */
  readonly maxRegistrations: number;
}

export const DEFAULT_LIMITS: Limits = {
  packetTimeoutSeconds: 60,
  requestBudgetMs: 60_000,
  maxConnections: 0,
  maxConnectionsPerPeer: 0,
  maxRegistrations: 0,
};

/** `host:port`, with an IPv6 host in brackets: `[::1]:4369`. */
export function formatEndpoint(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Requests the C epmd serves only to peers on this host. */
const LOCAL_ONLY: ReadonlySet<RequestKind> = new Set<RequestKind>(['alive2', 'dump', 'kill', 'stop']);

export function isLocalOnly(kind: RequestKind): boolean {
  return LOCAL_ONLY.has(kind);
}

/**
 * Whether `text` is an IPv4 address in dotted-quad form, as net.isIPv4 says (four decimal numbers from 0 to 255, no
 * leading zeros). Written out so that the first request needs neither node:net (see util/lazy-modules.ts) nor a regex.
 */
export function isDottedQuad(text: string): boolean {
  let parts = 0;
  let start = 0;
  for (let i = 0; i <= text.length; i++) {
    if (i < text.length && text[i] !== '.') continue;
    const part = text.slice(start, i);
    if (++parts > 4 || part === '' || part.length > 3 || (part.length > 1 && part[0] === '0')) return false;
    for (const c of part) if (c < '0' || c > '9') return false;
    if (Number(part) > 255) return false;
    start = i + 1;
  }
  return parts === 4;
}

/**
 * Normalises an address as Node reports it: an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`, as a dual-stack
 * socket reports IPv4 peers) becomes the plain IPv4 address, and an IPv6 zone index is dropped.
 */
export function normaliseAddress(address: string | undefined): string {
  if (!address) return '';
  const lower = address.toLowerCase();
  if (lower.startsWith('::ffff:')) {
    const tail = lower.slice(7);
    if (isDottedQuad(tail)) return tail;
  }
  const zone = lower.indexOf('%');
  return zone >= 0 ? lower.slice(0, zone) : lower;
}

/** Whether an address is a loopback address (127.0.0.0/8 or ::1), in any spelling Node reports. */
export function isLoopback(address: string | undefined): boolean {
  const a = normaliseAddress(address);
  return a.startsWith('127.') || a === '::1' || a === '0:0:0:0:0:0:0:1';
}

/**
 * The C epmd's notion of a local peer: loopback, or a peer whose address is the address it connected to
 * (a process on this host that dialled one of the host's own addresses).
 */
export function isLocalPeer(remoteAddress: string | undefined, localAddress: string | undefined): boolean {
  if (isLoopback(remoteAddress)) return true;
  const remote = normaliseAddress(remoteAddress);
  return remote !== '' && remote === normaliseAddress(localAddress);
}
