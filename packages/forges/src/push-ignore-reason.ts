import type { IgnoreReason } from './classify-event.js';
import type { PushFields } from './read-push-fields.js';

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
