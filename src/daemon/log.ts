/**
 * Logging for `journalctl -u epmd`: one line per event on stderr. When stderr is connected to the journal
 * (JOURNAL_STREAM names stderr's device and inode) each line carries a `<N>` syslog priority prefix, which journald
 * turns into the entry's priority; on a terminal or a pipe, lines are plain text with a time stamp and level.
 */
import { fstatSync } from 'node:fs';

/** syslog priorities, as journald reads them. */
export const enum Priority {
  Err = 3,
  Warning = 4,
  Notice = 5,
  Info = 6,
  Debug = 7,
}

/** Log levels as the operator sets them: -d raises the level by one for each -d. */
export const LOG_LEVEL_NAMES = ['err', 'warning', 'notice', 'info', 'debug', 'trace'] as const;
export type LogLevelName = (typeof LOG_LEVEL_NAMES)[number];
/** `info` lets registrations through; `debug` adds every request; `trace` adds hex dumps of every packet. */
export const DEFAULT_LOG_LEVEL = 3;
export const MAX_LOG_LEVEL = LOG_LEVEL_NAMES.length - 1;

const LEVEL_PRIORITY: readonly Priority[] = [Priority.Err, Priority.Warning, Priority.Notice, Priority.Info, Priority.Debug, Priority.Debug];
const PRIORITY_LABEL: Record<number, string> = { 3: 'error', 4: 'warning', 5: 'notice', 6: 'info', 7: 'debug' };

export type LogSink = (line: string) => void;

/** True when fd 2 is the journal stream systemd connected (sd_journal_stream_fd semantics). */
export function stderrIsJournal(env: NodeJS.ProcessEnv = process.env): boolean {
  const stream = env.JOURNAL_STREAM;
  if (!stream) return false;
  const [dev, ino] = stream.split(':');
  try {
    const st = fstatSync(2, { bigint: true });
    return dev !== undefined && ino !== undefined && st.dev === BigInt(dev) && st.ino === BigInt(ino);
  } catch {
    return false;
  }
}

export class Logger {
  #level: number;
  readonly #journal: boolean;
  readonly #sink: LogSink;

  constructor(options: { level?: number; journal?: boolean; sink?: LogSink } = {}) {
    this.#level = clampLevel(options.level ?? DEFAULT_LOG_LEVEL);
    this.#journal = options.journal ?? stderrIsJournal();
    this.#sink = options.sink ?? ((line) => process.stderr.write(line));
  }

  get level(): number {
    return this.#level;
  }
  get levelName(): LogLevelName {
    return LOG_LEVEL_NAMES[this.#level]!;
  }
  set level(level: number) {
    this.#level = clampLevel(level);
  }

  /** Cheap guards for the hot path, so that debug lines cost nothing when off. */
  get debugEnabled(): boolean {
    return this.#level >= 4;
  }
  get traceEnabled(): boolean {
    return this.#level >= 5;
  }

  error(message: string): void {
    this.#write(0, message);
  }
  warning(message: string): void {
    this.#write(1, message);
  }
  notice(message: string): void {
    this.#write(2, message);
  }
  info(message: string): void {
    this.#write(3, message);
  }
  debug(message: string): void {
    this.#write(4, message);
  }
  trace(message: string): void {
    this.#write(5, message);
  }

  #write(level: number, message: string): void {
    if (level > this.#level) return;
    const priority = LEVEL_PRIORITY[level]!;
    // One event, one line: a message never spans journal entries.
    const text = message.replace(/[\r\n]+/g, ' ');
    this.#sink(
      this.#journal
        ? `<${priority}>${text}\n`
        : `${new Date().toISOString()} ${PRIORITY_LABEL[priority]} ${text}\n`,
    );
  }
}

function clampLevel(level: number): number {
  return Math.max(0, Math.min(MAX_LOG_LEVEL, Math.trunc(level)));
}

/** Hex dump of a packet, for trace lines. Long packets are cut, with the full length said. */
export function hex(bytes: Buffer, max = 128): string {
  const shown = bytes.subarray(0, max).toString('hex').replace(/(..)(?!$)/g, '$1 ');
  return bytes.length > max ? `${shown} … (${bytes.length} bytes)` : shown;
}

/** A name as it should appear in a log line: UTF-8 text, control characters escaped. */
export function printableName(name: Buffer): string {
  // eslint-disable-next-line no-control-regex
  return JSON.stringify(name.toString('utf8')).slice(1, -1);
}
