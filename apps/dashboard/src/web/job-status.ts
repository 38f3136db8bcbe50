import { h } from './dom.js';
import { formatDuration, formatTime } from './format.js';
import type { Job } from './job-types.js';

// How far a job has got, as the pages show it: its state as a badge, and
// its steps as a timeline with what each took.

const STATE_SYMBOLS: Record<string, string> = {
  completed: '✓', failed: '✕', active: '●', waiting: '◷', superseded: '↷', cancelled: '⊘',
};
const STATE_WORDS: Record<string, string> = {
  completed: 'completed', failed: 'failed', active: 'running', waiting: 'waiting', superseded: 'superseded', cancelled: 'cancelled',
};
const STEP_SYMBOLS: Record<StepStatus, string> = { done: '✓', running: '●', failed: '✕', stopped: '⊘', skipped: '–', pending: '○' };
const STEP_WORDS: Record<StepStatus, string> = { done: 'done', running: 'running', failed: 'failed', stopped: 'stopped', skipped: 'skipped', pending: 'not reached' };

/** A job state as a badge: a symbol and a word, never colour alone. */
export function stateBadge(state: string): HTMLSpanElement {
  return h('span', { class: `badge state-${state}` },
    h('span', { 'aria-hidden': 'true', class: 'badge-symbol' }, STATE_SYMBOLS[state] ?? '•'),
    ` ${STATE_WORDS[state] ?? state}`);
}

/** The timeline's steps, in order: every step a deploy goes through before `done`. */
export const TIMELINE_STEPS = ['queued', 'checkout', 'build', 'start', 'health', 'switch', 'drain'] as const;
export type TimelineStep = (typeof TIMELINE_STEPS)[number];

export type StepStatus = 'done' | 'running' | 'failed' | 'stopped' | 'skipped' | 'pending';

export interface TimelineEntry {
  step: TimelineStep;
  status: StepStatus;
  startedAt: string | null;
  /** Milliseconds spent in the step (so far, while it runs); null when it never ran. */
  durationMs: number | null;
}

/** The part of a job the timeline needs. */
export interface TimelineJob {
  state: string;
  steps: Array<{ step: string; at: string }>;
  finishedAt: string | null;
}

/**
 * Each step's status and duration from the job's recorded step starts: a
 * step lasts until the next recorded one began (or the job finished, or
 * now while it runs). Steps the job never entered but went past (checkout
 * and build of an image deploy) are `skipped`; the step a failed or
 * cancelled job stopped in is `failed` or `stopped`.
 */
export function stepTimeline(job: TimelineJob, now: number = Date.now()): TimelineEntry[] {
  const recorded = job.steps.filter((s) => s.step !== 'done');
  const at = new Map(recorded.map((s) => [s.step, s.at] as const));
  const reachedIndex = Math.max(-1, ...recorded.map((s) => TIMELINE_STEPS.indexOf(s.step as TimelineStep)));
  const finished = job.finishedAt !== null && ['completed', 'failed', 'cancelled', 'superseded'].includes(job.state);
  const endOfJob = finished ? Date.parse(job.finishedAt!) : now;
  return TIMELINE_STEPS.map((step, index) => {
    const startedAt = at.get(step) ?? null;
    if (startedAt === null) {
      return { step, status: index < reachedIndex ? 'skipped' : 'pending', startedAt: null, durationMs: null };
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
    return { step, status, startedAt, durationMs: Math.max(0, end - Date.parse(startedAt)) };
  });
}

/** The job's steps as an ordered list: each with its status in words and its duration. */
export function timelineView(job: Job, now = Date.now()): HTMLOListElement {
  return h('ol', { class: 'timeline' }, ...stepTimeline(job, now).map((entry) => h('li', { class: `step step-${entry.status}`, 'data-step': entry.step },
    h('span', { class: 'step-symbol', 'aria-hidden': 'true' }, STEP_SYMBOLS[entry.status]),
    h('span', { class: 'step-name' }, entry.step),
    h('span', { class: 'step-status' }, STEP_WORDS[entry.status]),
    h('span', { class: 'step-duration' }, entry.durationMs === null ? '' : formatDuration(entry.durationMs)),
    entry.startedAt ? h('time', { class: 'visually-hidden', datetime: entry.startedAt }, `started ${formatTime(entry.startedAt)}`) : null)));
}
