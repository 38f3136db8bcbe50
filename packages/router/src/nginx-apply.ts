import { randomBytes } from 'node:crypto';
import { access, lstat, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import { CommandError } from '@slipway/core/run-command';
import { firstLine } from '@slipway/core/slipway-error';
import { checkFiles, rejectedFile, runCheck, slipwayConfFiles } from './nginx-check.js';
import { otherHolder, reloadConfirmedSince, reloadNginx, reloadSignalledFor, type NginxTarget, type ReloadResult } from './nginx-reload.js';
import { nginxNames, renderDnsNginxConf, renderFrontConf, renderNginxConf, type DnsRouteSnapshot, type RouteSnapshot } from './render.js';
import { probeUnixSocket } from './tcp-sockets.js';
import { backListen, frontTarget } from './tiers.js';
import { NginxCheckError, NginxCheckNotRunError, NginxConfBrokenError, NginxReloadError } from './router-errors.js';

/*
 * Making an app's nginx file live without ever serving a broken one:
 * candidate beside the live file → check_cmd on the candidate → atomic
 * rename → observed reload, and the previous file put back when the reload
 * fails. Nothing is written, checked or reloaded when the content is
 * already live.
 */


export interface PrepareNginxConfOptions {
  nginx: NginxTarget;
  app: Pick<AppConfig, 'name' | 'listen' | 'server_name'>;
  /** The rendered file (see renderNginxConf), for the back when there is a front tier (see backListen). */
  content: string;
}

/** A checked candidate, not yet live. */
export interface PreparedNginxConf {
  /** The live file it will replace: `<conf_dir>/slipway-<app>.conf`. */
  file: string;
  /** False when the live file already holds exactly this content (and the front's, with two tiers, its own): commit does nothing. */
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
 *
 * With a front tier (`nginx.front`), `content` is the back's file, which
 * listens on the app's socket, and the front's file (the app's listen and
 * server_name, forwarding to that socket) is prepared beside it. Commit
 * makes the back live first, so the front never forwards to a socket
 * nobody serves, and the front's file, which deploys do not change, only
 * when it changed.
 */
export async function prepareNginxConf(options: PrepareNginxConfOptions): Promise<PreparedNginxConf> {
  const { nginx, app, content } = options;
  const back = backListen(nginx, app.name);
  const front = frontTarget(nginx);
  if (back === undefined || front === null) return prepareOne({ nginx, app: app.name, listen: app.listen, content });
  // The socket is readied only when the back's file changes: an unchanged one (every resync) costs no connection to it.
  const backFile = await prepareOne({ nginx, app: app.name, listen: back, content, ready: () => readySocket(back) });
  let frontFile: Prepared;
  try {
    frontFile = await prepareOne({ nginx: front, app: app.name, listen: app.listen, content: renderFrontConf(app, back) });
  } catch (err) {
    await backFile.discard();
    throw err;
  }
  return {
    file: backFile.file,
    changed: backFile.changed || frontFile.changed,
    discard: async () => {
      await Promise.all([backFile.discard(), frontFile.discard()]);
    },
    commit: async () => {
      let backResult: CommitResult;
      try {
        backResult = await backFile.commit();
      } catch (err) {
        await frontFile.discard();
        throw err;
      }
      try {
        // The back's result, whatever the front did: what a caller waits on (old containers drain after it) is the back's reload.
        await frontFile.commit();
        return backResult;
      } catch (err) {
        // The front kept its previous file: so does the back, or the app would be routed as nothing asked.
        const unsure = await backFile.revert();
        // The back's previous file is on disk, but its nginx may still route to the new set: whoever stops that set must know.
        if (unsure && err instanceof Error) err.message += `; the back nginx's previous file was put back, but ${unsure}`;
        throw err;
      }
    },
  };
}

/** One nginx's candidate; `revert` puts back, after a commit, the file it replaced, and says why nginx may not serve it (else null). */
type Prepared = PreparedNginxConf & { revert(): Promise<string | null> };

/** `ready`: run before the check of a changed file (what the check and the reload need in place). */
async function prepareOne(options: { nginx: NginxTarget; app: string; listen: string; content: string; ready?: () => Promise<void> }): Promise<Prepared> {
  const { nginx, app, content } = options;
  const file = nginxNames.path(nginx.conf_dir, app);
  const previous = await readOrNull(file);
  if (previous === content) {
    return { file, changed: false, commit: async () => ({ reloaded: false }), discard: async () => {}, revert: async () => null };
  }
  await options.ready?.();
  // An address new to this file that another process holds: nginx could not bind it and would keep its previous
  // config, failing the reload of every switch batched with this one. Refused here, before the file goes in.
  if (previous === null || !previous.includes(`listen ${options.listen};`)) {
    const other = await otherHolder(options.listen).catch(() => null);
    if (other) throw new NginxReloadError(`nginx could not listen on ${options.listen}: pid ${other.pid} (${other.name}) holds it; nothing was changed`);
  }
  await sweepLeftovers(nginx.conf_dir, app);
  const candidate = join(nginx.conf_dir, `.${nginxNames.file(app)}.${randomBytes(4).toString('hex')}.tmp`);
  await writeFile(candidate, content, { mode: 0o644 });
  try {
    await checkNginxConf({ nginx, app, candidate });
  } catch (err) {
    await rm(candidate, { force: true });
    throw err;
  }
  let settled = false;
  let replaced: { live: string | null } | null = null;
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
      const result = await commitCandidate({ ...options, file, candidate, live });
      if (result.reloaded) replaced = { live };
      return result;
    },
    revert: async () => (replaced === null ? null : putBack({ nginx, listen: options.listen, file, content, previous: replaced.live })),
  };
}

/** The rename and the observed reload of a checked candidate; on failure the previous file is put back and nginx reloaded again. */
async function commitCandidate(options: { nginx: NginxTarget; app: string; listen: string; content: string; file: string; candidate: string; live: string | null }): Promise<CommitResult> {
  const { nginx, app, listen, content, file, candidate, live } = options;
  if (live === content) {
    // The router (or a concurrent apply) got there first. Its reload is trusted only once seen applied (it may
    // still be waiting for its batch, or fail): else this one joins the next batch and waits, as for its own file.
    await rm(candidate, { force: true });
    const renamedAt = (await stat(file).catch(() => null))?.ctimeMs ?? Date.now();
    // (10 ms: the file system's clock is coarser than Date.now.)
    if (await reloadConfirmedSince(nginx, Math.ceil(renamedAt) + 10)) return { reloaded: false };
    const reload = await reloadNginx({ nginx, listen, file });
    if (reload.outcome === 'not_applied') throw notApplied(app, listen, reload.ms);
    return { reloaded: true, reload };
  }
  await rename(candidate, file).catch(async (err: unknown) => {
    // Nothing changed (EACCES, a full directory): the candidate goes, and the rollout is told in the router's terms.
    await rm(candidate, { force: true });
    throw new NginxReloadError(`could not put ${app}'s new nginx file in place: ${(err as Error).message}`, { cause: err });
  });
  let failure: NginxReloadError | NginxCheckError;
  try {
    const reload = await reloadNginx({ nginx, listen, file, putsBack: true });
    if (reload.outcome !== 'not_applied') return { reloaded: true, reload };
    failure = notApplied(app, listen, reload.ms);
  } catch (err) {
    // NginxCheckError: the reload's check of every file at once named this one (see reloadNginx).
    failure = err instanceof NginxReloadError || err instanceof NginxCheckError ? err : new NginxReloadError(`nginx reload failed: ${(err as Error).message}`, { cause: err });
  }
  const unsure = await putBack({ nginx, listen, file, content, previous: live });
  // The previous file is back on disk, but nginx may not have read it: whoever reads the failure must know (the router's next resync reloads).
  if (unsure) failure.message += `; the previous file was put back, but ${unsure}`;
  throw failure;
}

/**
 * Puts `previous` back in `file` and reloads, only while the file still
 * holds `content`, what this apply wrote: a later apply of the same app
 * (the router, another worker) stays. Returns why nginx may not serve what
 * was put back (its reload failed, or was not seen applied), or null.
 */
async function putBack(options: { nginx: NginxTarget; listen: string; file: string; content: string; previous: string | null }): Promise<string | null> {
  if ((await readOrNull(options.file)) !== options.content) return null;
  await restore(options.file, options.previous);
  const reload = await reloadNginx({ nginx: options.nginx, listen: options.listen, file: options.file }).catch((err: unknown) => err as Error);
  if (reload instanceof Error) return `reloading nginx with it failed (${firstLine(reload)})`;
  return reload.outcome === 'not_applied' ? `nginx did not apply it within ${reload.ms} ms` : null;
}

function notApplied(app: string, listen: string, ms: number): NginxReloadError {
  return new NginxReloadError(`nginx did not apply the new config for ${app} within ${ms} ms (${listen.startsWith('unix:') ? `nobody accepts on ${listen}` : `its old workers still accept, so ${listen} is not what it serves`}); see nginx's error log`);
}

/**
 * Makes the back's socket bindable: its directory exists (a check binds
 * it, and fails without), and a socket file nobody listens on, left by an
 * nginx that was killed rather than stopped, is removed (nginx cannot bind
 * over one, and would keep its previous config).
 */
async function readySocket(back: string): Promise<void> {
  const path = back.slice('unix:'.length);
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  // Refused, not merely unlisted: an nginx in another network namespace, or a /proc that cannot be read, must not lose its socket.
  const unheard = async () => (await lstat(path).catch(() => null))?.isSocket() === true && (await probeUnixSocket(path)) === 'refused';
  if (!(await unheard())) return;
  // Asked twice, a moment apart: a reload binding it this instant has not called listen() yet.
  await sleep(STALE_SOCKET_RECHECK_MS);
  if (await unheard()) await rm(path, { force: true });
}

const STALE_SOCKET_RECHECK_MS = 200;

/**
 * Reloads nginx when the app's live file (the back's and the front's, with
 * two tiers) is not one a reload was signalled with (reloadSignalledFor):
 * nginx may still serve the file it replaced. A worker killed between its
 * rename and its reload (OOM, kill -9) leaves exactly that, and as etcd
 * and the file then agree, nothing else would ever reload; a rollout
 * planning from the file would take the containers nginx still serves for
 * strays. Null when nothing was behind. Throws NginxReloadError, or
 * NginxCheckError when the batch's check of every file names this one
 * (see reloadNginx).
 */
export async function reloadIfBehind(options: { nginx: NginxTarget; app: Pick<AppConfig, 'name' | 'listen'> }): Promise<ReloadResult | null> {
  const { nginx, app } = options;
  const back = backListen(nginx, app.name);
  const front = frontTarget(nginx);
  const tiers = back === undefined || front === null ? [{ nginx, listen: app.listen }] : [{ nginx, listen: back }, { nginx: front, listen: app.listen }];
  let result: ReloadResult | null = null;
  for (const tier of tiers) {
    const file = nginxNames.path(tier.nginx.conf_dir, app.name);
    if (await reloadSignalledFor(tier.nginx, file)) continue;
    const reload = await reloadNginx({ ...tier, file });
    if (reload.outcome === 'not_applied') throw notApplied(app.name, tier.listen, reload.ms);
    result ??= reload;
  }
  return result;
}

export interface ApplyResult {
  file: string;
  /** False when the live file already had this content: nothing was written or checked (reloaded only if nginx had not been asked to read it, see reloadIfBehind). */
  changed: boolean;
  reloaded: boolean;
  reload?: ReloadResult;
  /** True when `beforeCommit` said no: the checked candidate was dropped, the live file never touched. */
  withheld?: boolean;
}

/**
 * Render → write a candidate → check the candidate → atomic rename →
 * reload, skipping everything when the content is unchanged (but the
 * reload, when nginx was never asked to read that file: reloadIfBehind). With
 * `beforeCommit`, it is asked after the check, right before the rename,
 * whether the file is still wanted. Throws
 * EmptyUpstreamError (no live address), TemplateError, NginxCheckError or
 * NginxReloadError; in every case the previous live file stays (or is put
 * back) as it was.
 */
export async function applyNginxConf(options: { nginx: NginxTarget; snapshot: RouteSnapshot; beforeCommit?: () => Promise<boolean> }): Promise<ApplyResult> {
  const content = renderNginxConf({ ...options.snapshot, back: backListen(options.nginx, options.snapshot.app.name) });
  const prepared = await prepareNginxConf({ nginx: options.nginx, app: options.snapshot.app, content });
  if (!prepared.changed) {
    // The file is what etcd says; nginx may not have read it yet.
    const reload = await reloadIfBehind({ nginx: options.nginx, app: options.snapshot.app });
    return { file: prepared.file, changed: false, reloaded: reload !== null, ...(reload ? { reload } : {}) };
  }
  if (options.beforeCommit && !(await options.beforeCommit().catch(async (err: unknown) => {
    await prepared.discard();
    throw err;
  }))) {
    await prepared.discard();
    return { file: prepared.file, changed: false, reloaded: false, withheld: true };
  }
  const result = await prepared.commit();
  return { file: prepared.file, changed: true, ...result };
}

/**
 * Writes the `routing: dns` file of an app the way applyNginxConf writes
 * an upstream one, and does nothing at all when the file already has this
 * content, which is every deploy after the first: the file does not depend
 * on the live containers. With `onlyIfExists` (default false) a missing
 * file is left missing: the app's first rollout writes it.
 */
export async function applyDnsNginxConf(options: DnsRouteSnapshot & { nginx: NginxTarget; onlyIfExists?: boolean }): Promise<ApplyResult> {
  const file = nginxNames.path(options.nginx.conf_dir, options.app.name);
  if (options.onlyIfExists && !(await access(file).then(() => true, () => false))) return { file, changed: false, reloaded: false };
  const content = renderDnsNginxConf({ ...options, back: backListen(options.nginx, options.app.name) });
  const prepared = await prepareNginxConf({ nginx: options.nginx, app: options.app, content });
  if (!prepared.changed) return { file, changed: false, reloaded: false };
  return { file, changed: true, ...(await prepared.commit()) };
}

/**
 * Runs `check_cmd` against the candidate beside every other app's file;
 * throws NginxCheckError with nginx's own words. When nginx names anything
 * but the candidate (another app's file, a file one includes, no file), the
 * candidate is blamed only if the other apps' files pass without it (a
 * clash the candidate brings); otherwise NginxConfBrokenError. A check
 * that could not run is NginxCheckNotRunError, never the commit's fault.
 */
async function checkNginxConf(options: { nginx: SlipwayConfig['nginx']; app: string; candidate: string }): Promise<void> {
  const { nginx, app, candidate } = options;
  const others = await slipwayConfFiles(nginx.conf_dir, nginxNames.file(app));
  try {
    await runCheck(nginx, [...others, candidate], candidate);
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    if (err.exitCode === null) throw new NginxCheckNotRunError(app, { cause: err });
    const words = err.tail || err.message;
    const named = rejectedFile(words);
    // Whatever nginx names other than the candidate (another app's file, a snippet, nothing at all: a certificate
    // it cannot load), the candidate is blamed only if the rest passes without it.
    if (named !== candidate && !nginx.check_cmd.includes('{file}') && (await checkFiles(nginx, others)) !== null) {
      throw new NginxConfBrokenError(app, named ?? 'the configuration', words);
    }
    throw new NginxCheckError(app, words, { cause: err });
  }
}

/** An app's nginx file removeUnconfiguredApps took away, and the error of the reload after it, if that failed. */
export interface RemovedFile {
  app: string;
  file: string;
  reloadError: NginxReloadError | null;
}

/**
 * Removes the nginx files (each tier's) of apps the configuration no longer
 * names, and reloads each nginx that lost one. Nothing else ever removes
 * them: a removed or renamed app's file kept routing its `listen` and
 * `server_name` to its old containers, and nginx, which takes the first of
 * two servers with the same name, could keep serving them instead of the
 * app that now has that name. Only an app `ours` says this Slipway ran (its
 * release is in this etcd) loses its file: another Slipway's apps, beside
 * ours in a shared conf_dir, keep theirs. Each file is complete in itself
 * (its own upstream and server), so removing one cannot break another's.
 * Returns the paths removed, each with the error of the reload after it
 * when that failed (nginx may serve the app still, until its next reload).
 */
export async function removeUnconfiguredApps(nginx: NginxTarget, apps: ReadonlySet<string>, ours: (app: string) => Promise<boolean>, log: (line: string) => void): Promise<RemovedFile[]> {
  const removed: RemovedFile[] = [];
  for (const tier of [nginx, frontTarget(nginx)]) {
    if (tier === null) continue;
    const gone: Array<Omit<RemovedFile, 'reloadError'>> = [];
    let listen: string | undefined;
    for (const name of await readdir(tier.conf_dir).catch(() => [] as string[])) {
      const app = name.slice('slipway-'.length, -'.conf'.length);
      if (!nginxNames.isSlipwayFile(name) || apps.has(app) || !(await ours(app))) continue;
      const file = join(tier.conf_dir, name);
      listen ??= /^\s*listen\s+([^\s;]+)/m.exec((await readOrNull(file).catch(() => null)) ?? '')?.[1];
      await rm(file, { force: true });
      gone.push({ app, file });
    }
    if (gone.length === 0) continue;
    log(`removed ${gone.map((g) => g.file).join(', ')}: no app of that name is configured any more`);
    // Through the batch like every reload of this conf_dir, never beside one: a reload signalled while a batch
    // observes its own would retire the old workers and pass for the batch's, before nginx read the batch's files.
    // Observed on the TCP address the first removed file listened on. A unix socket (a back tier's) is not: nginx
    // removes it, so nobody would ever accept on it; nor none found: another file's address, or a fixed wait.
    const reloadError = await reloadNginx({ nginx: tier, listen: listen === undefined || listen.startsWith('unix:') ? '-' : listen }).then(({ outcome }) => {
      if (outcome !== 'not_applied') return null;
      throw new NginxReloadError('nginx did not apply the configuration without them (its old workers were not seen to retire): see its error log');
    }).catch((err: unknown) => {
      log(`nginx reload after removing them failed: ${firstLine(err)}`);
      return err instanceof NginxReloadError ? err : new NginxReloadError(`nginx reload failed: ${firstLine(err)}`, { cause: err });
    });
    removed.push(...gone.map((g) => ({ ...g, reloadError })));
  }
  return removed;
}

/** A candidate or put-back file this old was left by a process killed mid-apply (an apply takes minutes at most). */
const LEFTOVER_MS = 60 * 60_000;

/** Removes the app's candidates and put-back files that a process killed between writing and renaming them left. */
async function sweepLeftovers(confDir: string, app: string): Promise<void> {
  const own = nginxNames.file(app);
  for (const name of await readdir(confDir).catch(() => [] as string[])) {
    if (!(name.startsWith(`.${own}.`) && name.endsWith('.tmp')) && !(name.startsWith(`${own}.`) && name.endsWith('.restore'))) continue;
    const path = join(confDir, name);
    if (Date.now() - ((await stat(path).catch(() => null))?.mtimeMs ?? Date.now()) > LEFTOVER_MS) await rm(path, { force: true });
  }
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
