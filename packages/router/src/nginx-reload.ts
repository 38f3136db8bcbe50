import { readFile, readdir, readlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SlipwayConfig } from '@slipway/config/types';
import { CommandError, runCommand } from '@slipway/core/run-command';
import { readListeningSockets } from './tcp-sockets.js';
import { NginxReloadError } from './router-errors.js';

/** How long nginx may take to start new workers and retire the old ones. */
export const RELOAD_CONFIRM_TIMEOUT_MS = 5_000;
/** Waited instead when the workers cannot be observed (no permission, other namespace). */
export const RELOAD_SETTLE_MS = 1_000;
const POLL_MS = 10;
/** How long `reload_cmd` may run. */
const RELOAD_CMD_TIMEOUT_MS = 30_000;

export interface ReloadNginxOptions {
  nginx: SlipwayConfig['nginx'];
  /** The app's `listen`: the socket whose workers are watched. */
  listen: string;
  /** Default RELOAD_CONFIRM_TIMEOUT_MS. */
  timeoutMs?: number;
}

export interface ReloadResult {
  /**
   * `confirmed`: the old workers stopped accepting (no request reaches the
   * previous config any more); `assumed`: they could not be observed and
   * RELOAD_SETTLE_MS was waited instead; `not_applied`: they still accept
   * after the timeout, so nginx kept its previous config (see its error log).
   */
  outcome: 'confirmed' | 'assumed' | 'not_applied';
  ms: number;
}

/**
 * Runs `reload_cmd` and waits until nginx has really switched. `nginx -s
 * reload` only signals the master and returns; until the master has started
 * new workers and told the old ones to quit, requests still reach the old
 * config. Anything that stops old containers must wait for this, so it is
 * observed: the old workers close their listening socket first thing when
 * they are told to quit. Throws NginxReloadError when the app's address is
 * new to nginx and another process holds it (nginx then keeps its previous
 * config, and the app would be answered by whoever holds the port).
 */
export async function reloadNginx(options: ReloadNginxOptions): Promise<ReloadResult> {
  const started = Date.now();
  const before = await listenerHolders(options.listen).catch(() => null);
  try {
    await runCommand(options.nginx.reload_cmd, { timeoutMs: RELOAD_CMD_TIMEOUT_MS });
  } catch (err) {
    if (err instanceof CommandError) throw new NginxReloadError(`nginx reload failed: ${err.message}`, { cause: err });
    throw err;
  }
  const deadline = started + (options.timeoutMs ?? RELOAD_CONFIRM_TIMEOUT_MS);

  if (before && before.workers.length > 0) {
    for (;;) {
      const still = await Promise.all(before.workers.map((pid) => holdsSocket(pid, before.inode)));
      if (!still.includes(true)) return { outcome: 'confirmed', ms: Date.now() - started };
      if (Date.now() > deadline) return { outcome: 'not_applied', ms: Date.now() - started };
      await sleep(POLL_MS);
    }
  }
  // A listen address nginx did not have yet: confirmed once workers accept on it.
  const settleUntil = Math.min(deadline, started + RELOAD_SETTLE_MS);
  while (Date.now() < settleUntil) {
    const now = await listenerHolders(options.listen).catch(() => null);
    if (now && now.workers.length > 0) return { outcome: 'confirmed', ms: Date.now() - started };
    await sleep(POLL_MS * 5);
  }
  // Not seen accepting: either unobservable, or the address is someone else's and nginx kept its old config.
  const other = await otherHolder(options.listen).catch(() => null);
  if (other) throw new NginxReloadError(`nginx could not listen on ${options.listen}: pid ${other.pid} (${other.name}) holds it, so nginx kept its previous config`);
  return { outcome: 'assumed', ms: Date.now() - started };
}


// How a reload is observed: who holds the listening socket of an app's `listen`, read from /proc.

/** Who holds the listening socket an app's `listen` resolves to. */
export interface ListenerHolders {
  /** The socket's inode. */
  inode: number;
  /** The nginx master: the holder whose parent is not a holder. */
  master: number | null;
  /** The worker processes accepting on it. */
  workers: number[];
}

/** `80` → `0.0.0.0:80`, `127.0.0.1:8080` as is; null for a host name (not resolvable here). */
export function listenAddress(listen: string): string | null {
  if (/^\d+$/.test(listen)) return `0.0.0.0:${listen}`;
  return /^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(listen) ? listen : null;
}

/**
 * Finds the listening socket for `listen` (or the wildcard one nginx binds
 * instead) and the nginx processes holding it, from /proc. Null when there
 * is no such socket or its holders cannot be seen (no permission, another
 * network namespace): callers then fall back to waiting a fixed time.
 */
export async function listenerHolders(listen: string): Promise<ListenerHolders | null> {
  const address = listenAddress(listen);
  if (!address) return null;
  const wildcard = `0.0.0.0:${address.split(':')[1]}`;
  const listening = readListeningSockets();
  const socket = listening.find((s) => s.local === address) ?? listening.find((s) => s.local === wildcard);
  if (!socket) return null;
  const holders: Array<{ pid: number; ppid: number }> = [];
  for (const { pid } of (await processes()).filter(isNginx)) {
    if (await holdsSocket(pid, socket.inode)) holders.push({ pid, ppid: await parentPid(pid) });
  }
  if (holders.length === 0) return null;
  const pids = new Set(holders.map((h) => h.pid));
  const master = holders.find((h) => !pids.has(h.ppid))?.pid ?? null;
  return { inode: socket.inode, master, workers: holders.filter((h) => h.pid !== master).map((h) => h.pid) };
}

/** Whether `pid` still has the socket open (false once it exited or closed it). */
export async function holdsSocket(pid: number, inode: number): Promise<boolean> {
  const target = `socket:[${inode}]`;
  let fds: string[];
  try {
    fds = await readdir(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  for (const fd of fds) {
    if ((await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')) === target) return true;
  }
  return false;
}

/**
 * A process other than nginx listening where nginx must (the address, or
 * the same port on every address or on this one): nginx cannot bind it, so
 * a reload that adds it is not applied. Null when there is none, or none
 * whose sockets can be seen.
 */
export async function otherHolder(listen: string): Promise<{ pid: number; name: string } | null> {
  const address = listenAddress(listen);
  if (!address) return null;
  const [host, port] = address.split(':') as [string, string];
  const clashes = readListeningSockets().filter((s) => {
    const [ip, p] = s.local.split(':');
    return p === port && (ip === host || ip === '0.0.0.0' || host === '0.0.0.0');
  });
  if (clashes.length === 0) return null;
  for (const proc of (await processes()).filter((p) => !isNginx(p))) {
    for (const socket of clashes) {
      if (await holdsSocket(proc.pid, socket.inode)) return { pid: proc.pid, name: proc.comm };
    }
  }
  return null;
}

async function processes(): Promise<Array<{ pid: number; comm: string }>> {
  const entries = await readdir('/proc').catch(() => [] as string[]);
  const found: Array<{ pid: number; comm: string }> = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const comm = (await readFile(`/proc/${entry}/comm`, 'utf8').catch(() => '')).trim();
    if (comm) found.push({ pid: Number(entry), comm });
  }
  return found;
}

const isNginx = ({ comm }: { comm: string }) => comm === 'nginx' || comm === 'openresty';

async function parentPid(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  // The command name may hold spaces and parentheses: fields start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[1] ?? 0);
}
