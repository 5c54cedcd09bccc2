import type { Socket } from 'node:net';

/**
 * The OS file descriptor behind a connected net.Socket. Node has no public API for it; libuv's handle carries it.
 * Returns -1 when the socket has none (not connected, destroyed, or not fd-backed).
 */
export function socketFd(socket: Socket): number {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : -1;
}
