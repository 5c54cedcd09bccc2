import type { Server, Socket } from 'node:net';

/**
 * The OS file descriptor behind a connected net.Socket or a listening net.Server. Node has no public API for it;
 * libuv's handle carries it. Returns -1 when there is none (not connected or listening, destroyed, or not fd-backed).
 */
export function socketFd(socket: Socket | Server): number {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : -1;
}

/** The listening socket's fd (see socketFd). */
export const serverFd: (server: Server) => number = socketFd;
