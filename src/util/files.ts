/** Small file helpers shared by the operator commands, which read many system files that may be absent. */
import * as fs from 'node:fs';

/** A text file's content, or null when it cannot be read (absent, or not ours to read). */
export function readOrNull(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}
