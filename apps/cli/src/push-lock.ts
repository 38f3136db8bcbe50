import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readLockFile, takeLockFile } from '@slipway/core/lock-file';
import { isProcessAlive, processStart } from '@slipway/core/run-command';

/*
 * One deploying push at a time per Slipway remote, held from the
 * pre-receive hook until git has moved the branch (or given up).
 *
 * git runs pre-receive before it locks the refs: two pushes arriving
 * together both pass it, both would deploy, and git then refuses the one
 * that lost the race for the ref, which may be the one left live. So the
 * pre-receive hook takes this lock before it deploys, and checks the branch
 * is still where the pusher saw it; the reference-transaction hook, which
 * git runs once the ref update is committed or aborted, lets it go. In
 * between, a second push is refused at once, with the commit being
 * deployed named.
 *
 * The lock names the receive-pack process it belongs to (the hooks'
 * parent): a lock whose process is gone (git killed between the two hooks,
 * or a push refused by a check git makes after pre-receive) is stale and
 * taken over.
 */

/** The lock file, in the bare repository. */
export const PUSH_LOCK_FILE = 'slipway-push.lock';

export interface PushLock {
  /** The receive-pack process whose push holds the lock. */
  pid: number;
  /** When that process started (its /proc start time): a pid the system reused is not the holder. */
  start?: string | null;
  /** The full ref being deployed, e.g. `refs/heads/master`. */
  ref: string;
  /** The commit being deployed. */
  sha: string;
  /** When it was taken (ISO 8601). */
  since: string;
}

/** The repository the hooks run in: git sets GIT_DIR (`.` for a bare one), relative to their working directory. */
export function hookGitDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.GIT_DIR ?? '.');
}

/** Whether the push holding `lock` is still under way: its git process exists, and is the same one. */
export function holderAlive(lock: Pick<PushLock, 'pid' | 'start'>): boolean {
  if (lock.start == null) return isProcessAlive(lock.pid);
  return processStart(lock.pid) === lock.start;
}

/**
 * Takes the lock for `lock.pid`'s push, taking over a stale one (its git
 * process gone, or unreadable). Returns null when taken, or the live push
 * holding it. See takeLockFile: the file appears whole, and a stale one is
 * removed by one push at a time.
 */
export async function takePushLock(gitDir: string, lock: PushLock): Promise<PushLock | null> {
  const text = takeLockFile(join(gitDir, PUSH_LOCK_FILE), JSON.stringify(lock), (held) => {
    const holder = parsePushLock(held);
    return holder !== null && holder.pid !== lock.pid && holderAlive(holder);
  });
  return text === null ? null : parsePushLock(text) ?? lock;
}

/** Lets the lock go if `pid`'s push holds it for `ref`; true when it did. */
export function releasePushLock(gitDir: string, pid: number, ref: string): boolean {
  const { holder } = readPushLock(gitDir);
  if (!holder || holder.pid !== pid || holder.ref !== ref) return false;
  rmSync(join(gitDir, PUSH_LOCK_FILE), { force: true });
  return true;
}

/** The lock as it is now: its holder (null when there is none, or it cannot be read), and its text. */
export function readPushLock(gitDir: string): { holder: PushLock | null; text: string | null } {
  const text = readLockFile(join(gitDir, PUSH_LOCK_FILE));
  return { holder: text === null ? null : parsePushLock(text), text };
}

function parsePushLock(text: string): PushLock | null {
  try {
    const value = JSON.parse(text) as Partial<PushLock>;
    const valid = Number.isInteger(value.pid) && (value.pid as number) > 0 && typeof value.ref === 'string' && typeof value.sha === 'string' && typeof value.since === 'string';
    return valid ? (value as PushLock) : null;
  } catch {
    return null;
  }
}

/**
 * git's reference-transaction hook of a Slipway remote (`state` is its
 * argument, `input` its standard input: `<old> <new> <ref>` per line).
 * Once git has committed or aborted the update of the ref a push holds
 * the lock for, the lock goes. A transaction prepared by anyone else (a
 * `git update-ref` on the server, say) that would move that ref while the
 * push deploys is refused: the branch must end on what was deployed.
 */
export function referenceTransaction(gitDir: string, state: string, input: string, pid: number): number {
  const updates = input.split('\n').filter(Boolean).map((line) => line.split(' '));
  const { holder } = readPushLock(gitDir);
  const update = holder ? updates.find(([, , ref]) => ref === holder.ref) : undefined;
  if (!holder || !update) return 0;
  if (state === 'committed' || state === 'aborted') {
    releasePushLock(gitDir, pid, holder.ref);
    return 0;
  }
  if (state === 'prepared' && holder.pid !== pid && update[1] !== holder.sha && holderAlive(holder)) {
    process.stderr.write(`slipway: ${holder.ref} is being deployed at ${holder.sha.slice(0, 12)} by a push; it cannot move until that ends\n`);
    return 1;
  }
  return 0;
}

/** Runs referenceTransaction as the hook: reads standard input whole. */
export async function runReferenceTransactionHook(state: string | undefined): Promise<number> {
  let input = '';
  process.stdin.setEncoding('utf8');
  for await (const chunk of process.stdin) input += chunk as string;
  try {
    return referenceTransaction(hookGitDir(), state ?? '', input, process.ppid);
  } catch (err) {
    // Never in the way of git's own work: the lock goes stale with its process and is taken over.
    process.stderr.write(`slipway: reference-transaction hook: ${(err as Error).message}\n`);
    return 0;
  }
}
