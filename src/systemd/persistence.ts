/**
 * Registrations that survive a restart or a crash of the daemon.
 *
 * Each registration's TCP connection is handed to systemd's fd store (FDSTORE=1, FDNAME=reg-…), so that the
 * connection outlives the process; its metadata (name, port, type, protocol, versions, extra, creation) goes to a
 * journal file in RUNTIME_DIRECTORY (kept across restarts by RuntimeDirectoryPreserve=restart). Both happen before
 * the node gets its reply. On start, the fds systemd hands back (named in LISTEN_FDNAMES) are matched with the
 * journal, and the table is rebuilt.
 *
 * The journal is a file of JSON lines: one `add` or `remove` per change, appended with a single write (a crash
 * can cut at most the last line, which replay then ignores), compacted into a fresh file when it grows.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { PassedFd } from './listen';
import type { FdStore } from './fdstore';
import type { RegistrationRecord } from '../registry/registration-record';
import { runtimeDirectory } from './runtime-directory';
import { REGISTRATION_FIELDS, UINT32 } from '../protocol/record-shapes';
import { integer, literal, matching, object, optional, parseJson, type FieldsOf, type Shape } from '../util/shape';

/** Prefix of the FDNAMEs this daemon gives to registration connections (listening sockets never carry it). */
export const REGISTRATION_FD_PREFIX = 'reg-';

export function isRegistrationFd(name: string): boolean {
  return name.startsWith(REGISTRATION_FD_PREFIX);
}

/** A registration as the journal keeps it: always with its fd name. */
export type StoredRecord = RegistrationRecord & { readonly fdName: string };

type JournalLine =
  /** `counter` is the registry's creation counter after this registration. */
  | ({ readonly op: 'add'; readonly counter?: number } & StoredRecord)
  | { readonly op: 'remove'; readonly fdName: string }
  | { readonly op: 'header'; readonly creationCounter: number; readonly nextSeq: number };

/** The journal's content after replay. */
export interface JournalState {
  readonly records: Map<string, StoredRecord>;
  creationCounter: number;
  nextSeq: number;
}

const FD_NAME = matching(/^reg-[0-9a-z]{1,20}$/, `a registration fd name (${REGISTRATION_FD_PREFIX}<base 36>)`);
const RECORD_FIELDS = { ...REGISTRATION_FIELDS, fdName: FD_NAME } satisfies FieldsOf<StoredRecord>;
const JOURNAL_LINES: { readonly [Op in JournalLine['op']]: Shape<Extract<JournalLine, { op: Op }>> } = {
  add: object({ op: literal('add'), counter: optional(UINT32), ...RECORD_FIELDS }),
  remove: object({ op: literal('remove'), fdName: FD_NAME }),
  header: object({ op: literal('header'), creationCounter: UINT32, nextSeq: integer(0) }),
};
const OP = object({ op: literal('add', 'remove', 'header') });

/** One journal line, checked: the entry, or why it is refused. */
export function decodeJournalLine(line: string): JournalLine {
  const { op } = parseJson(line, OP, 'not a journal entry');
  const shape: Shape<JournalLine> = JOURNAL_LINES[op];
  return parseJson(line, shape, `not a journal "${op}" entry`);
}

/**
 * Replays journal text. A line that is not a well-formed entry (a cut last line, or anything else) is skipped and
 * reported, line by line; the others still count, so that one bad line loses no other registration.
 */
export function replayJournal(text: string): JournalState & { skipped: number; problems: string[] } {
  const state = {
    records: new Map<string, StoredRecord>(),
    creationCounter: 0,
    nextSeq: 0,
    skipped: 0,
    problems: [] as string[],
  };
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let entry: JournalLine;
    try {
      entry = decodeJournalLine(line);
    } catch (err) {
      state.skipped++;
      if (state.problems.length < MAX_PROBLEMS_REPORTED)
        state.problems.push(`line ${i + 1}: ${(err as Error).message}`);
      return;
    }
    if (entry.op === 'header') {
      state.creationCounter = Math.max(state.creationCounter, entry.creationCounter);
      state.nextSeq = Math.max(state.nextSeq, entry.nextSeq);
    } else if (entry.op === 'add') {
      const { op: _op, counter, ...record } = entry;
      state.records.set(entry.fdName, record);
      state.creationCounter = Math.max(state.creationCounter, entry.creation, counter ?? 0);
      state.nextSeq = Math.max(state.nextSeq, seqOf(entry.fdName) + 1);
    } else {
      state.records.delete(entry.fdName);
    }
  });
  return state;
}

/** How many bad journal lines are described (the rest are only counted). */
const MAX_PROBLEMS_REPORTED = 10;

function seqOf(fdName: string): number {
  const n = parseInt(fdName.slice(REGISTRATION_FD_PREFIX.length), 36);
  return Number.isFinite(n) ? n : 0;
}

export interface RecoveredRegistration {
  readonly fd: number;
  readonly record: StoredRecord;
}

export interface Recovery {
  readonly adopt: readonly RecoveredRegistration[];
  /** Handed-back fds with no journal entry: closed and removed from the store. */
  readonly orphans: readonly PassedFd[];
  /** Journal entries with no fd (the peer's connection was dropped by systemd): forgotten. */
  readonly missing: readonly StoredRecord[];
}

export interface PersistenceStats {
  stored: number;
  /** Registrations rebuilt at start from the fd store. */
  restored: number;
  /** Found at start but not rebuilt: the node went away while epmd was down (its connection had closed, or it
   * never came back from the store). Counted apart from `restored`. */
  notRestored: number;
  failures: number;
}

/**
 * Keeps the journal and the fd store in step with the registry. Disabled (every call a no-op) outside systemd,
 * without RUNTIME_DIRECTORY, without the addon, or with --fdstore_max 0.
 */
export class Persistence {
  readonly enabled: boolean;
  readonly detail: string;
  readonly stats: PersistenceStats = { stored: 0, restored: 0, notRestored: 0, failures: 0 };
  readonly #store: FdStore | null;
  readonly #file: string | null;
  readonly #max: number;
  #fd: number | null = null;
  #state: JournalState = { records: new Map(), creationCounter: 0, nextSeq: 0 };
  #lines = 0;
  #warnedFull = false;
  #held: { fdName: string; fd: number }[] | null = null;
  #journalProblems: readonly string[] = [];

  /** `runtimeDirectory`: RUNTIME_DIRECTORY's value; the journal goes in its first directory. */
  constructor(options: { store: FdStore; runtimeDirectory: string | undefined; max: number }) {
    const { store, max } = options;
    this.#max = max;
    if (max <= 0) [this.enabled, this.detail] = [false, 'disabled (--fdstore_max 0)'];
    else if (!store.available) [this.enabled, this.detail] = [false, store.unavailableReason ?? 'fd store unavailable'];
    else if (!options.runtimeDirectory)
      [this.enabled, this.detail] = [false, 'RUNTIME_DIRECTORY is not set (RuntimeDirectory= in the unit)'];
    else [this.enabled, this.detail] = [true, `up to ${max} registrations kept in the fd store`];
    this.#store = this.enabled ? store : null;
    const dir = runtimeDirectory(options.runtimeDirectory);
    this.#file = this.enabled && dir ? path.join(dir, 'registrations.jsonl') : null;
  }

  /** The highest creation the journal has seen: the registry's counter must start past it. */
  get creationCounter(): number {
    return this.#state.creationCounter;
  }

  get journalPath(): string | null {
    return this.#file;
  }

  /**
   * Reads the journal and matches it with the fds systemd handed back. Call once at start, before serving.
   * Orphan fds are closed here and removed from the store.
   */
  recover(passed: readonly PassedFd[]): Recovery {
    if (!this.#file) {
      // Without persistence, registration fds (from an earlier run with it) cannot be matched: close them.
      for (const p of passed) if (isRegistrationFd(p.name)) closeQuietly(p.fd);
      return { adopt: [], orphans: passed.filter((p) => isRegistrationFd(p.name)), missing: [] };
    }
    this.load();
    const adopt: RecoveredRegistration[] = [];
    const orphans: PassedFd[] = [];
    const seen = new Set<string>();
    for (const p of passed) {
      if (!isRegistrationFd(p.name)) continue;
      const record = this.#state.records.get(p.name);
      if (!record || seen.has(p.name)) {
        orphans.push(p);
        closeQuietly(p.fd);
        // A second fd under an adopted name cannot be removed alone (FDSTOREREMOVE drops every fd of that name).
        if (!record) this.#forget(p.name);
        continue;
      }
      seen.add(p.name);
      adopt.push({ fd: p.fd, record });
    }
    const missing = [...this.#state.records.values()].filter((r) => !seen.has(r.fdName));
    for (const r of missing) this.#state.records.delete(r.fdName);
    this.stats.restored = adopt.length;
    this.stats.notRestored = missing.length;
    this.stats.stored = adopt.length;
    this.#compact();
    return { adopt, orphans, missing };
  }

  /**
   * Reads the journal as it is, without matching it against fds: a live upgrade's new process, which receives
   * the connections from the old one, continues the same journal.
   */
  load(): void {
    if (!this.#file) return;
    let text = '';
    try {
      text = fs.readFileSync(this.#file, 'utf8');
    } catch {
      // first start: no journal yet
    }
    const replayed = replayJournal(text);
    this.#state = { records: replayed.records, creationCounter: replayed.creationCounter, nextSeq: replayed.nextSeq };
    this.#journalProblems =
      replayed.skipped > replayed.problems.length
        ? [...replayed.problems, `${replayed.skipped - replayed.problems.length} more bad line(s)`]
        : replayed.problems;
    this.stats.stored = this.#state.records.size;
  }

  /** What was wrong with the journal's lines that the last load() skipped (the good lines were kept). */
  get journalProblems(): readonly string[] {
    return this.#journalProblems;
  }

  /** The journal's record for an fd name, if any. */
  record(fdName: string): StoredRecord | undefined {
    return this.#state.records.get(fdName);
  }

  /**
   * Persists a new registration before the node is answered: journal first, then the fd. Returns the FDNAME, or
   * null when it was not kept (disabled, store full, or an error, which is counted and reported by `onError`).
   */
  added(
    record: RegistrationRecord,
    fd: number,
    creationCounter: number,
    onError: (message: string) => void,
  ): string | null {
    if (!this.#store || !this.#file) return null;
    if (this.#state.records.size >= this.#max) {
      if (!this.#warnedFull) onError(`fd store full (${this.#max}); further registrations will not survive a restart`);
      this.#warnedFull = true;
      return null;
    }
    const fdName = `${REGISTRATION_FD_PREFIX}${(this.#state.nextSeq++).toString(36)}`;
    const full: StoredRecord = { ...record, fdName };
    try {
      this.#state.creationCounter = Math.max(this.#state.creationCounter, record.creation >>> 0, creationCounter >>> 0);
      this.#append({ op: 'add', counter: this.#state.creationCounter, ...full });
      this.#state.records.set(fdName, full);
      if (this.#held) this.#held.push({ fdName, fd });
      else this.#store.store(fdName, fd);
      this.stats.stored = this.#state.records.size;
      return fdName;
    } catch (err) {
      this.stats.failures++;
      this.#state.records.delete(fdName);
      onError(`cannot keep registration ${record.name} across restarts: ${(err as Error).message}`);
      return null;
    }
  }

  /**
   * A registration handed back at start whose node had gone while epmd was down: forgotten, and counted as not
   * restored rather than restored.
   */
  notRestored(fdName: string, onError: (message: string) => void): void {
    this.removed(fdName, onError);
    this.stats.restored = Math.max(0, this.stats.restored - 1);
    this.stats.notRestored++;
  }

  /** Forgets a registration that ended: out of the store (so that systemd closes its copy) and the journal. */
  removed(fdName: string | null, onError: (message: string) => void): void {
    if (!fdName || !this.#store) return;
    try {
      this.#remove(fdName);
      this.#held = this.#held?.filter((h) => h.fdName !== fdName) ?? null;
      this.#store.remove(fdName);
    } catch (err) {
      this.stats.failures++;
      onError(`cannot remove ${fdName} from the fd store: ${(err as Error).message}`);
    }
    this.stats.stored = this.#state.records.size;
  }

  /**
   * Holds FDSTORE messages back until `release()`: a live upgrade's new process serves before systemd knows it
   * as the main process, and systemd ignores the fd store messages of any other process (NotifyAccess=main).
   */
  hold(): void {
    this.#held ??= [];
  }

  release(onError: (message: string) => void): void {
    const held = this.#held ?? [];
    this.#held = null;
    for (const { fdName, fd } of held) {
      // Registrations that ended meanwhile were already forgotten.
      if (!this.#state.records.has(fdName)) continue;
      try {
        this.#store?.store(fdName, fd);
      } catch (err) {
        this.stats.failures++;
        onError(`cannot keep ${fdName} in the fd store: ${(err as Error).message}`);
      }
    }
  }

  /** Closes the journal (the data stays for the next start). */
  close(): void {
    if (this.#fd !== null) closeQuietly(this.#fd);
    this.#fd = null;
  }

  /** Asks systemd to drop an fd name that has no record here (an orphan handed back at start). */
  #forget(fdName: string): void {
    try {
      this.#store?.remove(fdName);
    } catch {
      this.stats.failures++;
    }
  }

  #remove(fdName: string): void {
    if (!this.#state.records.delete(fdName)) return;
    this.#append({ op: 'remove', fdName });
  }

  #append(line: JournalLine): void {
    if (!this.#file) return;
    if (this.#fd === null || this.#lines > 2 * this.#state.records.size + 1024) this.#compact();
    // One write per line: a crash can cut only the last line.
    fs.writeSync(this.#fd!, `${JSON.stringify(line)}\n`);
    this.#lines++;
  }

  /** Rewrites the journal as a header plus one `add` per live registration, atomically (write, then rename). */
  #compact(): void {
    if (!this.#file) return;
    const tmp = `${this.#file}.tmp`;
    const lines: JournalLine[] = [
      { op: 'header', creationCounter: this.#state.creationCounter, nextSeq: this.#state.nextSeq },
      ...[...this.#state.records.values()].map((r): JournalLine => ({ op: 'add', ...r })),
    ];
    fs.writeFileSync(tmp, lines.map((l) => JSON.stringify(l)).join('\n') + '\n', { mode: 0o600 });
    fs.renameSync(tmp, this.#file);
    if (this.#fd !== null) closeQuietly(this.#fd);
    this.#fd = fs.openSync(this.#file, 'a');
    this.#lines = lines.length;
  }
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // already closed
  }
}
