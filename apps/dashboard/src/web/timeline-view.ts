import { h } from './dom.js';
import { formatDuration, formatTime } from './format.js';
import type { Job } from './job-types.js';
import { stepTimeline, type StepStatus } from './step-timeline.js';

const SYMBOL: Record<StepStatus, string> = { done: '✓', running: '●', failed: '✕', stopped: '⊘', skipped: '–', pending: '○' };
const WORD: Record<StepStatus, string> = { done: 'done', running: 'running', failed: 'failed', stopped: 'stopped', skipped: 'skipped', pending: 'not reached' };

/** The job's steps as an ordered list: each with its status in words and its duration. */
export function timelineView(job: Job, now = Date.now()): HTMLOListElement {
  return h('ol', { class: 'timeline' }, ...stepTimeline(job, now).map((entry) => h('li', { class: `step step-${entry.status}`, 'data-step': entry.step },
    h('span', { class: 'step-symbol', 'aria-hidden': 'true' }, SYMBOL[entry.status]),
    h('span', { class: 'step-name' }, entry.step),
    h('span', { class: 'step-status' }, WORD[entry.status]),
    h('span', { class: 'step-duration' }, entry.durationMs === null ? '' : formatDuration(entry.durationMs)),
    entry.startedAt ? h('time', { class: 'visually-hidden', datetime: entry.startedAt }, `started ${formatTime(entry.startedAt)}`) : null)));
}
