import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, readlink, rename, rm, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SlipwayConfig } from '@slipway/config/types';
import { CommandError, OWN_PID_NAMESPACE, processStart, runCommand, statFields } from '@slipway/core/run-command';
import { probeUnixSocket, readListeningSockets, readListeningUnixSockets, readTcpSockets, readUnixSockets, TcpState, type TcpSocket } from './tcp-sockets.js';
import { nginxNames } from './render.js';
import { CHECK_TIMEOUT_MS, checkFiles, rejectedFile, slipwayConfFiles } from './nginx-check.js';
import { NginxCheckError, NginxReloadError } from './router-errors.js';

/**
 * How long nginx may take to start new workers and retire the old ones
 * while its master shows no sign of working on it; while the master keeps
 * using CPU (reading a large configuration on a loaded host) or has started
 * new workers (the old ones have yet to hear that they must quit), the wait
 * goes on, up to RELOAD_CONFIRM_MAX_MS.
 */
export const RELOAD_CONFIRM_TIMEOUT_MS = 5_000;
/** The longest a reload is waited for, however busy nginx's master is. */
export const RELOAD_CONFIRM_MAX_MS = 60_000;
/** Once the window has passed, how often the master is looked at again (and the wait extended by as much while it works). */
const MASTER_BUSY_SAMPLE_MS = 500;
/**
 * nginx's master pauses inside a reload: it sleeps 100 ms between starting
 * the new workers and telling the old ones to quit, and on a loaded host a
 * worker just forked may not have its title yet. A master is taken for one
 * that does nothing only when two looks this far apart both find it idle.
 */
const IDLE_RECHECK_MS = 250;

/**
 * The looks at nginx's master once a reload's window has passed, from
 * `observing` on: `next` takes whether the last look found it working, and
 * gives when to look again (MASTER_BUSY_SAMPLE_MS while it works,
 * IDLE_RECHECK_MS after a first idle look), or null once the wait is over:
 * idle at two looks in a row, or RELOAD_CONFIRM_MAX_MS gone.
 */
class MasterLooks {
  private idle = 0;
  constructor(private readonly observing: number) {}

  next(working: boolean): number | null {
    this.idle = working ? 0 : this.idle + 1;
    if (this.idle === 2 || Date.now() - this.observing >= RELOAD_CONFIRM_MAX_MS) return null;
    return Math.min(Date.now() + (working ? MASTER_BUSY_SAMPLE_MS : IDLE_RECHECK_MS), this.observing + RELOAD_CONFIRM_MAX_MS);
  }
}
/** Waited instead when the workers cannot be observed (no permission, other namespace). */
export const RELOAD_SETTLE_MS = 1_000;
const POLL_MS = 10;
/** How long `reload_cmd` may run. */
const RELOAD_CMD_TIMEOUT_MS = 30_000;

/**
 * The nginx Slipway writes files for, and how it reloads it: the `nginx:`
 * settings plus `router.batch_ms`, the window in which switches share one
 * reload (default {@link DEFAULT_BATCH_MS}; 0: every switch reloads on its
 * own).
 */
export type NginxTarget = SlipwayConfig['nginx'] & { batchMs?: number };

/** Reloads of one nginx are at least this far apart; switches within it share one (router.batch_ms). */
export const DEFAULT_BATCH_MS = 200;

export interface ReloadNginxOptions {
  nginx: NginxTarget;
  /** The app's `listen`: the socket whose workers are watched. */
  listen: string;
  /**
   * The app's live file this reload is for. When nginx rejects the files
   * of a batch as a whole and names this one, this reload alone fails, as
   * NginxCheckError, and the others of the batch go on.
   */
  file?: string;
  /** The caller puts its previous file back when this reload fails (a commit's): a batch that refused the file waits for that. */
  putsBack?: boolean;
  /** Default RELOAD_CONFIRM_TIMEOUT_MS. */
  timeoutMs?: number;
}

export interface ReloadResult {
  /**
   * `confirmed`: the old workers stopped accepting (no request reaches the
   * previous config any more); `assumed`: they could not be observed and
   * RELOAD_SETTLE_MS was waited instead; `not_applied`: they still accept
   * after the timeout, or nobody accepts on a new unix socket, so nginx
   * kept its previous config (see its error log).
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
  return batchedReload(options, Math.max(0, options.nginx.batchMs ?? DEFAULT_BATCH_MS));
}

/** Runs `reload_cmd` once; nothing is observed (see reloadNginx for a reload something waits on). */
async function signalReload(nginx: NginxTarget): Promise<void> {
  try {
    await runCommand(nginx.reload_cmd, { timeoutMs: RELOAD_CMD_TIMEOUT_MS });
  } catch (err) {
    if (err instanceof CommandError) throw new NginxReloadError(`nginx reload failed: ${err.message}`, { cause: err });
    throw err;
  }
}

/**
 * Waits until the reload asked for at `started` has switched the socket of
 * `listen` whose holders were `before` (see reloadNginx). The timeout runs
 * from now, once `reload_cmd` has returned: `nginx -s reload` reads the
 * whole configuration before it signals, which on a loaded machine with
 * many apps took most of the 5 s nginx itself is given.
 */
async function observeReload(listen: string, before: ListenerHolders | null, started: number, timeoutMs = RELOAD_CONFIRM_TIMEOUT_MS, witness?: Witness, socketExisted = false): Promise<ReloadResult> {
  const observing = Date.now();
  let deadline = observing + timeoutMs;

  if (before && before.workers.length > 0) {
    // A master still working on the reload gets more time: on a loaded host nginx may need
    // longer than the window to read a large configuration, or its old workers to hear that
    // they must quit, and failing that rollout would be a false failure. A master that did
    // not take the new config starts no workers and goes idle.
    const { master } = before;
    let masterCpu = master === null ? null : (await processActivity(master))?.ticks ?? null;
    const looks = new MasterLooks(observing);
    for (;;) {
      const still = await Promise.all(before.workers.map((pid) => stillAccepts(pid, before.inode)));
      if (!still.includes(true)) return { outcome: 'confirmed', ms: Date.now() - started };
      if (Date.now() > deadline) {
        // Working (see isWorking), or started new workers.
        const now = master === null ? null : await processActivity(master);
        const working = master !== null && now !== null && (isWorking(now, masterCpu) || await hasNewChild(master, before.workers));
        const next = looks.next(working);
        if (next === null) return { outcome: 'not_applied', ms: Date.now() - started };
        masterCpu = now?.ticks ?? null;
        deadline = next;
      }
      await sleep(POLL_MS);
    }
  }
  // A listen address nginx did not have yet: confirmed once workers accept on it.
  const settleUntil = Math.min(deadline, Date.now() + RELOAD_SETTLE_MS);
  while (Date.now() < settleUntil) {
    const now = await listenerHolders(listen).catch(() => null);
    if (now && now.workers.length > 0) return { outcome: 'confirmed', ms: Date.now() - started };
    await sleep(POLL_MS * 5);
  }
  // Not seen accepting: either unobservable, or the address is someone else's and nginx kept its old config.
  const other = await otherHolder(listen).catch(() => null);
  if (other) throw new NginxReloadError(`nginx could not listen on ${listen}: pid ${other.pid} (${other.name}) holds it, so nginx kept its previous config`);
  // A socket that was there before the signal, whose holders cannot be seen (nginx in another namespace): its old
  // workers accept on it too, so an answer proves nothing; judged as any unobservable address below.
  if (listen.startsWith('unix:') && !socketExisted) return awaitUnixSocket(listen.slice('unix:'.length), started, observing, deadline);
  // nginx takes a configuration whole or not at all: the old workers of an address it had (another app's) retiring prove
  // it took this one too, and still accepting, that it refused it (an address it could not bind, past a check_cmd that did not try).
  if (witness) return observeReload(witness.listen, witness.holders, started, Math.max(0, deadline - Date.now()));
  return { outcome: 'assumed', ms: Date.now() - started };
}

/** The unix-socket listens of `listens` whose socket exists though no holder of it was seen (see observeReload). */
async function unseenSocketsPresent(listens: readonly string[], before: ReadonlyMap<string, ListenerHolders | null>): Promise<Set<string>> {
  const unseen = listens.filter((listen) => listen.startsWith('unix:') && !(before.get(listen)?.workers.length));
  const present = await Promise.all(unseen.map((listen) => stat(listen.slice('unix:'.length)).then((s) => s.isSocket(), () => false)));
  return new Set(unseen.filter((_, i) => present[i]));
}

/** An address nginx serves for another file of the same conf_dir, and who accepted on it before the reload. */
interface Witness {
  listen: string;
  holders: ListenerHolders;
}

/**
 * For a batch with an address nginx holds no socket for yet (a new app, a
 * new `listen`): an address of another file in `confDir` whose nginx
 * workers are seen accepting, or undefined.
 */
async function findWitness(confDir: string, listens: readonly string[], before: ReadonlyMap<string, ListenerHolders | null>): Promise<Witness | undefined> {
  if (listens.every((listen) => (before.get(listen)?.workers.length ?? 0) > 0)) return undefined;
  const texts = await Promise.all((await slipwayConfFiles(confDir)).map((file) => readFile(file, 'utf8').catch(() => '')));
  const others = [...new Set(texts.flatMap((text) => [...text.matchAll(/^\s*listen\s+([^\s;]+)/gm)].map((m) => m[1]!)))].filter((l) => !listens.includes(l));
  const holders = await listenersHolders(others.slice(0, WITNESS_CANDIDATES)).catch(() => new Map<string, ListenerHolders | null>());
  const listen = others.find((l) => (holders.get(l)?.workers.length ?? 0) > 0);
  return listen === undefined ? undefined : { listen, holders: holders.get(listen)! };
}

/** How many other apps' addresses are looked at for a witness: one /proc scan whatever the number, but a bound. */
const WITNESS_CANDIDATES = 16;

/**
 * A new unix socket (the back's, behind a front) not seen in /proc within
 * the settle time: unlike a TCP address, whether anyone accepts on it can
 * be asked from here whatever namespace nginx runs in, so it is asked
 * until the deadline (longer while an nginx master is still working) and
 * a socket nobody accepts on by then is `not_applied`, not assumed: the
 * front would forward to it and answer 502.
 */
async function awaitUnixSocket(path: string, started: number, observing: number, deadline: number): Promise<ReloadResult> {
  let ticks = new Map<number, number>();
  const looks = new MasterLooks(observing);
  for (;;) {
    const answer = await probeUnixSocket(path);
    if (answer === 'accepts') return { outcome: 'confirmed', ms: Date.now() - started };
    if (answer === 'unknown') return { outcome: 'assumed', ms: Date.now() - started };
    if (Date.now() > deadline) {
      const masters = await nginxMasters();
      const activity = await Promise.all(masters.map(async (pid) => [pid, await processActivity(pid)] as const));
      const working = activity.some(([pid, now]) => now !== null && isWorking(now, ticks.get(pid) ?? null));
      const next = looks.next(working);
      if (next === null) return { outcome: 'not_applied', ms: Date.now() - started };
      ticks = new Map(activity.flatMap(([pid, now]) => (now ? [[pid, now.ticks] as const] : [])));
      deadline = next;
    }
    await sleep(POLL_MS * 5);
  }
}

/** Running or waiting for a CPU (at a load of 150 on 2 cores it may get no tick in half a second), in I/O, or used CPU since `ticksBefore`. */
function isWorking(now: { state: string; ticks: number }, ticksBefore: number | null): boolean {
  return now.state === 'R' || now.state === 'D' || (ticksBefore !== null && now.ticks > ticksBefore);
}

/** The nginx masters of this host: nginx processes whose parent is not nginx. */
async function nginxMasters(): Promise<number[]> {
  const nginx = (await processes()).filter(isNginx).map((p) => p.pid);
  const parents = await Promise.all(nginx.map(parentPid));
  return nginx.filter((_pid, i) => !nginx.includes(parents[i]!));
}

/*
 * One reload at a time, always: what proves a reload applied (the old
 * workers stopped accepting) is also what any other reload does, so two at
 * once would let one switch be confirmed by the other's reload, read by
 * nginx before its file was in place (seen under a 100-app burst with
 * batch_ms 0: old containers stopped while nginx still sent them requests).
 *
 * Batching. Every reload retires all of nginx's old workers, and with them
 * every idle keep-alive connection of every app (nginx 1.22 resets one a
 * client is reusing at that instant): 100 apps switching within seconds
 * must not mean 100 reloads. Whoever needs a reload (any worker process,
 * the router) leaves a ticket in `<conf_dir>/.slipway-reload/`; one of them
 * at a time holds the directory's lock and reloads for every ticket there,
 * never sooner than `batchMs` after the previous reload (the first switch
 * after a quiet spell goes at once), then observes each ticket's socket and
 * writes each its result. So reloads are at least `batchMs` apart, each
 * switch still waits until nginx serves its new file, and a ticket whose
 * holder died is served by the next leader.
 */

const BATCH_DIR = '.slipway-reload';
/** The longest a leader waits for the batch window (router.batch_ms is at most 10 s). */
const MAX_BATCH_WAIT_MS = 10_000;
/** How many of a batch's new files are each left out of a check, in search of the one a clash comes from. */
const MAX_SUSPECTS = 4;
/**
 * A lock older than this is a dead leader's: taken over. Longer than a
 * leader can take: the window, its checks (the whole, then each suspect
 * left out: see checkWhole), the reload and its observation.
 */
export const LEADER_STALE_MS = RELOAD_CMD_TIMEOUT_MS + RELOAD_CONFIRM_MAX_MS + (1 + MAX_SUSPECTS) * CHECK_TIMEOUT_MS + MAX_BATCH_WAIT_MS + 5_000;
/** A lock without an owner this old lost its maker between the mkdir and the write (milliseconds apart): taken over. */
export const OWNERLESS_STALE_MS = 5_000;
const TICKET_POLL_MS = 10;

interface Ticket { listen: string; at: number; file?: string; putsBack?: boolean }
/** A ticket as its batch's leader read it. */
interface BatchTicket extends Ticket { id: string }
const TICKET_NAME = /^ticket-([0-9a-z]+-[0-9a-f]{12})\.json$/;
/** A file of the batch directory nobody came back for in this long is left over: removed. */
const STALE_FILE_MS = 60_000;

function parseTicket(text: string | null): Ticket | null {
  try {
    const ticket = JSON.parse(text ?? 'null') as Partial<Ticket> | null;
    if (typeof ticket?.listen !== 'string' || typeof ticket.at !== 'number') return null;
    return { listen: ticket.listen, at: ticket.at, ...(typeof ticket.file === 'string' ? { file: ticket.file } : {}), ...(ticket.putsBack === true ? { putsBack: true } : {}) };
  } catch {
    return null;
  }
}
/** `rejected`: nginx's words about the ticket's own file, in the batch's check of the whole (see checkWhole). */
type TicketResult = { result: ReloadResult } | { error: string; rejected?: string };

async function batchedReload(options: ReloadNginxOptions, batchMs: number): Promise<ReloadResult> {
  const dir = join(options.nginx.conf_dir, BATCH_DIR);
  await mkdir(dir, { recursive: true });
  const id = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
  const ticket: Ticket = { listen: options.listen, at: Date.now(), ...(options.file ? { file: options.file } : {}), ...(options.putsBack ? { putsBack: true } : {}) };
  await writeAtomically(join(dir, `ticket-${id}.json`), JSON.stringify(ticket));
  const resultFile = join(dir, `result-${id}.json`);
  for (;;) {
    const done = await takeResult(resultFile);
    if (done) {
      if ('error' in done && done.rejected !== undefined) throw new NginxCheckError(appOfFile(options.file ?? ''), done.rejected);
      if ('error' in done) throw new NginxReloadError(done.error);
      return done.result;
    }
    const token = await becomeLeader(dir);
    if (token !== null) {
      try {
        await leadBatch(options, dir, batchMs);
      } finally {
        await leaveLeadership(dir, token);
      }
      continue;
    }
    await sleep(TICKET_POLL_MS);
  }
}

/** One batch: wait out the window since the last reload, take every ticket, reload once, answer each. */
async function leadBatch(options: ReloadNginxOptions, dir: string, batchMs: number): Promise<void> {
  const last = Number(await readFile(join(dir, 'last'), 'utf8').catch(() => '0')) || 0;
  const wait = last + batchMs - Date.now();
  if (wait > 0) await sleep(Math.min(wait, batchMs));
  // Tickets only: not the temporary files they are written through (`ticket-<id>.json.<hex>.tmp`).
  const names = (await readdir(dir)).filter((name) => TICKET_NAME.test(name));
  const waiting: BatchTicket[] = [];
  for (const name of names) {
    const ticket = parseTicket(await readFile(join(dir, name), 'utf8').catch(() => null));
    if (ticket) waiting.push({ ...ticket, id: TICKET_NAME.exec(name)![1]! });
    // Unreadable and old (a disk that filled mid-write): nobody will make it whole, and nobody waits on it.
    else if (Date.now() - ((await stat(join(dir, name)).catch(() => null))?.mtimeMs ?? Date.now()) > STALE_FILE_MS) await unlink(join(dir, name)).catch(() => {});
  }
  waiting.sort((a, b) => a.at - b.at);
  if (waiting.length === 0) return;
  // Every waiting ticket's file is checked, with batch_ms 0 too: the one refused need not be the oldest.
  const tickets = await checkWhole(options.nginx, dir, waiting);
  if (tickets === 'wait') {
    await sleep(REFUSED_RETRY_MS);
    return;
  }
  // batch_ms 0: one switch per reload, the oldest first.
  if (batchMs === 0) tickets.splice(1);
  if (tickets.length === 0) return;
  const listens = [...new Set(tickets.map((t) => t.listen))];
  const before = await listenersHolders(listens).catch(() => new Map<string, ListenerHolders | null>());
  const witness = await findWitness(options.nginx.conf_dir, listens, before);
  // Before the signal: a file renamed in after this is read by nginx too, but taken for unread once (one more reload).
  const placed = await slipwayFiles(options.nginx.conf_dir);
  const existingSockets = await unseenSocketsPresent(listens, before);
  const started = Date.now();
  let outcome: Map<string, TicketResult>;
  try {
    await signalReload(options.nginx);
    await writeAtomically(join(dir, 'last'), String(started));
    outcome = new Map(await Promise.all(listens.map(async (listen) => [listen, await observeReload(listen, before.get(listen) ?? null, started, options.timeoutMs, witness, existingSockets.has(listen))
      .then((result): TicketResult => ({ result }), (err: Error): TicketResult => ({ error: err.message }))] as const)));
    // Read by nginx only once no listener says otherwise: a reload not applied (or a leader that died watching it) leaves
    // its files unread, so that the next apply of the same file reloads (reloadIfBehind) rather than trust a signal nginx ignored.
    if ([...outcome.values()].every((o) => 'result' in o && o.result.outcome !== 'not_applied')) await writeAtomically(join(dir, 'signalled.json'), JSON.stringify(placed));
    // Seen applied: every file in place when it was signalled is served (see reloadConfirmedSince).
    if ([...outcome.values()].some((o) => 'result' in o && o.result.outcome === 'confirmed')) await writeAtomically(join(dir, 'confirmed'), String(started));
  } catch (err) {
    outcome = new Map(listens.map((listen) => [listen, { error: (err as Error).message }]));
  }
  for (const ticket of tickets) await answer(dir, ticket, outcome.get(ticket.listen)!);
  // Results nobody came back for (their requester died), and files a writer died before renaming: a minute is far longer than any waits.
  for (const name of names.length ? await readdir(dir) : []) {
    if (!name.startsWith('result-') && !name.endsWith('.tmp')) continue;
    const age = Date.now() - ((await stat(join(dir, name)).catch(() => null))?.mtimeMs ?? Date.now());
    if (age > STALE_FILE_MS) await unlink(join(dir, name)).catch(() => {});
  }
}

/**
 * Whether a reload signalled at or after `since` (ms) was seen applied:
 * then nginx serves every file that was in place by `since`. For a caller
 * that finds its file already renamed in by someone else (the router, or
 * another worker), whose reload may still be on its way, or may fail.
 */
export async function reloadConfirmedSince(nginx: NginxTarget, since: number): Promise<boolean> {
  const confirmed = Number(await readFile(join(nginx.conf_dir, BATCH_DIR, 'confirmed'), 'utf8').catch(() => '0')) || 0;
  return confirmed >= since;
}

/** Writes a ticket's result, then takes the ticket away. */
async function answer(dir: string, ticket: BatchTicket, result: TicketResult): Promise<void> {
  await writeAtomically(join(dir, `result-${ticket.id}.json`), JSON.stringify(result));
  await unlink(join(dir, `ticket-${ticket.id}.json`)).catch(() => {});
}

/**
 * How long a batch waits for a refused file to be put back (its owner
 * does it the moment it reads the answer): never longer, from its own
 * ticket, however many times the file is refused.
 */
const REFUSED_GRACE_MS = 10_000;
/** How soon a batch waiting on a refused file looks again. */
const REFUSED_RETRY_MS = 50;


/**
 * The files of the batch checked as a whole, as the reload will read
 * them, before the signal. Each was checked on its own (check per app,
 * reload once), but beside the others' previous files: two candidates
 * checked at the same moment may each pass and clash once both are in (a
 * duplicate default server, conflicting listen options), and nginx would
 * then refuse the whole reload, failing every app of the batch.
 *
 * The culprit is the file nginx names when a ticket of the batch holds it
 * (by its name: the batch directory is the conf_dir's). When nginx names
 * a file it already serves instead (read by an earlier reload: the other
 * half of the clash came in a batch before), the culprit is among this
 * batch's files nginx has not read yet: each is left out of one more
 * check, and those whose leaving out makes it pass are the culprits. The
 * culprits' tickets alone are answered, with nginx's words; a commit's
 * owner then puts its previous file back and reloads again, and the rest
 * of the batch waits for that ('wait'), as it waits for a named file whose
 * ticket has not come yet, each ticket at most REFUSED_GRACE_MS from its
 * own writing. Otherwise (nobody will put anything back) the rest fails
 * at once, with nginx's words, as its reload would have. A check_cmd of
 * one file at a time (`{file}`) says nothing of the whole, and a check
 * that cannot run is no verdict: the batch goes on as it is. A check
 * that failed on a file removed or replaced since it was listed (a
 * put-back racing it) is no verdict either: the batch checks again,
 * within the same grace. The files that change between this check and
 * the reload itself are not seen.
 */
async function checkWhole(nginx: NginxTarget, dir: string, tickets: BatchTicket[]): Promise<BatchTicket[] | 'wait'> {
  if (nginx.check_cmd.includes('{file}')) return tickets;
  const checked = await slipwayFiles(nginx.conf_dir);
  const words = await checkFiles(nginx, Object.keys(checked).sort().map((name) => join(nginx.conf_dir, name)));
  if (words === null) return tickets;
  const named = rejectedFile(words);
  // Which files nginx has read (the inodes of the last signal), as reloadSignalledFor judges one.
  const [placed, signalled] = await Promise.all([
    slipwayFiles(nginx.conf_dir),
    readJson<Record<string, number>>(join(dir, 'signalled.json'), {}),
  ]);
  // A file of ours nginx names; not a file an app's includes from elsewhere (a snippet), which no ticket puts back.
  const namedOurs = named !== null && resolve(dirname(named)) === resolve(nginx.conf_dir) && nginxNames.isSlipwayFile(basename(named));
  // Racing a put-back: a file was replaced or removed since it was listed. The words may be about files no longer there
  // (nginx names its harness when it could not open one, or a file it read beside one put back since, and leaving
  // files out would then blame innocent ones): no verdict on anyone, the batch waits for the next check (within the
  // grace, as for a ticket on its way).
  const changed = (now: Record<string, number>) => Object.entries(checked).some(([name, ino]) => now[name] !== ino);
  let racing = changed(placed);
  const nameOf = (ticket: BatchTicket) => (ticket.file === undefined ? null : basename(ticket.file));
  const namedTicket = !racing && named !== null && tickets.some((ticket) => nameOf(ticket) === basename(named));
  const read = (name: string) => signalled[name] === placed[name];
  const namedRead = !racing && namedOurs && !namedTicket && read(basename(named!));
  const culprits = new Set<string>(namedTicket ? [basename(named!)] : []);
  if (namedRead) {
    // The files nginx has not read, this batch's commits first: a newcomer whose ticket is not written yet may be the one.
    const ticketed = new Set(tickets.filter((ticket) => ticket.putsBack).map(nameOf));
    const present = Object.keys(placed).sort();
    const unread = present.filter((name) => !read(name)).sort((a, b) => Number(ticketed.has(b)) - Number(ticketed.has(a)));
    for (const suspect of unread.slice(0, MAX_SUSPECTS)) {
      const others = present.filter((name) => name !== suspect).map((name) => join(nginx.conf_dir, name));
      if ((await checkFiles(nginx, others)) === null) culprits.add(suspect);
    }
    // A put-back during those checks (the other half of the clash going) makes any of them pass: no verdict either.
    if (culprits.size > 0 && changed(await slipwayFiles(nginx.conf_dir))) {
      culprits.clear();
      racing = true;
    }
  }
  const now = Date.now();
  const refusedFile = join(dir, 'refused.json');
  const inode = async (name: string) => (await stat(join(nginx.conf_dir, name)).catch(() => null))?.ino ?? null;
  const last = await readJson<{ files?: Record<string, number>; at?: number } | null>(refusedFile, null);
  // A file refused a moment ago and not put back yet (still the same inode).
  let beingPutBack = false;
  if (now - (last?.at ?? 0) < REFUSED_GRACE_MS) {
    for (const [name, ino] of Object.entries(last?.files ?? {})) if ((await inode(name)) === ino) beingPutBack = true;
  }
  // And a culprit whose ticket is on its way: a named file nginx has not read, or one found by leaving it out.
  const ticketOnItsWay = racing || (namedOurs && !namedTicket && !namedRead) || [...culprits].some((name) => !tickets.some((ticket) => nameOf(ticket) === name));
  let waitable = beingPutBack || ticketOnItsWay;
  const refused = tickets.filter((ticket) => culprits.has(nameOf(ticket) ?? ''));
  for (const ticket of refused) await answer(dir, ticket, { error: words, rejected: words });
  // Marked once, not again while it lasts: a file refused over and over holds no batch longer than the grace.
  if (!waitable && refused.some((ticket) => ticket.putsBack)) {
    const marked: Record<string, number> = {};
    for (const name of culprits) {
      const ino = await inode(name);
      if (ino !== null) marked[name] = ino;
    }
    await writeAtomically(refusedFile, JSON.stringify({ files: marked, at: now }));
    waitable = true;
  }
  const rest = tickets.filter((ticket) => !refused.includes(ticket));
  const failing = rest.filter((ticket) => !waitable || now - ticket.at >= REFUSED_GRACE_MS);
  for (const ticket of failing) await answer(dir, ticket, { error: `nginx rejects its files as a whole, so no reload can apply:\n${words}` });
  return failing.length < rest.length ? 'wait' : [];
}

/** check_cmd on `files` as a whole: null when nginx takes them (or the check could not say), else nginx's words. */
/** `…/slipway-<app>.conf` → `<app>`. */
function appOfFile(file: string): string {
  return basename(file).replace(/^slipway-/, '').replace(/\.conf$/, '');
}

/** `slipway-<app>.conf` → its inode, of the files in `confDir`. */
async function slipwayFiles(confDir: string): Promise<Record<string, number>> {
  const names = (await readdir(confDir).catch(() => [] as string[])).filter(nginxNames.isSlipwayFile);
  const entries = await Promise.all(names.map(async (name) => [name, (await stat(join(confDir, name)).catch(() => null))?.ino] as const));
  return Object.fromEntries(entries.filter((e): e is readonly [string, number] => e[1] !== undefined));
}

/**
 * Whether a reload was signalled with `file` in place and not seen failing
 * (reload_cmd ran, and every listener watched took it, or could not be
 * watched): the file nginx read. One not applied within its wait, or whose
 * leader died watching it, counts as unread. Files are put in
 * place by a rename, so a new file is a new inode; each batch records the
 * inodes in place when it signals. By inode, not by time: a clock stepped
 * back, or a file system whose server's clock is ahead, would otherwise
 * take a file for newer than every reload, and a touch for a new file.
 * Never signalled here (a new conf_dir): false.
 */
export async function reloadSignalledFor(nginx: NginxTarget, file: string): Promise<boolean> {
  const [placed, signalled] = await Promise.all([
    stat(file).then((s) => s.ino, () => null),
    readJson<Record<string, number>>(join(nginx.conf_dir, BATCH_DIR, 'signalled.json'), {}),
  ]);
  return placed === null || signalled[basename(file)] === placed;
}

/**
 * Who leads a batch, written in the lock: the process (pid, start time,
 * pid namespace) and a token of this leadership. A leader of this pid
 * namespace whose process is gone is seen dead at once; one of another
 * (a worker in its own container) only once its lock is LEADER_STALE_MS
 * old.
 */
interface LeaderOwner { pid: number; start: string | null; pidns: string | null; token: string }

async function becomeLeader(dir: string): Promise<string | null> {
  const lock = join(dir, 'lock');
  try {
    await mkdir(lock);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return judgeLeader(dir);
  }
  const owner: LeaderOwner = { pid: process.pid, start: processStart(process.pid), pidns: OWN_PID_NAMESPACE, token: randomBytes(8).toString('hex') };
  try {
    await writeFile(join(lock, 'owner'), JSON.stringify(owner));
  } catch (err) {
    // A full disk: a lock nobody owns would hold every reload until it is judged stale.
    await rm(lock, { recursive: true, force: true }).catch(() => {});
    throw err;
  }
  return owner.token;
}

/**
 * Another's lock: taken over when its leader is seen dead (its process
 * gone, in this pid namespace), when it has no owner (missing or torn)
 * after OWNERLESS_STALE_MS (its maker died between the mkdir and the
 * write), or after LEADER_STALE_MS whatever it says.
 */
async function judgeLeader(dir: string): Promise<null> {
  const lock = join(dir, 'lock');
  // An owner file this process may not read (another user's umask) says nothing: only a missing or torn one is ownerless.
  let unreadable = false;
  const [info, text] = await Promise.all([stat(lock).catch(() => null), readFile(join(lock, 'owner'), 'utf8').catch((err: NodeJS.ErrnoException) => {
    unreadable = err.code !== 'ENOENT';
    return null;
  })]);
  if (!info) return null;
  const owner = parseOwner(text);
  const age = Date.now() - info.mtimeMs;
  const gone = owner !== null && owner.pidns !== null && owner.pidns === OWN_PID_NAMESPACE && processStart(owner.pid) !== owner.start;
  if (gone || (owner === null && !unreadable && age > OWNERLESS_STALE_MS) || age > LEADER_STALE_MS) await takeOver(dir, { text, mtimeMs: info.mtimeMs });
  return null;
}

function parseOwner(text: string | null): LeaderOwner | null {
  try {
    const owner = JSON.parse(text ?? 'null') as Partial<LeaderOwner> | null;
    return typeof owner?.pid === 'number' && typeof owner.token === 'string' ? (owner as LeaderOwner) : null;
  } catch {
    return null;
  }
}

/** How long a takeover may hold its guard before another waiter removes it. */
const TAKEOVER_GUARD_MS = 5_000;

/**
 * Removes a dead leader's lock, one waiter at a time (under a guard
 * directory), and only if it is still the lock judged dead (the same owner
 * and time): never one a new leader has made since. Moved aside in one
 * rename, then removed.
 */
async function takeOver(dir: string, judged: { text: string | null; mtimeMs: number }): Promise<void> {
  const lock = join(dir, 'lock');
  const guard = join(dir, 'takeover');
  try {
    await mkdir(guard);
  } catch {
    const age = Date.now() - ((await stat(guard).catch(() => null))?.mtimeMs ?? Date.now());
    if (age > TAKEOVER_GUARD_MS) await rm(guard, { recursive: true, force: true });
    return;
  }
  try {
    const [info, text] = await Promise.all([stat(lock).catch(() => null), readFile(join(lock, 'owner'), 'utf8').catch(() => null)]);
    if (info?.mtimeMs !== judged.mtimeMs || text !== judged.text) return;
    await removeLock(dir);
  } catch {
    // Gone meanwhile: nothing to take over.
  } finally {
    await rmdir(guard).catch(() => {});
  }
}

/** Lets the lock go if it is still this leadership's (a leader judged dead and taken over must not remove its successor's). */
async function leaveLeadership(dir: string, token: string): Promise<void> {
  const lock = join(dir, 'lock');
  if (parseOwner(await readFile(join(lock, 'owner'), 'utf8').catch(() => null))?.token !== token) return;
  await removeLock(dir).catch(() => {});
}

/** Moves the lock aside in one rename (from then on nobody sees it), then removes it. */
async function removeLock(dir: string): Promise<void> {
  const aside = join(dir, `lock.gone-${randomBytes(4).toString('hex')}`);
  await rename(join(dir, 'lock'), aside);
  await rm(aside, { recursive: true, force: true });
}

async function takeResult(file: string): Promise<TicketResult | null> {
  const text = await readFile(file, 'utf8').catch(() => null);
  if (text === null) return null;
  await unlink(file).catch(() => {});
  try {
    return JSON.parse(text) as TicketResult;
  } catch {
    // Torn (a machine that lost power between the write and its rename reaching the disk): what the reload did is not known.
    return { error: 'the result of this reload could not be read (its file is torn): nginx may not have applied it' };
  }
}

/**
 * A state file of the batch directory, or `fallback` when it is missing or
 * unparsable: written by a rename without fsync, it may be empty or torn
 * after a power loss, and must not fail every reload until someone removes it.
 */
async function readJson<T>(file: string, fallback: T): Promise<T> {
  const text = await readFile(file, 'utf8').catch(() => null);
  if (text === null) return fallback;
  try {
    return (JSON.parse(text) as T | null) ?? fallback;
  } catch {
    return fallback;
  }
}

async function writeAtomically(file: string, content: string): Promise<void> {
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, content);
  await rename(tmp, file);
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

/** `80` → `0.0.0.0:80`, `127.0.0.1:8080` and `unix:/path` as they are; null for a host name (not resolvable here). */
export function listenAddress(listen: string): string | null {
  if (/^\d+$/.test(listen)) return `0.0.0.0:${listen}`;
  if (/^unix:\//.test(listen)) return listen;
  return /^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(listen) ? listen : null;
}

/**
 * Finds the listening socket for `listen` (or the wildcard one nginx binds
 * instead) and the nginx processes holding it, from /proc. Null when there
 * is no such socket or its holders cannot be seen (no permission, another
 * network namespace): callers then fall back to waiting a fixed time.
 */
export async function listenerHolders(listen: string): Promise<ListenerHolders | null> {
  return (await listenersHolders([listen])).get(listen) ?? null;
}

/**
 * listenerHolders of several addresses at once, reading /proc once: each
 * nginx process's descriptors are listed once, however many addresses
 * (a batch of 100 switches would otherwise read them 100 times).
 */
export async function listenersHolders(listens: readonly string[]): Promise<Map<string, ListenerHolders | null>> {
  const listening = listeningSockets(listens);
  const result = new Map<string, ListenerHolders | null>();
  const wanted = new Map<string, number>();
  for (const listen of listens) {
    const address = listenAddress(listen);
    const wildcard = address && !address.startsWith('unix:') && `0.0.0.0:${address.split(':')[1]}`;
    const socket = address ? listening.find((s) => s.local === address) ?? listening.find((s) => s.local === wildcard) : undefined;
    result.set(listen, null);
    if (socket) wanted.set(listen, socket.inode);
  }
  if (wanted.size === 0) return result;
  const nginx = await Promise.all((await processes()).filter(isNginx).map(async ({ pid }) => ({ pid, ppid: await parentPid(pid), sockets: await socketInodes(pid) })));
  for (const [listen, inode] of wanted) {
    const holders = nginx.filter((p) => p.sockets.has(inode));
    if (holders.length === 0) continue;
    const pids = new Set(holders.map((h) => h.pid));
    const master = holders.find((h) => !pids.has(h.ppid))?.pid ?? null;
    result.set(listen, { inode, master, workers: holders.filter((h) => h.pid !== master).map((h) => h.pid) });
  }
  return result;
}

/** The inodes of the sockets `pid` has open; empty once it exited. */
async function socketInodes(pid: number): Promise<Set<number>> {
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
  const links = await Promise.all(fds.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')));
  const inodes = new Set<number>();
  for (const link of links) {
    const socket = /^socket:\[(\d+)\]$/.exec(link);
    if (socket) inodes.add(Number(socket[1]));
  }
  return inodes;
}

/** Whether `pid` still has the socket open (false once it exited or closed it). */
export async function holdsSocket(pid: number, inode: number): Promise<boolean> {
  return (await socketInodes(pid)).has(inode);
}

/**
 * What a process's title (/proc/<pid>/cmdline, one small read) says it is:
 * an nginx worker serving, one retiring ("is shutting down", which a
 * worker sets in the same step as it gives up its listening sockets),
 * unnamed (the master's title: the master, or a process it has just
 * forked that has yet to set its own), something else, or gone.
 */
async function workerRole(pid: number | string): Promise<'serving' | 'retiring' | 'unnamed' | 'other' | 'gone'> {
  const title = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (title === '') return 'gone';
  if (title.startsWith('nginx: master process')) return 'unnamed';
  if (!title.startsWith('nginx: worker process')) return 'other';
  return title.includes('shutting down') ? 'retiring' : 'serving';
}

/**
 * The nginx workers told to quit (titled "is shutting down") that still
 * run. Such a worker finishes every request it holds with the
 * configuration it had: one whose body was still arriving at the reload,
 * or that came later on a connection it had accepted, goes to that
 * configuration's upstreams, maybe the containers a rollout is draining.
 */
export async function retiringWorkers(): Promise<number[]> {
  const nginx = (await processes()).filter(isNginx);
  const roles = await Promise.all(nginx.map(async ({ pid }) => [pid, await workerRole(pid)] as const));
  return roles.filter(([, role]) => role === 'retiring').map(([pid]) => pid);
}

/**
 * Client connections to `listen` (a TCP address an app's server listens
 * on, or the back's unix socket of two tiers) that one of `workers` holds:
 * requests of that app the workers may still pass on. 0 for a host name.
 */
export async function clientConnectionsHeld(workers: readonly number[], listen: string): Promise<number> {
  const address = listenAddress(listen);
  if (workers.length === 0 || !address) return 0;
  // The workers' sockets first (a few descriptors; none once a worker has exited): the table of every TCP socket of the
  // host, thousands under load, is read only while a retiring worker holds a socket at all.
  const held = new Set<number>();
  for (const pid of workers) for (const inode of await socketInodes(pid)) held.add(inode);
  if (held.size === 0) return 0;
  // The front's connections to the back, accepted on the app's socket: they carry its path.
  if (address.startsWith('unix:')) return readUnixSockets().filter((s) => s.state === TcpState.ESTABLISHED && s.local === address && held.has(s.inode)).length;
  const port = `:${address.split(':')[1]}`;
  const wildcard = address.startsWith('0.0.0.0:');
  try {
    // ss asks the kernel over netlink for just these sockets: /proc/net/tcp walks every socket of the host, which under
    // load (thousands in TIME_WAIT) takes seconds.
    const { stdout } = await runCommand(['ss', '-Htne', 'state', 'established', ...(wildcard ? ['sport', '=', port] : ['src', address])], { timeoutMs: 5_000 });
    return [...stdout.matchAll(/\bino:(\d+)/g)].filter((m) => held.has(Number(m[1]))).length;
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    return (await readTcpSockets()).filter((s) => held.has(s.inode) && s.state === TcpState.ESTABLISHED && (wildcard ? s.local.endsWith(port) : s.local === address)).length;
  }
}

/**
 * Whether nginx's master has a worker that is none of `old`: it took the new
 * config and started new workers (from /proc's list of its children). A
 * child still carrying the master's title counts: just forked, it sets its
 * own only once its setup is done, which on a loaded host may take a while.
 */
async function hasNewChild(master: number, old: readonly number[]): Promise<boolean> {
  const children = (await readFile(`/proc/${master}/task/${master}/children`, 'utf8').catch(() => '')).split(' ').filter((pid) => pid !== '' && !old.includes(Number(pid)));
  const roles = await Promise.all(children.map(workerRole));
  return roles.includes('serving') || roles.includes('unnamed');
}

/**
 * What a process is doing, from /proc/<pid>/stat: its state (R running or
 * waiting for a CPU, D in I/O, S sleeping…) and the CPU time it has used
 * (user + system, in clock ticks); null when it is gone or unreadable.
 */
async function processActivity(pid: number): Promise<{ state: string; ticks: number } | null> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  const fields = stat === null ? null : statFields(stat);
  return fields && fields.length > 13 ? { state: fields[0]!, ticks: Number(fields[11]) + Number(fields[12]) } : null;
}

/**
 * Whether an nginx worker that held the listening socket `inode` still
 * accepts on it. A worker gives up its listening sockets only when told to
 * quit, and sets its title to "worker process is shutting down" in the
 * same step, before it returns to its event loop: so its title (one small
 * read) answers while it runs, instead of a walk of its descriptors, which
 * under a burst of switches (hundreds of descriptors per worker, polled
 * every 10 ms for every app) cost more than the reloads themselves. Other
 * processes, or a title that says neither, are asked the long way.
 */
async function stillAccepts(pid: number, inode: number): Promise<boolean> {
  const role = await workerRole(pid);
  return role === 'other' || role === 'unnamed' ? holdsSocket(pid, inode) : role === 'serving';
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
  const clashes = listeningSockets([listen]).filter((s) => {
    if (address.startsWith('unix:')) return s.local === address;
    // `[::]:8080` as well as `0.0.0.0:8080`: a program listening on every IPv6 address takes IPv4 too (Node's, Java's
    // and Go's default), so nginx cannot bind the port on any IPv4 address either.
    const at = s.local.lastIndexOf(':');
    const [ip, p] = [s.local.slice(0, at), s.local.slice(at + 1)];
    return p === port && (ip === host || ip === '0.0.0.0' || ip === '[::]' || host === '0.0.0.0');
  });
  if (clashes.length === 0) return null;
  for (const proc of (await processes()).filter((p) => !isNginx(p))) {
    const sockets = await socketInodes(proc.pid);
    if (clashes.some((socket) => sockets.has(socket.inode))) return { pid: proc.pid, name: proc.comm };
  }
  return null;
}

/** The listening TCP sockets, and the unix ones when one of `listens` is a unix socket. */
function listeningSockets(listens: readonly string[]): TcpSocket[] {
  const tcp = readListeningSockets();
  return listens.some((listen) => listen.startsWith('unix:')) ? [...tcp, ...readListeningUnixSockets()] : tcp;
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
  return Number(statFields(stat)[1] ?? 0);
}
