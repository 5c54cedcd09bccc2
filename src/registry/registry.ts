/**
 * The registry: which node names are registered, on which ports, with which creation numbers.
 *
 * Names are keyed by their exact bytes (as the C epmd compares them), so lookups are one Map probe whatever the
 * table's size. The registry knows nothing of sockets: each registration carries an opaque `owner` (the server uses
 * the connection that holds it), so that the registry can be read and tested on its own.
 */
import { isAscii, isUtf8 } from 'node:buffer';
import { MAX_EXTRA_BYTES, MAX_NAME_BYTES, MAX_NAME_CHARS } from '../protocol/constants';
import { codePoints, type NodeInfo } from '../protocol/codec';

export interface Registration<Owner = unknown> extends NodeInfo {
  /** The creation number handed to the node; it differs between successive registrations of a name. */
  readonly creation: number;
  /** The name decoded as UTF-8, for logs and JSON. */
  readonly displayName: string;
  /** When it registered (ms since the epoch). */
  readonly registeredAt: number;
  readonly owner: Owner;
}

export type RegisterRefusal =
  'duplicate name' | 'name too long' | 'name is not valid UTF-8' | 'extra too long' | 'registry full';
export type RegisterResult<Owner> =
  | { readonly ok: true; readonly registration: Registration<Owner> }
  | { readonly ok: false; readonly reason: RegisterRefusal };

/** A name that recently unregistered, kept (bounded) for DUMP's "old/unused" lines. */
export interface UnusedName {
  readonly name: Buffer;
  readonly port: number;
}

export interface RegistryOptions {
  /** Most registrations held at once; 0 means no limit. */
  readonly maxRegistrations?: number;
  /** First creation value; by default seeded from the clock as the C epmd does. */
  readonly creationSeed?: number;
  /** How many unregistered names to remember for DUMP (see DEFAULT_MAX_UNUSED). */
  readonly maxUnused?: number;
}

/** Checks a name the way the C epmd does before it registers it. */
export function validateName(name: Buffer): RegisterRefusal | null {
  if (name.length > MAX_NAME_BYTES) return 'name too long';
  if (!isUtf8(name)) return 'name is not valid UTF-8';
  if (codePoints(name) > MAX_NAME_CHARS) return 'name too long';
  return null;
}

/** The key under which a name is stored: its bytes, one char per byte. */
export function nameKey(name: Buffer): string {
  return name.toString('latin1');
}

/** How many unregistered names DUMP remembers: the C epmd keeps 1,000, or 5 when run with -d. */
export const DEFAULT_MAX_UNUSED = 1000;

export class Registry<Owner = unknown> {
  readonly #byName = new Map<string, Registration<Owner>>();
  /** Keyed like #byName; a Map keeps insertion order, so its first entry is the oldest. */
  readonly #unused = new Map<string, UnusedName>();
  readonly #maxRegistrations: number;
  readonly #maxUnused: number;
  #creation: number;
  /** Bumped on every change, so that callers can cache replies built from the table. */
  #version = 0;

  constructor(options: RegistryOptions = {}) {
    this.#maxRegistrations = options.maxRegistrations ?? 0;
    this.#maxUnused = options.maxUnused ?? DEFAULT_MAX_UNUSED;
    this.#creation = (options.creationSeed ?? Math.floor(Date.now() / 1000)) >>> 0;
  }

  get size(): number {
    return this.#byName.size;
  }

  /** Changes whenever a node registers or unregisters. */
  get version(): number {
    return this.#version;
  }

  /** The last creation handed out (the counter's current value). */
  get creationCounter(): number {
    return this.#creation;
  }

  register(info: NodeInfo, owner: Owner, now = Date.now()): RegisterResult<Owner> {
    const invalid = validateName(info.name);
    if (invalid) return { ok: false, reason: invalid };
    if (info.extra.length > MAX_EXTRA_BYTES) return { ok: false, reason: 'extra too long' };
    const key = nameKey(info.name);
    if (this.#byName.has(key)) return { ok: false, reason: 'duplicate name' };
    if (this.#maxRegistrations > 0 && this.#byName.size >= this.#maxRegistrations) {
      return { ok: false, reason: 'registry full' };
    }
    const registration: Registration<Owner> = {
      name: info.name,
      port: info.port,
      nodeType: info.nodeType,
      protocol: info.protocol,
      highestVersion: info.highestVersion,
      lowestVersion: info.lowestVersion,
      extra: info.extra,
      creation: this.#nextCreation(info.highestVersion),
      // An ASCII name (nearly all) reads the same as its key: one string for both.
      displayName: isAscii(info.name) ? key : info.name.toString('utf8'),
      registeredAt: now,
      owner,
    };
    this.#insert(key, registration);
    return { ok: true, registration };
  }

  /**
   * Puts back a registration that existed before a restart, keeping its creation, and moves the counter past it
   * so that later registrations still get new numbers.
   */
  restore(registration: Registration<Owner>): RegisterResult<Owner> {
    const key = nameKey(registration.name);
    if (this.#byName.has(key)) return { ok: false, reason: 'duplicate name' };
    if (registration.highestVersion >= 6 && registration.creation > this.#creation)
      this.#creation = registration.creation;
    this.#insert(key, registration);
    return { ok: true, registration };
  }

  /** A new creation number, as a registration would get: for a registration adopted from another epmd. */
  issueCreation(highestVersion: number): number {
    return this.#nextCreation(highestVersion);
  }

  /** Moves the creation counter forward to at least `value` (it never moves back). */
  advanceCreation(value: number): void {
    if (value >>> 0 > this.#creation) this.#creation = value >>> 0;
  }

  lookup(name: Buffer): Registration<Owner> | undefined {
    return this.#byName.get(nameKey(name));
  }

  /** lookup() by a name's key (see nameKey): no Buffer needed. */
  lookupKey(key: string): Registration<Owner> | undefined {
    return this.#byName.get(key);
  }

  /** Removes a registration if it is still the one stored under its name. */
  unregister(registration: Registration<Owner>): boolean {
    const key = nameKey(registration.name);
    if (this.#byName.get(key) !== registration) return false;
    this.#byName.delete(key);
    this.#version++;
    this.#unused.set(key, { name: registration.name, port: registration.port });
    return true;
  }

  /** The registrations, newest first (the C epmd's order in NAMES and DUMP). */
  newestFirst(): Registration<Owner>[] {
    return Array.from(this.#byName.values()).reverse();
  }

  /** Recently unregistered names, oldest first (the C epmd's DUMP order). */
  unused(): readonly UnusedName[] {
    return [...this.#unused.values()];
  }

  #insert(key: string, registration: Registration<Owner>): void {
    this.#byName.set(key, registration);
    this.#version++;
    // As in the C epmd: a returning name leaves the unused list; a new name, when the list is over its limit,
    // takes the oldest entry's place. Only new names shrink it, so it may grow past the limit meanwhile.
    if (!this.#unused.delete(key) && this.#unused.size > this.#maxUnused) {
      const oldest = this.#unused.keys().next();
      if (!oldest.done) this.#unused.delete(oldest.value);
    }
  }

  #nextCreation(highestVersion: number): number {
    // A 32-bit counter that skips 0 (OTP treats creation 0 as "unknown").
    this.#creation = (this.#creation + 1) >>> 0;
    if (this.#creation === 0) this.#creation = 1;
    // Nodes older than version 6 only understand creations 1..3.
    return highestVersion >= 6 ? this.#creation : (this.#creation % 3) + 1;
  }
}
