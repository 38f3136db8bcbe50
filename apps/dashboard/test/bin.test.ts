import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '@slipway/core/run-command';
import { freePort, startProcess, tempDir, testStack, uniqueName } from '@slipway/devstack/testing';
import { main } from '../src/main.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const dir = tempDir('slipway-dashboard-bin-');

beforeAll(async () => {
  // The bin runs from dist: build this package (its dependencies are built by turbo's ^build).
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  await runCommand([process.execPath, tsc, '-p', 'tsconfig.build.json'], { cwd: root, timeoutMs: 120_000 });
}, 180_000);
afterAll(() => dir.remove());

function capture() {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (c: Buffer) => (text += c.toString()));
  return { stream, text: () => text };
}

function config(name: string, dashboard: Record<string, unknown>): string {
  const stack = testStack();
  const file = join(dir.path, `${name}.yml`);
  writeFileSync(file, JSON.stringify({ redis: stack.redis!.url, etcd: [stack.etcd!.url], queue: { prefix: uniqueName('bin') }, dashboard, apps: {} }));
  return file;
}

describe('slipway-dashboard', () => {
  const run = async (argv: string[], env: NodeJS.ProcessEnv = {}) => {
    const out = capture();
    const err = capture();
    const code = await main(argv, env, { stdout: out.stream, stderr: err.stream });
    return { code, stdout: out.text(), stderr: err.text() };
  };

  it('exits 2 with the reason for a bad flag, a bad config or a missing token', async () => {
    expect(await run(['--bogus'])).toMatchObject({ code: 2, stderr: expect.stringContaining('usage: slipway-dashboard') });
    const bad = join(dir.path, 'bad.yml');
    writeFileSync(bad, 'dashboard:\n  port: nope\n  colour: blue\n');
    const badRun = await run(['--config', bad]);
    expect(badRun.code).toBe(2);
    expect(badRun.stderr).toContain('dashboard.port');
    expect(badRun.stderr).toContain('dashboard.colour');
    const unset = join(dir.path, 'unset.yml');
    writeFileSync(unset, 'dashboard:\n  token: ${SLIPWAY_DASHBOARD_TOKEN}\n');
    expect(await run(['--config', unset])).toMatchObject({ code: 2, stderr: expect.stringContaining('SLIPWAY_DASHBOARD_TOKEN') });
    const noToken = await run(['--config', config('no-token', { host: '127.0.0.1', port: 3001 })]);
    expect(noToken).toMatchObject({ code: 2, stdout: '' });
    expect(noToken.stderr).toContain('dashboard.token: required to start the dashboard');
    expect(await run(['--help'])).toMatchObject({ code: 0, stdout: expect.stringContaining('--config PATH') });
  });

  it('starts from the built bin, prints its address, serves, and stops cleanly on SIGTERM with a live stream open', async () => {
    const port = await freePort();
    const token = uniqueName('dashboard-token').padEnd(40, 'x');
    const file = config('ok', { host: '127.0.0.1', port, token: '${TOKEN}' });
    const proc = startProcess([process.execPath, join(root, 'bin', 'slipway-dashboard.js'), '--config', file], { env: { TOKEN: token } });
    try {
      await proc.waitForOutput(new RegExp(`dashboard listening on http://127\\.0\\.0\\.1:${port}`));
      // It listens before Redis is connected (and says 503 on /healthz until then): wait for both, in either order.
      await proc.waitForOutput(/redis is reachable/);
      expect(proc.output()).not.toContain(token);
      const url = `http://127.0.0.1:${port}`;
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      expect((await fetch(`${url}/`, { redirect: 'manual' })).status).toBe(303);
      const events = await fetch(`${url}/api/events`, { headers: { authorization: `Bearer ${token}` } });
      expect(events.headers.get('content-type')).toContain('text/event-stream');
      const started = Date.now();
      expect(await proc.stop('SIGTERM', 10_000)).toBe(0);
      expect(Date.now() - started).toBeLessThan(4000);
      expect(proc.output()).toContain('stopped');
    } finally {
      await proc.stop('SIGKILL');
    }
  });
});
