import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { giteaSignature } from '@slipway/devstack/testing';
import { verifySignature } from './verify-signature.js';
import { readWebhookHeaders } from './webhook-headers.js';

const body = '{"ref":"refs/heads/master","zen":"Keep it logically awesome. \u2603"}';
const secret = 'It\'s a Secret to Everybody';
const hex = (key: string, text = body) => giteaSignature(text, key);

describe('verifySignature', () => {
  it.each([
    ['GitHub, right secret', 'github', { 'x-hub-signature-256': `sha256=${hex(secret)}` }, true],
    ['GitHub, wrong secret', 'github', { 'x-hub-signature-256': `sha256=${hex('other')}` }, false],
    ['GitHub, signature of other bytes', 'github', { 'x-hub-signature-256': `sha256=${hex(secret, `${body} `)}` }, false],
    ['GitHub, without the sha256= prefix', 'github', { 'x-hub-signature-256': hex(secret) }, false],
    ['GitHub, upper-case prefix', 'github', { 'x-hub-signature-256': `SHA256=${hex(secret)}` }, false],
    ['GitHub, truncated', 'github', { 'x-hub-signature-256': `sha256=${hex(secret).slice(0, 63)}` }, false],
    ['GitHub, SHA-1 only', 'github', { 'x-hub-signature': `sha1=${createHmac('sha1', secret).update(body).digest('hex')}` }, false],
    ['GitHub, none', 'github', {}, false],
    ['Gitea, right secret', 'gitea', { 'x-gitea-signature': hex(secret) }, true],
    ['Gitea, upper-case hex', 'gitea', { 'x-gitea-signature': hex(secret).toUpperCase() }, true],
    ['Forgejo, right secret', 'gitea', { 'x-forgejo-signature': hex(secret), 'x-gitea-signature': hex(secret), 'x-gogs-signature': hex(secret) }, true],
    ['Gogs, right secret', 'gitea', { 'x-gogs-signature': hex(secret) }, true],
    ['Gitea, wrong secret', 'gitea', { 'x-gitea-signature': hex('other') }, false],
    ['Gitea, GitHub-style prefix', 'gitea', { 'x-gitea-signature': `sha256=${hex(secret)}` }, false],
    ['Gitea, not hex', 'gitea', { 'x-gitea-signature': 'z'.repeat(64) }, false],
    ['GitLab, right token', 'gitlab', { 'x-gitlab-token': secret }, true],
    ['GitLab, wrong token', 'gitlab', { 'x-gitlab-token': 'It\'s a Secret to Everybod' }, false],
    ['GitLab, token with extra', 'gitlab', { 'x-gitlab-token': `${secret}x` }, false],
    ['GitLab, none', 'gitlab', {}, false],
  ] as const)('%s → %s', async (_name, provider, headers, ok) => {
    expect(await verifySignature(readWebhookHeaders(provider, headers), body, secret)).toBe(ok);
  });

  it('never verifies against an empty secret', async () => {
    expect(await verifySignature(readWebhookHeaders('gitlab', { 'x-gitlab-token': '' }), body, '')).toBe(false);
    expect(await verifySignature(readWebhookHeaders('gitea', { 'x-gitea-signature': hex('') }), body, '')).toBe(false);
  });
});
