import type { Push } from '@slipway/queue/job-types';
import { branchOfRef, isSha, quote } from '@slipway/core/validate';
import { isSafeCloneUrl } from './is-safe-clone-url.js';
import type { Provider } from './provider.js';
import type { PushFields } from './read-push-fields.js';
import { WebhookError } from './webhook-error.js';

/** Bounds on what a job may hold; longer display text is cut, longer identifiers refused. */
export const PUSH_LIMITS = { ref: 255, fullName: 255, url: 2048, pusher: 255, message: 4096 } as const;

const FULL_NAME = /^[A-Za-z0-9_.-]+(?:\/[A-Za-z0-9_.-]+)+$/;

/**
 * Validates a verified push of a branch into the `Push` a job holds.
 * Throws WebhookError (400) naming the first bad field. Tags and
 * deletions are filtered out before this (see `pushIgnoreReason`).
 */
export function normalisePush(provider: Provider, delivery: string | null, fields: PushFields): Push {
  if (delivery === null) throw new WebhookError('missing_header', 'the delivery id header is missing');
  const ref = required(fields.ref, 'ref');
  if (ref.length > PUSH_LIMITS.ref) throw invalid('ref', 'is too long');
  const branch = branchOfRef(ref);
  if (branch === null) throw invalid('ref', `is not a usable branch ref: ${quote(ref)}`);
  const sha = required(fields.after, 'after');
  if (!isSha(sha)) throw invalid('after', `must be 40 lowercase hex digits, got ${quote(sha)}`);
  const before = required(fields.before, 'before');
  if (!isSha(before)) throw invalid('before', `must be 40 lowercase hex digits, got ${quote(before)}`);
  const fullName = required(fields.fullName, 'repository full name');
  if (fullName.length > PUSH_LIMITS.fullName || !FULL_NAME.test(fullName) || fullName.split('/').some((s) => s === '.' || s === '..')) {
    throw invalid('repository full name', `must be owner/name, got ${quote(fullName)}`);
  }
  const cloneUrl = required(fields.cloneUrl, 'repository clone URL');
  if (!isSafeCloneUrl(cloneUrl)) throw invalid('repository clone URL', `is not an acceptable git URL: ${quote(cloneUrl)}`);
  return {
    provider,
    delivery,
    repository: { fullName, cloneUrl, htmlUrl: webUrl(fields.htmlUrl) },
    ref,
    branch,
    sha,
    before,
    pusher: text(fields.pusher, PUSH_LIMITS.pusher, false),
    message: text(fields.message, PUSH_LIMITS.message, true),
    compareUrl: webUrl(fields.compareUrl),
    forced: fields.forced === true,
  };
}

function required(value: unknown, name: string): string {
  if (value === undefined || value === null || value === '') throw new WebhookError('missing_field', `the payload has no ${name}`);
  if (typeof value !== 'string') throw invalid(name, 'must be a string');
  return value;
}

function invalid(name: string, problem: string): WebhookError {
  return new WebhookError('invalid_field', `${name} ${problem}`);
}

/** An http(s) link for display, or null: an odd one is dropped rather than refused. */
function webUrl(value: unknown): string | null {
  if (typeof value !== 'string' || value.length > PUSH_LIMITS.url || /[\s\0-\x1f\x7f]/.test(value)) return null;
  try {
    const url = new URL(value);
    return (url.protocol === 'https:' || url.protocol === 'http:') && url.username === '' && url.password === '' ? value : null;
  } catch {
    return null;
  }
}

/** Display text: control characters dropped (newlines kept in messages), cut to `max` characters. */
function text(value: unknown, max: number, multiline: boolean): string | null {
  if (typeof value !== 'string') return null;
  const clean = value.replace(multiline ? /[\0-\x08\x0b-\x1f\x7f]/g : /[\0-\x1f\x7f]/g, '').trim();
  if (clean === '') return null;
  // UTF-16 length bounds the number of characters: most text needs no splitting into code points.
  if (clean.length <= max) return clean;
  const chars = Array.from(clean);
  return chars.length > max ? `${chars.slice(0, max - 1).join('')}…` : clean;
}
