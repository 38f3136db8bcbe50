import Docker from 'dockerode';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_LINE_BYTES } from '@slipway/core/logger';
import { AFTER_OUTPUT_LINE, commitVersion, ENDLESS_LINE, type FixtureVariant, HUGE_LINE_UNIT, watchEventLoop } from '@slipway/devstack/testing';
import { FINAL_STATES, type JobRecord } from '@slipway/queue/job-types';
import type { JobStore } from '@slipway/queue/job-store';
import { createDeployWorker, type DeployWorker } from '../src/deploy-worker.js';
import { quietLogger, workerWorld, type WorkerWorld } from './support.js';

const docker = new Docker();

/** Polls tightly until the job's state is final. */
async function finalRecord(store: JobStore, id: string, timeoutMs = 240_000): Promise<JobRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const record = await store.mustGet(id);
    if (FINAL_STATES.has(record.state)) return record;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${record.state} (${record.step})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Where the hostile step's output starts in a job's log (after Docker's ` ---> Running in …`). */
function outputStart(log: string[]): number {
  const step = log.findIndex((line) => /^Step \d+\/\d+ : RUN sh \/build-output\.sh$/.test(line));
  expect(step).toBeGreaterThan(0);
  expect(log[step + 1]).toMatch(/^ ---> Running in [0-9a-f]+$/);
  return step + 2;
}

describe('what a build prints, through the worker', () => {
  let world: WorkerWorld | undefined;
  let worker: DeployWorker | undefined;
  afterEach(async () => {
    await worker?.close(5000);
    await world?.cleanup();
    worker = undefined;
    world = undefined;
  });

  async function deploy(variant: FixtureVariant, options: { app?: Record<string, unknown>; jobs?: Record<string, unknown>; lines?: number; lineBytes?: number } = {}) {
    world = await workerWorld({ app: { replicas: 1, drain_s: 0, ...options.app }, extra: options.jobs ? { jobs: options.jobs } : {} });
    const [app] = world.apps;
    const sha = await commitVersion(app!.repo, { version: `${app!.name} ${variant}`, variant, lines: options.lines, lineBytes: options.lineBytes });
    worker = createDeployWorker({ config: world.config, logger: quietLogger });
    const watch = watchEventLoop();
    const job = await world.queue.enqueue({ app: app!.name, sha, ref: 'master', image: null, trigger: 'cli' });
    const record = await finalRecord(world.queue.store, job.id);
    const loop = watch.stop();
    // Read the moment the state is final (after the watch: reading 100,000 lines takes the test's own loop a while).
    const log = await world.queue.store.readLog(job.id);
    console.log(`${variant}: ${record.state} in ${Date.parse(record.finishedAt!) - Date.parse(record.startedAt!)} ms, ${log.length} log lines, event loop ${JSON.stringify(loop)}`);
    return { app: app!, record, log, loop };
  }

  it('100,000 short lines (below the cap): the log holds exactly them, in order, the moment the job has ended', async () => {
    const { record, log } = await deploy('many-lines', { lines: 100_000, jobs: { log_max_lines: 150_000 } });
    expect(record.state, record.error ?? '').toBe('completed');
    const start = outputStart(log);
    const printed = log.slice(start, start + 100_000);
    expect(printed.every((line, i) => line === String(i + 1))).toBe(true);
    expect(log[start + 100_000]).toBe(AFTER_OUTPUT_LINE);
    expect(log.at(-1)).toMatch(/^done: .* serves release/);
  });

  it.each([
    { variant: 'huge-line' as const },
    { variant: 'huge-line-unterminated' as const },
  ])('$variant of 8 MB: cut in the log, the job completes on its first attempt, the event loop never held', async ({ variant }) => {
    const bytes = 8 * 1024 * 1024;
    const { record, log, loop } = await deploy(variant, { lineBytes: bytes });
    expect(record.state, record.error ?? '').toBe('completed');
    expect(record.attempts).toBe(1);
    expect(log[outputStart(log)]).toBe(`${HUGE_LINE_UNIT.repeat(MAX_LINE_BYTES / 2)}… [line cut: ${bytes.toLocaleString('en-US')} bytes]`);
    expect(loop.maxBlockedMs).toBeLessThan(100);
    expect(loop.maxGapMs).toBeLessThan(1000);
  });

  it('endless output past build_timeout_s: the job fails build_timeout once, the log is capped and ends with why, nothing rolled out', async () => {
    // 10 s: long enough for a loaded machine to send the context and start printing (3 s was not, once).
    const { app, record, log, loop } = await deploy('endless-output', { app: { build_timeout_s: 10 }, jobs: { log_max_lines: 1000, log_max_bytes: 65_536 } });
    expect(record.state).toBe('failed');
    expect(record.attempts).toBe(1);
    expect(record.error).toBe(`build_timeout: the build took longer than 10 s (apps.${app.name}.build_timeout_s) and was stopped`);
    expect(log.length).toBeLessThanOrEqual(1000);
    expect(log.reduce((sum, line) => sum + Buffer.byteLength(line) + 1, 0)).toBeLessThanOrEqual(65_536);
    const notice = log.findIndex((line) => line.startsWith("… output over this log's cap (1,000 lines or 64 KiB)"));
    expect(notice).toBeGreaterThan(0);
    expect(log[notice - 1]).toBe(ENDLESS_LINE);
    expect(log[notice + 1]).toMatch(/^\[[\d,]+ lines \([\d,]+ bytes\) not kept\]$/);
    expect(log[notice + 2]).toBe(ENDLESS_LINE);
    expect(log.slice(-2)).toEqual([record.error, `error: ${record.error}`]);
    expect(loop.maxBlockedMs).toBeLessThan(100);
    expect(loop.maxGapMs).toBeLessThan(1000);
    expect(await docker.listContainers({ all: true, filters: { label: [`slipway.app=${app.name}`] } })).toEqual([]);
    const building = async () => (await docker.listContainers({ all: true })).filter((c) => c.Command.includes('build-output.sh'));
    const deadline = Date.now() + 20_000;
    while ((await building()).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
    expect(await building()).toEqual([]);
  });
});
