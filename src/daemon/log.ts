/**
 * Logging for `journalctl -u epmd`: one entry per event.
 *
 * When stderr is connected to the journal (JOURNAL_STREAM names stderr's device and inode), each entry is sent
 * with sd_journal_sendv (the native addon), with structured fields: lines about a node carry EPMD_NODE=,
 * EPMD_PORT=, EPMD_PEER=, EPMD_CREATION=, and every kind of event its own stable MESSAGE_ID=, so that
 * `journalctl -u epmd EPMD_NODE=billing_prod` or `journalctl MESSAGE_ID=...` pick them out. Should the addon be
 * missing or a send fail, the line goes to stderr with a `<N>` syslog priority prefix, which journald turns into
 * the entry's priority. On a terminal or a pipe, lines are plain text with a time stamp and level.
 */
import { fstatSync } from 'node:fs';
import { loadAddon } from '../native/addon';

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

const LEVEL_PRIORITY: readonly Priority[] = [
  Priority.Err,
  Priority.Warning,
  Priority.Notice,
  Priority.Info,
  Priority.Debug,
  Priority.Debug,
];
const PRIORITY_LABEL: Record<number, string> = { 3: 'error', 4: 'warning', 5: 'notice', 6: 'info', 7: 'debug' };

export type LogSink = (line: string) => void;
/** Logs one line at a method's level, with the journal fields of its event. */
export type LogMethod = (message: string, fields?: LogFields) => void;
/** Sends one journal entry ("KEY=value" fields); returns 0 or a negative errno, as sd_journal_sendv does. */
export type JournalSender = (fields: string[]) => number;

/**
 * The kinds of events, each with a fixed 128-bit MESSAGE_ID (generated once for sdepmd; never change one).
 * `journalctl MESSAGE_ID=<id>` lists every event of a kind, whatever its wording.
 */
export const MESSAGE_IDS = {
  started: 'ea91437c29c3461b836be0d928286289',
  stopping: '309835eb949b421b9ce7e4a331341196',
  registered: '7440c94204b3409fb18d95d381651907',
  unregistered: '09c75b4ed0a44bbe9535bae2f19cef37',
  restored: 'a3eb7b29a7444240a28595f87185dfe8',
  not_restored: '3db21da056954d3b894e73f4951789b7',
  registration_refused: '9c37b2d074c3400ea44463d59814a3d5',
  node_stopped: '42412a4c90dc42f28850c830cb28b1c0',
  lookup: 'b1bae7fa56b8483f94cf8792b2472a31',
  refused: '421b9a4c73bd4f1f9537ef9c80b59f0d',
  kill: 'd085d113092141f182eedb2b73867893',
  internal_error: '32b638ac8fc04ff0b7cc96744d06bb32',
} as const;
export type LogEvent = keyof typeof MESSAGE_IDS;

/** What a line is about: the event kind and, for a node, its name, port, peer address and creation. */
export interface LogFields {
  readonly event: LogEvent;
  readonly node?: string;
  readonly port?: number;
  readonly peer?: string;
  readonly creation?: number;
}

/** The journal fields of one entry, in the order they are sent. */
export function journalFields(priority: number, message: string, fields?: LogFields): string[] {
  const out = [`MESSAGE=${message}`, `PRIORITY=${priority}`, 'SYSLOG_IDENTIFIER=sdepmd'];
  if (fields) {
    out.push(`MESSAGE_ID=${MESSAGE_IDS[fields.event]}`, `EPMD_EVENT=${fields.event}`);
    if (fields.node !== undefined) out.push(`EPMD_NODE=${fields.node}`);
    if (fields.port !== undefined) out.push(`EPMD_PORT=${fields.port}`);
    if (fields.peer !== undefined) out.push(`EPMD_PEER=${fields.peer}`);
    if (fields.creation !== undefined) out.push(`EPMD_CREATION=${fields.creation}`);
  }
  return out;
}

/**
 * A sink that gathers the lines logged in one synchronous run (one batch of the engine's events, say) and writes
 * them with one call once that run is over (a microtask), or at once when the process exits: under a burst of
 * registrations, one write(2) instead of one per line, in the same order. `flush()` writes what is pending now.
 */
export function batchedSink(write: (text: string) => void): LogSink & { flush(this: void): void } {
  let pending = '';
  const flush = (): void => {
    if (pending === '') return;
    const text = pending;
    pending = '';
    write(text);
  };
  const sink = (line: string): void => {
    if (pending === '') queueMicrotask(flush);
    pending += line;
  };
  return Object.assign(sink, { flush });
}

let stderrLines: (LogSink & { flush(this: void): void }) | undefined;
/** The process's stderr, batched; what is still pending when the process exits is written then. */
function stderrSink(): LogSink {
  if (!stderrLines) {
    const lines = batchedSink((text) => process.stderr.write(text));
    process.once('exit', lines.flush);
    stderrLines = lines;
  }
  return stderrLines;
}

/** The addon's sd_journal_sendv, or null when the addon cannot be loaded. */
function nativeJournal(): JournalSender | null {
  const addon = loadAddon();
  return addon instanceof Error ? null : (fields) => addon.journalSend(fields);
}

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
  #send: JournalSender | null;

  /**
   * `journal`: stderr is the journal (default: JOURNAL_STREAM says so). `send`: how entries reach the journal then
   * (default: the addon's sd_journal_sendv, unless a `sink` is given; null: `<N>` lines on the sink).
   */
  constructor(options: { level?: number; journal?: boolean; sink?: LogSink; send?: JournalSender | null } = {}) {
    this.#level = clampLevel(options.level ?? DEFAULT_LOG_LEVEL);
    this.#journal = options.journal ?? stderrIsJournal();
    this.#sink = options.sink ?? stderrSink();
    this.#send = !this.#journal
      ? null
      : options.send !== undefined
        ? options.send
        : options.sink
          ? null
          : nativeJournal();
  }

  /** Whether entries go to the journal with fields (sd_journal_sendv) rather than as stderr lines. */
  get structured(): boolean {
    return this.#send !== null;
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

  // One method per level, bound (safe to pass around as a callback): log.error(...) to log.trace(...).
  readonly error = this.#at(0);
  readonly warning = this.#at(1);
  readonly notice = this.#at(2);
  readonly info = this.#at(3);
  readonly debug = this.#at(4);
  readonly trace = this.#at(5);

  #at(level: number): LogMethod {
    return (message, fields) => this.#write(level, message, fields);
  }

  #write(level: number, message: string, fields?: LogFields): void {
    if (level > this.#level) return;
    const priority = LEVEL_PRIORITY[level]!;
    // One event, one line: a message never spans journal entries.
    const text = message.includes('\n') || message.includes('\r') ? message.replace(/[\r\n]+/g, ' ') : message;
    if (this.#send) {
      let sent: number;
      try {
        sent = this.#send(journalFields(priority, text, fields));
      } catch {
        sent = -1; // a field the addon refused (cannot happen with the fields above): keep the line all the same
      }
      if (sent >= 0) return;
      // journald's socket is gone (or refused the entry): keep the line, on the stream.
    }
    this.#sink(
      this.#journal ? `<${priority}>${text}\n` : `${new Date().toISOString()} ${PRIORITY_LABEL[priority]} ${text}\n`,
    );
  }
}

function clampLevel(level: number): number {
  return Math.max(0, Math.min(MAX_LOG_LEVEL, Math.trunc(level)));
}

/** Hex dump of a packet, for trace lines. Long packets are cut, with the full length said. */
export function hex(bytes: Buffer, max = 128): string {
  const shown = bytes
    .subarray(0, max)
    .toString('hex')
    .replace(/(..)(?!$)/g, '$1 ');
  return bytes.length > max ? `${shown} … (${bytes.length} bytes)` : shown;
}

/** A name as it should appear in a log line: UTF-8 text, control characters escaped. */
export function printableName(name: Buffer): string {
  return JSON.stringify(name.toString('utf8')).slice(1, -1);
}
