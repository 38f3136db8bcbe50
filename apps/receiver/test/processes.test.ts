import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '@slipway/core/run-command';
import { freePort, githubSignature, tempDir, testStack, uniqueName, waitFor } from '@slipway/devstack/testing';
import { connectRedis, type Redis } from '@slipway/queue/redis';
import { githubBranchPush, SECRETS } from './fixtures.js';
import { rawRequest } from './start-receiver.js';

// receiver.processes: 2 — the bin as an operator runs it, two receiver processes behind one port.
const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin', 'slipway-receiver.js');
const dir = tempDir('slipway-receiver-processes-');
const prefix = uniqueName('procs');
let port: number;
let metrics: number;
let redis: Redis;
let receiver: ReturnType<typeof spawn>;
let stdout = '';
let stderr = '';

beforeAll(async () => {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  await runCommand([process.execPath, tsc, '-p', 'tsconfig.build.json'], { cwd: root });
  [port, metrics] = [await freePort(), await freePort()];
  const config = join(dir.path, 'slipway.yml');
  writeFileSync(config, [
    `redis: ${testStack().redis!.url}`,
    `queue: { prefix: ${prefix} }`,
    `receiver: { host: 127.0.0.1, port: ${port}, metrics: "127.0.0.1:${metrics}", processes: 2 }`,
    'apps:',
    '  hello:',
    '    repo: https://github.com/Codertocat/Hello-World.git',
    `    secret: ${SECRETS.hello}`,
    '',
  ].join('\n'));
  receiver = spawn(process.execPath, [bin, '--config', config], { cwd: dir.path, env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
  receiver.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  receiver.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  redis = connectRedis(testStack().redis!.url, 'producer');
  await waitFor('two receiver processes listening', () => listening().length === 2, { timeoutMs: 30_000 });
}, 120_000);

afterAll(async () => {
  if (receiver.exitCode === null) receiver.kill('SIGKILL');
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
  dir.remove();
});

const lines = () => stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
/** Pids of the processes the primary saw listening, in order. */
const listening = () => lines().filter((l) => l.msg === 'receiver process listening').map((l) => l.process as number);

/** A signed push of `sha` on a connection of its own (the primary hands connections, not requests, to processes). */
async function push(delivery: string, sha: string) {
  const body = JSON.stringify({ ...githubBranchPush(), after: sha });
  const res = await rawRequest(`http://127.0.0.1:${port}`, {
    path: '/hooks/github',
    headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': delivery, 'x-hub-signature-256': githubSignature(body, SECRETS.hello) },
    body,
  });
  return { status: res.status, body: JSON.parse(res.body) as Record<string, unknown>, requestId: res.headers['x-request-id'] as string };
}

const sha = (n: number) => `${n.toString(16).padStart(8, '0')}${'c'.repeat(32)}`;
const jobCount = async () => (await redis.zrange(`${prefix}:jobs:all`, 0, -1)).length;
/** The pid of the process whose summary line carries this request id. */
const answeredBy = (requestId: string) => lines().find((l) => l.msg === 'request' && l.reqId === requestId)?.pid as number | undefined;

describe('receiver.processes: 2', () => {
  it('both processes answer webhooks, each push queued once: one job per delivery, /metrics counting them all', async () => {
    const before = await jobCount();
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => push(uniqueName('d'), sha(i + 1))));
    expect(answers.map((a) => a.status)).toEqual(Array(12).fill(202));
    expect(await jobCount()).toBe(before + 12);
    await waitFor('every summary line', () => answers.every((a) => answeredBy(a.requestId) !== undefined), { timeoutMs: 5_000 });
    expect(new Set(answers.map((a) => answeredBy(a.requestId)))).toEqual(new Set(listening()));

    const scraped = await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text();
    expect(scraped).toContain('slipway_webhooks_received_total{provider="github",outcome="queued"} 12');
  });

  it('the duplicate guard holds across processes: one delivery sent at once on many connections queues one job; so does one commit under many delivery ids', async () => {
    const before = await jobCount();
    const delivery = uniqueName('d');
    const same = await Promise.all(Array.from({ length: 10 }, () => push(delivery, sha(100))));
    expect(same.map((a) => a.status).sort()).toEqual([200, 200, 200, 200, 200, 200, 200, 200, 200, 202]);
    const job = same.find((a) => a.status === 202)!.body.job;
    for (const a of same.filter((x) => x.status === 200)) expect(a.body).toEqual({ duplicate: delivery, jobs: [{ job, app: 'hello' }] });

    const replays = await Promise.all(Array.from({ length: 10 }, () => push(uniqueName('d'), sha(101))));
    expect(replays.filter((a) => a.status === 202)).toHaveLength(1);
    expect(await jobCount()).toBe(before + 2);
    await waitFor('every summary line', () => [...same, ...replays].every((a) => answeredBy(a.requestId) !== undefined), { timeoutMs: 5_000 });
    expect(new Set([...same, ...replays].map((a) => answeredBy(a.requestId))).size).toBe(2);
  });

  it('a process that dies is replaced, and webhooks go on being answered', async () => {
    const [victim, survivor] = listening();
    process.kill(victim!, 'SIGKILL');
    await waitFor('a third process listening', () => listening().length === 3, { timeoutMs: 20_000 });
    const replacement = listening()[2]!;
    expect(lines().some((l) => l.msg === 'a receiver process died; starting another' && l.process === victim)).toBe(true);

    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => push(uniqueName('d'), sha(200 + i))));
    expect(answers.map((a) => a.status)).toEqual(Array(8).fill(202));
    await waitFor('every summary line', () => answers.every((a) => answeredBy(a.requestId) !== undefined), { timeoutMs: 5_000 });
    expect(new Set(answers.map((a) => answeredBy(a.requestId)))).toEqual(new Set([survivor, replacement]));
  });

  it('SIGTERM to all of them at once (as systemd stops a unit), and again to the primary: each process finishes and says so, the primary exits 0', async () => {
    const exited = new Promise<number | null>((resolve) => receiver.once('exit', (code) => resolve(code)));
    const processes = listening().slice(-2);
    receiver.kill('SIGTERM');
    for (const pid of processes) process.kill(pid, 'SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 50));
    receiver.kill('SIGTERM');
    expect(await exited).toBe(0);
    for (const pid of listening()) expect(() => process.kill(pid, 0)).toThrow();
    const stopped = lines().filter((l) => l.msg === 'stopped').map((l) => l.pid);
    expect(new Set(stopped)).toEqual(new Set([...processes, receiver.pid]));
    expect(stderr).toBe('');
    expect(stdout).not.toContain(SECRETS.hello);
  });
});
