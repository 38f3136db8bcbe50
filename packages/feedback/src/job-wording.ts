import type { SlipwayConfig } from '@slipway/config/types';
import type { Fault } from '@slipway/core/slipway-error';

/*
 * How Slipway speaks of a job outside itself, the same in a commit status,
 * a Slack message and a webhook payload: its dashboard link, durations and
 * one-line texts, and whether a failure was the commit's or Slipway's.
 */

/**
 * Whether a failed deploy is the commit's failure or Slipway's error.
 * `failure`: what was pushed does not deploy (the build fails, the new
 * containers do not start or stay unhealthy, nginx rejects the config, the
 * commit or image is not there). `error`: Slipway could not do its part
 * (Redis, etcd or Docker unreachable after every attempt, nginx would not
 * reload, the rollout lock stayed taken, credentials refused, a bug):
 * pushing again may work.
 */
export type FailureKind = 'failure' | 'error';

/** A failure that is anything but Slipway's own fault (see `Fault`, `faultOf`) is the commit's `failure`. */
export function failureKind(fault: Fault): FailureKind {
  return fault === 'slipway' ? 'error' : 'failure';
}

/** Where users reach the dashboard: `dashboard.public_url`, else `http://<host>:<port>`. No trailing slash. */
export function dashboardUrl(dashboard: SlipwayConfig['dashboard']): string {
  if (dashboard.public_url) return dashboard.public_url.replace(/\/+$/, '');
  const host = dashboard.host.includes(':') ? `[${dashboard.host}]` : dashboard.host;
  return `http://${host}:${dashboard.port}`;
}

/** A job's page on the dashboard: `<dashboard>/jobs/<id>`. */
export function jobPageUrl(dashboard: string, id: string): string {
  return `${dashboard.replace(/\/+$/, '')}/jobs/${encodeURIComponent(id)}`;
}

/** `850 ms`, `42 s`, `3 min 5 s`, `1 h 2 min`: for descriptions and messages. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 ? `${m} min ${s % 60} s` : `${m} min`;
  const h = Math.floor(m / 60);
  return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
}

/** One line of at most `max` characters (code points): whitespace runs become one space, a longer text ends with `…`. */
export function shortText(text: string, max: number): string {
  const line = text.replace(/\s+/g, ' ').trim();
  const chars = Array.from(line);
  return chars.length <= max ? line : `${chars.slice(0, max - 1).join('').trimEnd()}…`;
}
