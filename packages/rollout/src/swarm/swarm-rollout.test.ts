import { describe, expect, it } from 'vitest';
import { MAX_TASK_FAILURES, tasksVerdict } from './swarm-rollout.js';
import type { AppTask } from './swarm-service.js';

const task = (id: string, fields: Partial<AppTask>): AppTask => ({
  id, serviceId: 's', release: '7', slot: 1, nodeId: null, node: null, state: 'pending', desiredState: 'running',
  message: '', error: null, exitCode: null, address: null, createdAt: '2026-12-05T00:00:00Z', ...fields,
});
const clock = (now: number) => ({ now, deadline: 1000, startTimeoutMs: 100 });

describe('tasksVerdict: why a release\'s swarm tasks are given up, and whose doing it is', () => {
  const rejected = (id: string) => task(id, { state: 'rejected', desiredState: 'shutdown', error: 'No such image: 10.77.0.11:5000/slipway/app@sha256:abc' });
  const exited = (id: string) => task(id, { state: 'failed', desiredState: 'shutdown', error: 'task: non-zero exit (3)', exitCode: 3 });

  it('a slot whose tasks nodes rejected before any ran (a pull that failed): rejected, not the app\'s failure', () => {
    const tasks = Array.from({ length: MAX_TASK_FAILURES }, (_, i) => rejected(`r${i}`));
    expect(tasksVerdict(tasks, new Map(), clock(10))).toMatchObject({ kind: 'rejected', times: MAX_TASK_FAILURES });
  });

  it('a slot whose tasks ran and exited: failed, quoting one that ran', () => {
    expect(tasksVerdict([rejected('r0'), exited('e0')], new Map([['e0', 5]]), clock(10))).toMatchObject({ kind: 'failed', task: { id: 'e0' }, times: 2 });
    expect(tasksVerdict([exited('e0')], new Map(), clock(10))).toBeNull();
  });

  it('the time run out with no task ever started (no node takes it): unplaced; after one had started: late', () => {
    const pending = [task('p0', { message: 'no suitable node (scheduling constraints not satisfied on 3 nodes)' })];
    expect(tasksVerdict(pending, new Map(), clock(999))).toBeNull();
    expect(tasksVerdict(pending, new Map(), clock(1000))).toMatchObject({ kind: 'unplaced', task: { id: 'p0' } });
    expect(tasksVerdict(pending, new Map([['gone', 5]]), clock(1000))).toMatchObject({ kind: 'late', task: { id: 'p0' } });
  });

  it('a task starting for longer than health.timeout_s: slow', () => {
    const starting = [task('s0', { state: 'starting' })];
    expect(tasksVerdict(starting, new Map([['s0', 0]]), clock(100))).toBeNull();
    expect(tasksVerdict(starting, new Map([['s0', 0]]), clock(101))).toMatchObject({ kind: 'slow', task: { id: 's0' } });
  });
});
