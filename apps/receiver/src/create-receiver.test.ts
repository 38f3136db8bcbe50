import { describe, expect, it } from 'vitest';
import { validateConfig } from '@slipway/config/load-config';
import { processBounds, REDIS_BACKLOG_LIMIT } from './create-receiver.js';
import { LARGE_BODIES_BUDGET_BYTES, SMALL_BODIES_BUDGET_BYTES } from './read-body.js';

const receiver = (fields: Record<string, unknown>) => validateConfig({ receiver: fields, apps: {} }, { file: null, env: {} }).receiver;

describe('processBounds: what one receiver process may hold', () => {
  it('is the receiver\'s bound with one process, and an Nth of it with receiver.processes N', () => {
    expect(processBounds(receiver({ body_limit_mb: 1 }))).toEqual({ largeBodiesBytes: LARGE_BODIES_BUDGET_BYTES, smallBodiesBytes: SMALL_BODIES_BUDGET_BYTES, redisBacklog: REDIS_BACKLOG_LIMIT });
    expect(processBounds(receiver({ processes: 4, body_limit_mb: 1 }))).toEqual({ largeBodiesBytes: LARGE_BODIES_BUDGET_BYTES / 4, smallBodiesBytes: SMALL_BODIES_BUDGET_BYTES / 4, redisBacklog: REDIS_BACKLOG_LIMIT / 4 });
  });

  it('still reads one body of body_limit_mb, however many processes share the budget', () => {
    expect(processBounds(receiver({ processes: 64, body_limit_mb: 25 })).largeBodiesBytes).toBe(25 * 1024 * 1024);
  });
});
