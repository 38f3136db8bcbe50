import { createHmac, randomUUID } from 'node:crypto';
import type { OutgoingHttpHeaders } from 'node:http';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { giteaSignature, githubSignature, testStack } from '@slipway/devstack/testing';
import { docFixture, githubBranchPush, SECRETS, TEST_APPS } from './fixtures.js';
import { rawRequest, startReceiver, type TestReceiver } from './start-receiver.js';

let r: TestReceiver;
beforeAll(async () => {
  r = await startReceiver({ redisUrl: testStack().redis!.url, apps: TEST_APPS, bodyLimitMb: 1 });
});
afterAll(() => r.close());

interface Hostile {
  name: string;
  status: number;
  code?: string;
  path?: string;
  method?: string;
  headers: OutgoingHttpHeaders;
  body?: Buffer | string | Buffer[];
}

type Payload = Record<string, unknown> & { repository: Record<string, unknown> };
const push = (change: (p: Payload) => void = () => {}) => {
  const payload = githubBranchPush() as Payload;
  change(payload);
  return JSON.stringify(payload);
};
/** A GitHub request signed with the right secret unless told otherwise: the hostile part is elsewhere. */
const github = (body: string | Buffer, extra: OutgoingHttpHeaders = {}, secret: string = SECRETS.hello): OutgoingHttpHeaders => ({
  'content-type': 'application/json',
  'x-github-event': 'push',
  'x-github-delivery': randomUUID(),
  'x-hub-signature-256': githubSignature(body, secret),
  ...extra,
});
const valid = push();
const gitea = JSON.stringify(docFixture('gitea-push'));
const gitlab = JSON.stringify(docFixture('gitlab-push'));
const big = Buffer.alloc(1024 * 1024 + 1, 'a');
const notUtf8 = Buffer.concat([Buffer.from(valid.slice(0, 30)), Buffer.from([0xff, 0xfe]), Buffer.from(valid.slice(30))]);
const deep = `{"repository":${'['.repeat(20_000)}${']'.repeat(20_000)}}`;

const cases: Hostile[] = [
  // Signatures and tokens
  { name: 'no signature', status: 401, code: 'missing_signature', headers: github(valid, { 'x-hub-signature-256': undefined }), body: valid },
  { name: 'empty signature', status: 401, code: 'missing_signature', headers: github(valid, { 'x-hub-signature-256': '' }), body: valid },
  { name: 'wrong signature', status: 401, code: 'bad_signature', headers: github(valid, { 'x-hub-signature-256': `sha256=${'0'.repeat(64)}` }), body: valid },
  { name: 'SHA-1-only X-Hub-Signature', status: 401, code: 'missing_signature', headers: github(valid, { 'x-hub-signature-256': undefined, 'x-hub-signature': `sha1=${createHmac('sha1', SECRETS.hello).update(valid).digest('hex')}` }), body: valid },
  { name: 'another app\'s secret', status: 401, code: 'bad_signature', headers: github(valid, {}, SECRETS.pings), body: valid },
  { name: 'signature of another body', status: 401, code: 'bad_signature', headers: github(`${valid} `), body: valid },
  { name: 'signature without sha256=', status: 401, code: 'bad_signature', headers: github(valid, { 'x-hub-signature-256': githubSignature(valid, SECRETS.hello).slice(7) }), body: valid },
  { name: 'Gitea: sha256= prefixed signature', status: 401, code: 'bad_signature', path: '/hooks/gitea', headers: { 'content-type': 'application/json', 'x-gitea-event': 'push', 'x-gitea-delivery': randomUUID(), 'x-gitea-signature': `sha256=${giteaSignature(gitea, SECRETS.gitea)}` }, body: gitea },
  { name: 'Gitea: X-Gitea and X-Gogs signatures disagree', status: 401, code: 'bad_signature', path: '/hooks/gitea', headers: { 'content-type': 'application/json', 'x-gitea-event': 'push', 'x-gitea-delivery': randomUUID(), 'x-gitea-signature': giteaSignature(gitea, SECRETS.gitea), 'x-gogs-signature': giteaSignature(gitea, SECRETS.hello) }, body: gitea },
  { name: 'GitLab: wrong token', status: 401, code: 'bad_signature', path: '/hooks/gitlab', headers: { 'content-type': 'application/json', 'x-gitlab-event': 'Push Hook', 'x-gitlab-event-uuid': randomUUID(), 'x-gitlab-token': `${SECRETS.gitlab}x` }, body: gitlab },
  { name: 'GitLab: another app\'s token', status: 401, code: 'bad_signature', path: '/hooks/gitlab', headers: { 'content-type': 'application/json', 'x-gitlab-event': 'Push Hook', 'x-gitlab-event-uuid': randomUUID(), 'x-gitlab-token': SECRETS.tags }, body: gitlab },
  { name: 'GitLab: no token', status: 401, code: 'missing_signature', path: '/hooks/gitlab', headers: { 'content-type': 'application/json', 'x-gitlab-event': 'Push Hook', 'x-gitlab-event-uuid': randomUUID() }, body: gitlab },
  // Bodies
  { name: 'truncated JSON', status: 400, code: 'invalid_payload', headers: github(valid.slice(0, 200)), body: valid.slice(0, 200) },
  { name: 'not JSON at all', status: 400, code: 'invalid_payload', headers: github('hello'), body: 'hello' },
  { name: 'a JSON array', status: 400, code: 'invalid_payload', headers: github('[]'), body: '[]' },
  { name: 'bytes that are not UTF-8', status: 400, code: 'invalid_payload', headers: github(notUtf8), body: notUtf8 },
  { name: 'empty body', status: 400, code: 'invalid_payload', headers: github(''), body: '' },
  { name: 'deeply nested JSON, unsigned', status: 400, code: 'missing_field', headers: github(deep, { 'x-hub-signature-256': undefined }), body: deep },
  { name: 'form with two payload fields', status: 400, code: 'invalid_payload', headers: github('payload=%7B%7D&payload=%7B%7D', { 'content-type': 'application/x-www-form-urlencoded' }), body: 'payload=%7B%7D&payload=%7B%7D' },
  { name: 'a ref only in __proto__', status: 400, code: 'missing_field', headers: github(push((p) => { delete p.ref; p['__proto__'] = { ref: 'refs/heads/master' }; })), body: push((p) => { delete p.ref; p['__proto__'] = { ref: 'refs/heads/master' }; }) },
  // Sizes and types
  { name: 'a body over the limit (Content-Length)', status: 413, code: 'payload_too_large', headers: github(big), body: big },
  { name: 'a body over the limit (chunked)', status: 413, code: 'payload_too_large', headers: github(big, { 'transfer-encoding': 'chunked' }), body: [big.subarray(0, 600_000), big.subarray(600_000)] },
  { name: 'text/plain', status: 415, code: 'unsupported_media_type', headers: github(valid, { 'content-type': 'text/plain' }), body: valid },
  { name: 'no Content-Type', status: 415, code: 'unsupported_media_type', headers: github(valid, { 'content-type': undefined }), body: valid },
  { name: 'multipart', status: 415, code: 'unsupported_media_type', headers: github(valid, { 'content-type': 'multipart/form-data; boundary=x' }), body: valid },
  { name: 'JSON in another charset', status: 415, code: 'unsupported_media_type', headers: github(valid, { 'content-type': 'application/json; charset=utf-16' }), body: valid },
  { name: 'a gzip body', status: 415, code: 'unsupported_media_type', headers: github(gzipSync(valid), { 'content-encoding': 'gzip' }), body: gzipSync(valid) },
  { name: 'a compressed non-push event (not acknowledged unread)', status: 415, code: 'unsupported_media_type', headers: github(gzipSync(valid), { 'content-encoding': 'identity, br', 'x-github-event': 'issues' }), body: gzipSync(valid) },
  { name: 'GitLab with form encoding', status: 415, code: 'unsupported_media_type', path: '/hooks/gitlab', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-gitlab-event': 'Push Hook', 'x-gitlab-event-uuid': randomUUID(), 'x-gitlab-token': SECRETS.gitlab }, body: `payload=${encodeURIComponent(gitlab)}` },
  // Headers
  { name: 'duplicated X-Hub-Signature-256', status: 400, code: 'bad_header', headers: github(valid, { 'x-hub-signature-256': [githubSignature(valid, SECRETS.hello), githubSignature(valid, SECRETS.hello)] }), body: valid },
  { name: 'duplicated X-GitHub-Delivery', status: 400, code: 'bad_header', headers: github(valid, { 'x-github-delivery': [randomUUID(), randomUUID()] }), body: valid },
  { name: 'duplicated X-GitHub-Event', status: 400, code: 'bad_header', headers: github(valid, { 'x-github-event': ['push', 'push'] }), body: valid },
  { name: 'duplicated X-Gitlab-Token', status: 400, code: 'bad_header', path: '/hooks/gitlab', headers: { 'content-type': 'application/json', 'x-gitlab-event': 'Push Hook', 'x-gitlab-event-uuid': randomUUID(), 'x-gitlab-token': [SECRETS.gitlab, SECRETS.gitlab] }, body: gitlab },
  { name: 'duplicated Content-Type', status: 415, code: 'unsupported_media_type', headers: github(valid, { 'content-type': ['application/json', 'application/json'] }), body: valid },
  { name: 'no event header', status: 400, code: 'missing_header', headers: github(valid, { 'x-github-event': undefined }), body: valid },
  { name: 'event header with shell characters', status: 400, code: 'bad_header', headers: github(valid, { 'x-github-event': 'push;reboot' }), body: valid },
  { name: 'delivery id $(id)', status: 400, code: 'bad_header', headers: github(valid, { 'x-github-delivery': '$(id)' }), body: valid },
  { name: 'delivery id with ../', status: 400, code: 'bad_header', headers: github(valid, { 'x-github-delivery': '../../etc/passwd' }), body: valid },
  { name: 'no delivery id', status: 400, code: 'missing_header', headers: github(valid, { 'x-github-delivery': undefined }), body: valid },
  // Fields (validly signed: validation is what refuses them)
  { name: 'ref with shell metacharacters', status: 400, code: 'invalid_field', headers: github(push((p) => { p.ref = 'refs/heads/master;$(touch /tmp/pwned)`id`'; })), body: push((p) => { p.ref = 'refs/heads/master;$(touch /tmp/pwned)`id`'; }) },
  // (A name git allows but no configured branch can have, `mäster`, is another branch: 200, see inspect-webhook.test.ts.)
  { name: 'ref git would not send (~)', status: 400, code: 'invalid_field', headers: github(push((p) => { p.ref = 'refs/heads/master~1'; })), body: push((p) => { p.ref = 'refs/heads/master~1'; }) },
  { name: 'ref with a newline', status: 400, code: 'invalid_field', headers: github(push((p) => { p.ref = 'refs/heads/master\nrm'; })), body: push((p) => { p.ref = 'refs/heads/master\nrm'; }) },
  { name: 'option-like ref', status: 400, code: 'invalid_field', headers: github(push((p) => { p.ref = 'refs/heads/--force'; })), body: push((p) => { p.ref = 'refs/heads/--force'; }) },
  { name: 'sha that is not hex', status: 400, code: 'invalid_field', headers: github(push((p) => { p.after = 'z'.repeat(40); })), body: push((p) => { p.after = 'z'.repeat(40); }) },
  { name: 'sha with a shell payload', status: 400, code: 'invalid_field', headers: github(push((p) => { p.after = '$(reboot)'.padEnd(40, 'a'); })), body: push((p) => { p.after = '$(reboot)'.padEnd(40, 'a'); }) },
  { name: 'before that is not a sha', status: 400, code: 'invalid_field', headers: github(push((p) => { p.before = 'HEAD~1'; })), body: push((p) => { p.before = 'HEAD~1'; }) },
  { name: 'option-like clone URL', status: 400, code: 'invalid_field', headers: github(push((p) => { p.repository.clone_url = '--upload-pack=touch /tmp/pwned'; })), body: push((p) => { p.repository.clone_url = '--upload-pack=touch /tmp/pwned'; }) },
  { name: 'ext:: clone URL', status: 400, code: 'invalid_field', headers: github(push((p) => { p.repository.clone_url = 'ext::sh -c touch% /tmp/pwned'; })), body: push((p) => { p.repository.clone_url = 'ext::sh -c touch% /tmp/pwned'; }) },
  { name: 'clone URL with credentials', status: 400, code: 'invalid_field', headers: github(push((p) => { p.repository.clone_url = 'https://x:token@github.com/Codertocat/Hello-World.git'; })), body: push((p) => { p.repository.clone_url = 'https://x:token@github.com/Codertocat/Hello-World.git'; }) },
  { name: 'repository name with ../', status: 400, code: 'invalid_field', headers: github(push((p) => { p.repository.full_name = '../../etc/passwd'; })), body: push((p) => { p.repository.full_name = '../../etc/passwd'; }) },
  { name: 'repository with ../ in every URL', status: 404, code: 'no_app', headers: github(push((p) => { for (const k of ['clone_url', 'html_url', 'ssh_url', 'git_url']) p.repository[k] = 'https://github.com/Codertocat/../evil/x.git'; p.repository.full_name = 'Codertocat/../evil'; })), body: push((p) => { for (const k of ['clone_url', 'html_url', 'ssh_url', 'git_url']) p.repository[k] = 'https://github.com/Codertocat/../evil/x.git'; p.repository.full_name = 'Codertocat/../evil'; }) },
  { name: 'unknown repository', status: 404, code: 'no_app', headers: github(push((p) => { p.repository = { full_name: 'evil/repo', clone_url: 'https://github.com/evil/repo.git' }; })), body: push((p) => { p.repository = { full_name: 'evil/repo', clone_url: 'https://github.com/evil/repo.git' }; }) },
  // Paths and methods
  { name: 'app name with ../ in the path', status: 404, code: 'not_found', path: '/hooks/../hooks/github/../../etc/passwd', headers: github(valid), body: valid },
  { name: 'encoded ../ in the path', status: 404, code: 'not_found', path: '/hooks/%2e%2e%2fgithub', headers: github(valid), body: valid },
  { name: 'malformed percent-encoding in the path', status: 400, path: '/hooks/%E0%A4%A', headers: github(valid), body: valid },
  { name: 'an unknown forge', status: 404, code: 'not_found', path: '/hooks/bitbucket', headers: github(valid), body: valid },
  { name: 'PUT instead of POST', status: 405, code: 'method_not_allowed', method: 'PUT', headers: github(valid), body: valid },
];

describe('hostile requests: refused with their status, nothing queued', () => {
  it('has at least 30 of them', () => expect(cases.length).toBeGreaterThanOrEqual(30));

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const res = await rawRequest(r.url, { method: c.method, path: c.path ?? '/hooks/github', headers: c.headers, body: c.body });
    expect(res.status).toBe(c.status);
    const body = JSON.parse(res.body) as Record<string, unknown>;
    if (c.code) expect(body.error).toBe(c.code);
    expect(body.message).toEqual(expect.any(String));
    for (const secret of Object.values(SECRETS)) expect(res.body).not.toContain(secret);
    expect(await r.jobs()).toEqual([]);
    expect(await r.queue.bull.getJobCounts()).toMatchObject({ waiting: 0, active: 0, delayed: 0, prioritized: 0 });
  });

  it('a client like fetch gets the 413 of an upload over the limit, and the connection is not left half-read', async () => {
    const body = Buffer.alloc(3 * 1024 * 1024, 'a');
    const res = await fetch(`${r.url}/hooks/github`, { method: 'POST', headers: github(body) as Record<string, string>, body });
    expect(res.status).toBe(413);
    expect(res.headers.get('connection')).toBe('close');
    expect(await res.json()).toMatchObject({ error: 'payload_too_large' });
    expect((await fetch(`${r.url}/healthz`)).status).toBe(200);
  });

  it('left no delivery claimed and logged no secret', async () => {
    expect(await r.redis.keys(`${r.prefix}:delivery:*`)).toEqual([]);
    for (const secret of Object.values(SECRETS)) expect(r.logText()).not.toContain(secret);
  });
});
