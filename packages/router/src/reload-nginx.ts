import { setTimeout as sleep } from 'node:timers/promises';
import type { SlipwayConfig } from '@slipway/config/types';
import { CommandError, runCommand } from '@slipway/core/run-command';
import { holdsSocket, listenerHolders, otherHolder } from './nginx-listeners.js';
import { NginxReloadError } from './router-errors.js';

/** How long nginx may take to start new workers and retire the old ones. */
export const RELOAD_CONFIRM_TIMEOUT_MS = 5_000;
/** Waited instead when the workers cannot be observed (no permission, other namespace). */
export const RELOAD_SETTLE_MS = 1_000;
const POLL_MS = 10;

export interface ReloadNginxOptions {
  nginx: SlipwayConfig['nginx'];
  /** The app's `listen`: the socket whose workers are watched. */
  listen: string;
  /** Default RELOAD_CONFIRM_TIMEOUT_MS. */
  timeoutMs?: number;
  log?: (line: string) => void;
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
    await runCommand(options.nginx.reload_cmd, { timeoutMs: 30_000 });
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
