import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { CommandError, processStart, runCommand } from '@slipway/core/run-command';
import { InvalidInputError, firstLine } from '@slipway/core/slipway-error';
import { scrubSecrets } from '@slipway/core/logger';
import { branchOfRef, isSha } from '@slipway/core/validate';
import { appConfig, loadPushConfig } from '@slipway/config/load-config';
import { DeployQueue } from '@slipway/queue/deploy-queue';
import { connectRedis, redisReady } from '@slipway/queue/redis';
import { type CliContext, parseFlags, UsageError } from './cli-context.js';
import { safeForTerminal, type Terminal } from './terminal.js';
import { watchJob } from './job-commands.js';
import { holderAlive, hookGitDir, releasePushLock, takePushLock } from './push-lock.js';

export const REMOTE_USAGE = 'usage: slipway remote add <app> <path>';

/** The line that says a hook is Slipway's own: `remote add` rewrites those, and no other. */
const HOOK_MARK = 'Installed by `slipway remote add`';
const HOOK_NAMES = ['pre-receive', 'reference-transaction'] as const;

/**
 * The hooks of a Slipway remote, each a Node script (no shell): pre-receive
 * hands the push to runGitHook; reference-transaction lets the push lock go
 * once git has moved the branch or given up (push-lock.ts).
 */
function renderHooks(options: { node: string; app: string; config: string | null }): Record<(typeof HOOK_NAMES)[number], string> {
  // A file URL, not a path: a path is read as a URL specifier, and a '#', '?' or '%' in the install path would break it.
  const module = (name: string) => JSON.stringify(new URL(`./${name}`, import.meta.url).href);
  const header = [
    `#!${options.node}`,
    `// ${HOOK_MARK}: a push to the app's branch deploys it,`,
    '// streams the deploy log back, and is refused if the deploy fails.',
  ];
  return {
    'pre-receive': [
      ...header,
      // A dynamic import, no top-level await: a file without an extension is CommonJS to a Node before 20.19.
      `import(${module('git-hook.js')}).then(({ runGitHook }) => runGitHook({ app: ${JSON.stringify(options.app)}, config: ${JSON.stringify(options.config)} })).then((code) => { process.exitCode = code; });`,
      '',
    ].join('\n'),
    'reference-transaction': [
      ...header,
      '// This one lets the push go once git has moved the branch, or given up.',
      `import(${module('push-lock.js')}).then(({ runReferenceTransactionHook }) => runReferenceTransactionHook(process.argv[2])).then((code) => { process.exitCode = code; });`,
      '',
    ].join('\n'),
  };
}

/** Writes the remote's hooks (again: an upgrade rewrites them). */
function installHooks(gitDir: string, options: { app: string; config: string | null }, only?: 'reference-transaction'): void {
  // hooks/ comes from git's templates only: a repository made with `--template=` (or an empty templateDir) has none.
  mkdirSync(join(gitDir, 'hooks'), { recursive: true });
  for (const [name, text] of Object.entries(renderHooks({ node: process.execPath, ...options }))) {
    if (only && name !== only) continue;
    const hook = join(gitDir, 'hooks', name);
    writeFileSync(hook, text);
    chmodSync(hook, 0o755);
  }
}

export async function remote(ctx: CliContext, argv: string[]): Promise<number> {
  const { positionals } = parseFlags(argv, {}, REMOTE_USAGE, { min: 3, max: 3 });
  const [verb, name, path] = positionals as [string, string, string];
  if (verb !== 'add') throw new UsageError(`unknown remote command ${JSON.stringify(verb)}`, REMOTE_USAGE);
  const app = ctx.app(name);
  const dir = resolve(path);
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new InvalidInputError(`${dir} exists and is not a directory`);
  if (existsSync(dir) && readdirSync(dir).length > 0 && !existsSync(join(dir, 'HEAD'))) {
    throw new InvalidInputError(`${dir} exists and is not a bare git repository`);
  }
  if (existsSync(join(dir, 'HEAD'))) {
    // A working repository's .git: `git init --bare` over it would set core.bare and leave its work tree unusable.
    const bare = await runCommand(['git', '--git-dir', dir, 'config', '--local', '--get', 'core.bare']).then((r) => r.stdout.trim(), () => null);
    if (bare !== 'true') throw new InvalidInputError(`${dir} is a repository with a work tree, not a bare one: a push to it would not deploy; give a bare repository's path (git init --bare), or a new one`);
    await refuseForeignHooks(dir, app.name);
  }
  await runCommand(['git', 'init', '--quiet', '--bare', `--initial-branch=${app.branch}`, '--', dir]);
  // A core.hooksPath in the server's global or system git config would send git to other hooks, and a push would land
  // undeployed: this repository's own setting wins (relative: its hooks/, wherever the repository is moved).
  await runCommand(['git', '--git-dir', dir, 'config', 'core.hooksPath', 'hooks']);
  installHooks(dir, { app: app.name, config: ctx.config.file });
  if (ctx.options.json) ctx.terminal.out(JSON.stringify({ app: app.name, repository: dir, branch: app.branch, hooks: HOOK_NAMES.map((name) => join(dir, 'hooks', name)) }));
  else ctx.terminal.out(`${dir} now deploys ${app.name}: a push to ${app.branch} builds and rolls it out.\n\n  git remote add production ${dir}\n  git push production ${app.branch}`);
  return 0;
}

/**
 * An existing repository's hooks are brought up to date only when they are
 * Slipway's, for this app: a hook of its own (a mirror, a CI trigger), a
 * core.hooksPath of its own, or the hook of another app would be replaced
 * without a word (that app's pushes would deploy this one). The operator
 * moves them aside, or picks another repository.
 */
async function refuseForeignHooks(dir: string, app: string): Promise<void> {
  for (const name of HOOK_NAMES) {
    const hook = join(dir, 'hooks', name);
    if (!existsSync(hook)) continue;
    const text = readFileSync(hook, 'utf8');
    if (!text.includes(HOOK_MARK)) {
      throw new InvalidInputError(`${hook} is not a hook slipway installed: slipway remote add would replace it; move it aside first, or use another repository`);
    }
    const deploys = /runGitHook\(\{ app: ("[^"\n]*")/.exec(text)?.[1];
    const other = deploys === undefined ? null : (JSON.parse(deploys) as string);
    if (other !== null && other !== app) {
      throw new InvalidInputError(`${dir} deploys ${other} already: a remote deploys one app, and slipway remote add would make its pushes deploy ${app} instead; use another repository for ${app}`);
    }
  }
  const update = join(dir, 'hooks', 'update');
  if (existsSync(update)) throw new InvalidInputError(`${update} ${UPDATE_HOOK_REFUSED}; move it aside first, or use another repository`);
  const hooksPath = await runCommand(['git', '--git-dir', dir, 'config', '--local', '--get', 'core.hooksPath']).then((r) => r.stdout.trim(), () => null);
  if (hooksPath !== null && hooksPath !== 'hooks') {
    throw new InvalidInputError(`${dir} sends git to its own hooks (core.hooksPath ${JSON.stringify(hooksPath)}): slipway remote add would replace that setting; unset it first, or use another repository`);
  }
}

/**
 * git runs an `update` hook after pre-receive, once the deploy is live: one
 * that refuses the branch (a per-branch rule, gitolite's) would leave the
 * commit serving and the branch off it.
 */
const UPDATE_HOOK_REFUSED = 'is an update hook: git runs it after the deploy, and one that refuses the push would leave the commit live and the branch not on it';

const ZERO = '0'.repeat(40);
/** How long a push waits for Redis before it is refused. */
const REDIS_WAIT_MS = 5000;

/**
 * git's pre-receive hook of a Slipway remote. The pushed objects sit in
 * git's quarantine until this hook accepts the push, where no other process
 * can fetch them; so the hook exports the pushed tree itself (`git archive`
 * sees the quarantine), queues the deploy with that tree, streams the job's
 * log to the pusher, and refuses the push if the deploy fails.
 *
 * One push deploys at a time: the push lock (push-lock.ts) is taken before
 * anything is queued and held, once the deploy completed, until git has
 * moved the branch; a push arriving meanwhile is refused at once, and one
 * whose branch moved since the pusher looked is refused before it deploys.
 * So the branch always ends on the commit a push left live.
 */
export async function runGitHook(options: { app: string; config: string | null; stdin?: NodeJS.ReadableStream; terminal?: Terminal }): Promise<number> {
  // What a build printed reaches the pusher's terminal through git: plain text only.
  const plain = (t: string) => {
    const safe = safeForTerminal(t, false);
    return safe.endsWith('\n') ? safe : `${safe}\n`;
  };
  // receive-pack, which runs this hook and moves the branch once it accepts: read once, and known by its start time.
  const git = { pid: process.ppid, start: processStart(process.ppid) };
  const pusher = new PusherLink(git);
  const terminal: Terminal = options.terminal ?? pusher.terminal(plain);
  const code = await receivePush(options, git, pusher, terminal);
  pusher.close(code);
  return code;
}

async function receivePush(options: { app: string; config: string | null; stdin?: NodeJS.ReadableStream }, git: { pid: number; start: string | null }, pusher: PusherLink, terminal: Terminal): Promise<number> {
  const gitDir = hookGitDir();
  let locked: string | null = null;
  let deployed = false;
  try {
    // Only what a push uses: the pusher's environment has none of the services' secrets.
    const config = loadPushConfig({ path: options.config ?? undefined, env: process.env }, options.app);
    const app = appConfig(config, options.app);
    const updates = (await readAll(options.stdin ?? process.stdin)).split('\n').filter(Boolean).map((line) => line.split(' '));
    const target = updates.find(([, , ref]) => branchOfRef(ref) === app.branch);
    if (!target) {
      terminal.out(`slipway: nothing to deploy (only pushes to ${app.branch} deploy ${app.name})`);
      return 0;
    }
    const [before, sha, ref] = target as [string, string, string];
    if (sha === ZERO) {
      terminal.out(`slipway: ${app.branch} deleted; ${app.name} keeps serving what is live`);
      return 0;
    }
    if (!isSha(sha) || !isSha(before)) throw new Error(`unexpected update ${JSON.stringify(target.join(' '))}`);
    // git lets a branch point at a tag or a tree, and checks nothing of it before this hook: what deploys is a commit.
    const kind = (await runCommand(['git', 'cat-file', '-t', sha])).stdout.trim();
    if (kind !== 'commit') {
      const hint = kind === 'tag' ? ` (push the commit it names: <tag>^{commit}:${app.branch})` : '';
      terminal.err(`slipway: ${sha.slice(0, 12)} is a ${kind}, not a commit; only a commit deploys ${app.name}${hint}; push refused`);
      return 1;
    }

    // A remote made before the push lock has no hook to let it go: add it (the lock would otherwise wait to go stale).
    if (!existsSync(join(gitDir, 'hooks', 'reference-transaction'))) installHooks(gitDir, { app: app.name, config: options.config }, 'reference-transaction');
    const holder = await takePushLock(gitDir, { ...git, ref, sha, since: new Date().toISOString() });
    if (holder) {
      terminal.err(`slipway: another push is deploying ${app.name} at ${holder.sha.slice(0, 12)} (since ${holder.since}); push again once it ends; push refused`);
      return 1;
    }
    locked = ref;
    const current = (await runCommand(['git', 'for-each-ref', '--format=%(objectname)', '--', ref])).stdout.trim() || ZERO;
    if (current !== before) {
      terminal.err(`slipway: ${app.branch} moved to ${current === ZERO ? 'nothing' : current.slice(0, 12)} while this push was on its way; fetch and push again; push refused`);
      return 1;
    }
    if (existsSync(join(gitDir, 'hooks', 'update'))) {
      terminal.err(`slipway: ${join(gitDir, 'hooks', 'update')} ${UPDATE_HOOK_REFUSED}; push refused`);
      return 1;
    }
    // git checks this only after pre-receive: refused then, the commit would be live and the branch not on it.
    if (before !== ZERO && (await gitSays(['config', '--bool', '--get', 'receive.denyNonFastForwards'])) && !(await gitSays(['merge-base', '--is-ancestor', before, sha]))) {
      terminal.err(`slipway: ${sha.slice(0, 12)} does not descend from ${before.slice(0, 12)}, and this repository refuses non-fast-forward pushes (receive.denyNonFastForwards); push refused`);
      return 1;
    }

    // Redis first: a push that cannot be queued leaves nothing behind (and a client left reconnecting would keep git waiting).
    const redis = connectRedis(config.redis, 'producer');
    try {
      await redisReady(redis, config.redis, REDIS_WAIT_MS);
      const sourceDir = await exportTree(sha, join(config.workdir, 'incoming', `${app.name}-${sha.slice(0, 12)}-${randomBytes(3).toString('hex')}`));
      const queue = new DeployQueue({ redis, prefix: config.queue.prefix, attempts: config.worker.attempts, backoffMs: config.worker.backoff_ms });
      try {
        const record = await queue.enqueue({ app: app.name, sha, ref: app.branch, image: null, trigger: 'git-push', sourceDir }).catch((err: unknown) => {
          rmSync(sourceDir, { recursive: true, force: true });
          throw err;
        });
        terminal.out(`-----> Slipway: deploying ${app.name} ${sha.slice(0, 12)} as job ${record.id}`);
        // Nobody to report to: the job stops at its next safe point, or completes if its cutover has begun.
        pusher.onGone(() => queue.cancel(record.id).catch(() => {}));
        const final = await watchJob(queue.store, record.id, terminal, { showLog: true }).catch(async (err: unknown) => {
          // Redis gone for minutes: the push is refused, so the job must not go live after it. Cancelled if Redis lets
          // us say so; its tree removed either way, so a job Redis still holds finds only the commit, which is on no branch.
          await queue.cancel(record.id).catch(() => {});
          rmSync(sourceDir, { recursive: true, force: true });
          throw err;
        });
        if (final.state === 'completed') {
          deployed = true;
          return 0;
        }
        if (final.state === 'superseded') {
          // A deploy, rollback or webhook push of this app queued while the push waited: it is what goes live, not
          // this job. If it deploys this very commit (a webhook of the same push to the forge), its outcome is ours.
          const by = final.supersededBy ? await queue.store.get(final.supersededBy) : null;
          if (by && by.sha === sha) {
            terminal.out(`-----> Slipway: job ${by.id} deploys this commit too; following it`);
            const theirs = await watchJob(queue.store, by.id, terminal, { showLog: true });
            if (theirs.state === 'completed') {
              deployed = true;
              return 0;
            }
            terminal.err(`-----> Slipway: job ${by.id}, which deployed this commit in this push's place, ended ${theirs.state}; push refused (slipway logs ${by.id})`);
            return 1;
          }
          terminal.err(`-----> Slipway: job ${final.supersededBy ?? '?'} of ${app.name}, queued while this push waited, replaced its deploy; push refused (push again to deploy ${sha.slice(0, 12)} over it)`);
          return 1;
        }
        terminal.err(`-----> Slipway: deploy ${final.state === 'cancelled' ? 'cancelled' : 'failed'}, push refused (slipway logs ${record.id}; fix and push again)`);
        return 1;
      } finally {
        await queue.close();
      }
    } finally {
      redis.disconnect();
    }
  } catch (err) {
    // Whatever failed, its message may carry an address with credentials in it.
    terminal.err(`slipway: ${scrubSecrets(firstLine(err))}; push refused`);
    return 1;
  } finally {
    // A refused push moves no ref, so nothing else would let the lock go; an accepted one keeps it until git has moved the branch.
    if (locked && !deployed) releasePushLock(gitDir, git.pid, locked);
  }
}

/** Whether a git command that answers by its exit status (0 yes, 1 no) says yes; other failures throw. */
async function gitSays(argv: string[]): Promise<boolean> {
  try {
    const { stdout } = await runCommand(['git', ...argv]);
    return stdout.trim() !== 'false';
  } catch (err) {
    if (err instanceof CommandError && err.exitCode === 1) return false;
    throw err;
  }
}

/** Output git has not taken from the hook past this: nobody is reading it any more. */
const UNREAD_OUTPUT_BYTES = 1024 * 1024;
/** Output git has not taken for this long: nobody is reading it any more. */
const UNREAD_OUTPUT_MS = 60_000;

/**
 * The pusher, through git. A pusher who goes away (Ctrl-C, a dropped
 * connection) is seen by whichever comes first: a signal (SIGINT reaches
 * a local push's whole process group), the hook's output failing or no
 * longer read (git stops forwarding it when the connection is gone, and
 * keeps the pipe open), or receive-pack gone. The hook then stops writing
 * and cancels the deploy, which stops at its next safe point (or completes,
 * if its cutover had begun), and still answers by the outcome: a deploy
 * that went live moves the branch, one that did not leaves it where it
 * was. (With receive-pack gone nothing moves the branch, and the pushed
 * objects went with git's quarantine: a deploy past its cutover then stays
 * live off the branch.) Dying there instead would leave a live deploy the
 * branch never got, or a lock held by a hook waiting for nobody.
 */
class PusherLink {
  private gone = false;
  private readonly listeners: (() => unknown)[] = [];
  private readonly watch: NodeJS.Timeout;

  constructor(private readonly git: { pid: number; start: string | null }) {
    this.watch = setInterval(() => {
      if (this.gitGone) this.leave();
    }, 1000);
    this.watch.unref();
  }

  /** Whether receive-pack has gone (killed with its pusher, a local push's Ctrl-C): git will not move the branch. */
  get gitGone(): boolean {
    return !holderAlive(this.git);
  }

  terminal(plain: (t: string) => string): Terminal {
    for (const stream of [process.stdout, process.stderr]) stream.on('error', () => this.leave());
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => this.leave());
    const write = (stream: NodeJS.WriteStream, text: string) => {
      if (this.gone) return;
      if (stream.writableLength > UNREAD_OUTPUT_BYTES) this.leave();
      else stream.write(plain(text));
    };
    // A page of the log is written only once git has taken the last: a burst of output is never mistaken for nobody reading.
    const drained = async () => {
      const since = Date.now();
      while (!this.gone && (process.stdout.writableNeedDrain || process.stderr.writableNeedDrain)) {
        if (Date.now() - since >= UNREAD_OUTPUT_MS) return this.leave();
        await sleep(50);
      }
    };
    return { out: (t) => write(process.stdout, t), err: (t) => write(process.stderr, t), interactive: false, drained };
  }

  /** Calls `listener` once the pusher has gone, at once if already. */
  onGone(listener: () => unknown): void {
    if (this.gone) listener();
    else this.listeners.push(listener);
  }

  /** The hook is done: with nobody reading, output still queued would keep it from exiting, so it exits now. */
  close(code: number): void {
    clearInterval(this.watch);
    if (this.gone) setImmediate(() => process.exit(code));
  }

  private leave(): void {
    if (this.gone) return;
    this.gone = true;
    for (const listener of this.listeners.splice(0)) listener();
  }
}

/**
 * The pushed commit's tree, exported with `git archive` into `dir` (git's
 * quarantine is visible to this hook only, so the worker builds from here).
 */
async function exportTree(sha: string, dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  // Checked out as a webhook's build checks out (git worktree add): the files of the commit, through its
  // checkout filters. Not `git archive`, which drops `export-ignore` paths and rewrites `export-subst` ones.
  const index = `${dir}.index`;
  const env = { ...process.env, GIT_INDEX_FILE: index };
  try {
    await runCommand(['git', 'read-tree', sha], { env });
    await runCommand(['git', `--work-tree=${dir}`, 'checkout-index', '--all', '--force'], { env });
    return dir;
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  } finally {
    rmSync(index, { force: true });
  }
}

function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => (data += chunk));
    stream.on('end', () => resolve(data));
    stream.on('error', reject);
  });
}
