import type { OutgoingHttpHeaders } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBranchName, isSha } from '@slipway/core/validate';
import { giteaSignature, githubSignature, testStack } from '@slipway/devstack/testing';
import { isSafeCloneUrl } from '@slipway/forges/forge-address';
import { docFixture, githubBranchPush, SECRETS, TEST_APPS } from './fixtures.js';
import { rawRequest, startReceiver, type TestReceiver } from './start-receiver.js';

const SEED = 0x5eed_1234;
const REQUESTS = 400;
const PARALLEL = 8;

/** mulberry32: small, seeded, good enough to pick cases reproducibly. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const chance = (p: number) => next() < p;
  return { next, int, pick, chance };
}

const rnd = prng(SEED);
const NASTY = ['$(reboot)', '`id`', ';rm -rf /', '../../etc/passwd', '--upload-pack=x', 'ñ', '😀', '\u0000', '\n', '%00', 'refs/heads/', '0'.repeat(40), 'f'.repeat(40), 'A'.repeat(40), '', ' ', 'null', '{}', 'x'.repeat(5000)];

function randomPrintable(max: number): string {
  return Array.from({ length: rnd.int(max) }, () => String.fromCharCode(0x20 + rnd.int(0x5f))).join('');
}

function randomValue(depth = 0): unknown {
  switch (rnd.int(depth > 2 ? 5 : 7)) {
    case 0: return rnd.pick(NASTY);
    case 1: return rnd.int(2 ** 31) * (rnd.chance(0.5) ? -1 : 1);
    case 2: return null;
    case 3: return rnd.chance(0.5);
    case 4: return randomPrintable(60);
    case 5: return [randomValue(depth + 1), randomValue(depth + 1)];
    default: return { [randomPrintable(8)]: randomValue(depth + 1), ref: randomValue(depth + 1) };
  }
}

/** Replaces or deletes a value somewhere in the document. */
function mutate(doc: Record<string, unknown>): void {
  let node: Record<string, unknown> = doc;
  for (let depth = 0; depth < 3; depth++) {
    const keys = Object.keys(node);
    if (keys.length === 0) return;
    const key = rnd.pick(keys);
    const child = node[key];
    if (typeof child === 'object' && child !== null && !Array.isArray(child) && rnd.chance(0.6)) {
      node = child as Record<string, unknown>;
      continue;
    }
    if (rnd.chance(0.3)) delete node[key];
    else node[key] = randomValue();
    return;
  }
}

function randomRequest(): { method: string; path: string; headers: OutgoingHttpHeaders; body: Buffer } {
  const provider = rnd.pick(['github', 'gitea', 'gitlab'] as const);
  const path = rnd.chance(0.9) ? `/hooks/${provider}` : rnd.pick(['/hooks/', '/hooks/x', `/${encodeURIComponent(randomPrintable(20))}`, '/healthz', `/hooks/${provider}/x`, '/hooks/%ff']);
  const method = rnd.chance(0.92) ? 'POST' : rnd.pick(['GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD']);

  const base = provider === 'gitlab' ? docFixture('gitlab-push') : provider === 'gitea' ? docFixture('gitea-push') : githubBranchPush();
  for (let i = rnd.int(4); i > 0; i--) mutate(base);
  let text = JSON.stringify(base);
  if (rnd.chance(0.1)) text = text.slice(0, rnd.int(text.length));
  const form = provider !== 'gitlab' && rnd.chance(0.15);
  let body = Buffer.from(form ? `payload=${encodeURIComponent(text)}` : text);
  if (rnd.chance(0.1)) body = Buffer.from(Array.from({ length: rnd.int(4096) }, () => rnd.int(256)));

  const secret = rnd.pick(Object.values(SECRETS));
  const signedGitea = form ? Buffer.from(text) : body;
  const maybe = <T>(value: T, junk = () => randomPrintable(80)) => (rnd.chance(0.85) ? value : rnd.chance(0.5) ? undefined : junk());
  const event = provider === 'gitlab' ? rnd.pick(['Push Hook', 'Push Hook', 'Tag Push Hook', 'Issue Hook']) : rnd.pick(['push', 'push', 'push', 'ping', 'issues']);
  const headers: OutgoingHttpHeaders = {
    'content-type': maybe(form ? 'application/x-www-form-urlencoded' : 'application/json', () => rnd.pick(['text/plain', 'application/json; charset=latin1', randomPrintable(30)])),
  };
  const delivery = maybe(`fuzz-${rnd.int(1e9)}`);
  if (provider === 'github') Object.assign(headers, { 'x-github-event': maybe(event), 'x-github-delivery': delivery, 'x-hub-signature-256': maybe(githubSignature(body, secret)) });
  if (provider === 'gitea') {
    const family = rnd.pick(['gitea', 'forgejo', 'gogs']);
    Object.assign(headers, { [`x-${family}-event`]: maybe(event), [`x-${family}-delivery`]: delivery, [`x-${family}-signature`]: maybe(giteaSignature(signedGitea, secret)) });
  }
  if (provider === 'gitlab') Object.assign(headers, { 'x-gitlab-event': maybe(event), 'x-gitlab-event-uuid': delivery, 'x-gitlab-token': maybe(secret) });
  if (rnd.chance(0.05)) headers['x-github-delivery'] = [String(delivery), 'dup'];
  for (const name of Object.keys(headers)) if (headers[name] === undefined) delete headers[name];
  return { method, path, headers, body };
}

let r: TestReceiver;
beforeAll(async () => {
  r = await startReceiver({ redisUrl: testStack().redis!.url, apps: TEST_APPS, bodyLimitMb: 1 });
});
afterAll(() => r.close());

describe(`fuzz: ${REQUESTS} random requests (seed ${SEED.toString(16)})`, () => {
  it('never answers 5xx, keeps serving, and queues only valid pushes', async () => {
    const statuses = new Map<number, number>();
    for (let sent = 0; sent < REQUESTS; sent += PARALLEL) {
      const batch = Array.from({ length: Math.min(PARALLEL, REQUESTS - sent) }, randomRequest);
      const answers = await Promise.all(batch.map((req) => rawRequest(r.url, req)));
      answers.forEach((res, i) => {
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.status >= 500) throw new Error(`${res.status} for ${batch[i]!.method} ${batch[i]!.path}: ${res.body}`);
      });
    }
    // The mix reached every layer: refusals of each kind, ignores and real pushes.
    for (const status of [200, 400, 401, 415]) expect(statuses.get(status) ?? 0).toBeGreaterThan(0);
    expect((await fetch(`${r.url}/healthz`)).status).toBe(200);
    for (const job of await r.jobs()) {
      expect(isSha(job.sha)).toBe(true);
      expect(isBranchName(job.ref)).toBe(true);
      expect(isSha(job.push!.before)).toBe(true);
      expect(isSafeCloneUrl(job.push!.repository.cloneUrl)).toBe(true);
      expect(job.push!.ref).toBe(`refs/heads/${job.push!.branch}`);
    }
    for (const secret of Object.values(SECRETS)) expect(r.logText()).not.toContain(secret);
    console.log(`fuzz statuses: ${JSON.stringify(Object.fromEntries([...statuses].sort(([a], [b]) => a - b)))}, jobs queued: ${(await r.jobs()).length}`);
  });
});
