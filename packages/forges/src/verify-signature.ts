import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { Webhooks } from '@octokit/webhooks';
import type { WebhookHeaders } from './webhook-headers.js';

const GITHUB_SIGNATURE = /^sha256=[0-9a-f]{64}$/;
const HEX_SIGNATURE = /^[0-9a-f]{64}$/;

/** One @octokit/webhooks verifier per secret; a handful of secrets at most (one per app). */
const verifiers = new Map<string, Webhooks>();

/**
 * Does the request carry a valid signature (GitHub `X-Hub-Signature-256`,
 * Gitea/Forgejo/Gogs HMAC-SHA256 hex) or token (GitLab) for `secret`?
 * `signed` is the text whose UTF-8 bytes were signed (see decodeWebhookBody).
 * All comparisons take the same time whatever the mismatch.
 */
export async function verifySignature(headers: WebhookHeaders, signed: string, secret: string): Promise<boolean> {
  const credential = headers.credential;
  if (credential === null || secret === '') return false;
  switch (headers.provider) {
    case 'github': {
      if (!GITHUB_SIGNATURE.test(credential) || signed === '') return false;
      return githubVerifier(secret).verify(signed, credential);
    }
    case 'gitea': {
      const given = credential.toLowerCase();
      if (!HEX_SIGNATURE.test(given)) return false;
      const expected = createHmac('sha256', secret).update(signed, 'utf8').digest('hex');
      return timingSafeEqual(Buffer.from(given, 'latin1'), Buffer.from(expected, 'latin1'));
    }
    case 'gitlab': {
      // Hash both sides so neither the token's length nor its content leaks through timing.
      const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();
      return timingSafeEqual(digest(credential), digest(secret));
    }
  }
}

function githubVerifier(secret: string): Webhooks {
  let verifier = verifiers.get(secret);
  if (!verifier) {
    if (verifiers.size >= 256) verifiers.clear();
    verifier = new Webhooks({ secret });
    verifiers.set(secret, verifier);
  }
  return verifier;
}
