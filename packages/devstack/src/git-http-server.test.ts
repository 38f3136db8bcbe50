import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGitHttpServer, type GitHttpServer } from './git-http-server.js';

describe('the git HTTP server (npm start\'s demo forge)', () => {
  let root: string;
  let server: GitHttpServer;
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'slipway-git-http-'));
    server = await startGitHttpServer({ root, mount: 'demo' });
  });
  afterAll(async () => {
    await server?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('answers a path it cannot decode 400, and a large push to no repository, and goes on serving', async () => {
    expect((await fetch(`${server.url}/demo/%zz`)).status).toBe(400);
    // git exits at once, before it has read the body: the rest of the body's writes fail (EPIPE), answered all the same.
    const pushed = await fetch(`${server.url}/demo/missing.git/git-receive-pack`, {
      method: 'POST', headers: { 'Content-Type': 'application/x-git-receive-pack-request' }, body: Buffer.alloc(8 * 1024 * 1024),
    }).then((r) => r.status, () => 'cut');
    expect(pushed).not.toBe(200);
    expect((await fetch(`${server.url}/demo/missing.git/info/refs?service=git-upload-pack`)).status).toBeGreaterThanOrEqual(400);
  });
});
