import { randomBytes } from 'node:crypto';
import { closeSync, linkSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';

/*
 * A lock held by a process, as a file. It appears whole (written aside,
 * then linked into place: a link fails if another made one first), so two
 * takers at once cannot both win and none reads it torn. A lock whose
 * holder is gone is taken over: removed under a guard, by one taker at a
 * time, and only while it still says what was judged gone, so a taker
 * that got there first and claimed it keeps it.
 */

/** A guard older than this was left by a taker that died in it: removed. */
const GUARD_STALE_MS = 5_000;
/** How long a taker waits while another holds the guard. */
const GUARD_WAIT_MS = 50;
const ATTEMPTS = 20;

/**
 * Writes `content` as the lock `file`, taking over a lock whose text
 * `held` says is not a live holder's. Returns null when taken, else the
 * text of the lock that holds it (after ATTEMPTS tries, whatever is there,
 * or `content` when it is gone again).
 */
export function takeLockFile(file: string, content: string, held: (text: string) => boolean): string | null {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const aside = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
    writeFileSync(aside, content, { mode: 0o644 });
    try {
      linkSync(aside, file);
      return null;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      rmSync(aside, { force: true });
    }
    const text = readLockFile(file);
    if (text === null) continue;
    if (held(text)) return text;
    if (!takeGuard(`${file}.takeover`)) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, GUARD_WAIT_MS);
      continue;
    }
    try {
      if (readLockFile(file) === text) rmSync(file, { force: true });
    } finally {
      rmSync(`${file}.takeover`, { recursive: true, force: true });
    }
  }
  return readLockFile(file) ?? content;
}

/** The lock's text, or null when there is none (or it cannot be read). */
export function readLockFile(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

function takeGuard(guard: string): boolean {
  try {
    closeSync(openSync(guard, 'wx', 0o644));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    try {
      if (Date.now() - statSync(guard).mtimeMs > GUARD_STALE_MS) rmSync(guard, { recursive: true, force: true });
    } catch {
      // Gone meanwhile.
    }
    return false;
  }
}
