/**
 * Typed access to systemd's file-descriptor store (FDSTORE=1 / FDSTOREREMOVE=1, sd_pid_notify_with_fds(3)).
 *
 * Core Node cannot send SCM_RIGHTS over AF_UNIX datagrams, so fds are passed through
 * the project's N-API addon (native/sdepmd), which wraps libsystemd's sd_pid_notify_with_fds(3).
 * The addon is loaded lazily; when it is missing or NOTIFY_SOCKET is unset,
 * openFdStore() returns a no-op store with available=false.
 */
import * as net from 'node:net';
import { socketFd } from '../engine/socket-fd';
import { DEFAULT_ADDON_PATH, errnoName, loadAddon, type SdepmdAddon } from '../native/addon';

export { DEFAULT_ADDON_PATH };

export interface FdStore {
  /** Hand a duplicate of `fd` to systemd under `name` (FDSTORE=1). Throws on failure. */
  store(name: string, fd: number): void;
  /** Ask systemd to drop every stored fd named `name` (FDSTOREREMOVE=1). Throws on failure. */
  remove(name: string): void;
  /** False for the no-op store (NOTIFY_SOCKET unset or addon not built). */
  available: boolean;
  /** Why the store is unavailable (only set on the no-op store). */
  unavailableReason?: string;
}

export interface OpenFdStoreOptions {
  /** Override the addon location (tests). */
  addonPath?: string;
}

/** systemd's FDNAME_MAX. */
export const FDNAME_MAX = 255;

/**
 * Validate an FDNAME the way systemd's fdname_is_valid() does (printable ASCII, no ':',
 * at most 255 characters), and additionally reject the empty name.
 * Returns an error text, or null when the name is valid.
 */
export function validateFdName(name: string): string | null {
  if (typeof name !== 'string') return 'fd name must be a string';
  if (name.length === 0) return 'fd name must not be empty';
  if (name.length > FDNAME_MAX) return `fd name is ${name.length} characters long; the limit is ${FDNAME_MAX}`;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return `fd name contains a non-printable or non-ASCII character at offset ${i}`;
    if (c === 0x3a) return `fd name must not contain ':' (offset ${i})`;
  }
  return null;
}

function checkedName(name: string): string {
  const err = validateFdName(name);
  if (err !== null) throw new Error(`fd store: invalid name ${JSON.stringify(name)}: ${err}`);
  return name;
}

export function composeStoreMessage(name: string): string {
  return `FDSTORE=1\nFDNAME=${checkedName(name)}`;
}

export function composeRemoveMessage(name: string): string {
  return `FDSTOREREMOVE=1\nFDNAME=${checkedName(name)}`;
}

function send(addon: SdepmdAddon, state: string, fds: number[]): void {
  let r: number;
  try {
    r = addon.notifyWithFds(state, fds);
  } catch (err) {
    throw new Error(`fd store: bad arguments to sd_pid_notify_with_fds: ${(err as Error).message}`);
  }
  if (r < 0) throw new Error(`fd store: sd_pid_notify_with_fds failed: ${errnoName(-r)}`);
  if (r === 0) throw new Error('fd store: sd_pid_notify_with_fds sent nothing: NOTIFY_SOCKET is not set');
}

function noopStore(reason: string): FdStore {
  return { available: false, unavailableReason: reason, store() {}, remove() {} };
}

export function openFdStore(options: OpenFdStoreOptions = {}): FdStore {
  if (!process.env.NOTIFY_SOCKET) return noopStore('NOTIFY_SOCKET is not set');
  const addon = loadAddon(options.addonPath ?? DEFAULT_ADDON_PATH);
  if (addon instanceof Error) return noopStore(`fd store: ${addon.message}`);
  return {
    available: true,
    store(name: string, fd: number): void {
      const state = composeStoreMessage(name);
      if (!Number.isInteger(fd) || fd < 0) throw new Error(`fd store: invalid fd ${fd}`);
      send(addon, state, [fd]);
    },
    remove(name: string): void {
      send(addon, composeRemoveMessage(name), []);
    },
  };
}

/** The OS fd behind a net.Socket, for handing to the store; throws when the socket has none. */
export function requireSocketFd(socket: net.Socket): number {
  const fd = socketFd(socket);
  if (fd < 0) {
    throw new Error('fd store: socket has no usable file descriptor (not connected, destroyed, or not fd-backed)');
  }
  return fd;
}
