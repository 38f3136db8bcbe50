import { InvalidInputError } from '@slipway/core/slipway-error';
import { APP_NAME } from '@slipway/core/validate';
import type { ListOptions } from '@slipway/queue/job-store';
import { JOB_STATES, type JobState } from '@slipway/queue/job-types';

/** Jobs listed when no `limit` is given, and the most one request may ask for. */
export const DEFAULT_JOB_LIMIT = 50;
export const MAX_JOB_LIMIT = 500;

/** `?app=&state=&limit=` of `GET /api/jobs`, validated; empty values mean "any". */
export function jobQuery(query: Record<string, unknown>): Required<Pick<ListOptions, 'limit'>> & ListOptions {
  const app = single(query.app, 'app');
  const state = single(query.state, 'state');
  const limitText = single(query.limit, 'limit');
  if (app && !APP_NAME.test(app)) throw new InvalidInputError(`app: not an app name: ${JSON.stringify(app.slice(0, 80))}`);
  if (state && !JOB_STATES.includes(state as JobState)) throw new InvalidInputError(`state: one of ${JOB_STATES.join(', ')}`);
  const limit = limitText ? Number(limitText) : DEFAULT_JOB_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_JOB_LIMIT) throw new InvalidInputError(`limit: a whole number from 1 to ${MAX_JOB_LIMIT}`);
  return { app: app || undefined, state: (state || undefined) as JobState | undefined, limit };
}

function single(value: unknown, name: string): string {
  if (value === undefined) return '';
  if (typeof value !== 'string') throw new InvalidInputError(`${name}: give it once`);
  return value.trim();
}
