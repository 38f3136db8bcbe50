import { describe, expect, it } from 'vitest';
import type { Provider } from './forge-address.js';
import { readWebhookHeaders, webhookMediaType, type HeaderBag } from './webhook-headers.js';

const sig = `sha256=${'a'.repeat(64)}`;
const uuid = 'f6266f16-1bf3-46a5-9ea4-602e06ead473';

describe('readWebhookHeaders', () => {
  it.each<[string, Provider, HeaderBag, Record<string, unknown>]>([
    ['GitHub', 'github', { 'x-github-event': 'push', 'x-github-delivery': uuid, 'x-hub-signature-256': sig },
      { dialect: 'github', event: 'push', delivery: uuid, credential: sig, sha1Only: false }],
    ['GitHub, SHA-1 only', 'github', { 'x-github-event': 'push', 'x-hub-signature': 'sha1=abc' },
      { credential: null, sha1Only: true, delivery: null }],
    ['GitHub, both signatures', 'github', { 'x-hub-signature': 'sha1=abc', 'x-hub-signature-256': sig }, { credential: sig, sha1Only: false }],
    ['Gitea', 'gitea', { 'x-gitea-event': 'push', 'x-gitea-delivery': uuid, 'x-gitea-signature': 'ab', 'x-gogs-event': 'push', 'x-gogs-delivery': uuid, 'x-gogs-signature': 'ab' },
      { dialect: 'gitea', event: 'push', delivery: uuid, credential: 'ab' }],
    ['Forgejo', 'gitea', { 'x-forgejo-event': 'push', 'x-forgejo-delivery': uuid, 'x-forgejo-signature': 'ab', 'x-gitea-event': 'push' },
      { dialect: 'forgejo', event: 'push', delivery: uuid, credential: 'ab' }],
    ['Gogs', 'gitea', { 'x-gogs-event': 'push', 'x-gogs-delivery': uuid, 'x-gogs-signature': 'ab' },
      { dialect: 'gogs', event: 'push', delivery: uuid, credential: 'ab' }],
    ['GitLab', 'gitlab', { 'x-gitlab-event': 'Push Hook', 'x-gitlab-event-uuid': uuid, 'x-gitlab-token': 't0ken' },
      { dialect: 'gitlab', event: 'Push Hook', delivery: uuid, credential: 't0ken' }],
    ['GitLab prefers Idempotency-Key', 'gitlab', { 'x-gitlab-event': 'Push Hook', 'x-gitlab-event-uuid': uuid, 'idempotency-key': 'k-1' },
      { delivery: 'k-1' }],
    ['a one-element array is one value', 'github', { 'x-github-event': ['push'] }, { event: 'push' }],
    ['nothing at all', 'github', {}, { event: null, delivery: null, credential: null, sha1Only: false }],
  ])('%s', (_name, provider, headers, expected) => {
    expect(readWebhookHeaders(provider, headers)).toMatchObject({ provider, ...expected });
  });

  it.each<[string, Provider, HeaderBag, string]>([
    ['duplicated signature', 'github', { 'x-hub-signature-256': [sig, sig] }, 'bad_header'],
    ['duplicated delivery', 'github', { 'x-github-delivery': [uuid, 'other'] }, 'bad_header'],
    ['duplicated event', 'gitlab', { 'x-gitlab-event': ['Push Hook', 'Push Hook'] }, 'bad_header'],
    ['duplicated token', 'gitlab', { 'x-gitlab-token': ['a', 'b'] }, 'bad_header'],
    ['delivery with a newline', 'github', { 'x-github-delivery': 'a\nb' }, 'bad_header'],
    ['delivery with a slash', 'github', { 'x-github-delivery': '../../x' }, 'bad_header'],
    ['delivery too long', 'github', { 'x-github-delivery': 'a'.repeat(300) }, 'bad_header'],
    ['event with shell characters', 'github', { 'x-github-event': 'push;rm' }, 'bad_header'],
    ['Gitea and Gogs events disagree', 'gitea', { 'x-gitea-event': 'push', 'x-gogs-event': 'issues' }, 'bad_header'],
    ['Gitea and Gogs signatures disagree', 'gitea', { 'x-gitea-signature': 'ab', 'x-gogs-signature': 'cd' }, 'bad_signature'],
    ['signature too long', 'github', { 'x-hub-signature-256': 'x'.repeat(5000) }, 'bad_header'],
    // Gitea sends GitHub's headers too, and its signature verifies as GitHub's: at /hooks/github, GitHub's token would go to it.
    ['a Gitea webhook sent to /hooks/github', 'github', { 'x-github-event': 'push', 'x-gitea-event': 'push', 'x-hub-signature-256': sig }, 'bad_header'],
    ['a GitHub webhook sent to /hooks/gitlab', 'gitlab', { 'x-github-event': 'push', 'x-gitlab-token': 't' }, 'bad_header'],
    ['a GitLab webhook sent to /hooks/gitea', 'gitea', { 'x-gitlab-event': 'Push Hook', 'x-gitea-signature': 'ab' }, 'bad_header'],
    // Gitea sends GitHub's event header beside its own, never alone.
    ['a GitHub webhook sent to /hooks/gitea', 'gitea', { 'x-github-event': 'push', 'x-github-delivery': uuid, 'x-hub-signature-256': sig }, 'bad_header'],
  ])('refuses %s', (_name, provider, headers, code) => {
    expect(() => readWebhookHeaders(provider, headers)).toThrow(expect.objectContaining({ code }));
  });

  it('says where a webhook sent to another forge\'s endpoint goes', () => {
    expect(() => readWebhookHeaders('github', { 'x-github-event': 'push', 'x-gogs-event': 'push' })).toThrow('a webhook with x-gogs-event was sent to /hooks/github: send it to /hooks/gitea');
    expect(() => readWebhookHeaders('gitea', { 'x-github-event': 'push' })).toThrow('a webhook with x-github-event was sent to /hooks/gitea: send it to /hooks/github');
  });

  it('a refused webhook is the request\'s fault, never Slipway\'s, and not worth sending again as it is', () => {
    expect(() => readWebhookHeaders('github', { 'x-github-delivery': [uuid, 'other'] })).toThrow(expect.objectContaining({ code: 'bad_header', status: 400, fault: 'request', retryable: false }));
  });
});

describe('webhookMediaType', () => {
  it.each<[Provider, string | string[] | undefined, 'json' | 'form' | 415]>([
    ['github', 'application/json', 'json'],
    ['github', 'Application/JSON; charset=utf-8', 'json'],
    ['github', 'application/json; charset="UTF-8"', 'json'],
    ['github', 'application/x-www-form-urlencoded', 'form'],
    ['gitea', 'application/x-www-form-urlencoded', 'form'],
    ['gitlab', 'application/json', 'json'],
    ['gitlab', 'application/x-www-form-urlencoded', 415],
    ['github', 'application/json; charset=latin1', 415],
    ['github', 'text/plain', 415],
    ['github', 'multipart/form-data; boundary=x', 415],
    ['github', 'application/jsonp', 415],
    ['github', '', 415],
    ['github', undefined, 415],
    ['github', ['application/json', 'text/plain'], 415],
  ])('%s %j → %s', (provider, header, expected) => {
    if (expected === 415) expect(() => webhookMediaType(provider, header)).toThrow(expect.objectContaining({ status: 415, code: 'unsupported_media_type' }));
    else expect(webhookMediaType(provider, header)).toBe(expected);
  });
});
