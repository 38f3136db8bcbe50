import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import { checkNginxConf } from './check-nginx-conf.js';
import { nginxNames } from './nginx-names.js';
import { reloadNginx, type ReloadResult } from './reload-nginx.js';
import { NginxReloadError } from './router-errors.js';

export interface PrepareNginxConfOptions {
  nginx: SlipwayConfig['nginx'];
  app: Pick<AppConfig, 'name' | 'listen'>;
  /** The rendered file (see renderNginxConf). */
  content: string;
}

/** A checked candidate, not yet live. */
export interface PreparedNginxConf {
  /** The live file it will replace: `<conf_dir>/slipway-<app>.conf`. */
  file: string;
  /** False when the live file already holds exactly this content: commit does nothing. */
  changed: boolean;
  /** Renames the candidate over the live file and reloads nginx; on failure puts the previous file back. */
  commit(): Promise<CommitResult>;
  /** Drops the candidate; the live file was never touched. */
  discard(): Promise<void>;
}

export interface CommitResult {
  /** Whether this commit reloaded nginx (false: nothing changed, or someone else already applied the same file). */
  reloaded: boolean;
  reload?: ReloadResult;
}

/**
 * Writes the candidate beside the live file (same directory, so the rename
 * is atomic; a name the main config's `*.conf` include does not match) and
 * checks it with `check_cmd`. Throws NginxCheckError, leaving nothing
 * behind, when nginx rejects it.
 */
export async function prepareNginxConf(options: PrepareNginxConfOptions): Promise<PreparedNginxConf> {
  const { nginx, app, content } = options;
  const file = nginxNames.path(nginx.conf_dir, app.name);
  const previous = await readOrNull(file);
  if (previous === content) {
    return { file, changed: false, commit: async () => ({ reloaded: false }), discard: async () => {} };
  }
  const candidate = join(nginx.conf_dir, `.${nginxNames.file(app.name)}.${randomBytes(4).toString('hex')}.tmp`);
  await writeFile(candidate, content, { mode: 0o644 });
  try {
    await checkNginxConf({ nginx, app: app.name, candidate });
  } catch (err) {
    await rm(candidate, { force: true });
    throw err;
  }
  let settled = false;
  return {
    file,
    changed: true,
    discard: async () => {
      if (settled) return;
      settled = true;
      await rm(candidate, { force: true });
    },
    commit: async () => {
      if (settled) throw new Error('candidate already committed or discarded');
      settled = true;
      const live = await readOrNull(file);
      if (live === content) {
        // The router (or a concurrent apply) got there first: reloading again would only cost clients.
        await rm(candidate, { force: true });
        return { reloaded: false };
      }
      await rename(candidate, file);
      let failure: NginxReloadError;
      try {
        const reload = await reloadNginx({ nginx, listen: app.listen });
        if (reload.outcome !== 'not_applied') return { reloaded: true, reload };
        failure = new NginxReloadError(`nginx did not apply the new config for ${app.name} within ${reload.ms} ms (its old workers still accept on ${app.listen}); see nginx's error log`);
      } catch (err) {
        failure = err instanceof NginxReloadError ? err : new NginxReloadError(`nginx reload failed: ${(err as Error).message}`, { cause: err });
      }
      await restore(file, live);
      await reloadNginx({ nginx, listen: app.listen }).catch(() => undefined);
      throw failure;
    },
  };
}

async function restore(file: string, previous: string | null): Promise<void> {
  if (previous === null) {
    await rm(file, { force: true });
    return;
  }
  const back = `${file}.${randomBytes(4).toString('hex')}.restore`;
  await writeFile(back, previous, { mode: 0o644 });
  await rename(back, file);
}

async function readOrNull(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}
