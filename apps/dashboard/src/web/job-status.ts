import type { JobState, Step, TestStepRun } from '@slipway/queue/job-types';
import { h } from './dom.js';
import { formatDuration, formatTime } from './format.js';
import type { JobView } from './job-view.js';

// How far a job has got, as the pages show it: its state as a badge, and
// its steps as a timeline with what each took.

/**
 * Each job state as the pages show it, in the queue's order: its symbol,
 * its word, and whether it is final. The browser cannot load the queue's
 * JOB_STATES and FINAL_STATES, so they are written here against the
 * queue's types: a state added there fails this file's type check, and
 * test/job-status.test.ts checks that the two agree.
 */
const STATES: Record<JobState, { symbol: string; word: string; final: boolean }> = {
  waiting: { symbol: '◷', word: 'waiting', final: false },
  active: { symbol: '●', word: 'running', final: false },
  completed: { symbol: '✓', word: 'completed', final: true },
  failed: { symbol: '✕', word: 'failed', final: true },
  superseded: { symbol: '↷', word: 'superseded', final: true },
  cancelled: { symbol: '⊘', word: 'cancelled', final: true },
};

/** Every job state, in the queue's order (its JOB_STATES). */
export const JOB_STATES = Object.keys(STATES) as JobState[];

/** The timeline's steps, in order: every step a deploy goes through before `done` (the queue's STEPS). */
export const TIMELINE_STEPS: ReadonlyArray<Exclude<Step, 'done'>> = ['queued', 'checkout', 'build', 'test', 'start', 'health', 'switch', 'drain'];
export type TimelineStep = (typeof TIMELINE_STEPS)[number];

export type StepStatus = 'done' | 'running' | 'failed' | 'stopped' | 'skipped' | 'pending';

const STEP_SYMBOLS: Record<StepStatus, string> = { done: '✓', running: '●', failed: '✕', stopped: '⊘', skipped: '–', pending: '○' };
const STEP_WORDS: Record<StepStatus, string> = { done: 'done', running: 'running', failed: 'failed', stopped: 'stopped', skipped: 'skipped', pending: 'not reached' };

/** Whether a job in this state is over (the queue's FINAL_STATES): nothing of it runs any more. */
export function isFinal(state: JobState): boolean {
  return STATES[state]?.final ?? false;
}

/** A state in words: `running` for active, else its name. */
export function stateWord(state: JobState): string {
  return STATES[state]?.word ?? state;
}

/** A job state as a badge: a symbol and a word, never colour alone. */
export function stateBadge(state: JobState): HTMLSpanElement {
  return h('span', { class: `badge state-${state}` },
    h('span', { 'aria-hidden': 'true', class: 'badge-symbol' }, STATES[state]?.symbol ?? '•'),
    ` ${stateWord(state)}`);
}

export interface TimelineEntry {
  step: TimelineStep;
  status: StepStatus;
  startedAt: string | null;
  /** Milliseconds spent in the step (so far, while it runs); null when it never ran. */
  durationMs: number | null;
  /** `test`: each test step as it ran (name, outcome, exit code, duration). */
  runs?: TestStepRun[];
}

/** The part of a job the timeline needs. */
export type TimelineJob = Pick<JobView, 'state' | 'steps' | 'finishedAt' | 'tests'>;

/**
 * Each step's status and duration from the job's recorded step starts: a
 * step lasts until the next recorded one began (or the job finished, or
 * now while it runs). Steps the job never entered but went past (checkout
 * and build of an image deploy) are `skipped`; the step a failed or
 * cancelled job stopped in is `failed` or `stopped`. `test` is there only
 * for a job with test steps, with each step's run.
 */
export function stepTimeline(job: TimelineJob, now: number = Date.now()): TimelineEntry[] {
  const recorded = lastAttempt(job.steps.filter((s) => s.step !== 'done'));
  const at = new Map(recorded.map((s) => [s.step, s.at] as const));
  const reachedIndex = Math.max(-1, ...recorded.map((s) => TIMELINE_STEPS.indexOf(s.step as TimelineStep)));
  const finished = job.finishedAt !== null && isFinal(job.state);
  const endOfJob = finished ? Date.parse(job.finishedAt!) : now;
  const tested = at.has('test') || (job.tests?.length ?? 0) > 0;
  return TIMELINE_STEPS.flatMap((step, index): TimelineEntry[] => {
    if (step === 'test' && !tested) return [];
    const runs = step === 'test' ? { runs: job.tests ?? [] } : {};
    const startedAt = at.get(step) ?? null;
    if (startedAt === null) {
      return [{ step, status: index < reachedIndex ? 'skipped' : 'pending', startedAt: null, durationMs: null, ...runs }];
    }
    const position = recorded.findIndex((s) => s.step === step);
    const next = recorded[position + 1];
    const last = next === undefined;
    const end = last ? endOfJob : Date.parse(next.at);
    let status: StepStatus = 'done';
    if (last) {
      if (!finished) status = job.state === 'active' || job.state === 'waiting' ? 'running' : 'done';
      else if (job.state === 'failed') status = 'failed';
      else if (job.state === 'cancelled' || job.state === 'superseded') status = 'stopped';
    }
    return [{ step, status, startedAt, durationMs: Math.max(0, end - Date.parse(startedAt)), ...runs }];
  });
}

/**
 * The recorded steps of the job's last attempt, after its `queued`: an
 * attempt run again (a retry, a worker that died or stopped) records its
 * steps again from its first, so a step that comes no later than the one
 * before it begins another attempt.
 */
function lastAttempt(steps: TimelineJob['steps']): TimelineJob['steps'] {
  const order = (step: string) => TIMELINE_STEPS.indexOf(step as TimelineStep);
  let from = 0;
  for (let i = 1; i < steps.length; i++) if (order(steps[i]!.step) <= order(steps[i - 1]!.step)) from = i;
  return from === 0 || steps[0]!.step !== 'queued' ? steps.slice(from) : [steps[0]!, ...steps.slice(from)];
}

const RUN_WORDS: Record<TestStepRun['outcome'], string> = { running: 'running', passed: 'passed', failed: 'failed', timeout: 'timed out', cancelled: 'stopped' };
const RUN_STATUS: Record<TestStepRun['outcome'], StepStatus> = { running: 'running', passed: 'done', failed: 'failed', timeout: 'failed', cancelled: 'stopped' };

/** A test step's run as one line: its name, how it ended, its exit code and what it took. */
function runView(run: TestStepRun): HTMLLIElement {
  const status = RUN_STATUS[run.outcome] ?? 'pending';
  return h('li', { class: `test-run step-${status}`, 'data-test-step': run.name },
    h('span', { class: 'step-symbol', 'aria-hidden': 'true' }, STEP_SYMBOLS[status]),
    h('span', { class: 'step-name' }, run.name),
    h('span', { class: 'step-status' }, `${RUN_WORDS[run.outcome] ?? run.outcome}${run.exitCode === null ? '' : ` · exit ${run.exitCode}`}`),
    h('span', { class: 'step-duration' }, run.durationMs === null ? '' : formatDuration(run.durationMs)));
}

/** The job's steps as an ordered list: each with its status in words and its duration. */
export function timelineView(job: JobView, now = Date.now()): HTMLOListElement {
  return h('ol', { class: 'timeline' }, ...stepTimeline(job, now).map((entry) => h('li', { class: `step step-${entry.status}`, 'data-step': entry.step },
    h('span', { class: 'step-symbol', 'aria-hidden': 'true' }, STEP_SYMBOLS[entry.status]),
    h('span', { class: 'step-name' }, entry.step),
    h('span', { class: 'step-status' }, STEP_WORDS[entry.status]),
    h('span', { class: 'step-duration' }, entry.durationMs === null ? '' : formatDuration(entry.durationMs)),
    entry.startedAt ? h('time', { class: 'visually-hidden', datetime: entry.startedAt }, `started ${formatTime(entry.startedAt)}`) : null,
    entry.runs?.length ? h('ol', { class: 'test-runs' }, ...entry.runs.map(runView)) : null)));
}
