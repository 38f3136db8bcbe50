import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readlinkSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '@slipway/devstack/testing';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** Every command a user can run with `npx` from the repository root, and the package that ships it. */
const BINS: Array<[name: string, dir: string]> = [
  ['slipway', 'apps/cli'],
  ['slipway-receiver', 'apps/receiver'],
  ['slipway-worker', 'apps/worker'],
  ['slipway-dashboard', 'apps/dashboard'],
  ['slipway-devstack', 'packages/devstack'],
];

const run = (argv: string[], cwd = root) => spawnSync(argv[0]!, argv.slice(1), { cwd, encoding: 'utf8', timeout: 60_000 });

describe('the commands npm links', () => {
  const tmp = tempDir();
  afterAll(() => tmp.remove());

  it.each(BINS)('%s is a committed, executable launcher, linked into node_modules/.bin', (name, dir) => {
    const launcher = join(dir, 'bin', `${name}.js`);
    // Mode 100755 in git: a fresh clone's npm ci links it with its execute bit, before any build.
    expect(run(['git', 'ls-files', '--stage', '--', launcher]).stdout).toMatch(/^100755 /);
    const link = join(root, 'node_modules', '.bin', name);
    expect(readlinkSync(link)).not.toContain('dist');
    expect(realpathSync(link)).toBe(join(root, launcher));
  });

  it.each(BINS.filter(([name]) => name !== 'slipway-devstack'))('npx %s --help answers from the repository root', (name) => {
    const res = run(['npx', '--no-install', name, '--help']);
    expect(res.status, res.stderr).toBe(0);
    expect(`${res.stdout}${res.stderr}`).toMatch(new RegExp(`usage: ${name}\\b`));
  });

  it('npx slipway-devstack without a command prints its usage and exits 2', () => {
    const res = run(['npx', '--no-install', 'slipway-devstack']);
    expect(res.status).toBe(2);
    expect(res.stderr).toContain('usage: slipway-devstack');
  });

  it('a launcher whose build is missing builds the repository first; where that cannot be done, it says so plainly and exits 1', () => {
    // A checkout with the launcher and its scripts but nothing installed: the build it starts cannot run.
    const bin = join(tmp.path, 'apps', 'cli', 'bin');
    mkdirSync(bin, { recursive: true });
    mkdirSync(join(tmp.path, 'scripts'));
    copyFileSync(join(root, 'apps/cli/bin/slipway.js'), join(bin, 'slipway.js'));
    for (const script of ['launch.mjs', 'install-lock.mjs']) copyFileSync(join(root, 'scripts', script), join(tmp.path, 'scripts', script));
    const res = run([process.execPath, join(bin, 'slipway.js'), 'jobs', '--json'], tmp.path);
    expect(res.status).toBe(1);
    expect(res.stdout).toBe('');
    expect(res.stderr).toContain('slipway: not built yet: building the repository once (npm run build)');
    expect(res.stderr).toContain(`slipway: the build failed`);
    expect(res.stderr).toContain(`${join(tmp.path, 'apps', 'cli', 'dist', 'bin.js')} is missing. Run \`npm ci\` then \`npm run build\``);
  });
});
