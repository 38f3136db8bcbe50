import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SlipwayConfig } from '@slipway/config/types';
import { CommandError, runCommand } from '@slipway/core/run-command';
import { nginxNames } from './nginx-names.js';
import { NginxCheckError } from './router-errors.js';

export interface CheckNginxConfOptions {
  nginx: SlipwayConfig['nginx'];
  app: string;
  /** The candidate file: written, not yet live. */
  candidate: string;
  /** Kill `check_cmd` after this long. Default 30 s. */
  timeoutMs?: number;
}

/**
 * The argv that checks a candidate: `{file}` → the candidate, `{main}` →
 * the harness main config; with neither placeholder, `-c <harness>` is
 * appended (nginx honours the last `-c`). Pure.
 */
export function checkArgv(checkCmd: readonly string[], paths: { file: string; main: string }): string[] {
  const hasPlaceholder = checkCmd.some((arg) => arg === '{file}' || arg === '{main}');
  if (!hasPlaceholder) return [...checkCmd, '-c', paths.main];
  return checkCmd.map((arg) => (arg === '{file}' ? paths.file : arg === '{main}' ? paths.main : arg));
}

/**
 * The harness main config: its own pid, error log and temp paths (so a
 * check never touches the live nginx's), every other app's Slipway file,
 * and the candidate in place of this app's live file. Pure.
 */
export function renderHarness(dir: string, includes: readonly string[]): string {
  const tmp = (name: string) => `    ${name}_temp_path ${join(dir, name)};`;
  return [
    '# Checks one Slipway candidate beside the other apps\' files; written by @slipway/router.',
    `pid ${join(dir, 'nginx.pid')};`,
    `error_log ${join(dir, 'error.log')};`,
    'events {}',
    'http {',
    '    access_log off;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(tmp),
    ...includes.map((file) => `    include ${file};`),
    '}',
    '',
  ].join('\n');
}

/** Runs `check_cmd` against the candidate; throws NginxCheckError with nginx's own words. */
export async function checkNginxConf(options: CheckNginxConfOptions): Promise<void> {
  const { nginx, app, candidate } = options;
  const own = nginxNames.file(app);
  const others = (await readdir(nginx.conf_dir).catch(() => [] as string[]))
    .filter((name) => nginxNames.isSlipwayFile(name) && name !== own)
    .sort()
    .map((name) => join(nginx.conf_dir, name));
  const dir = await mkdtemp(join(tmpdir(), 'slipway-check-'));
  try {
    const main = join(dir, 'nginx.conf');
    await writeFile(main, renderHarness(dir, [...others, candidate]));
    await runCommand(checkArgv(nginx.check_cmd, { file: candidate, main }), { timeoutMs: options.timeoutMs ?? 30_000 });
  } catch (err) {
    if (err instanceof CommandError) throw new NginxCheckError(app, err.tail || err.message, { cause: err });
    throw err;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
