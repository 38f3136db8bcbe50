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
