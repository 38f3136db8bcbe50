import { chmodSync, existsSync, readdirSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { extract } from 'tar-fs';
import { runCommand } from '@slipway/core/run-command';
import { SlipwayError, firstLine } from '@slipway/core/slipway-error';
import { scrubSecrets } from '@slipway/core/logger';
import { branchOfRef, isSha } from '@slipway/core/validate';
import { appConfig, loadConfig } from '@slipway/config/load-config';
import { DeployQueue } from '@slipway/queue/deploy-queue';
import { connectRedis, redisForDisplay } from '@slipway/queue/redis';
import { type CliContext, parseFlags, UsageError } from './cli-context.js';
import { safeForTerminal, type Terminal } from './terminal.js';
import { watchJob } from './job-commands.js';

export const REMOTE_USAGE = 'usage: slipway remote add <app> <path>';

/** The pre-receive hook: a Node script (no shell) that hands the push to runGitHook. */
export function renderHook(options: { node: string; hookModule: string; app: string; config: string | null }): string {
  return [
    `#!${options.node}`,
    '// Installed by `slipway remote add`: a push to the app\'s branch deploys it,',
    '// streams the deploy log back, and is refused if the deploy fails.',
    `import { runGitHook } from ${JSON.stringify(options.hookModule)};`,
    `process.exitCode = await runGitHook({ app: ${JSON.stringify(options.app)}, config: ${JSON.stringify(options.config)} });`,
    '',
  ].join('\n');
}

export async function remote(ctx: CliContext, argv: string[]): Promise<number> {
  const { positionals } = parseFlags(argv, {}, REMOTE_USAGE, { min: 3, max: 3 });
  const [verb, name, path] = positionals as [string, string, string];
  if (verb !== 'add') throw new UsageError(`unknown remote command ${JSON.stringify(verb)}`, REMOTE_USAGE);
  const app = ctx.app(name);
  const dir = resolve(path);
  if (existsSync(dir) && readdirSync(dir).length > 0 && !existsSync(join(dir, 'HEAD'))) {
    throw new SlipwayError('invalid_input', `${dir} exists and is not a bare git repository`, { status: 400 });
  }
  await runCommand(['git', 'init', '--quiet', '--bare', `--initial-branch=${app.branch}`, '--', dir]);
  const hook = join(dir, 'hooks', 'pre-receive');
  writeFileSync(hook, renderHook({
    node: process.execPath,
    hookModule: fileURLToPath(new URL('./git-hook.js', import.meta.url)),
    app: app.name,
    config: ctx.config.file,
  }));
  chmodSync(hook, 0o755);
  ctx.terminal.out(`${dir} now deploys ${app.name}: a push to ${app.branch} builds and rolls it out.\n\n  git remote add production ${dir}\n  git push production ${app.branch}`);
  return 0;
}

const ZERO = '0'.repeat(40);
/** How long a push waits for Redis before it is refused. */
const REDIS_WAIT_MS = 5000;

/**
 * git's pre-receive hook of a Slipway remote. The pushed objects sit in
 * git's quarantine until this hook accepts the push, where no other process
 * can fetch them; so the hook exports the pushed tree itself (`git archive`
 * sees the quarantine), queues the deploy with that tree, streams the job's
 * log to the pusher, and refuses the push if the deploy fails.
 */
export async function runGitHook(options: { app: string; config: string | null; stdin?: NodeJS.ReadableStream; terminal?: Terminal }): Promise<number> {
  // What a build printed reaches the pusher's terminal through git: plain text only.
  const plain = (t: string) => {
    const safe = safeForTerminal(t, false);
    return safe.endsWith('\n') ? safe : `${safe}\n`;
  };
  const terminal: Terminal = options.terminal ?? {
    out: (t) => void process.stdout.write(plain(t)),
    err: (t) => void process.stderr.write(plain(t)),
    interactive: false,
  };
  try {
    const config = loadConfig({ path: options.config ?? undefined, env: process.env });
    const app = appConfig(config, options.app);
    const updates = (await readAll(options.stdin ?? process.stdin)).split('\n').filter(Boolean).map((line) => line.split(' '));
    const target = updates.find(([, , ref]) => branchOfRef(ref) === app.branch);
    if (!target) {
      terminal.out(`slipway: nothing to deploy (only pushes to ${app.branch} deploy ${app.name})`);
      return 0;
    }
    const sha = target[1]!;
    if (sha === ZERO) {
      terminal.out(`slipway: ${app.branch} deleted; ${app.name} keeps serving what is live`);
      return 0;
    }
    if (!isSha(sha)) throw new Error(`unexpected sha ${JSON.stringify(sha)}`);

    // Redis first: a push that cannot be queued leaves nothing behind (and a client left reconnecting would keep git waiting).
    const redis = connectRedis(config.redis, 'producer');
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`cannot reach Redis at ${redisForDisplay(config.redis)}`)), REDIS_WAIT_MS);
        redis.once('ready', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      const sourceDir = await exportTree(sha, join(config.workdir, 'incoming', `${app.name}-${sha.slice(0, 12)}-${randomBytes(3).toString('hex')}`));
      const queue = new DeployQueue({ redis, prefix: config.queue.prefix, attempts: config.worker.attempts, backoffMs: config.worker.backoff_ms });
      try {
        const record = await queue.enqueue({ app: app.name, sha, ref: app.branch, image: null, trigger: 'git-push', sourceDir }).catch((err: unknown) => {
          rmSync(sourceDir, { recursive: true, force: true });
          throw err;
        });
        terminal.out(`-----> Slipway: deploying ${app.name} ${sha.slice(0, 12)} as job ${record.id}`);
        const final = await watchJob(queue.store, record.id, terminal, { showLog: true });
        if (final.state === 'completed' || final.state === 'superseded') return 0;
        terminal.err(`-----> Slipway: deploy failed, push refused (slipway logs ${record.id}; slipway retry ${record.id})`);
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
  }
}

/**
 * The pushed commit's tree, exported with `git archive` into `dir` (git's
 * quarantine is visible to this hook only, so the worker builds from here).
 */
async function exportTree(sha: string, dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  try {
    const archive = spawn('git', ['archive', '--format=tar', sha], { stdio: ['ignore', 'pipe', 'inherit'] });
    // Listen before piping: the process may be gone by the time the pipeline settles.
    const exited = new Promise<number | null>((resolve) => archive.on('close', resolve));
    await pipeline(archive.stdout, extract(dir));
    if ((await exited) !== 0) throw new Error(`git archive ${sha} failed`);
    return dir;
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
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
