import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SlipwayConfig } from '@slipway/config/types';
import { CommandError, runCommand } from '@slipway/core/run-command';
import { nginxNames } from './render.js';

/*
 * Checking Slipway's nginx files with `check_cmd`, on a harness of its
 * own: every app's file (one candidate in place of its live file, or the
 * live files as the next reload will read them), its own pid, error log
 * and temp paths, so that a check never touches the live nginx.
 */

/** How long `check_cmd` may run. */
export const CHECK_TIMEOUT_MS = 30_000;

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
  const tmp = (name: string) => `    ${name}_temp_path ${nginxString(join(dir, name))};`;
  return [
    '# Checks one Slipway candidate beside the other apps\' files; written by @slipway/router.',
    `pid ${nginxString(join(dir, 'nginx.pid'))};`,
    `error_log ${nginxString(join(dir, 'error.log'))};`,
    'events {}',
    'http {',
    '    access_log off;',
    // Slipway's own files add no variable; apps' own templates may add one each, and beyond ~90 the defaults warn before any error.
    '    variables_hash_max_size 2048;',
    '    variables_hash_bucket_size 128;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(tmp),
    ...includes.map((file) => `    include ${nginxString(file)};`),
    '}',
    '',
  ].join('\n');
}

/** A path as one nginx argument, whatever it holds (a space, `;`, `{`, `#`: a conf dir or TMPDIR of the operator's choosing). */
function nginxString(path: string): string {
  return `"${path.replace(/[\\"]/g, '\\$&')}"`;
}

/** The Slipway files of `confDir` (but `except`, a file name), in the order nginx's `include *.conf` reads them. */
export async function slipwayConfFiles(confDir: string, except?: string): Promise<string[]> {
  return (await readdir(confDir).catch(() => [] as string[]))
    .filter((name) => nginxNames.isSlipwayFile(name) && name !== except)
    .sort()
    .map((name) => join(confDir, name));
}

/**
 * Runs `check_cmd` on a harness including `includes`, `{file}` being
 * `file`. Throws CommandError (its `tail`: nginx's own words) when nginx
 * rejects them.
 */
export async function runCheck(nginx: SlipwayConfig['nginx'], includes: readonly string[], file: string): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'slipway-check-'));
  try {
    const main = join(dir, 'nginx.conf');
    await writeFile(main, renderHarness(dir, includes));
    await runCommand(checkArgv(nginx.check_cmd, { file, main }), { timeoutMs: CHECK_TIMEOUT_MS });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The file nginx names in the error that failed its check (`[emerg] … in
 * /etc/nginx/conf.d/slipway-b.conf:3`), or null. Its warnings, printed
 * before (a deprecated directive in another app's file), name no culprit.
 * Pure.
 */
export function rejectedFile(words: string): string | null {
  return /\[(?:emerg|alert|crit)\].* in (\/.+?):\d+\s*$/m.exec(words)?.[1] ?? null;
}

/**
 * nginx's words when `check_cmd` rejects `files` as one configuration;
 * null when it accepts them, and when it could not run at all (missing,
 * killed at its timeout): no verdict.
 */
export async function checkFiles(nginx: SlipwayConfig['nginx'], files: readonly string[]): Promise<string | null> {
  try {
    await runCheck(nginx, files, nginx.conf_dir);
    return null;
  } catch (err) {
    if (!(err instanceof CommandError) || err.exitCode === null) return null;
    return err.tail || err.message;
  }
}
