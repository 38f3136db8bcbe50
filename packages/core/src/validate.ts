import { InvalidInputError } from './slipway-error.js';

/** App names double as Docker labels, etcd path segments and file names. */
export const APP_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const SHA40 = /^[0-9a-f]{40}$/;
/** Abbreviated or full commit ids a user may type. */
export const SHA_PREFIX = /^[0-9a-f]{7,40}$/;

export function isAppName(value: unknown): value is string {
  return typeof value === 'string' && APP_NAME.test(value);
}

export function assertAppName(value: unknown, what = 'app name'): string {
  if (!isAppName(value)) {
    throw new InvalidInputError(`${what} must match ${APP_NAME.source}, got ${quote(value)}`);
  }
  return value;
}

export function isSha(value: unknown): value is string {
  return typeof value === 'string' && SHA40.test(value);
}

export function assertSha(value: unknown, what = 'sha'): string {
  if (!isSha(value)) throw new InvalidInputError(`${what} must be 40 lowercase hex digits, got ${quote(value)}`);
  return value;
}

/**
 * A git branch name we are willing to hand to git: the rules of
 * `git check-ref-format --branch`, plus nothing that could be read as an
 * option or escape a path. Stricter than git, on purpose.
 */
export function isBranchName(value: unknown): value is string {
  // git's rules for a branch name, in the characters that need no quoting anywhere.
  return isGitBranchName(value) && /^[A-Za-z0-9._/-]+$/.test(value);
}

/**
 * A name git itself accepts for a branch (git check-ref-format --branch):
 * wider than isBranchName, which Slipway deploys and passes to commands;
 * `fix/#12`, `bob's-wip`, `dependabot/@babel/core+1`, `brañch` are
 * branches a forge may report, to be told apart from refs no git sends.
 */
export function isGitBranchName(value: unknown): value is string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 255) return false;
  // Control characters, space, DEL and ~ ^ : ? * [ \ are never in a ref name.
  if (/[\u0000-\u0020\u007f~^:?*[\\]/.test(value)) return false;
  if (value.startsWith('-') || value.startsWith('/') || value.endsWith('/') || value.endsWith('.') || value === '@') return false;
  if (value.includes('..') || value.includes('//') || value.includes('@{')) return false;
  return !value.split('/').some((part) => part.startsWith('.') || part.endsWith('.lock'));
}

/** `refs/heads/<branch>` → branch, or null for anything else (tags, notes, garbage). */
export function branchOfRef(ref: unknown): string | null {
  if (typeof ref !== 'string' || !ref.startsWith('refs/heads/')) return null;
  const branch = ref.slice('refs/heads/'.length);
  return isBranchName(branch) ? branch : null;
}

/** A value quoted for an error message, cut short so hostile input cannot flood a log. */
export function quote(value: unknown): string {
  const text = typeof value === 'string' ? JSON.stringify(value) : value === undefined ? 'nothing' : JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/**
 * A Docker image reference as a deploy may name it: `[host[:port]/]path[:tag][@sha256:digest]`
 * (`registry.example.com:5000/team/app:1.2`, a swarm release's `…:abc@sha256:…`), at most 255
 * characters; nothing that could read as an option or hold a space.
 */
export function isImageReference(value: unknown): value is string {
  return typeof value === 'string' && value.length <= 255 && IMAGE_REFERENCE.test(value);
}

const IMAGE_REFERENCE = /^(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::\d{1,5})?\/)?[a-z0-9][a-z0-9._/-]*(?::[A-Za-z0-9._-]{1,128})?(?:@sha256:[a-f0-9]{64})?$/;

