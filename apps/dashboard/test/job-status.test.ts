import { describe, expect, it } from 'vitest';
import { FINAL_STATES, JOB_STATES as QUEUE_JOB_STATES, STEPS } from '@slipway/queue/job-types';
import { isFinal, JOB_STATES, stepTimeline, TIMELINE_STEPS } from '../src/web/job-status.js';

const t = (s: number) => new Date(Date.UTC(2026, 0, 1, 12, 0, s)).toISOString();

describe('stepTimeline', () => {
  it('gives every step of a completed deploy its duration: until the next step began, the last until the job finished', () => {
    const steps = (['queued', 'checkout', 'build', 'start', 'health', 'switch', 'drain'] as const).map((step, i) => ({ step, at: t(i * 10) }));
    const entries = stepTimeline({ state: 'completed', steps: [...steps, { step: 'done', at: t(65) }], finishedAt: t(65) });
    expect(entries.map((e) => [e.step, e.status, e.durationMs])).toEqual([
      ['queued', 'done', 10_000], ['checkout', 'done', 10_000], ['build', 'done', 10_000], ['start', 'done', 10_000],
      ['health', 'done', 10_000], ['switch', 'done', 10_000], ['drain', 'done', 5_000],
    ]);
  });

  it('marks the step a running job is in, timed until now, and the rest not reached', () => {
    const entries = stepTimeline({ state: 'active', steps: [{ step: 'queued', at: t(0) }, { step: 'checkout', at: t(2) }, { step: 'build', at: t(5) }], finishedAt: null }, Date.parse(t(12)));
    expect(entries.map((e) => [e.step, e.status, e.durationMs])).toEqual([
      ['queued', 'done', 2_000], ['checkout', 'done', 3_000], ['build', 'running', 7_000],
      ['start', 'pending', null], ['health', 'pending', null], ['switch', 'pending', null], ['drain', 'pending', null],
    ]);
  });

  it('names the step a job failed or was cancelled in, and skipped steps of an image deploy', () => {
    const failed = stepTimeline({ state: 'failed', steps: [{ step: 'queued', at: t(0) }, { step: 'start', at: t(1) }, { step: 'health', at: t(3) }], finishedAt: t(9) });
    expect(failed.map((e) => e.status)).toEqual(['done', 'skipped', 'skipped', 'done', 'failed', 'pending', 'pending']);
    expect(failed[4]!.durationMs).toBe(6_000);
    const cancelled = stepTimeline({ state: 'cancelled', steps: [{ step: 'queued', at: t(0) }], finishedAt: t(4) });
    expect(cancelled[0]).toMatchObject({ status: 'stopped', durationMs: 4_000 });
  });

  it('shows the last attempt of a job run again: its steps, their durations, and the step it failed in', () => {
    const steps = [
      { step: 'queued', at: t(0) }, { step: 'checkout', at: t(1) }, { step: 'build', at: t(2) }, { step: 'start', at: t(20) },
      // The first attempt's worker died in start; the second failed its build.
      { step: 'checkout', at: t(30) }, { step: 'build', at: t(31) },
    ] as const;
    const failed = stepTimeline({ state: 'failed', steps: [...steps], finishedAt: t(60) });
    expect(failed.map((e) => [e.step, e.status, e.durationMs])).toEqual([
      ['queued', 'done', 30_000], ['checkout', 'done', 1_000], ['build', 'failed', 29_000],
      ['start', 'pending', null], ['health', 'pending', null], ['switch', 'pending', null], ['drain', 'pending', null],
    ]);
  });
});

describe('the test step on the timeline', () => {
  const run = (name: string, outcome: 'passed' | 'failed' | 'running', exitCode: number | null, durationMs: number | null) =>
    ({ name, outcome, exitCode, durationMs, image: 'slipway/hello:0123456789ab', startedAt: t(5) });

  it('shows test between build and start, with each test step\'s outcome, exit code and duration, for a job with steps', () => {
    const steps = (['queued', 'checkout', 'build', 'test'] as const).map((step, i) => ({ step, at: t(i * 10) }));
    const tests = [run('lint', 'passed', 0, 2_000), run('unit', 'failed', 1, 7_000)];
    const entries = stepTimeline({ state: 'failed', steps, finishedAt: t(39), tests });
    expect(entries.map((e) => [e.step, e.status, e.durationMs])).toEqual([
      ['queued', 'done', 10_000], ['checkout', 'done', 10_000], ['build', 'done', 10_000], ['test', 'failed', 9_000],
      ['start', 'pending', null], ['health', 'pending', null], ['switch', 'pending', null], ['drain', 'pending', null],
    ]);
    expect(entries[3]!.runs).toEqual(tests);
  });

  it('leaves test out for a job without steps', () => {
    const entries = stepTimeline({ state: 'active', steps: [{ step: 'queued', at: t(0) }, { step: 'start', at: t(1) }], finishedAt: null }, Date.parse(t(2)));
    expect(entries.map((e) => e.step)).not.toContain('test');
  });
});

describe('the job states and steps the pages know', () => {
  // The browser cannot load the queue's constants, only its types: these keep the two lists the same.
  it('are the queue\'s: every state in its order, the same final ones, every step before done', () => {
    expect(JOB_STATES).toEqual(QUEUE_JOB_STATES);
    expect(JOB_STATES.filter(isFinal)).toEqual(QUEUE_JOB_STATES.filter((s) => FINAL_STATES.has(s)));
    expect(TIMELINE_STEPS).toEqual(STEPS.filter((s) => s !== 'done'));
  });
});
