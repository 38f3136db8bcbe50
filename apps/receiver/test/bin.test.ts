import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '@slipway/core/run-command';
import { freePort, githubSignature, tempDir, testStack, uniqueName, waitFor } from '@slipway/devstack/testing';
import { connectRedis } from '@slipway/queue/redis';
import { main } from '../src/main.js';
import { githubBranchPush, SECRETS } from './fixtures.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin', 'slipway-receiver.js');
const dir = tempDir('slipway-receiver-bin-');
const badConfig = join(dir.path, 'bad.yml');
writeFileSync(badConfig, 'apps:\n  hello:\n    repo: --upload-pack=x\n    colour: blue\n');

beforeAll(async () => {
  // The bin runs from dist: build this package (its dependencies are built by turbo's ^build).
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  await runCommand([process.execPath, tsc, '-p', 'tsconfig.build.json'], { cwd: root });
}, 120_000);
afterAll(() => dir.remove());

function capture() {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (c: Buffer) => (text += c.toString()));
  return { stream, text: () => text };
}

function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [bin, ...args], { cwd: dir.path, env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

describe('main()', () => {
  it('a bad config: its error on stderr, exit 2, no stack trace', async () => {
    const out = capture();
    const err = capture();
    expect(await main(['--config', badConfig], {}, { stdout: out.stream, stderr: err.stream })).toBe(2);
    expect(err.text()).toContain(`${badConfig}: apps.hello.`);
    expect(err.text()).not.toMatch(/\n\s+at /);
    expect(out.text()).toBe('');
  });

  it.each([
    [['--bogus'], 2],
    [['--config'], 2],
    [['extra'], 2],
    [['--help'], 0],
  ])('%j → exit %i with the usage', async (args, code) => {
    const out = capture();
    const err = capture();
    expect(await main(args, {}, { stdout: out.stream, stderr: err.stream })).toBe(code);
    expect((code === 0 ? out : err).text()).toContain('usage: slipway-receiver');
  });
});

describe('the slipway-receiver bin', () => {
  it.each([
    ['--config with a bad file', ['--config', badConfig], {}, 'apps.hello.repo'],
    ['$SLIPWAY_CONFIG with a bad file', [], { SLIPWAY_CONFIG: badConfig }, 'apps.hello.colour'],
    ['no ./slipway.yml', [], {}, 'cannot read config: file not found'],
  ])('%s: exit 2, the message, no stack', async (_name, args, env, message) => {
    const p = run(args, env);
    expect(await p.exited).toBe(2);
    expect(p.stderr()).toContain(message);
    expect(p.stderr()).not.toMatch(/\n\s+at /);
  });

  /** A config for one receiver on its own webhook and metrics ports, and its queue prefix (deleted after the test). */
  async function receiverConfig(name: string, ports: { port: number; metrics: number }) {
    const prefix = uniqueName('bin');
    prefixes.push(prefix);
    const config = join(dir.path, `${name}.yml`);
    writeFileSync(config, [
      `redis: ${testStack().redis!.url}`,
      `queue: { prefix: ${prefix} }`,
      `receiver: { host: 127.0.0.1, port: ${ports.port}, metrics: "127.0.0.1:${ports.metrics}" }`,
      'apps:',
      '  hello:',
      '    repo: https://github.com/Codertocat/Hello-World.git',
      '    secret: ${HELLO_SECRET}',
      '',
    ].join('\n'));
    return config;
  }
  const prefixes: string[] = [];
  const running: Array<ReturnType<typeof run>> = [];
  afterEach(async () => {
    for (const p of running.splice(0)) p.child.kill('SIGKILL');
    const redis = connectRedis(testStack().redis!.url, 'producer');
    await new Promise((resolve) => redis.once('ready', resolve));
    for (const prefix of prefixes.splice(0)) {
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length) await redis.del(...keys);
    }
    redis.disconnect();
  });

  async function push(port: number, secret: string = SECRETS.hello) {
    const body = JSON.stringify(githubBranchPush());
    return fetch(`http://127.0.0.1:${port}/hooks/github`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': uniqueName('d'), 'x-hub-signature-256': githubSignature(body, secret) },
      body,
    });
  }

  it('listens where the config says, queues a push, serves /metrics on its own listener only, and stops cleanly on SIGTERM', async () => {
    const [port, metrics] = [await freePort(), await freePort()];
    const p = run(['--config', await receiverConfig('good', { port, metrics })], { HELLO_SECRET: SECRETS.hello });
    running.push(p);
    await waitFor('the receiver to listen', () => p.stdout().includes(`listening on http://127.0.0.1:${port}`), { timeoutMs: 20_000 });
    const res = await push(port);
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ job: expect.any(String), app: 'hello' });
    expect((await push(port, 'a-wrong-secret-0123456789')).status).toBe(401);

    const scrape = await waitFor('the metrics listener', () => fetch(`http://127.0.0.1:${metrics}/metrics`).catch(() => null), { timeoutMs: 10_000 });
    expect(scrape.status).toBe(200);
    const text = await scrape.text();
    expect(text).toContain('slipway_webhooks_received_total{provider="github",outcome="queued"} 1');
    expect(text).toContain('slipway_webhooks_received_total{provider="github",outcome="rejected_4xx"} 1');
    expect(text).toContain('process_resident_memory_bytes');
    // The webhook port faces the forges: it serves no metrics.
    const onWebhookPort = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(onWebhookPort.status).toBe(404);
    expect(await onWebhookPort.text()).not.toContain('slipway_webhooks_received_total');

    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    expect(p.stdout()).toContain('"msg":"stopped"');
    expect(p.stdout()).not.toContain(SECRETS.hello);
  });

  it('a second receiver whose metrics port is taken serves webhooks anyway, no metrics, and says so', async () => {
    const metrics = await freePort();
    const [first, second] = [await freePort(), await freePort()];
    const a = run(['--config', await receiverConfig('first', { port: first, metrics })], { HELLO_SECRET: SECRETS.hello });
    running.push(a);
    await waitFor('the first receiver\'s metrics', () => fetch(`http://127.0.0.1:${metrics}/metrics`).then((r) => r.ok, () => false), { timeoutMs: 20_000 });
    const b = run(['--config', await receiverConfig('second', { port: second, metrics })], { HELLO_SECRET: SECRETS.hello });
    running.push(b);
    await waitFor('the second receiver to listen', () => b.stdout().includes(`listening on http://127.0.0.1:${second}`), { timeoutMs: 20_000 });
    await waitFor('the second receiver to say its metrics port is taken', () => b.stdout().includes(`metrics address 127.0.0.1:${metrics} is taken`), { timeoutMs: 5_000 });

    // Listening comes before Redis is connected, and until it is, webhooks are answered 503 (the contract).
    await waitFor('the second receiver to reach Redis', () => fetch(`http://127.0.0.1:${second}/healthz`).then((r) => r.ok, () => false), { timeoutMs: 20_000 });
    expect((await push(second)).status).toBe(202);
    // What the metrics port serves is the first receiver's: the second's push is not counted there.
    expect(await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text()).not.toContain('outcome="queued"');
    expect(b.child.exitCode).toBeNull();
  });
});
