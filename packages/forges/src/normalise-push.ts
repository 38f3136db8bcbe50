import { branchOfRef, isSha, quote } from '@slipway/core/validate';
import type { Push } from '@slipway/queue/job-types';
import { isLocalCloneUrl, isSafeCloneUrl, type Provider } from './forge-address.js';
import { WebhookError } from './webhook-error.js';
import type { IgnoreReason } from './webhook-headers.js';

/*
 * A verified push, from the forge's payload to the `Push` a deploy job
 * holds: where each forge puts its fields, why a push deploys nothing (a
 * tag, a deleted branch, another ref), and the strict validation of the rest.
 */

/** A push's fields as the forge sent them, before any validation. */
export interface PushFields {
  ref: unknown;
  before: unknown;
  after: unknown;
  /** GitHub's explicit flag; other forges only say it with `after` = zeros. */
  deleted: unknown;
  /** GitHub's flag for a force push; Gitea and GitLab send none. */
  forced: unknown;
  fullName: unknown;
  cloneUrl: unknown;
  htmlUrl: unknown;
  pusher: unknown;
  message: unknown;
  compareUrl: unknown;
}

type Json = Record<string, unknown>;

const obj = (value: unknown): Json => (typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : {});
const first = (...values: unknown[]): unknown => values.find((v) => v !== undefined && v !== null && v !== '');

/** Where each forge puts a push's fields (GitHub, Gitea/Forgejo/Gogs, GitLab). */
export function readPushFields(provider: Provider, payload: Json): PushFields {
  const common = { ref: payload.ref, before: payload.before, after: payload.after, deleted: payload.deleted, forced: payload.forced };
  if (provider === 'gitlab') {
    const project = obj(payload.project);
    const repository = obj(payload.repository);
    const commits = Array.isArray(payload.commits) ? payload.commits.map(obj) : [];
    const head = commits.find((c) => c.id === payload.after);
    return {
      ...common,
      deleted: undefined,
      fullName: project.path_with_namespace,
      cloneUrl: first(project.git_http_url, repository.git_http_url, project.git_ssh_url, repository.git_ssh_url),
      htmlUrl: first(project.web_url, repository.homepage),
      pusher: first(payload.user_username, payload.user_name),
      message: head?.message,
      // GitLab sends no compare link; its web UI has one at this address.
      compareUrl: gitlabCompare(first(project.web_url, repository.homepage), payload.before, payload.after),
    };
  }
  const repository = obj(payload.repository);
  const pusher = obj(payload.pusher);
  const sender = obj(payload.sender);
  const commits = Array.isArray(payload.commits) ? payload.commits.map(obj) : [];
  const head = obj(payload.head_commit);
  return {
    ...common,
    fullName: repository.full_name,
    cloneUrl: first(repository.clone_url, repository.ssh_url),
    htmlUrl: repository.html_url,
    // GitHub: pusher.name; Gitea/Gogs: pusher.login / username.
    pusher: first(pusher.login, pusher.username, pusher.name, sender.login),
    message: first(head.message, commits.find((c) => c.id === payload.after)?.message),
    compareUrl: first(payload.compare, payload.compare_url),
  };
}

function gitlabCompare(web: unknown, before: unknown, after: unknown): unknown {
  if (typeof web !== 'string' || typeof before !== 'string' || typeof after !== 'string' || /^0+$/.test(before)) return null;
  return `${web.replace(/\/+$/, '')}/-/compare/${before}...${after}`;
}

const ZEROS = /^0{40}$/;
const SAFE_REF = /^refs\/[A-Za-z0-9._/-]{1,240}$/;

/**
 * Why a verified push deploys nothing, or null when it may: a tag, a
 * branch deletion (`after` all zeros, or GitHub's `deleted: true`), or a
 * ref outside refs/heads/. Unusable refs are left for `normalisePush` to refuse.
 */
export function pushIgnoreReason(fields: PushFields): { reason: IgnoreReason; message: string } | null {
  const ref = typeof fields.ref === 'string' ? fields.ref : '';
  if (ref.startsWith('refs/tags/')) return { reason: 'tag', message: 'tag pushes do not deploy' };
  if (!ref.startsWith('refs/heads/')) {
    return SAFE_REF.test(ref) ? { reason: 'other_ref', message: 'only refs/heads/* pushes deploy' } : null;
  }
  if (fields.deleted === true || (typeof fields.after === 'string' && ZEROS.test(fields.after))) {
    return { reason: 'branch_deletion', message: 'a deleted branch has nothing to deploy' };
  }
  return null;
}

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
  // Optional (what it orders, a forced push's replaced head, is only known with it); when given, a commit id.
  const before = fields.before === undefined || fields.before === null ? null : required(fields.before, 'before');
  if (before !== null && !isSha(before)) throw invalid('before', `must be 40 lowercase hex digits, got ${quote(before)}`);
  const fullName = required(fields.fullName, 'repository full name');
  if (fullName.length > PUSH_LIMITS.fullName || !FULL_NAME.test(fullName) || fullName.split('/').some((s) => s === '.' || s === '..')) {
    throw invalid('repository full name', `must be owner/name, got ${quote(fullName)}`);
  }
  const cloneUrl = required(fields.cloneUrl, 'repository clone URL');
  // A local one is for an app configured with that path only: inspectWebhook refuses it for any other.
  if (!isSafeCloneUrl(cloneUrl) && !isLocalCloneUrl(cloneUrl)) throw invalid('repository clone URL', `is not an acceptable git URL: ${quote(cloneUrl)}`);
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
  // UTF-16 length bounds the number of characters: most text needs no splitting into code points,
  // and text without a surrogate (no character beyond U+FFFF) is cut by index, without splitting it.
  if (clean.length <= max) return clean;
  if (!/[\uD800-\uDFFF]/.test(clean)) return `${clean.slice(0, max - 1)}…`;
  const chars = Array.from(clean);
  return chars.length > max ? `${chars.slice(0, max - 1).join('')}…` : clean;
}
