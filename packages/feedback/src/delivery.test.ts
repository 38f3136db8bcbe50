import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createLogger } from '@slipway/core/logger';
import { BackgroundDelivery, backoffDelay, DeliveryError, sendHttpRequest } from './delivery.js';

const policy = { baseDelayMs: 1000, maxDelayMs: 30_000 };

describe('backoffDelay', () => {
  it('doubles from the base, honours Retry-After, never passes the cap', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(policy, n))).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000]);
    expect(backoffDelay(policy, 1, 5000)).toBe(5000);
    // Never sooner than asked: what asks for more than MAX_RETRY_AFTER_MS is given up on instead (attemptAll).
    expect(backoffDelay(policy, 1, 3_600_000)).toBe(3_600_000);
    expect(backoffDelay(policy, 6, 1000)).toBe(30_000);
  });
});

describe('sendHttpRequest', () => {
  const post = (url: string) => ({ method: 'POST' as const, url, headers: { 'content-type': 'application/json' }, body: '{}' });
  const failure = (promise: Promise<void>) => promise.then(() => null, (err: unknown) => err as Error);

  it('names a target by its origin only, even when fetch quotes the whole URL', async () => {
    const err = await failure(sendHttpRequest(post('https://hook:hunter2-password@hooks.example/T000/B000/secret-path'), AbortSignal.timeout(5000)));
    expect(err?.message).toMatch(/^POST https:\/\/hooks\.example: /);
    expect(err?.message).not.toContain('hunter2');
    expect(err?.message).not.toContain('secret-path');
  });

  it('never quotes a credential header fetch refuses (a token with a line break, read from a file)', async () => {
    const request = { ...post('http://127.0.0.1:9/statuses'), headers: { authorization: 'token ghp_SecretTokenValue123\nsecond-line-of-the-file', 'content-type': 'application/json' } };
    const err = await failure(sendHttpRequest(request, AbortSignal.timeout(5000)));
    expect(err?.message).toMatch(/^POST http:\/\/127\.0\.0\.1:9: /);
    expect(err?.message).not.toContain('ghp_SecretTokenValue123');
    expect(err?.message).not.toContain('second-line-of-the-file');
  });

  it('a refusal that echoes the request does not carry its token into the error', async () => {
    const server = createServer((req, res) => {
      res.writeHead(400, { 'content-type': 'text/plain' });
      // The token straddles the 200 characters the excerpt keeps.
      res.end(`bad request; ${'x'.repeat(150)} you sent authorization: ${req.headers.authorization}`);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const request = { ...post(`http://127.0.0.1:${port}/statuses`), headers: { authorization: 'token ghp_EchoedTokenValue123', 'content-type': 'application/json' } };
      const err = await failure(sendHttpRequest(request, AbortSignal.timeout(10_000)));
      expect(err?.message).toMatch(/^POST http:\/\/127\.0\.0\.1:\d+ answered 400: bad request; x+ you sent authorization: /);
      expect(err?.message).not.toMatch(/ghp_|EchoedToken/);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('reads only the start of a refusal, however much the target sends', async () => {
    const server = createServer((_req, res) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      const chunk = 'x'.repeat(64 * 1024);
      const pour = () => {
        while (res.write(chunk));
        res.once('drain', pour);
      };
      pour();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const err = await failure(sendHttpRequest(post(`http://127.0.0.1:${port}/hook`), AbortSignal.timeout(10_000)));
      expect(err?.message).toBe(`POST http://127.0.0.1:${port} answered 500: ${'x'.repeat(200)}`);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe('rate limits', () => {
  const logger = createLogger({ name: 'test', level: 'silent' });

  it('a 403 that says it is a rate limit (GitHub) is retried after the reset it names; a plain 403 is not', async () => {
    const reset = Math.floor(Date.now() / 1000) + 60;
    let limited = true;
    const server = createServer((_req, res) => {
      res.writeHead(403, limited ? { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(reset) } : {});
      res.end('{"message":"API rate limit exceeded"}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/statuses`;
      const send = () => sendHttpRequest({ method: 'POST', url, headers: {}, body: '{}' }, AbortSignal.timeout(5000)).then(() => null, (err: unknown) => err as DeliveryError);
      const err = await send();
      expect(err).toMatchObject({ retryable: true, httpStatus: 403 });
      expect(err?.message).toContain('answered 403 (rate limited)');
      expect(err?.retryAfterMs).toBeGreaterThan(50_000);
      expect(err?.retryAfterMs).toBeLessThanOrEqual(60_000);
      limited = false;
      expect(await send()).toMatchObject({ retryable: false, httpStatus: 403 });
    } finally {
      server.close();
    }
  });

  it('gives up on a target that asks to wait longer than MAX_RETRY_AFTER_MS, rather than asking again sooner', async () => {
    const delivery = new BackgroundDelivery({ logger, retry: { attempts: 5, baseDelayMs: 10 } });
    let sends = 0;
    const outcomes: string[] = [];
    delivery.deliver({
      key: 'limited', target: 'github', what: 'commit status', context: {}, settled: (outcome) => void outcomes.push(outcome),
      send: async () => {
        sends++;
        throw new DeliveryError('answered 429', { retryable: true, httpStatus: 429, retryAfterMs: 3_600_000 });
      },
    });
    await delivery.idle();
    expect([sends, outcomes]).toEqual([1, ['failed']]);
  });
});

describe('BackgroundDelivery.close', () => {
  const logger = createLogger({ name: 'test', level: 'silent' });
  const task = (key: string, send: (signal: AbortSignal) => Promise<void>) => ({ key, target: 'webhook', what: 'notification', context: {}, send });

  it('is bounded: a send that ignores its abort is left behind, and a try still waiting for its turn never starts', async () => {
    let sends = 0;
    const delivery = new BackgroundDelivery({ logger, concurrency: 1 });
    // Never settles, whatever its signal says.
    delivery.deliver(task('deaf', () => {
      sends++;
      return new Promise<void>(() => {});
    }));
    delivery.deliver(task('queued', async () => {
      sends++;
    }));
    const started = Date.now();
    await delivery.close(200);
    expect(Date.now() - started).toBeLessThan(2000);
    await new Promise((r) => setTimeout(r, 100));
    expect(sends, 'the queued try never went out').toBe(1);
  });
});

describe('BackgroundDelivery: what is still true', () => {
  const logger = createLogger({ name: 'test', level: 'silent' });

  it('asks stillWanted once a request slot is free, right before sending: a status queued behind a slow forge is not sent once it is false', async () => {
    const delivery = new BackgroundDelivery({ logger, concurrency: 1 });
    let finishSlow = () => {};
    const sent: string[] = [];
    delivery.deliver({ key: 'slow', target: 'github', what: 'commit status', context: {}, send: () => new Promise<void>((resolve) => (finishSlow = resolve)) });
    // Queued while the job waits; the job has started (or ended) by the time a slot frees.
    let waiting = true;
    delivery.deliver({ key: 'pending', target: 'github', what: 'commit status', context: {}, stillWanted: async () => waiting, send: async () => void sent.push('pending') });
    await new Promise((r) => setTimeout(r, 50));
    waiting = false;
    finishSlow();
    await delivery.idle();
    expect(sent).toEqual([]);
  });

  it('a status whose try had no answer in time, then moot, is followed all the same (the forge may have applied it late); one refused is not', async () => {
    const delivery = new BackgroundDelivery({ logger, concurrency: 1, retry: { attempts: 3, baseDelayMs: 10, timeoutMs: 50 } });
    const followed: string[] = [];
    let wanted = true;
    // The forge takes it, and answers after our timeout: a 'pending' it shows late, over the job's end.
    delivery.deliver({
      key: 'late', target: 'gitlab', what: 'commit status', context: {}, stillWanted: async () => wanted, delivered: () => void followed.push('late'),
      send: async (signal) => {
        wanted = false;
        await new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new DeliveryError('no answer in time', { retryable: true })), { once: true }));
      },
    });
    delivery.deliver({
      key: 'refused', target: 'gitlab', what: 'commit status', context: {}, delivered: () => void followed.push('refused'),
      send: async () => {
        throw new DeliveryError('answered 401', { retryable: false, httpStatus: 401 });
      },
    });
    await delivery.idle();
    expect(followed).toEqual(['late']);
  });

  it('takes a stillWanted that does not answer within 2 s for "cannot tell" (sent): a hung Redis holds no request slot for ever', async () => {
    const delivery = new BackgroundDelivery({ logger, concurrency: 1 });
    const sent: string[] = [];
    delivery.deliver({ key: 'hung', target: 'github', what: 'commit status', context: {}, stillWanted: () => new Promise<boolean>(() => {}), send: async () => void sent.push('hung') });
    delivery.deliver({ key: 'other', target: 'slack', what: 'notification', context: {}, send: async () => void sent.push('other') });
    const started = Date.now();
    await delivery.idle();
    expect(sent).toEqual(['hung', 'other']);
    expect(Date.now() - started).toBeLessThan(4_000);
  });
});

describe('BackgroundDelivery.close, while a task is asked whether it is still true', () => {
  const logger = createLogger({ name: 'test', level: 'silent' });

  it('starts no send once close has given up on tries, though stillWanted answers yes after that', async () => {
    const delivery = new BackgroundDelivery({ logger, concurrency: 1 });
    let sends = 0;
    delivery.deliver({
      key: 'late', target: 'github', what: 'commit status', context: {},
      stillWanted: () => new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 500)),
      send: async () => void sends++,
    });
    await delivery.close(100);
    await new Promise((r) => setTimeout(r, 700));
    expect(sends).toBe(0);
  });
});
