import { chmodSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCommand } from '@slipway/core/run-command';
import { SlipwayError } from '@slipway/core/slipway-error';
import type { CliContext } from '../cli-context.js';
import { parseFlags } from '../parse-flags.js';
import { UsageError } from '../usage-error.js';

export const USAGE = 'usage: slipway remote add <app> <path>';

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
  const { positionals } = parseFlags(argv, {}, USAGE, { min: 3, max: 3 });
  const [verb, name, path] = positionals as [string, string, string];
  if (verb !== 'add') throw new UsageError(`unknown remote command ${JSON.stringify(verb)}`, USAGE);
  const app = ctx.app(name);
  const dir = resolve(path);
  if (existsSync(dir) && readdirSync(dir).length > 0 && !existsSync(join(dir, 'HEAD'))) {
    throw new SlipwayError('invalid_input', `${dir} exists and is not a bare git repository`, { status: 400 });
  }
  await runCommand(['git', 'init', '--quiet', '--bare', `--initial-branch=${app.branch}`, '--', dir]);
  const hook = join(dir, 'hooks', 'pre-receive');
  writeFileSync(hook, renderHook({
    node: process.execPath,
    hookModule: fileURLToPath(new URL('../git-hook.js', import.meta.url)),
    app: app.name,
    config: ctx.config.file,
  }));
  chmodSync(hook, 0o755);
  ctx.terminal.out(`${dir} now deploys ${app.name}: a push to ${app.branch} builds and rolls it out.\n\n  git remote add production ${dir}\n  git push production ${app.branch}`);
  return 0;
}
