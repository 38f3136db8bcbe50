import type { JobRecord, Step } from '@slipway/queue/job-types';

/**
 * How long each step of a job took, from its step timeline: a step lasts
 * until the next one began. The step a job ended in (its failure, or
 * `done`) has no end in the timeline and is left out, so the histograms
 * hold what a step takes when it gets through. `queued` is the wait for a
 * worker (and for the app, when another deploy of it was running).
 */
export function stepDurations(record: Pick<JobRecord, 'steps'>): Array<{ step: Step; seconds: number }> {
  const out: Array<{ step: Step; seconds: number }> = [];
  for (let i = 0; i + 1 < record.steps.length; i++) {
    const { step, at } = record.steps[i]!;
    const seconds = (Date.parse(record.steps[i + 1]!.at) - Date.parse(at)) / 1000;
    if (step !== 'done' && Number.isFinite(seconds) && seconds >= 0) out.push({ step, seconds });
  }
  return out;
}
