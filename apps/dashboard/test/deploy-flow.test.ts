import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitVersion, fetchText } from '@slipway/devstack/testing';
import type { JobRecord, Push } from '@slipway/queue/job-types';
import { createDeployWorker, type DeployWorker } from '@slipway/worker/deploy-worker';
import type { LogProbe } from '../src/web/log-view.js';
import { gotoPage, launchBrowser, ready, seriousViolations, signedIn } from './browser.js';
import { dashboardWorld, quietLogger, waitForJob, type AppFixture, type DashboardWorld } from './dashboard-world.js';

const SCREENSHOTS = fileURLToPath(new URL('../../../docs/screenshots/', import.meta.url));
type ProbeWindow = Window & { slipwayLog: LogProbe; stayedOnPage?: boolean };

/**
 * The dashboard over real deploys: an in-process worker checks out, builds
 * and rolls out the sample app behind the test's own nginx.
 */
describe('real deploys, driven and watched from the dashboard', () => {
  let world: DashboardWorld;
  let worker: DeployWorker | undefined;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let app: AppFixture;
  const shas: Record<string, string> = {};

  beforeAll(async () => {
    world = await dashboardWorld();
    app = world.apps[0]!;
    shas.v1 = app.repo.sha;
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    await worker.ready();
    browser = await launchBrowser();
    ({ context, page } = await signedIn(browser, world.url, world.token));
  });
  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await worker?.close(5000);
    await world?.close();
  });

  const served = async () => (await fetchText(`${app.url}/`))?.body;
  const version = (v: string) => `${app.name} ${v}\n`;
  const probe = () => page.evaluate(() => {
    const p = (window as unknown as ProbeWindow).slipwayLog;
    return { lineCount: p.lineCount, anomalies: p.anomalies, ended: p.ended };
  });
  const open = async (path: string) => {
    await gotoPage(page, `${world.url}${path}`);
    await ready(page);
  };

  it('a push appears in the jobs list without a reload; its real build log streams while it runs', async () => {
    const first = await world.queue.enqueue({ app: app.name, sha: shas.v1!, ref: 'master', image: null, trigger: 'cli' });
    expect((await waitForJob(world.queue, first.id)).state).toBe('completed');
    expect(await served()).toBe(version('v1'));

    shas.v2 = await commitVersion(app.repo, { version: `${app.name} v2`, buildDelay_s: 2 });
    await open('/jobs');
    await page.evaluate(() => ((window as unknown as ProbeWindow).stayedOnPage = true));
    const push: Push = {
      provider: 'gitea', delivery: 'delivery-v2', repository: { fullName: `acme/${app.name}`, cloneUrl: app.repo.url, htmlUrl: null },
      ref: 'refs/heads/master', branch: 'master', sha: shas.v2, before: shas.v1!, pusher: 'alice', message: 'Release v2', compareUrl: null,
    };
    const job = await world.queue.enqueue({ app: app.name, sha: shas.v2, ref: 'master', image: null, trigger: 'webhook', push });
    const row = page.locator(`tr[data-job="${job.id}"]`);
    await row.waitFor({ timeout: 5000 });
    expect(await row.innerText()).toContain('Release v2');
    await row.getByRole('link').click();
    await ready(page);
    expect(new URL(page.url()).pathname).toBe(`/jobs/${job.id}`);

    // Lines arrive while the job runs, not all at the end.
    const counts: number[] = [];
    for (;;) {
      const state = await probe();
      counts.push(state.lineCount);
      if (state.ended) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const final = await world.queue.store.mustGet(job.id);
    expect(final.state, final.error ?? '').toBe('completed');
    const growing = new Set(counts.filter((c) => c > 0 && c < counts.at(-1)!));
    expect(growing.size).toBeGreaterThan(2);
    expect((await probe()).anomalies).toBe(0);
    expect((await probe()).lineCount).toBe(await world.queue.store.logLength(job.id));
    expect(await page.locator('.job-badge').textContent()).toContain('completed');
    expect(await page.locator('.step[data-step="drain"] .step-status').textContent()).toBe('done');
    await expect.poll(() => page.locator('.log-viewport').innerText()).toContain('==> rollout');
    expect(await served()).toBe(version('v2'));
  });

  it('rolls back from the overview (confirmed), and nginx serves the earlier release again', async () => {
    await open('/');
    const card = page.locator(`article[data-app="${app.name}"]`);
    await expect.poll(() => card.innerText()).toContain(shas.v2!.slice(0, 12));
    expect(await card.innerText()).toMatch(/2 of 2 healthy/);
    expect(await card.innerText()).toMatch(/nginx in sync with etcd/);
    await card.getByRole('button', { name: `Roll back ${app.name}…` }).click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    expect(await dialog.locator('input[type=radio]:checked').getAttribute('value')).toBe(shas.v1);
    expect(await served()).toBe(version('v2'));
    await dialog.getByRole('button', { name: 'Roll back' }).click();
    await expect.poll(() => card.locator('.action-status').textContent()).toMatch(/queued as job #\d+/);
    const id = /#(\d+)/.exec((await card.locator('.action-status').textContent())!)![1]!;
    const job = await waitForJob(world.queue, id);
    expect(job, job.error ?? '').toMatchObject({ state: 'completed', trigger: 'rollback', sha: shas.v1 });
    expect(await served()).toBe(version('v1'));
    // Reflected live on the overview, without a reload.
    await expect.poll(() => card.innerText(), { timeout: 15_000 }).toContain(shas.v1!.slice(0, 12));
    await expect.poll(() => card.innerText()).toMatch(/Last deploy\s+#\d+\s+✓ completed/);
    expect(await seriousViolations(page)).toEqual([]);
    mkdirSync(SCREENSHOTS, { recursive: true });
    await page.screenshot({ path: `${SCREENSHOTS}overview.png` });
  });

  it('a failed job is re-run from its page and completes', async () => {
    // The host's nginx configuration is broken while v3 deploys: its check fails, nothing goes live.
    await worker!.close(5000);
    const broken = { ...world.config, nginx: { ...world.config.nginx, check_cmd: [...world.config.nginx.check_cmd, '-g', 'bogus_directive on;'] } };
    worker = createDeployWorker({ config: broken, logger: quietLogger });
    await worker.ready();
    shas.v3 = await commitVersion(app.repo, { version: `${app.name} v3` });
    const failing = await world.queue.enqueue({ app: app.name, sha: shas.v3, ref: 'master', image: null, trigger: 'cli' });
    const failed: JobRecord = await waitForJob(world.queue, failing.id);
    expect(failed.state).toBe('failed');
    expect(await served()).toBe(version('v1'));

    // Fixed: the operator opens the failed job and re-runs it.
    await worker.close(5000);
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    await worker.ready();
    await open(`/jobs/${failing.id}`);
    expect(await page.locator('.job-badge').textContent()).toContain('failed');
    expect(await page.locator('.step.step-failed').count()).toBe(1);
    await page.getByRole('button', { name: 'Re-run' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Re-run' }).click();
    await page.waitForURL((url) => url.pathname !== `/jobs/${failing.id}`);
    await ready(page);
    const rerunId = new URL(page.url()).pathname.split('/').pop()!;
    await expect.poll(async () => (await probe()).ended, { timeout: 120_000, interval: 250 }).toBe(true);
    const rerun = await world.queue.store.mustGet(rerunId);
    expect(rerun, rerun.error ?? '').toMatchObject({ state: 'completed', retryOf: failing.id, sha: shas.v3 });
    expect(await page.locator('.job-badge').textContent()).toContain('completed');
    expect(await served()).toBe(version('v3'));
    expect(await page.getByRole('link', { name: `job ${failing.id}` }).count()).toBe(1);
    expect(await seriousViolations(page)).toEqual([]);
    await page.locator('.log-viewport').evaluate((el) => (el.scrollTop = 0));
    await page.screenshot({ path: `${SCREENSHOTS}job.png`, fullPage: true });
  });
});
