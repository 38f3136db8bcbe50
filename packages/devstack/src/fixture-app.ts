import { mkdirSync, writeFileSync, chmodSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { runCommand } from '@slipway/core/run-command';
import { BASE_IMAGE } from './base-image.js';

/** What the sample app does wrong, for failure tests. */
export type FixtureVariant = 'ok' | 'broken-build' | 'crash' | 'unhealthy' | 'slow-start';

export interface FixtureOptions {
  version: string;
  variant?: FixtureVariant;
  /** Port the app listens on inside its container. Default 8080. */
  port?: number;
  /** A build step that sleeps this long (uncached: it depends on the version), for tests that need a slow build. */
  buildDelay_s?: number;
}

/**
 * Writes the sample web app into `dir`: busybox httpd serving `/` (its
 * version), `/healthz` (200) and `/cgi-bin/slow` (about a second), behind a
 * tiny init that turns SIGTERM into a clean exit, as a real app should.
 */
export function writeFixtureApp(dir: string, options: FixtureOptions): void {
  const port = options.port ?? 8080;
  const variant = options.variant ?? 'ok';
  const www = join(dir, 'www');
  mkdirSync(join(www, 'cgi-bin'), { recursive: true });
  writeFileSync(join(www, 'index.html'), `${options.version}\n`);
  writeFileSync(join(www, 'version'), `${options.version}\n`);
  const healthz = join(www, 'healthz');
  if (variant === 'unhealthy') rmSync(healthz, { force: true });
  else writeFileSync(healthz, 'ok\n');
  writeFileSync(join(www, 'cgi-bin', 'slow'), '#!/bin/sh\nsleep 1\nprintf "Content-Type: text/plain\\r\\n\\r\\n"\ncat /www/version\n');
  chmodSync(join(www, 'cgi-bin', 'slow'), 0o755);
  const start = variant === 'crash'
    ? 'echo "fatal: cannot open database" >&2\nexit 3\n'
    : `${variant === 'slow-start' ? 'sleep 2\n' : ''}httpd -f -p ${port} -h /www &\ntrap 'kill -TERM $!; wait $!; exit 0' TERM INT\nwait $!\n`;
  writeFileSync(join(dir, 'run.sh'), `#!/bin/sh\necho "starting ${options.version}"\n${start}`);
  chmodSync(join(dir, 'run.sh'), 0o755);
  writeFileSync(join(dir, 'Dockerfile'), [
    `FROM ${BASE_IMAGE}`,
    ...(variant === 'broken-build' ? ['RUN echo "compiling assets" && echo "error: asset pipeline failed" >&2 && false'] : []),
    'COPY www /www',
    ...(options.buildDelay_s ? [`RUN echo "building ${options.version}" && sleep ${options.buildDelay_s}`] : []),
    'COPY run.sh /run.sh',
    `EXPOSE ${port}`,
    'CMD ["/run.sh"]',
    '',
  ].join('\n'));
  writeFileSync(join(dir, '.dockerignore'), 'node_modules\n*.log\n.git\n');
}

export interface FixtureRepo {
  /** Working clone the test commits in. */
  work: string;
  /** Bare repository: what Slipway clones. */
  bare: string;
  /** `file://` URL of the bare repository. */
  url: string;
}

const GIT_IDENTITY = ['-c', 'user.name=Slipway Test', '-c', 'user.email=test@slipway.invalid', '-c', 'init.defaultBranch=master', '-c', 'commit.gpgsign=false'];
export const git = (cwd: string, ...args: string[]) => runCommand(['git', ...GIT_IDENTITY, ...args], { cwd });

/** A bare repository with the sample app committed on `master`, and a working clone. */
export async function createFixtureRepo(parent: string, options: FixtureOptions & { name?: string }): Promise<FixtureRepo & { sha: string }> {
  const name = options.name ?? 'app';
  const bare = join(parent, `${name}.git`);
  const work = join(parent, `${name}-work`);
  if (existsSync(bare) || existsSync(work)) throw new Error(`fixture ${name} already exists in ${parent}`);
  mkdirSync(work, { recursive: true });
  await git(parent, 'init', '-q', '--bare', bare);
  await git(work, 'init', '-q');
  await git(work, 'remote', 'add', 'origin', bare);
  const repo = { work, bare, url: `file://${bare}` };
  const sha = await commitVersion(repo, options);
  return { ...repo, sha };
}

/** Writes the app at `version`, commits and pushes to `master` of the bare repo. Returns the sha. */
export async function commitVersion(repo: FixtureRepo, options: FixtureOptions & { branch?: string; message?: string }): Promise<string> {
  writeFixtureApp(repo.work, options);
  await git(repo.work, 'add', '-A');
  await git(repo.work, 'commit', '-q', '--allow-empty', '-m', options.message ?? `release ${options.version}`);
  const branch = options.branch ?? 'master';
  await git(repo.work, 'push', '-q', 'origin', `HEAD:refs/heads/${branch}`);
  return (await git(repo.work, 'rev-parse', 'HEAD')).stdout.trim();
}
