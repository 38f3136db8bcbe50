import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSlipwayError } from '@slipway/core/slipway-error';
import { commitVersion, createFixtureRepo, type FixtureRepo, type GitHttpServer, startGitHttpServer, tempDir } from '@slipway/devstack/testing';
import { checkout } from '../src/checkout.js';
import { resolveRef } from '../src/resolve-ref.js';
import { workPaths } from '../src/repo-cache.js';
import { testApp } from './test-app.js';

const USER = 'deployer';
const PASSWORD = 'Pa55-w0rd-never-logged';
const TOKEN = Buffer.from(`${USER}:${PASSWORD}`).toString('base64');

const temp = tempDir('slipway-http-');
const workdir = join(temp.path, 'work');
let fixture: FixtureRepo & { sha: string };
let server: GitHttpServer;
let repoUrl: string;

beforeAll(async () => {
  fixture = await createFixtureRepo(temp.path, { version: 'v1', name: 'app' });
  server = await startGitHttpServer({ root: temp.path, auth: { username: USER, password: PASSWORD } });
  repoUrl = `${server.url}/app.git`;
});
afterAll(async () => {
  await server?.close();
  temp.remove();
});

/** Every file under `dir`, for a grep. */
function filesUnder(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).map((f) => join(dir, f)).filter((f) => statSync(f).isFile());
}

const caught = (promise: Promise<unknown>) => promise.then(() => { throw new Error('expected a failure'); }, (err: unknown) => err);

describe('http(s) clone with credentials', () => {
  it('authenticates without the password reaching argv, the log, the cache or the tree', async () => {
    const app = testApp({ repo: repoUrl, credentials: { username: USER, password: PASSWORD } });
    const lines: string[] = [];
    const before = server.requests.length;
    const tree = await checkout({ app, sha: fixture.sha, workdir, log: (line) => lines.push(line) });
    try {
      expect(readFileSync(join(tree.dir, 'www', 'version'), 'utf8')).toBe('v1\n');
      const seen = server.requests.slice(before);
      expect(seen.length).toBeGreaterThan(0);
      expect(seen.every((r) => r.authorized)).toBe(true);
      expect(server.leaks).toEqual([]);
      expect(lines.length).toBeGreaterThan(0);
      const log = lines.join('\n');
      expect(log).not.toContain(PASSWORD);
      expect(log).not.toContain(TOKEN);
      const cache = workPaths(workdir, app.name).repo;
      for (const file of [...filesUnder(cache), ...filesUnder(tree.dir)]) {
        const bytes = readFileSync(file);
        expect(bytes.includes(PASSWORD), file).toBe(false);
        expect(bytes.includes(TOKEN), file).toBe(false);
      }
      expect(readFileSync(join(cache, 'config'), 'utf8')).not.toMatch(/extraheader|url\s*=/i);
    } finally {
      await tree.cleanup();
    }

    const sha2 = await commitVersion(fixture, { version: 'v2' });
    expect(await resolveRef({ app, ref: 'master', workdir })).toBe(sha2);
    expect(await resolveRef({ app, ref: sha2.slice(0, 8), workdir })).toBe(sha2);
    expect(server.leaks).toEqual([]);
  });

  it('takes credentials written into the URL, and keeps them out of everything too', async () => {
    const embedded = repoUrl.replace('http://', `http://${USER}:${encodeURIComponent(PASSWORD)}@`);
    const app = testApp({ repo: embedded });
    const lines: string[] = [];
    const tree = await checkout({ app, sha: fixture.sha, workdir, log: (line) => lines.push(line) });
    await tree.cleanup();
    expect(lines.join('\n')).not.toContain(PASSWORD);
    expect(server.leaks).toEqual([]);
    for (const file of filesUnder(workPaths(workdir, app.name).repo)) expect(readFileSync(file).includes(PASSWORD), file).toBe(false);
  });

  it.each([
    ['a wrong password', { username: USER, password: 'wrong-password-123' }],
    ['no credentials', undefined],
  ])('fails with git_auth_failed for %s, without prompting and without the password in the message', async (_name, credentials) => {
    const app = testApp({ repo: repoUrl, credentials });
    const started = Date.now();
    const err = await caught(checkout({ app, sha: fixture.sha, workdir }));
    expect(isSlipwayError(err, 'git_auth_failed')).toBe(true);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect((err as Error).message).not.toContain('wrong-password-123');
    expect((err as Error).message.split('\n', 1)[0]).toContain(`authentication to ${repoUrl} failed`);
  });
});
