import { Agent, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFixtureRepo, type GitHttpServer, startGitHttpServer, startTcpRelay, type TcpRelay, tempDir } from '@slipway/devstack/testing';
import { DeployQueue } from '@slipway/queue/deploy-queue';
import type { JobRecord } from '@slipway/queue/job-types';
import { connectRedis } from '@slipway/queue/redis';
import { createDashboard } from '../src/create-dashboard.js';
import { MAX_LOG_PAGE_BYTES } from '../src/jobs-api.js';
import { dashboardWorld, fakeSha, leaveLogStreamDuringFirstRead, quietLogger, type DashboardWorld } from './dashboard-world.js';
import { sseMessages, type SseMessage } from './sse-client.js';

describe('the JSON API', () => {
  let world: DashboardWorld;
  let auth: Record<string, string>;
  beforeAll(async () => {
    world = await dashboardWorld();
    auth = { authorization: `Bearer ${world.token}` };
  });
  afterAll(async () => {
    await world?.close();
  });

  const json = async <T>(path: string, init: RequestInit = {}) => {
    const res = await fetch(`${world.url}${path}`, { ...init, headers: { ...auth, ...(init.headers as Record<string, string>) } });
    return { status: res.status, body: (await res.json()) as T };
  };
  const seed = async (state: JobRecord['state'], extra: Partial<JobRecord> = {}, app = world.apps[0]!.name) => {
    const job = await world.queue.store.create({ app, sha: fakeSha(Math.floor(Math.random() * 1e6)), ref: 'master', image: null, trigger: 'webhook' });
    if (state !== 'waiting') await world.queue.store.update(job.id, { state, ...extra });
    return job.id;
  };

  it('lists jobs newest first, filtered by app and state, and validates the filters', async () => {
    const app = world.apps[0]!.name;
    const ids = [await seed('completed'), await seed('failed', { error: 'build failed' }), await seed('waiting'), await seed('failed', {}, 'other-app')];
    const all = await json<{ jobs: Array<{ id: string; app: string; state: string }> }>('/api/jobs');
    expect(all.body.jobs.map((j) => j.id)).toEqual([...ids].reverse());
    const failed = await json<{ jobs: Array<{ id: string; error: string }> }>(`/api/jobs?app=${app}&state=failed`);
    expect(failed.body.jobs.map((j) => j.id)).toEqual([ids[1]]);
    expect(failed.body.jobs[0]!.error).toBe('build failed');
    expect((await json(`/api/jobs?limit=2`)).body).toMatchObject({ jobs: [{ id: ids[3] }, { id: ids[2] }] });
    expect((await json(`/api/jobs?state=exploded`)).status).toBe(400);
    expect((await json(`/api/jobs?limit=0`)).status).toBe(400);
    expect((await json(`/api/jobs?app=../x`)).status).toBe(400);
    expect((await json(`/api/jobs/${ids[0]}`)).body).toMatchObject({ job: { id: ids[0], state: 'completed', steps: [{ step: 'queued' }] }, logLines: 0 });
    expect((await json(`/api/jobs/424242`)).status).toBe(404);
    expect((await json(`/api/jobs/abc`)).status).toBe(404);
  });

  it('pages the list by cursor, filters by trigger and searches commits and messages, server-side', async () => {
    const app = world.apps[1]?.name ?? 'other-app';
    const ids: string[] = [];
    for (let n = 0; n < 7; n++) {
      const sha = fakeSha(900_000 + n);
      const job = await world.queue.store.create({
        app, sha, ref: 'master', image: null, trigger: n % 2 ? 'cli' : 'webhook',
        push: n === 2 ? { provider: 'github', delivery: 'x', repository: { fullName: 'acme/x', cloneUrl: 'https://github.com/acme/x.git', htmlUrl: null }, ref: 'refs/heads/master', branch: 'master', sha, before: fakeSha(1), pusher: 'ann', message: 'Speed up the Checkout page', compareUrl: null } : undefined,
      });
      ids.push(job.id);
    }
    type Page = { jobs: Array<{ id: string; sha: string }>; next: string | null };
    const seen: string[] = [];
    for (let before = '', pages = 0; pages < 10; pages++) {
      const { status, body } = await json<Page>(`/api/jobs?app=${app}&limit=3${before ? `&before=${before}` : ''}`);
      expect(status).toBe(200);
      seen.push(...body.jobs.map((j) => j.id));
      if (body.next === null) break;
      before = body.next;
    }
    expect(seen.slice(0, 7)).toEqual([...ids].reverse());
    expect((await json<Page>(`/api/jobs?app=${app}&trigger=cli`)).body.jobs.map((j) => j.id)).toEqual([ids[5], ids[3], ids[1]]);
    expect((await json<Page>(`/api/jobs?q=checkout`)).body.jobs.map((j) => j.id)).toEqual([ids[2]]);
    const sha = fakeSha(900_004);
    expect((await json<Page>(`/api/jobs?q=${sha.slice(0, 10).toUpperCase()}&app=${app}`)).body.jobs.map((j) => j.sha)).toEqual([sha]);
    expect((await json(`/api/jobs?trigger=cron`)).status).toBe(400);
    expect((await json(`/api/jobs?before=abc`)).status).toBe(400);
    expect((await json(`/api/jobs?q=${'x'.repeat(201)}`)).status).toBe(400);
  });

  it('serves a log by ranges and as a download', async () => {
    const id = await seed('completed');
    const lines = Array.from({ length: 12_345 }, (_, i) => `line ${i + 1} \x1b[32mok\x1b[0m`);
    for (let i = 0; i < lines.length; i += 5000) await world.queue.store.appendLog(id, lines.slice(i, i + 5000));
    const page = await json<{ from: number; lines: string[]; total: number }>(`/api/jobs/${id}/log?from=100&limit=3`);
    expect(page.body).toMatchObject({ from: 100, lines: lines.slice(99, 102), total: 12_345 });
    expect((await json(`/api/jobs/${id}/log?from=-1`)).status).toBe(400);

    const res = await fetch(`${world.url}/api/jobs/${id}/log.txt`, { headers: auth });
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(res.headers.get('content-disposition')).toBe(`attachment; filename="${world.apps[0]!.name}-job-${id}.log"`);
    expect(await res.text()).toBe(`${lines.join('\n')}\n`);
  });

  it('serves a log of long lines in pages bounded by bytes, and streams and downloads all of it, line for line', async () => {
    const id = await seed('completed');
    const lines = Array.from({ length: 700 }, (_, i) => `${i + 1} ${'x'.repeat(16_000)}`);
    for (let i = 0; i < lines.length; i += 100) await world.queue.store.appendLog(id, lines.slice(i, i + 100));
    const paged: string[] = [];
    for (let from = 1, pages = 0; from <= lines.length; pages++) {
      expect(pages).toBeLessThan(10);
      const { body } = await json<{ from: number; lines: string[]; total: number }>(`/api/jobs/${id}/log?from=${from}&limit=50000`);
      expect(body.lines.length).toBeGreaterThan(0);
      // About 4 MB: the line that crosses the bound is the last.
      expect(body.lines.join('').length).toBeLessThan(MAX_LOG_PAGE_BYTES + 16_010);
      paged.push(...body.lines);
      from += body.lines.length;
    }
    expect(paged).toEqual(lines);

    const streamed: string[] = [];
    for await (const m of sseMessages(await fetch(`${world.url}/api/jobs/${id}/log/stream`, { headers: auth }))) {
      if (m.event === 'message') streamed.push(JSON.parse(m.data) as string);
    }
    expect(streamed).toEqual(lines);
    const res = await fetch(`${world.url}/api/jobs/${id}/log.txt`, { headers: auth });
    expect(await res.text()).toBe(`${lines.join('\n')}\n`);
  });

  it('downloads a long log without piling up a listener per chunk (no MaxListenersExceededWarning in the dashboard\'s output)', async () => {
    const id = await seed('completed');
    const lines = Array.from({ length: 80_000 }, (_, i) => `line ${i + 1}`);
    for (let i = 0; i < lines.length; i += 10_000) await world.queue.store.appendLog(id, lines.slice(i, i + 10_000));
    const warnings: string[] = [];
    const onWarning = (warning: Error) => void warnings.push(`${warning.name}: ${warning.message}`);
    process.on('warning', onWarning);
    try {
      const res = await fetch(`${world.url}/api/jobs/${id}/log.txt`, { headers: auth });
      expect(await res.text()).toBe(`${lines.join('\n')}\n`);
      // Node emits the warning on the next tick.
      await sleep(50);
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning'))).toEqual([]);
  });

  it('streams a live log over SSE, line number as event id; a reconnect with Last-Event-ID resumes with no gap and no duplicate; a final event ends it', async () => {
    const id = await seed('active');
    const { store } = world.queue;
    // Lines with CR (progress) and what looks like SSE framing must arrive intact.
    const text = (n: number) => (n % 7 === 0 ? `progress ${n}%\rprogress done\r\ndata: fake\n\nid: 9` : `line ${n}`);
    let written = 0;
    const writeSome = async (count: number) => {
      const batch = Array.from({ length: count }, (_, i) => text(written + i + 1));
      written += count;
      await store.appendLog(id, batch);
    };
    await writeSome(30);

    const received: SseMessage[] = [];
    const first = new AbortController();
    const res = await fetch(`${world.url}/api/jobs/${id}/log/stream`, { headers: { ...auth, accept: 'text/event-stream' }, signal: first.signal });
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const writer = (async () => {
      for (let i = 0; i < 10; i++) {
        await sleep(30);
        await writeSome(5);
      }
    })();
    for await (const message of sseMessages(res)) {
      if (message.event === 'message') received.push(message);
      // Drop the connection mid-stream, as a flaky network or a sleeping laptop would.
      if (received.length === 47) {
        first.abort();
        break;
      }
    }
    await writer;
    await expect.poll(() => world.dashboard.openStreams).toBe(0);
    const lastId = received.at(-1)!.id!;
    expect(lastId).toBe('47');

    const finishing = (async () => {
      await sleep(150);
      await writeSome(3);
      await store.finish(id, 'completed');
    })();
    const again = await fetch(`${world.url}/api/jobs/${id}/log/stream?from=1`, { headers: { ...auth, 'last-event-id': lastId } });
    const events: SseMessage[] = [];
    for await (const message of sseMessages(again)) {
      if (message.event === 'message') received.push(message);
      else events.push(message);
    }
    await finishing;
    expect(received.map((m) => Number(m.id))).toEqual(Array.from({ length: written }, (_, i) => i + 1));
    expect(received.map((m) => JSON.parse(m.data) as string)).toEqual(Array.from({ length: written }, (_, i) => text(i + 1)));
    const end = events.at(-1)!;
    expect(end.event).toBe('end');
    expect(end.id).toBeUndefined();
    expect(JSON.parse(end.data)).toEqual({ state: 'completed', error: null, lines: written });
    expect(events.filter((e) => e.event === 'job').map((e) => (JSON.parse(e.data) as { state: string }).state)).toContain('completed');
    expect(world.dashboard.openStreams).toBe(0);
  });

  it('a stream of a finished job sends what is left and the final event at once', async () => {
    const id = await seed('failed', { error: 'health check failed' });
    await world.queue.store.appendLog(id, ['a', 'b', 'c']);
    const res = await fetch(`${world.url}/api/jobs/${id}/log/stream`, { headers: { ...auth, 'last-event-id': '1' } });
    const messages: SseMessage[] = [];
    for await (const m of sseMessages(res)) messages.push(m);
    expect(messages.map((m) => [m.event, m.id])).toEqual([['job', undefined], ['message', '2'], ['message', '3'], ['end', undefined]]);
    expect(JSON.parse(messages.at(-1)!.data)).toEqual({ state: 'failed', error: 'health check failed', lines: 3 });
  });

  it('sends job changes to live lists, and frees everything when the client goes away', async () => {
    const controller = new AbortController();
    const res = await fetch(`${world.url}/api/events`, { headers: auth, signal: controller.signal });
    const seen: SseMessage[] = [];
    const reading = (async () => {
      try {
        for await (const m of sseMessages(res)) {
          seen.push(m);
          if (m.event === 'ready') await seed('waiting');
          if (m.event === 'job') break;
        }
      } finally {
        controller.abort();
      }
    })();
    await reading;
    expect(seen[0]!.event).toBe('ready');
    expect(JSON.parse(seen.at(-1)!.data)).toMatchObject({ app: world.apps[0]!.name, state: 'waiting', step: 'queued' });
    await expect.poll(() => world.dashboard.openStreams).toBe(0);
  });

  it('holds no memory per closed connection: 100 streams opened and dropped leave nothing behind', async () => {
    const id = await seed('active');
    const before = world.dashboard.openStreams;
    await Promise.all(Array.from({ length: 100 }, async (_, i) => {
      const controller = new AbortController();
      const path = i % 2 ? `/api/jobs/${id}/log/stream` : '/api/events';
      const res = await fetch(`${world.url}${path}`, { headers: auth, signal: controller.signal });
      const reader = res.body!.getReader();
      await reader.read();
      controller.abort();
    }));
    await expect.poll(() => world.dashboard.openStreams).toBe(before);
  });

  it('gives back the slot of a log stream whose client left while the job was being read', async () => {
    const id = await seed('active');
    const before = world.dashboard.openStreams;
    await leaveLogStreamDuringFirstRead(world, id, auth);
    expect(world.dashboard.openStreams).toBe(before);
  });

  it('breaks a log stream off when Redis stops answering on an open connection, and gives its slot back', async () => {
    // A dashboard of its own, whose Redis connection goes through a relay that can stop passing Redis's answers.
    let answering = true;
    const redisUrl = new URL(world.config.redis);
    const relay = await startTcpRelay({ host: redisUrl.hostname, port: Number(redisUrl.port) }, {
      toClient: (chunk, { client }) => {
        if (answering) client.write(chunk);
      },
    });
    const redis = connectRedis(Object.assign(new URL(world.config.redis), { port: String(relay.port) }).href, 'producer');
    await new Promise((resolve) => redis.once('ready', resolve));
    const queue = new DeployQueue({ redis, prefix: world.config.queue.prefix, attempts: 1, backoffMs: 1000 });
    const other = createDashboard({ config: world.config, queue, redis, etcd: world.etcd, docker: world.docker, logger: quietLogger });
    const server = other.serve(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      const id = await seed('active');
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/api/jobs/${id}/log/stream`, { headers: auth });
      expect(res.status).toBe(200);
      const reader = res.body!.getReader();
      await reader.read();
      expect(other.openStreams).toBe(1);
      answering = false;
      const ended = (async () => {
        while (!(await reader.read()).done);
        return 'ended';
      })();
      // Its next poll's read gives up after 3 s; before, the stream stayed open on its heartbeats for as long as Redis kept silent.
      expect(await Promise.race([ended, sleep(10_000, 'still open')])).toBe('ended');
      await expect.poll(() => other.openStreams).toBe(0);
    } finally {
      other.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      answering = true;
      await queue.close();
      redis.disconnect();
      relay.cut();
    }
  });

  it('drops a live-events reader that stops reading: its connection is closed, not left holding what was buffered', async () => {
    const before = world.dashboard.openStreams;
    let held: import('node:net').Socket | undefined;
    const onRequest = (req: import('node:http').IncomingMessage) => {
      // Listened to after express's own handler, which has taken the /api mount off req.url by then.
      if (req.url === '/events') held = req.socket;
    };
    world.server.on('request', onRequest);
    const client = request(`${world.url}/api/events`, { headers: auth }, (res) => {
      res.pause(); // Never reads: what the server sends piles up in the sockets' buffers, then in the response's.
      res.on('error', () => {});
    });
    client.on('error', () => {});
    client.end();
    try {
      await expect.poll(() => world.dashboard.openStreams).toBe(before + 1);
      // 400 events of 64 KB: 25 MB, past what loopback's socket buffers take and the 1 MB the server keeps for a reader.
      const big = 'x'.repeat(64 * 1024);
      for (let n = 0; n < 400; n++) await world.queue.redis.publish(world.queue.store.keys.events, JSON.stringify({ id: String(n), app: big, state: 'waiting' }));
      await expect.poll(() => world.dashboard.openStreams).toBe(before);
      // Ended instead, the connection would stay open until the reader took the megabytes buffered for it, that is never.
      await expect.poll(() => held?.destroyed, { timeout: 5000 }).toBe(true);
    } finally {
      world.server.off('request', onRequest);
      client.destroy();
    }
  });

  it('drops a log stream whose reader takes nothing for a while: its slot and its socket are not held for as long as the session lives', async () => {
    const other = createDashboard({ config: world.config, queue: world.queue, redis: world.redis, etcd: world.etcd, docker: world.docker, logger: quietLogger, stalledReaderMs: 500 });
    const server = other.serve(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const id = await seed('active');
    const line = 'z'.repeat(1000);
    for (let n = 0; n < 4; n++) await world.queue.store.appendLog(id, Array.from({ length: 5000 }, () => line));
    let held: import('node:net').Socket | undefined;
    server.on('request', (req: import('node:http').IncomingMessage) => {
      held = req.socket;
    });
    const client = request(`http://127.0.0.1:${(server.address() as AddressInfo).port}/api/jobs/${id}/log/stream`, { headers: auth }, (res) => {
      res.pause(); // Never reads: 20 MB of log waits for it.
      res.on('error', () => {});
    });
    client.on('error', () => {});
    client.end();
    try {
      await expect.poll(() => other.openStreams).toBe(1);
      await expect.poll(() => other.openStreams, { timeout: 10_000 }).toBe(0);
      await expect.poll(() => held?.destroyed, { timeout: 5000 }).toBe(true);
    } finally {
      client.destroy();
      other.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('a log download cut short (the job trimmed, Redis away) fails, never ends as if complete', async () => {
    const id = await seed('completed');
    const line = 'y'.repeat(1000);
    for (let n = 0; n < 8; n++) await world.queue.store.appendLog(id, Array.from({ length: 5000 }, () => line));
    const res = await fetch(`${world.url}/api/jobs/${id}/log.txt`, { headers: auth });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    await reader.read();
    // 40 MB: the server is still some chunks from the end, waiting for this reader.
    await world.queue.redis.del(world.queue.store.keys.log(id));
    const rest = (async () => {
      for (;;) if ((await reader.read()).done) return 'ended as if complete';
    })();
    await expect(rest).rejects.toThrow();
  });

  it('re-runs a failed job and cancels a waiting one, as the CLI does', async () => {
    const failed = await seed('failed', { error: 'boom' });
    const retry = await json<{ job: { id: string; retryOf: string; state: string; trigger: string } }>(`/api/jobs/${failed}/retry`, { method: 'POST' });
    expect(retry.status).toBe(201);
    expect(retry.body.job).toMatchObject({ retryOf: failed, state: 'waiting', trigger: 'retry' });
    expect((await world.queue.store.mustGet(failed)).retriedBy).toBe(retry.body.job.id);
    expect((await json(`/api/jobs/${retry.body.job.id}/retry`, { method: 'POST' })).body).toMatchObject({ error: 'not_retryable' });

    const cancel = await json<{ job: { state: string }; cancelRequested: boolean }>(`/api/jobs/${retry.body.job.id}/cancel`, { method: 'POST' });
    expect(cancel.status).toBe(202);
    expect(cancel.body).toMatchObject({ job: { state: 'cancelled' }, cancelRequested: false });
    expect((await json(`/api/jobs/${retry.body.job.id}/cancel`, { method: 'POST' })).body).toMatchObject({ error: 'job_finished' });
  });

  it('deploys a ref of an app (resolved against its repository, as `slipway deploy` does) and refuses unknown apps and refs', async () => {
    const app = world.apps[0]!;
    const deploy = await json<{ job: { sha: string; ref: string; trigger: string; state: string } }>('/api/deploy', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ app: app.name, ref: 'master' }),
    });
    expect(deploy.status).toBe(201);
    expect(deploy.body.job).toMatchObject({ sha: app.repo.sha, ref: 'master', trigger: 'cli', state: 'waiting' });
    const post = (body: unknown) => json<{ error: string }>('/api/deploy', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect(await post({ app: 'nope' })).toMatchObject({ status: 404, body: { error: 'unknown_app' } });
    expect(await post({ app: app.name, ref: 'no-such-branch' })).toMatchObject({ status: 422, body: { error: 'unknown_ref' } });
    expect(await post({ app: app.name, ref: '--upload-pack=x' })).toMatchObject({ status: 400 });
    expect(await post([])).toMatchObject({ status: 400 });
  });

  it('rolls back to a kept release (what `slipway rollback` does) and says when there is none', async () => {
    const app = world.apps[0]!;
    const none = await json<{ error: string }>('/api/rollback', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ app: app.name }) });
    expect(none.status).toBe(404);
    expect(none.body.error).toBe('release_not_found');
  });

  it('answers HEAD of a stream and ends it (a request after it on the same connection is answered), and refuses a bad app filter on events', async () => {
    const id = await seed('active');
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const ask = (method: string, path: string) => new Promise<number>((resolve, reject) => {
      const req = request(`${world.url}${path}`, { method, headers: auth, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      });
      req.on('error', reject);
      req.setTimeout(3000, () => req.destroy(new Error(`${method} ${path}: no answer within 3 s`)));
      req.end();
    });
    try {
      expect(await ask('HEAD', '/api/events')).toBe(200);
      expect(await ask('HEAD', `/api/jobs/${id}/log/stream`)).toBe(200);
      expect(await ask('HEAD', '/api/jobs/987654/log/stream')).toBe(404);
      expect(await ask('GET', '/api/app-names')).toBe(200);
    } finally {
      agent.destroy();
    }
    expect((await json<{ error: string }>('/api/events?app=Not_An_App')).status).toBe(400);
  });

  it('shows every configured app on the overview, with what is live and its last deploy', async () => {
    const { body } = await json<{ apps: Array<{ name: string; status: { release: unknown; containers: unknown[] } | null; statusError: string | null; lastJob: { id: string } | null }> }>('/api/apps');
    expect(body.apps.map((a) => a.name)).toEqual([world.apps[0]!.name]);
    const [app] = body.apps;
    expect(app!.statusError).toBeNull();
    expect(app!.status).toMatchObject({ release: null, containers: [] });
    expect(app!.lastJob).not.toBeNull();
    expect((await json('/api/apps/nope')).status).toBe(404);
    // A deploy running with a newer push waiting behind it: both are on the card, the running one not hidden.
    const running = await seed('active', { startedAt: new Date().toISOString(), step: 'build' });
    const waiting = await seed('waiting');
    const card = (await json<{ app: { lastJob: { id: string } | null; running: { id: string; state: string } | null } }>(`/api/apps/${app!.name}`)).body.app;
    expect(card.lastJob?.id).toBe(waiting);
    expect(card.running).toMatchObject({ id: running, state: 'active' });
    expect((await json(`/api/app-names`)).body).toEqual({ apps: [{ name: app!.name, branch: 'master' }] });
  });
});

describe('a deploy request that ends before its ref is resolved', () => {
  const own = tempDir('slipway-dashboard-slow-git-');
  let git: GitHttpServer | undefined;
  let relay: TcpRelay | undefined;
  let world: DashboardWorld | undefined;
  afterAll(async () => {
    await world?.close();
    relay?.cut();
    await git?.close();
    own.remove();
  });

  it('queues nothing: the operator told "try again" (or gone) does not get a second deploy', async () => {
    await createFixtureRepo(own.path, { version: 'slow v1', name: 'slow' });
    git = await startGitHttpServer({ root: own.path });
    // A repository that answers, slowly: each request reaches it 700 ms late.
    relay = await startTcpRelay({ host: '127.0.0.1', port: Number(new URL(git.url).port) }, {
      toServer: (chunk, connection) => void setTimeout(() => connection.server.write(chunk), 700),
    });
    world = await dashboardWorld({ app: { repo: `http://127.0.0.1:${relay.port}/slow.git` } });
    const app = world.apps[0]!.name;
    const asked = fetch(`${world.url}/api/deploy`, {
      method: 'POST', body: JSON.stringify({ app }), signal: AbortSignal.timeout(300),
      headers: { authorization: `Bearer ${world.token}`, 'content-type': 'application/json' },
    });
    await expect(asked).rejects.toThrow();
    // Long enough for the ref to have been resolved and the job queued, had the request gone on without its asker.
    await sleep(6000);
    expect(await world.queue.store.list({ app })).toEqual([]);
    // The same request, waited for, is queued: the slow repository resolves.
    const waited = await fetch(`${world.url}/api/deploy`, {
      method: 'POST', body: JSON.stringify({ app }),
      headers: { authorization: `Bearer ${world.token}`, 'content-type': 'application/json' },
    });
    expect(waited.status).toBe(201);
    const { job } = (await waited.json()) as { job: { id: string } };
    expect((await world.queue.store.list({ app })).map((j) => j.id)).toEqual([job.id]);
  }, 40_000);
});
