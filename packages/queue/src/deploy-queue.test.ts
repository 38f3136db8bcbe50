import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTcpRelay, testStack, uniqueName } from '@slipway/devstack/testing';
import { UnavailableError } from '@slipway/core/slipway-error';
import { bullJobId, DeployQueue } from './deploy-queue.js';
import { followJob } from './follow-job.js';
import { publicJob, type DeployRequest } from './job-types.js';
import { connectRedis, type Redis } from './redis.js';

const sha = (n: number) => n.toString(16).padStart(40, '0');
const request = (app: string, n: number): DeployRequest => ({ app, sha: sha(n), ref: 'master', image: null, trigger: 'cli' });

describe('DeployQueue', () => {
  let redis: Redis;
  let queue: DeployQueue;
  const prefix = uniqueName('q');

  beforeAll(async () => {
    redis = connectRedis(testStack().redis!.url, 'producer');
    await new Promise((resolve) => redis.once('ready', resolve));
    queue = new DeployQueue({ redis, prefix, attempts: 3, backoffMs: 100 });
  });
  afterAll(async () => {
    const stale = await redis.keys(`${prefix}:*`);
    if (stale.length) await redis.del(...stale);
    await queue.close();
    redis.disconnect();
  });

  it('enqueues a record and its BullMQ job, listed newest first', async () => {
    const a = await queue.enqueue(request('alpha', 1));
    const b = await queue.enqueue(request('beta', 2));
    const c = await queue.enqueue(request('alpha', 3));
    expect(Number(b.id)).toBe(Number(a.id) + 1);
    const job = await queue.bull.getJob(bullJobId(c.id));
    expect(job?.data).toEqual({ id: c.id });
    expect(job?.opts.attempts).toBe(3);
    expect((await queue.store.list()).map((j) => j.id)).toEqual([c.id, b.id, a.id]);
    expect((await queue.store.list({ app: 'alpha' })).map((j) => j.id)).toEqual([c.id, a.id]);
    expect(publicJob(c)).toEqual({
      id: c.id, app: 'alpha', sha: sha(3), ref: 'master', trigger: 'cli', state: 'waiting',
      attempts: 0, createdAt: c.createdAt, finishedAt: null, error: null,
    });
    expect(await queue.store.waitingIds('alpha')).toEqual([a.id, c.id]);
    expect(await queue.store.supersededBy('alpha', a.id)).toBe(c.id);
  });

  it('finds the job that supersedes one far back in the app\'s history, past a long run of failures', async () => {
    const app = uniqueName('far');
    const old = await queue.enqueue(request(app, 1));
    const waiting = await queue.enqueue(request(app, 2));
    for (let n = 0; n < 450; n++) await queue.store.update((await queue.store.create(request(app, 3))).id, { state: 'failed' });
    expect(await queue.store.supersededBy(app, old.id)).toBe(waiting.id);
    expect(await queue.store.supersededBy(app, old.id, new Set([waiting.id]))).toBeNull();
  });

  it('orders pushes by the head each replaced, not by arrival: a late delivery of an older push never supersedes a newer one', async () => {
    const app = uniqueName('order');
    const push = (n: number, before: number, forced = false): DeployRequest => ({ ...request(app, n), trigger: 'webhook', push: { before: sha(before), forced } as DeployRequest['push'] });
    // Pushed 40 -> 41 -> 43 (two commits at once), delivered 43 first, then 41.
    const [newest, late] = [await queue.enqueue(push(43, 41)), await queue.enqueue(push(41, 40))];
    expect(await queue.store.supersededBy(app, newest.id)).toBeNull();
    expect(await queue.store.supersededBy(app, late.id)).toBe(newest.id);
    // Also once the newer push is running (a worker killed after its switch leaves it active, to run again) or live.
    await queue.store.update(newest.id, { state: 'active' });
    expect(await queue.store.supersededBy(app, late.id)).toBe(newest.id);
    await queue.store.update(newest.id, { state: 'completed' });
    expect(await queue.store.supersededBy(app, late.id)).toBe(newest.id);
    // An operator's deploy after both supersedes them whatever its commit.
    const cli = await queue.enqueue(request(app, 40));
    expect(await queue.store.supersededBy(app, newest.id)).toBe(cli.id);
    await queue.store.finish(cli.id, 'cancelled');
    // A forced push back to 41 after 43: meant, so it supersedes 43, and 43 does not supersede it.
    const back = await queue.enqueue(push(41, 43, true));
    expect(await queue.store.supersededBy(app, newest.id)).toBe(back.id);
    expect(await queue.store.supersededBy(app, back.id)).toBeNull();
  });

  it('a deploy of the branch is only as new as the branch was when read: a push queued after the read is newer, whichever reached the queue first', async () => {
    const app = uniqueName('choice');
    const push = (n: number, before: number, forced = false): DeployRequest => ({ ...request(app, n), trigger: 'webhook', push: { before: sha(before), forced } as DeployRequest['push'] });
    const branchHead = (n: number, chosenAfter: string): DeployRequest => ({ ...request(app, n), chosenAfter });
    // slipway deploy reads the branch at 50; 50 -> 51 is pushed and its webhook queued before the deploy's job.
    const read = await queue.store.lastJobId();
    const pushed = await queue.enqueue(push(51, 50));
    const deploy = await queue.enqueue(branchHead(50, read));
    expect(await queue.store.supersededBy(app, pushed.id)).toBeNull();
    expect(await queue.store.supersededBy(app, deploy.id)).toBe(pushed.id);
    // Also once the push went live, and when it forced the branch on from the chosen head.
    await queue.store.finish(pushed.id, 'completed');
    expect(await queue.store.supersededBy(app, deploy.id)).toBe(pushed.id);
    await queue.store.finish(deploy.id, 'cancelled');
    const readAgain = await queue.store.lastJobId();
    const forced = await queue.enqueue(push(60, 51, true));
    const again = await queue.enqueue(branchHead(51, readAgain));
    expect(await queue.store.supersededBy(app, forced.id)).toBeNull();
    expect(await queue.store.supersededBy(app, again.id)).toBe(forced.id);
    await queue.store.finish(forced.id, 'completed');
    await queue.store.finish(again.id, 'cancelled');
    // A push queued before the read orders nothing: the branch was moved back to 51 without a webhook, and the deploy of it is the newest.
    const back = await queue.enqueue(branchHead(51, await queue.store.lastJobId()));
    expect(await queue.store.supersededBy(app, back.id)).toBeNull();
  });

  it('a deploy that named its branch in full (refs/heads/master) is placed by a push of that branch the same way', async () => {
    const app = uniqueName('choice-full');
    const read = await queue.store.lastJobId();
    const pushed = await queue.enqueue({ ...request(app, 81), trigger: 'webhook', push: { before: sha(80), forced: false } as DeployRequest['push'] });
    const deploy = await queue.enqueue({ ...request(app, 80), ref: 'refs/heads/master', chosenAfter: read });
    expect(await queue.store.supersededBy(app, pushed.id)).toBeNull();
    expect(await queue.store.supersededBy(app, deploy.id)).toBe(pushed.id);
  });

  it('a re-run of the newest commit, or a deploy of the branch, is not superseded by a late delivery of an older push, and supersedes it', async () => {
    const app = uniqueName('choice-late');
    const push = (n: number, before: number): DeployRequest => ({ ...request(app, n), trigger: 'webhook', push: { before: sha(before), forced: false } as DeployRequest['push'] });
    // 91 -> 92 -> 93 pushed; 93's webhook arrives first, and its job fails.
    const p93 = await queue.enqueue(push(93, 92));
    await queue.bull.getJob(bullJobId(p93.id)).then((j) => j?.remove());
    await queue.store.finish(p93.id, 'failed', { error: 'x' });
    const retry = await queue.retry(p93.id);
    const deploy = await queue.enqueue({ ...request(app, 93), chosenAfter: await queue.store.lastJobId() });
    // The forge redelivers 92's push late (its first delivery was answered 503).
    const p92 = await queue.enqueue(push(92, 91));
    for (const choice of [retry, deploy]) expect(await queue.store.supersededBy(app, choice.id, new Set([retry.id, deploy.id].filter((j) => j !== choice.id)))).toBeNull();
    expect(await queue.store.supersededBy(app, p92.id)).toBe(deploy.id);
    expect(await queue.store.supersededBy(app, p92.id, new Set([deploy.id]))).toBe(retry.id);
  });

  it('a retry records when it read the app, so a push queued while it was being made is placed by its chain', async () => {
    const app = uniqueName('retry-choice');
    const failed = await queue.enqueue({ ...request(app, 70), trigger: 'webhook', push: { before: sha(69) } as DeployRequest['push'] });
    await queue.bull.getJob(bullJobId(failed.id)).then((j) => j?.remove());
    await queue.store.finish(failed.id, 'failed', { error: 'x' });
    const read = await queue.store.lastJobId();
    const retry = await queue.retry(failed.id);
    expect(retry).toMatchObject({ trigger: 'retry', ref: 'master', chosenAfter: read });
    // An explicit commit is deployed on purpose: nothing to place.
    const explicit = await queue.enqueue({ ...request(app, 71), ref: null });
    await queue.bull.getJob(bullJobId(explicit.id)).then((j) => j?.remove());
    await queue.store.finish(explicit.id, 'failed', { error: 'x' });
    await queue.store.finish(retry.id, 'cancelled');
    expect((await queue.retry(explicit.id)).chosenAfter).toBeUndefined();
  });

  it('a retry that outlived its claim leaves the claim another request took since', async () => {
    const app = uniqueName('retry-claim');
    const failed = await queue.enqueue(request(app, 80));
    await queue.bull.getJob(bullJobId(failed.id)).then((j) => j?.remove());
    await queue.store.finish(failed.id, 'failed', { error: 'x' });
    const claim = queue.store.keys.retrying(failed.id);
    // While this re-run is being made, its claim runs out and another request takes it (Redis slow for RETRY_CLAIM_MS).
    const store = queue.store as { supersededBy: typeof queue.store.supersededBy };
    const supersededBy = store.supersededBy.bind(queue.store);
    store.supersededBy = async (...args) => {
      await redis.set(claim, 'another-request', 'PX', 30_000);
      return supersededBy(...args);
    };
    try {
      await queue.retry(failed.id);
    } finally {
      store.supersededBy = supersededBy;
    }
    expect(await redis.get(claim)).toBe('another-request');
  });

  it('a chain of befores that comes back to a commit (forced back, pushed forward again) orders nothing', async () => {
    const app = uniqueName('cycle');
    const push = (n: number, before: number, forced = false): DeployRequest => ({ ...request(app, n), trigger: 'webhook', push: { before: sha(before), forced } as DeployRequest['push'] });
    const first = await queue.enqueue(push(41, 40));
    await queue.store.finish(first.id, 'completed');
    const back = await queue.enqueue(push(40, 41, true));
    await queue.store.finish(back.id, 'completed');
    // 41 again, on top of 40: the newest push, not older than the first 41.
    const again = await queue.enqueue(push(41, 40));
    expect(await queue.store.supersededBy(app, again.id)).toBeNull();
  });

  it('a push of a commit an operator rolled back from is stale (a replay: the branch did not move); after a forced push back, a push of it is new', async () => {
    const app = uniqueName('rolledback');
    const webhook = (n: number, forced = false, before = sha(n - 1)): DeployRequest => ({ ...request(app, n), trigger: 'webhook', push: { forced, before } as DeployRequest['push'] });
    const delivery = () => ({ provider: 'github', id: uniqueName('d'), ttlSeconds: 1, guard: true });
    // 303 went live (its parents 302, 301); an operator rolled back to 301.
    await queue.store.recordLive(app, { sha: sha(303), job: '1' }, [sha(303), sha(302), sha(301)]);
    await queue.store.recordLive(app, { sha: sha(301), job: '2' }, [sha(301), sha(300)], { operator: true });
    for (const n of [303, 302, 301, 300]) expect((await queue.store.staleFor(app, sha(n))).stale, `${n}`).toBe(true);
    expect((await queue.enqueueMany([webhook(303)], delivery())).skipped).toEqual([{ app, reason: 'stale' }]);
    // A new commit on top of 303 is a push like any other.
    expect((await queue.store.staleFor(app, sha(304))).stale).toBe(false);
    // Pushed instead: the branch forced back to 301 (it went live), then 303 pushed on it again: the branch moved, 303 is new.
    await queue.store.recordLive(app, { sha: sha(303), job: '3' }, [sha(303), sha(302), sha(301)]);
    await queue.store.recordLive(app, { sha: sha(301), job: '4' }, [sha(301), sha(300)]);
    expect((await queue.store.staleFor(app, sha(303))).stale).toBe(false);
    // An operator's deploy of a commit that is not behind what is live (all it holds is in its history) starts the
    // set afresh; one whose history lacks some (a release the branch left) went back.
    await queue.store.recordLive(app, { sha: sha(310), job: '5' }, [sha(310), sha(309), sha(301), sha(300)], { operator: true });
    expect(await queue.store.staleFor(app, sha(309))).toMatchObject({ stale: true, back: false });
    await queue.store.recordLive(app, { sha: sha(320), job: '6' }, [sha(320), sha(300)], { operator: true });
    expect(await queue.store.staleFor(app, sha(309))).toMatchObject({ stale: true, back: true });
    // Deployed again, it is still gone back to; a deploy moving on from it (its history, as read, shorter than the
    // ancestry kept: a long one's newest 2,000) is not.
    await queue.store.recordLive(app, { sha: sha(320), job: '7' }, [sha(320), sha(300)], { operator: true });
    expect(await queue.store.staleFor(app, sha(309))).toMatchObject({ back: true });
    // Rolled back partway forward (309's history holds 300, not 310): still gone back, from 310.
    await queue.store.recordLive(app, { sha: sha(309), job: '8' }, [sha(309), sha(300)], { operator: true });
    expect(await queue.store.staleFor(app, sha(310))).toMatchObject({ stale: true, back: true });
    await queue.store.recordLive(app, { sha: sha(321), job: '9' }, [sha(321), sha(320), sha(310), sha(309), sha(301), sha(300)], { operator: true });
    expect(await queue.store.staleFor(app, sha(309))).toMatchObject({ stale: true, back: false });
  });

  it('cancels a waiting job: out of the queue, recorded as cancelled', async () => {
    const job = await queue.enqueue(request('gamma', 4));
    const cancelled = await queue.cancel(job.id);
    expect(cancelled.state).toBe('cancelled');
    expect(await queue.bull.getJob(bullJobId(job.id))).toBeUndefined();
    expect(await queue.store.waitingIds('gamma')).toEqual([]);
    await expect(queue.cancel(job.id)).rejects.toMatchObject({ code: 'job_finished' });
    await expect(queue.cancel('99999999')).rejects.toMatchObject({ code: 'unknown_job' });
  });

  it('a cancel of a job an attempt started, waiting to run again, is kept until the job ends, however long its app stays busy', async () => {
    const job = await queue.enqueue(request('gamma', 6));
    await queue.store.update(job.id, { startedAt: new Date().toISOString() });
    expect((await queue.cancel(job.id)).state).toBe('waiting');
    // The worker that takes it up honours the mark once it has the app: past a build and rollout of another job, maybe.
    expect(await redis.ttl(queue.store.keys.cancel(job.id))).toBe(-1);
    await queue.bull.getJob(bullJobId(job.id)).then((j) => j?.remove());
    await queue.store.finish(job.id, 'cancelled');
  });

  it('numbers new jobs past an id it is told of (a live release\'s, after Redis lost its data), never lowering the count', async () => {
    const last = Number(await queue.store.lastJobId());
    expect(await queue.store.raiseJobIdsPast(last + 1000)).toBe(true);
    const next = await queue.enqueue(request('epsilon', 7));
    expect(Number(next.id)).toBe(last + 1001);
    expect(await queue.store.raiseJobIdsPast(last)).toBe(false);
    expect(await queue.store.lastJobId()).toBe(next.id);
    await queue.cancel(next.id);
  });

  it('retries a failed job as a new job and keeps the old one', async () => {
    const job = await queue.enqueue(request('delta', 5));
    await queue.bull.getJob(bullJobId(job.id)).then((j) => j?.remove());
    await queue.store.finish(job.id, 'failed', { error: 'etcd is unreachable' });
    const retry = await queue.retry(job.id);
    expect(retry).toMatchObject({ trigger: 'retry', retryOf: job.id, sha: sha(5), app: 'delta', state: 'waiting' });
    expect((await queue.store.get(job.id))?.retriedBy).toBe(retry.id);
    await expect(queue.retry(retry.id)).rejects.toMatchObject({ code: 'not_retryable' });
    // Its re-run is waiting: retrying it again would queue a second one.
    await expect(queue.retry(job.id)).rejects.toMatchObject({ code: 'not_retryable', message: expect.stringMatching(new RegExp(`^job ${retry.id} of delta came after job ${job.id} and is waiting`)) });
  });

  it('re-runs a job once when two operators ask at the same moment: the other is refused', async () => {
    const app = uniqueName('twice');
    const job = await queue.enqueue(request(app, 6));
    await queue.bull.getJob(bullJobId(job.id)).then((j) => j?.remove());
    await queue.store.finish(job.id, 'failed', { error: 'etcd is unreachable' });
    const [a, b] = await Promise.allSettled([queue.retry(job.id), queue.retry(job.id)]);
    const done = [a, b].filter((r) => r.status === 'fulfilled');
    const refused = [a, b].filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(done).toHaveLength(1);
    expect(refused.map((r) => r.reason)).toEqual([expect.objectContaining({ code: 'not_retryable' })]);
    expect((await queue.store.list({ app, trigger: 'retry' })).map((j) => j.retryOf)).toEqual([job.id]);
    await queue.cancel((await queue.store.get(job.id))!.retriedBy!);
  });

  it('repairs records orphaned between their write and their BullMQ job: a webhook\'s is queued (its delivery is claimed), any other ends failed', async () => {
    const app = uniqueName('orphan');
    const hooked = await queue.enqueueMany([{ ...request(app, 16), trigger: 'webhook' }], { provider: 'github', id: uniqueName('delivery'), ttlSeconds: 60 });
    const cli = await queue.enqueue(request(app, 17));
    const webhook = hooked.records[0]!;
    // What a receiver that lost Redis (or died) between the two round trips leaves: records, no BullMQ jobs.
    for (const record of [webhook, cli]) await queue.bull.getJob(bullJobId(record.id)).then((j) => j?.remove());
    expect(await queue.repairOrphans({ app }), 'too young: their enqueue may be on its way').toEqual({ requeued: [], failed: [], cancelled: [] });
    expect(await queue.repairOrphans({ app, olderThanMs: 0 })).toEqual({ requeued: [webhook.id], failed: [cli.id], cancelled: [] });
    expect(await queue.bull.getJob(bullJobId(webhook.id))).toBeDefined();
    expect(await queue.store.get(cli.id)).toMatchObject({ state: 'failed', error: 'could not be queued' });
    expect(await queue.repairOrphans({ app, olderThanMs: 0 }), 'nothing left to repair').toEqual({ requeued: [], failed: [], cancelled: [] });
  });

  it('never queues again a webhook job cancelled while waiting whose record could not then be ended', async () => {
    const app = uniqueName('cancelled-orphan');
    const [job] = (await queue.enqueueMany([{ ...request(app, 18), trigger: 'webhook' }], { provider: 'github', id: uniqueName('delivery'), ttlSeconds: 60 })).records;
    // What cancel leaves when Redis goes between removing the BullMQ job and ending the record: the mark, no BullMQ job.
    await redis.set(queue.store.keys.cancel(job!.id), '1', 'EX', 60);
    await queue.bull.getJob(bullJobId(job!.id)).then((j) => j?.remove());
    expect(await queue.repairOrphans({ app, olderThanMs: 0 })).toEqual({ requeued: [], failed: [], cancelled: [job!.id] });
    expect(await queue.bull.getJob(bullJobId(job!.id))).toBeUndefined();
    expect(await queue.store.get(job!.id)).toMatchObject({ state: 'cancelled', error: 'cancelled while waiting' });
  });

  it('never retries a git push\'s job: its push was refused with it, so the commit is on no branch', async () => {
    const job = await queue.enqueue({ ...request(uniqueName('gp'), 15), trigger: 'git-push' });
    await queue.bull.getJob(bullJobId(job.id)).then((j) => j?.remove());
    await queue.store.finish(job.id, 'failed', { error: 'asset pipeline failed' });
    await expect(queue.retry(job.id)).rejects.toMatchObject({ code: 'not_retryable', status: 409, message: `job ${job.id} came from a git push, refused when the job failed: push again to deploy ${sha(15).slice(0, 12)}` });
  });

  it('never retries a job once a newer one of its app went live: that would deploy the older commit over it', async () => {
    const app = uniqueName('rn');
    const old = await queue.enqueue(request(app, 12));
    const live = await queue.enqueue(request(app, 13));
    for (const j of [old, live]) await queue.bull.getJob(bullJobId(j.id)).then((b) => b?.remove());
    await queue.store.finish(old.id, 'failed', { error: 'x' });
    await queue.store.finish(live.id, 'completed');
    await expect(queue.retry(old.id)).rejects.toMatchObject({
      code: 'not_retryable', status: 409,
      message: `job ${live.id} of ${app} came after job ${old.id} and is live: re-running commit ${sha(12).slice(0, 12)} would deploy it over that; slipway deploy ${app} --ref ${sha(12)} does it on purpose`,
    });
    // A newer job that never went live does not stand in the way.
    const failedAfter = await queue.enqueue(request(app, 14));
    await queue.bull.getJob(bullJobId(failedAfter.id)).then((b) => b?.remove());
    await queue.store.finish(failedAfter.id, 'failed', { error: 'x' });
    expect(await queue.retry(failedAfter.id)).toMatchObject({ trigger: 'retry', retryOf: failedAfter.id });
  });

  it('retry --failed takes the newest failed job per app, never one older than a live release', async () => {
    const app1 = uniqueName('r1');
    const app2 = uniqueName('r2');
    const old1 = await queue.enqueue(request(app1, 6));
    const new1 = await queue.enqueue(request(app1, 7));
    const failed2 = await queue.enqueue(request(app2, 8));
    const done2 = await queue.enqueue(request(app2, 9));
    for (const j of [old1, new1, failed2, done2]) await queue.bull.getJob(bullJobId(j.id)).then((b) => b?.remove());
    await queue.store.finish(old1.id, 'failed', { error: 'x' });
    await queue.store.finish(new1.id, 'failed', { error: 'x' });
    await queue.store.finish(failed2.id, 'failed', { error: 'x' });
    await queue.store.finish(done2.id, 'completed');
    // app3's newest failure was re-run, and the re-run cancelled: its older failure stays, or "retry" would deploy a
    // commit older than the newest anyone tried.
    const app3 = uniqueName('r3');
    const older3 = await queue.enqueue(request(app3, 10));
    const newer3 = await queue.enqueue(request(app3, 11));
    for (const j of [older3, newer3]) await queue.bull.getJob(bullJobId(j.id)).then((b) => b?.remove());
    await queue.store.finish(older3.id, 'failed', { error: 'x' });
    await queue.store.finish(newer3.id, 'failed', { error: 'x' });
    const rerun3 = await queue.retry(newer3.id);
    await queue.bull.getJob(bullJobId(rerun3.id)).then((b) => b?.remove());
    await queue.store.finish(rerun3.id, 'cancelled', { error: 'cancelled by an operator' });
    const { retried, skipped } = await queue.retryFailed();
    const ours = [app1, app2, app3];
    expect(retried.filter((r) => ours.includes(r.app)).map((r) => r.retryOf)).toEqual([new1.id]);
    // Each app's failure left behind is named once (app1's older one behind the retried newest is not).
    expect(skipped.filter((s) => ours.includes(s.job.app)).map((s) => [s.job.id, s.reason])).toEqual([
      [older3.id, `job ${rerun3.id} of this app came after it and is cancelled`],
      [failed2.id, `job ${done2.id} of this app came after it and is completed`],
    ]);
  });

  it('queues a delivery once; a redelivery queues nothing and names what the first queued', async () => {
    const delivery = { provider: 'github', id: uniqueName('d'), ttlSeconds: 60 };
    const first = await queue.enqueueMany([request('one', 11), request('two', 11)], delivery);
    expect(first.previous).toBeNull();
    expect(first.records.map((r) => r.app)).toEqual(['one', 'two']);
    const again = await queue.enqueueMany([request('one', 11), request('two', 11)], delivery);
    expect(again.records).toEqual([]);
    expect(JSON.parse(again.previous!)).toEqual(first.records.map((r) => ({ job: r.id, app: r.app })));
    expect((await queue.enqueueMany([request('one', 11)], { ...delivery, provider: 'gitea' })).previous).toBeNull();
    expect(await redis.ttl(`${prefix}:delivery:github:${delivery.id}`)).toBeGreaterThan(50);
    for (const r of first.records) expect(await queue.bull.getJob(bullJobId(r.id))).toBeDefined();
  });

  it('a redelivery puts back the BullMQ jobs of what its first delivery queued and has not started, whose answer was lost', async () => {
    const app = uniqueName('lost');
    const delivery = { provider: 'github', id: uniqueName('d'), ttlSeconds: 60, guard: true };
    const webhook = (n: number): DeployRequest => ({ ...request(app, n), trigger: 'webhook', push: { forced: false, before: sha(0) } as DeployRequest['push'] });
    // What a first delivery leaves when its answer never comes back (the connection dropped after the script ran, and
    // the receiver answered 503, or ioredis ran the script again on reconnecting): records and claim, no BullMQ job.
    const [lost] = await queue.store.createGroups([{ requests: [webhook(40), { ...webhook(41), app: `${app}-b` }], delivery: { key: queue.store.keys.delivery(delivery.provider, delivery.id), ttlSeconds: 60 }, guard: true }]);
    const [a, b] = lost!.records;
    expect(await queue.bull.getJob(bullJobId(a!.id))).toBeUndefined();

    const again = await queue.enqueueMany([webhook(40), { ...webhook(41), app: `${app}-b` }], delivery);
    expect(again).toMatchObject({ records: [], stillWaiting: [a!.id, b!.id] });
    for (const record of [a!, b!]) expect(await queue.bull.getJob(bullJobId(record.id)), `job ${record.id} queued`).toBeDefined();

    // The same body with a fresh delivery id (a replay) finds the commit's job, and puts its BullMQ job back too.
    await queue.bull.getJob(bullJobId(a!.id)).then((j) => j?.remove());
    const replay = await queue.enqueueMany([webhook(40)], { ...delivery, id: uniqueName('d') });
    expect(replay).toMatchObject({ records: [], skipped: [{ app, reason: 'duplicate', job: a!.id }], stillWaiting: [a!.id] });
    expect(await queue.bull.getJob(bullJobId(a!.id))).toBeDefined();

    // Once a job has started (or ended), a redelivery adds nothing for it.
    await queue.cancel(a!.id);
    expect((await queue.enqueueMany([webhook(40), { ...webhook(41), app: `${app}-b` }], delivery)).stillWaiting).toEqual([b!.id]);
    expect((await queue.enqueueMany([webhook(40)], { ...delivery, id: uniqueName('d') })).stillWaiting).toEqual([]);
    expect(await queue.bull.getJob(bullJobId(a!.id))).toBeUndefined();
    await queue.cancel(b!.id);
  });

  it('when BullMQ refuses the jobs of a batch, every webhook of it fails: claims dropped, records failed, and the forge\'s retry is queued', async () => {
    const own = uniqueName('q');
    const broken = new DeployQueue({ redis, prefix: own, attempts: 1, backoffMs: 100 });
    try {
      // BullMQ pushes job ids onto this list: a string there makes its script fail (WRONGTYPE), as a real Redis error would.
      await redis.set(`${own}:deploys:wait`, 'not a list');
      const deliveries = [uniqueName('d'), uniqueName('d')].map((id) => ({ provider: 'github', id, ttlSeconds: 60 }));
      // Issued in one turn of the event loop: one batch, one addBulk.
      // With them, a redelivery of a delivery queued before: its claim is not this batch's to drop.
      const earlier = { provider: 'github', id: uniqueName('d'), ttlSeconds: 60 };
      await broken.store.createGroups([{ requests: [request('app-9', 39)], delivery: { key: broken.store.keys.delivery('github', earlier.id), ttlSeconds: 60 } }]);
      const outcomes = await Promise.allSettled([...deliveries, earlier].map((d, i) => broken.enqueueMany([request(`app-${i}`, 30 + i)], d)));
      expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected', 'rejected']);
      for (const d of deliveries) expect(await redis.exists(`${own}:delivery:github:${d.id}`)).toBe(0);
      expect(await redis.exists(`${own}:delivery:github:${earlier.id}`), 'the earlier delivery\'s claim stays').toBe(1);
      const records = (await broken.store.list({ limit: 10 })).filter((r) => r.app !== 'app-9');
      expect(records.map((r) => [r.state, r.error])).toEqual([['failed', 'could not be queued'], ['failed', 'could not be queued']]);

      // A webhook's push (guarded): its commit's pushed mark goes with the failed job, or the retry would be its "duplicate".
      const hook = { ...request('app-2', 32), trigger: 'webhook' as const, push: { forced: false } as DeployRequest['push'] };
      await expect(broken.enqueueMany([hook], { provider: 'github', id: uniqueName('d'), ttlSeconds: 60, guard: true })).rejects.toThrow();
      expect(await redis.exists(`${own}:app:app-2:pushed:${sha(32)}`)).toBe(0);

      await redis.del(`${own}:deploys:wait`);
      await broken.cancel((await broken.store.list({ app: 'app-9', limit: 1 }))[0]!.id);
      const retried = await broken.enqueueMany([request('app-0', 30)], deliveries[0]);
      expect(retried.previous).toBeNull();
      expect(await broken.bull.getJob(bullJobId(retried.records[0]!.id))).toBeDefined();
      const hookAgain = await broken.enqueueMany([hook], { provider: 'github', id: uniqueName('d'), ttlSeconds: 60, guard: true });
      expect(hookAgain).toMatchObject({ previous: null, skipped: [], records: [{ app: 'app-2', sha: sha(32) }] });
    } finally {
      const keys = await redis.keys(`${own}:*`);
      if (keys.length) await redis.del(...keys);
      await broken.close();
    }
  });

  it('when Redis then refuses to end the records too (out of memory), their claims stay: the forge\'s retry queues the same job, not a second', async () => {
    const own = uniqueName('q');
    const url = new URL(testStack().redis!.url);
    // Ending a record (its fields name the reason) is refused as a Redis out of memory refuses a write; the rest passes.
    const relay = await startTcpRelay({ host: url.hostname, port: Number(url.port) }, {
      toServer: (chunk, c) => {
        if (chunk.includes('could not be queued')) c.client.write('-OOM command not allowed when used memory > \'maxmemory\'.\r\n');
        else c.server.write(chunk);
      },
    });
    const full = connectRedis(`redis://127.0.0.1:${relay.port}`, 'producer');
    const broken = new DeployQueue({ redis: full, prefix: own, attempts: 1, backoffMs: 100 });
    try {
      await new Promise((resolve) => full.once('ready', resolve));
      await redis.set(`${own}:deploys:wait`, 'not a list');
      const delivery = { provider: 'github', id: uniqueName('d'), ttlSeconds: 60 };
      await expect(broken.enqueueMany([request('app-1', 51)], delivery)).rejects.toThrow();
      const [record] = await broken.store.list({ limit: 10 });
      expect(record).toMatchObject({ state: 'waiting' });
      expect(await redis.exists(`${own}:delivery:github:${delivery.id}`), 'the claim stays with the record').toBe(1);

      await redis.del(`${own}:deploys:wait`);
      const retried = await broken.enqueueMany([request('app-1', 51)], delivery);
      expect(retried).toMatchObject({ records: [], stillWaiting: [record!.id] });
      expect(await broken.bull.getJob(bullJobId(record!.id))).toBeDefined();
      expect(await broken.store.list({ limit: 10 })).toHaveLength(1);
    } finally {
      await broken.close();
      full.disconnect();
      relay.cut();
      const keys = await redis.keys(`${own}:*`);
      if (keys.length) await redis.del(...keys);
    }
  });

  it('a guarded push (a webhook) is not queued again for the same commit, nor for the live commit or an ancestor of it unless forced', async () => {
    const app = uniqueName('guarded');
    const webhook = (n: number, forced = false, before = sha(0)): DeployRequest => ({ ...request(app, n), trigger: 'webhook', push: { forced, before } as DeployRequest['push'] });
    const delivery = () => ({ provider: 'github', id: uniqueName('d'), ttlSeconds: 60, guard: true });

    const first = await queue.enqueueMany([webhook(101)], delivery());
    expect(first.records).toHaveLength(1);
    // The same signed body again with a fresh delivery id: a replay, not a new push.
    const replay = await queue.enqueueMany([webhook(101)], delivery());
    expect(replay).toMatchObject({ records: [], previous: null, skipped: [{ app, reason: 'duplicate', job: first.records[0]!.id }] });
    expect(await redis.ttl(`${prefix}:app:${app}:pushed:${sha(101)}`)).toBeGreaterThan(50);

    // 103 went live; 102 is its parent, 101 its grandparent.
    await queue.store.recordLive(app, { sha: sha(103), job: '77' }, [sha(103), sha(102), sha(101)]);
    for (const n of [103, 102]) {
      expect((await queue.enqueueMany([webhook(n)], delivery())).skipped).toEqual([{ app, reason: 'stale' }]);
    }
    expect(await queue.store.staleFor(app, sha(102))).toEqual({ stale: true, liveJob: '77', liveSha: sha(103), back: false });
    expect((await queue.store.staleFor(app, sha(104))).stale).toBe(false);
    // A forced push back to an older commit is meant; so is anything an operator asks for.
    expect((await queue.enqueueMany([webhook(102, true)], delivery())).records).toHaveLength(1);
    expect((await queue.enqueueMany([request(app, 103)])).records).toHaveLength(1);
    expect((await queue.enqueueMany([webhook(104)], delivery())).records).toHaveLength(1);

    // The branch forced back to 101, pushed (above) within the retention: a new push, not a duplicate of the first;
    // that forced body sent again is one.
    const back = await queue.enqueueMany([webhook(101, true, sha(104))], delivery());
    expect(back.records).toHaveLength(1);
    expect((await queue.enqueueMany([webhook(101, true, sha(104))], delivery())).skipped).toEqual([{ app, reason: 'duplicate', job: back.records[0]!.id }]);

    // 105 pushed, the branch forced back to 104, then 105 pushed again on it: that is a new push, not a replay of
    // the first (same body but its delivery id); a replay of either 105 now answers with the newest job.
    const ahead = await queue.enqueueMany([webhook(105, false, sha(104))], delivery());
    const forcedBack = await queue.enqueueMany([webhook(104, true, sha(105))], delivery());
    expect(forcedBack.records).toHaveLength(1);
    const again = await queue.enqueueMany([webhook(105, false, sha(104))], delivery());
    expect(again.records.map((r) => r.id)).not.toContain(ahead.records[0]!.id);
    expect(again.records).toHaveLength(1);
    expect((await queue.enqueueMany([webhook(105, false, sha(104))], delivery())).skipped).toEqual([{ app, reason: 'duplicate', job: again.records[0]!.id }]);

    // An image deploy went live: no commit is known to be stale any more.
    await queue.store.recordLive(app, { sha: null, job: '78' });
    expect((await queue.store.staleFor(app, sha(103))).stale).toBe(false);
  });

  it('a push that moved the branch back, from the live commit or from one not in its ancestry, is a forced push though the payload does not say (Gitea, GitLab)', async () => {
    const app = uniqueName('rewound');
    const webhook = (n: number, before: string | null, provider = 'gitea'): DeployRequest => ({ ...request(app, n), trigger: 'webhook', push: { provider, forced: false, before } as DeployRequest['push'] });
    const delivery = () => ({ provider: 'gitea', id: uniqueName('d'), ttlSeconds: 60, guard: true });
    await queue.store.recordLive(app, { sha: sha(203), job: '1' }, [sha(203), sha(202), sha(201)]);

    // From the live commit back to its grandparent.
    const back = await queue.enqueueMany([webhook(201, sha(203))], delivery());
    expect(back.records).toHaveLength(1);
    expect(back.records[0]!.push?.forced).toBe(true);
    expect((await queue.store.get(back.records[0]!.id))?.push?.forced).toBe(true);
    // That body again is its duplicate, not another rewind.
    expect((await queue.enqueueMany([webhook(201, sha(203))], delivery())).skipped).toEqual([{ app, reason: 'duplicate', job: back.records[0]!.id }]);
    // GitHub says whether a push was forced: one that says not is stale, whatever its before.
    expect((await queue.enqueueMany([webhook(202, sha(203), 'github')], delivery())).skipped).toEqual([{ app, reason: 'stale' }]);
    // From a commit never live (a push that failed, say) back into the live ancestry.
    const fromAside = await queue.enqueueMany([webhook(202, sha(250))], delivery());
    expect(fromAside.records.map((r) => r.push?.forced)).toEqual([true]);

    // Fast-forwards within the ancestry, a new branch at an old commit, a payload without before, one whose before is
    // its commit (a forge's test delivery), the live commit itself (a replay would only deploy it again): stale.
    for (const [n, before] of [[202, sha(201)], [201, sha(0)], [201, null], [202, sha(202)], [203, sha(251)]] as const) {
      expect((await queue.enqueueMany([webhook(n, before)], delivery())).skipped, `${n} from ${before}`).toEqual([{ app, reason: 'stale' }]);
    }

    // An operator deployed the live commit again: nothing was gone back from, a rewind is still one.
    await queue.store.recordLive(app, { sha: sha(203), job: '3' }, [sha(203), sha(202), sha(201), sha(200)], { operator: true });
    expect((await queue.enqueueMany([webhook(200, sha(203))], delivery())).records).toHaveLength(1);

    // An operator rolled back to 201: the ancestry holds 203 and 202, newer than what is live and still the branch's,
    // so no push to one of them is taken for a rewind (a replay would undo the rollback).
    await queue.store.recordLive(app, { sha: sha(201), job: '4' }, [sha(201), sha(200)], { operator: true });
    for (const [n, before] of [[202, sha(201)], [203, sha(252)]] as const) {
      expect((await queue.enqueueMany([webhook(n, before)], delivery())).skipped, `${n} from ${before}`).toEqual([{ app, reason: 'stale' }]);
    }

    // A rewind to 210 went live; an operator rolled back to 203, a release the branch no longer has: the ancestry
    // keeps 210's history, and the rewind's body replayed (before: 203, live again) is no rewind.
    await queue.store.recordLive(app, { sha: sha(210), job: '5' }, [sha(210), sha(201), sha(200)]);
    await queue.store.recordLive(app, { sha: sha(203), job: '6' }, [sha(203), sha(202), sha(201), sha(200)], { operator: true });
    expect((await queue.enqueueMany([webhook(210, sha(203))], delivery())).skipped).toEqual([{ app, reason: 'stale' }]);
  });

  it('a forced push delivered before the push it replaced supersedes that push, not the other way round', async () => {
    const app = uniqueName('early-rewind');
    const webhook = (n: number, before: number, forced = false): DeployRequest => ({ ...request(app, n), trigger: 'webhook', push: { forced, before: sha(before) } as DeployRequest['push'] });
    // 32 pushed on 31, then the branch forced back from 32 to 30; the forge delivered the second first.
    const rewind = await queue.enqueue(webhook(30, 32, true));
    const replaced = await queue.enqueue(webhook(32, 31));
    expect(await queue.store.supersededBy(app, rewind.id)).toBeNull();
    expect(await queue.store.supersededBy(app, replaced.id)).toBe(rewind.id);

    // Forced from 50 to 51, 52 pushed on it, then forced back to 50: the last is the newest, not the first's replaced push.
    const restore = uniqueName('restore');
    const on = (n: number, before: number, forced = false): DeployRequest => ({ ...request(restore, n), trigger: 'webhook', push: { forced, before: sha(before) } as DeployRequest['push'] });
    await queue.store.finish((await queue.enqueue(on(51, 50, true))).id, 'completed');
    await queue.store.finish((await queue.enqueue(on(52, 51))).id, 'completed');
    expect(await queue.store.supersededBy(restore, (await queue.enqueue(on(50, 52, true))).id)).toBeNull();

    // 61 went live on 60; 62 pushed on 61, then forced back to 60, delivered in that reverse order: the forced push
    // is still the newer (the chain from 62 reaches 60 only through a push that came before it).
    const late = uniqueName('late');
    const at = (n: number, before: number, forced = false): DeployRequest => ({ ...request(late, n), trigger: 'webhook', push: { forced, before: sha(before) } as DeployRequest['push'] });
    await queue.store.finish((await queue.enqueue(at(61, 60))).id, 'completed');
    const back = await queue.enqueue(at(60, 62, true));
    const older = await queue.enqueue(at(62, 61));
    expect(await queue.store.supersededBy(late, back.id)).toBeNull();
    expect(await queue.store.supersededBy(late, older.id)).toBe(back.id);
  });

  it('writes the records of deliveries arriving together in one script call, in call order, a redelivery among them still a duplicate', async () => {
    const ids = Array.from({ length: 12 }, () => uniqueName('d'));
    const evalshaCalls = async () => Number(/cmdstat_evalsha:calls=(\d+)/.exec(await redis.info('commandstats'))?.[1] ?? 0);
    const before = await evalshaCalls();
    const calls = [
      ...ids.map((id, i) => queue.enqueueMany([request(`batch-${i % 3}`, 20 + i)], { provider: 'github', id, ttlSeconds: 60 })),
      // The first delivery again, in the same turn: answered as its duplicate.
      queue.enqueueMany([request('batch-0', 20)], { provider: 'github', id: ids[0]!, ttlSeconds: 60 }),
      queue.enqueueMany([request('batch-plain', 40)]),
    ];
    const results = await Promise.all(calls);
    // One script call for all fourteen, then one BullMQ add per job created (13).
    expect((await evalshaCalls()) - before).toBe(1 + 13);

    const created = results.filter((r) => r.previous === null).map((r) => r.records[0]!);
    expect(created).toHaveLength(13);
    const numbers = created.map((r) => Number(r.id));
    expect(numbers).toEqual([...numbers].sort((a, b) => a - b));
    expect(created.map((r) => r.sha)).toEqual([...ids.map((_, i) => sha(20 + i)), sha(40)]);
    expect(JSON.parse(results[12]!.previous!)).toEqual([{ job: results[0]!.records[0]!.id, app: 'batch-0' }]);
    for (const r of created) expect(await queue.bull.getJob(bullJobId(r.id))).toBeDefined();
  });

  it('follows a log live until the job ends', async () => {
    const job = await queue.enqueue(request('eps', 10));
    const seen: string[] = [];
    const follower = (async () => {
      for await (const batch of followJob(queue.store, job.id, { intervalMs: 20 })) seen.push(...batch.lines);
    })();
    await queue.store.appendLog(job.id, ['one', 'two']);
    // Live: seen before the job ends (a loaded machine may take more than a few polls).
    await expect.poll(() => seen, { timeout: 5000 }).toEqual(['one', 'two']);
    await queue.store.appendLog(job.id, ['three']);
    await queue.store.finish(job.id, 'completed');
    await follower;
    expect(seen).toEqual(['one', 'two', 'three']);
    expect(await queue.store.readLog(job.id, 2, 3)).toEqual(['two', 'three']);
  });
});

describe('DeployQueue on a slow Redis', () => {
  it('an operator\'s enqueue waits for a Redis slower than 3 s, which queues the job, rather than reporting it failed', async () => {
    const url = new URL(testStack().redis!.url);
    // Every answer held 2 s: the records' script and BullMQ's add each take that long.
    const relay = await startTcpRelay({ host: url.hostname, port: Number(url.port) }, {
      toClient: (chunk, c) => void setTimeout(() => c.client.write(chunk), 2000),
    });
    const redis = connectRedis(`redis://127.0.0.1:${relay.port}`, 'producer');
    const queue = new DeployQueue({ redis, prefix: uniqueName('slow') });
    try {
      await new Promise((resolve) => redis.once('ready', resolve));
      const job = await queue.enqueue(request('slow', 1));
      expect(job.state).toBe('waiting');
    } finally {
      await queue.close();
      redis.disconnect();
      relay.cut();
    }
  }, 60_000);
});

describe('DeployQueue without Redis', () => {
  it('fails fast with UnavailableError instead of hanging', async () => {
    const redis = connectRedis('redis://127.0.0.1:1', 'producer');
    const queue = new DeployQueue({ redis, prefix: uniqueName('q') });
    const started = Date.now();
    await expect(queue.enqueue(request('x', 1))).rejects.toBeInstanceOf(UnavailableError);
    expect(Date.now() - started).toBeLessThan(1000);
    await queue.close();
    redis.disconnect();
  });
});
