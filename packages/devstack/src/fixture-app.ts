import { mkdirSync, writeFileSync, chmodSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { runCommand } from '@slipway/core/run-command';
import { BASE_IMAGE } from './base-image.js';

/**
 * What the sample app does wrong, for failure tests. The last five are
 * hostile builds (see {@link buildOutputScript}): what a build prints must
 * never exhaust Slipway.
 */
export type FixtureVariant =
  | 'ok' | 'broken-build' | 'crash' | 'unhealthy' | 'slow-start'
  | 'huge-line' | 'huge-line-unterminated' | 'endless-output' | 'many-lines' | 'long-lines' | 'terminal-escapes';

/** The line of a `huge-line` build: a pattern a naive URL-credential regex backtracks on (`a-a-a-…`). */
export const HUGE_LINE_UNIT = 'a-';
/** Default size of a `huge-line` build's line. */
export const DEFAULT_HUGE_LINE_BYTES = 4 * 1024 * 1024;
/** Default number of lines a `many-lines` build prints (`seq 1 N`). */
export const DEFAULT_MANY_LINES = 100_000;
/** What an `endless-output` build prints, line after line, until it is stopped. */
export const ENDLESS_LINE = 'slipway endless output';
/** Printed by the hostile builds once their output is done (`huge-line`, `many-lines`, `long-lines`, `terminal-escapes`). */
export const AFTER_OUTPUT_LINE = 'hostile output done';

/**
 * The control sequences a `terminal-escapes` build prints, each on its own
 * line after a visible label: a clipboard write (OSC 52), a window title
 * change (OSC 0), a cursor move far right (CSI G) and a red colour (SGR),
 * then a reset. Exactly these bytes, for tests of what `slipway logs` and
 * the dashboard do with them. Through a real build today the job log holds
 * `clipboard:` and `title:` with their OSC sequences intact, while the
 * build stream's colour-code filter has already removed the CSI ones
 * (`cursor:`, `colour:`, `reset:` arrive bare).
 */
export const TERMINAL_ESCAPES = {
  clipboard: '\u001b]52;c;cm0gLXJmIH4K\u0007',
  title: '\u001b]0;slipway pwned\u0007',
  cursor: '\u001b[999999999G',
  colour: '\u001b[31m',
  reset: '\u001b[0m',
} as const;

export interface FixtureOptions {
  version: string;
  variant?: FixtureVariant;
  /** Port the app listens on inside its container. Default 8080. */
  port?: number;
  /** A build step that sleeps this long (uncached: it depends on the version), for tests that need a slow build. */
  buildDelay_s?: number;
  /** `huge-line*`, `long-lines`: bytes of the line (of each line). Default {@link DEFAULT_HUGE_LINE_BYTES}. */
  lineBytes?: number;
  /** `many-lines` (`1` to `N`, one number a line), `long-lines`: how many lines. Default {@link DEFAULT_MANY_LINES}. */
  lines?: number;
}

/** Octal escapes for busybox printf, so the script holds no raw control bytes. */
const octal = (text: string) => [...text].map((c) => (c < ' ' ? `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}` : c)).join('');

/**
 * The shell script a hostile variant's build step runs (null for the
 * others). The version is in a comment so that the step is never taken
 * from Docker's layer cache: each test build prints its output.
 */
export function buildOutputScript(options: FixtureOptions): string | null {
  const head = `#!/bin/sh\n# ${options.version.replace(/\n/g, ' ')}\nset -e\n`;
  const bytes = options.lineBytes ?? DEFAULT_HUGE_LINE_BYTES;
  switch (options.variant) {
    case 'huge-line':
      return `${head}yes '${HUGE_LINE_UNIT}' | tr -d '\\n' | head -c ${bytes}\necho\necho '${AFTER_OUTPUT_LINE}'\n`;
    case 'huge-line-unterminated':
      // The step ends with the line still open: no newline ever comes.
      return `${head}yes '${HUGE_LINE_UNIT}' | tr -d '\\n' | head -c ${bytes}\n`;
    case 'endless-output':
      return `${head}exec yes '${ENDLESS_LINE}'\n`;
    case 'long-lines':
      // Megabytes in a moment: one line built once, printed over and over.
      return `${head}line=$(yes '${HUGE_LINE_UNIT}' | tr -d '\\n' | head -c ${bytes})\nyes "$line" | head -n ${options.lines ?? DEFAULT_MANY_LINES}\necho '${AFTER_OUTPUT_LINE}'\n`;
    case 'many-lines':
      return `${head}seq 1 ${options.lines ?? DEFAULT_MANY_LINES}\necho '${AFTER_OUTPUT_LINE}'\n`;
    case 'terminal-escapes':
      return `${head}${Object.entries(TERMINAL_ESCAPES).map(([name, seq]) => `printf '${name}: ${octal(seq)}\\n'\n`).join('')}echo '${AFTER_OUTPUT_LINE}'\n`;
    default:
      return null;
  }
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
  const buildScript = buildOutputScript({ ...options, variant });
  if (buildScript) writeFileSync(join(dir, 'build-output.sh'), buildScript);
  else rmSync(join(dir, 'build-output.sh'), { force: true });
  writeFileSync(join(dir, 'Dockerfile'), [
    `FROM ${BASE_IMAGE}`,
    ...(variant === 'broken-build' ? ['RUN echo "compiling assets" && echo "error: asset pipeline failed" >&2 && false'] : []),
    'COPY www /www',
    ...(buildScript ? ['COPY build-output.sh /build-output.sh', 'RUN sh /build-output.sh'] : []),
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
