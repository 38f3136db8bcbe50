import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rmdir, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { isProcessAlive, OWN_PID_NAMESPACE } from '@slipway/core/run-command';
import { UnavailableError } from '@slipway/core/slipway-error';

/** A lock untouched for this long belongs to a holder that is gone. The holder touches it every quarter of this. */
export const DEFAULT_LOCK_STALE_MS = 30_000;
/** How long to wait for another holder before giving up (a fetch of a large repository can take a while). */
export const DEFAULT_LOCK_WAIT_MS = 10 * 60_000;

export interface RepoLockOptions {
  /** Give up (retryably) after waiting this long. Default {@link DEFAULT_LOCK_WAIT_MS}. */
  waitMs?: number;
  /** Default {@link DEFAULT_LOCK_STALE_MS}. */
  staleMs?: number;
  signal?: AbortSignal;
  log?: (line: string) => void;
}

/** What a holder whose lock was broken left behind. */
export interface LockContext {
  /** True when a dead holder's lock was broken: its git may have left `*.lock` files. */
  recovered: boolean;
}

interface Holder {
  host: string;
  pid: number;
  /** Its pid namespace (`pid:[4026531836]`): containers sharing a host name (network_mode: host) each have their own pids. */
  pidns?: string | null;
  token: string;
}

/**
 * Runs `fn` holding an exclusive lock file (`O_EXCL` create), so the CLI
 * resolving a ref and a worker fetching never run git on one cache at once.
 * Stale-lock recovery: a holder on this host and in this pid namespace whose pid is gone, or any
 * holder that stopped refreshing the file's mtime, is broken — under a
 * second, `mkdir`-based guard, so two waiters cannot both break it and
 * then remove each other's fresh lock.
 */
export async function withRepoLock<T>(path: string, fn: (context: LockContext) => Promise<T>, options: RepoLockOptions = {}): Promise<T> {
  const staleMs = options.staleMs ?? DEFAULT_LOCK_STALE_MS;
  const deadline = Date.now() + (options.waitMs ?? DEFAULT_LOCK_WAIT_MS);
  const me: Holder = { host: hostname(), pid: process.pid, pidns: OWN_PID_NAMESPACE, token: randomBytes(8).toString('hex') };
  let recovered = false;
  let waitLogged = false;
  let pause = 25;
  for (;;) {
    options.signal?.throwIfAborted();
    try {
      await writeFile(path, `${JSON.stringify(me)}\n`, { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const held = await inspect(path);
    if (held && isStale(held, staleMs)) {
      if (await breakStale(path, held.holder, staleMs)) {
        recovered = true;
        options.log?.(`removed a stale lock of pid ${held.holder?.pid ?? '?'} on ${held.holder?.host ?? '?'}`);
      }
      continue;
    }
    if (Date.now() > deadline) {
      throw new UnavailableError('repo-cache', `timed out waiting for the lock ${path} (held by pid ${held?.holder?.pid ?? '?'})`);
    }
    if (!waitLogged) {
      options.log?.(`waiting for another git operation on this repository (pid ${held?.holder?.pid ?? '?'})`);
      waitLogged = true;
    }
    // timers/promises rejects with its own AbortError; callers expect the signal's reason.
    await sleep(pause + Math.random() * pause, undefined, { signal: options.signal }).catch((err: unknown) => {
      options.signal?.throwIfAborted();
      throw err;
    });
    pause = Math.min(pause * 2, 200);
  }

  const heartbeat = setInterval(() => {
    const now = new Date();
    utimes(path, now, now).catch(() => {});
  }, Math.max(staleMs / 4, 50));
  heartbeat.unref();
  try {
    return await fn({ recovered });
  } finally {
    clearInterval(heartbeat);
    const current = await inspect(path);
    if (current?.holder?.token === me.token) await unlink(path).catch(() => {});
  }
}

async function inspect(path: string): Promise<{ holder: Holder | null; mtimeMs: number } | null> {
  try {
    const [text, info] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
    let holder: Holder | null = null;
    try {
      holder = JSON.parse(text) as Holder;
    } catch {
      // Half-written by a holder that died between create and write: judged by age alone.
    }
    return { holder, mtimeMs: info.mtimeMs };
  } catch {
    return null;
  }
}

function isStale(held: { holder: Holder | null; mtimeMs: number }, staleMs: number): boolean {
  if (Date.now() - held.mtimeMs > staleMs) return true;
  const holder = held.holder;
  // A pid means something only in its own pid namespace: a holder in another container (same host name) is judged by age.
  // (A lock of an older Slipway names none: judged by its pid, as it was then.)
  const sameNamespace = holder?.pidns === undefined || (OWN_PID_NAMESPACE !== null && holder.pidns === OWN_PID_NAMESPACE);
  return holder !== null && holder.host === hostname() && sameNamespace && !isAlive(holder.pid);
}

function isAlive(pid: number): boolean {
  return Number.isInteger(pid) && pid > 0 && isProcessAlive(pid);
}

/** Removes the lock only if it still is the stale one we judged; true when we removed it. */
async function breakStale(path: string, judged: Holder | null, staleMs: number): Promise<boolean> {
  const guard = `${path}.break`;
  try {
    await mkdir(guard);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const info = await stat(guard).catch(() => null);
    // A breaker that died mid-break: its guard is as stale as the lock was.
    if (info && Date.now() - info.mtimeMs > staleMs) await rmdir(guard).catch(() => {});
    await sleep(20);
    return false;
  }
  try {
    const now = await inspect(path);
    if (!now || now.holder?.token !== judged?.token || !isStale(now, staleMs)) return false;
    await unlink(path);
    return true;
  } finally {
    await rmdir(guard).catch(() => {});
  }
}
