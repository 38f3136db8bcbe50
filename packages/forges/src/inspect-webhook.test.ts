import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { giteaSignature, githubSignature } from '@slipway/devstack/testing';
import { inspectWebhook, readWebhookHeaders, type Provider, type WebhookApp } from './inspect-webhook.js';

interface Example { name: string; examples: Array<Record<string, unknown>> }
const definitions = createRequire(import.meta.url)('@octokit/webhooks-examples') as Example[];
const examplesOf = (name: string) => definitions.find((d) => d.name === name)!.examples;

const secret = 'hello-secret';
const apps: WebhookApp[] = [
  { name: 'hello', repo: 'https://github.com/Codertocat/Hello-World.git', branch: 'master', secret },
  { name: 'hello-worker', repo: 'git@github.com:codertocat/hello-world', branch: 'master', secret },
  { name: 'hello-staging', repo: 'codertocat/hello-world', branch: 'develop', secret: 'staging-secret' },
  { name: 'other', repo: 'https://github.com/acme/other', branch: 'master', secret: 'other-secret' },
];

function github(payload: unknown, options: { event?: string; key?: string; delivery?: string | null; body?: string } = {}) {
  const body = options.body ?? JSON.stringify(payload);
  const headers = readWebhookHeaders('github', {
    'x-github-event': options.event ?? 'push',
    ...(options.delivery === null ? {} : { 'x-github-delivery': options.delivery ?? '72d3162e-cc78-11e3-81ab-4c9367dc0958' }),
    'x-hub-signature-256': githubSignature(body, options.key ?? secret),
  });
  return inspectWebhook({ headers, media: 'json', body: Buffer.from(body), apps });
}

const branchPush = () => structuredClone(examplesOf('push').find((e) => e.ref === 'refs/heads/master')!);

describe('inspectWebhook with the @octokit/webhooks-examples payloads', () => {
  it('a branch push becomes a normalised push for every app of that repository and branch', async () => {
    const decision = await github(branchPush());
    expect(decision.kind).toBe('push');
    if (decision.kind !== 'push') return;
    expect(decision.apps.map((a) => a.name)).toEqual(['hello', 'hello-worker']);
    expect(decision.push).toEqual({
      provider: 'github',
      delivery: '72d3162e-cc78-11e3-81ab-4c9367dc0958',
      repository: { fullName: 'Codertocat/Hello-World', cloneUrl: 'https://github.com/Codertocat/Hello-World.git', htmlUrl: 'https://github.com/Codertocat/Hello-World' },
      ref: 'refs/heads/master',
      branch: 'master',
      sha: '6113728f27ae82c7b1a177c8d03f9e96e0adf246',
      before: '0000000000000000000000000000000000000000',
      pusher: 'Codertocat',
      message: 'Initial commit',
      compareUrl: 'https://github.com/Codertocat/Hello-World/commit/6113728f27ae82c7b1a177c8d03f9e96e0adf246',
      forced: false,
    });
  });

  it('every push example is either a push or ignored with a reason, never an error', async () => {
    const reasons = [];
    for (const example of examplesOf('push')) {
      const decision = await github(example);
      reasons.push(decision.kind === 'push' ? 'push' : decision.reason);
    }
    expect(reasons).toContain('push');
    expect(reasons).toContain('tag');
    expect(reasons.every((r) => r === 'push' || r === 'tag')).toBe(true);
  });

  it('pings are ignored once verified', async () => {
    for (const example of examplesOf('ping')) {
      const decision = await github(example, { event: 'ping' }).catch((err) => err);
      // Pings of repositories no app deploys are 404: the setup is wrong and the forge should say so.
      if (decision instanceof Error) expect(decision).toMatchObject({ code: 'no_app' });
      else expect(decision).toMatchObject({ kind: 'ignored', reason: 'ping' });
    }
    const ping = { zen: 'Design for failure.', hook_id: 1, repository: branchPush().repository };
    expect(await github(ping, { event: 'ping' })).toMatchObject({ kind: 'ignored', reason: 'ping' });
    await expect(github(ping, { event: 'ping', key: 'wrong' })).rejects.toMatchObject({ code: 'bad_signature' });
    expect(await github({ zen: 'x', hook_id: 1, organization: {} }, { event: 'ping' })).toMatchObject({ kind: 'ignored', reason: 'ping' });
  });

  it('other events are ignored without reading the body', async () => {
    expect(await github(null, { event: 'issues', body: '{not json' })).toMatchObject({ kind: 'ignored', reason: 'event' });
  });
});

describe('inspectWebhook decisions', () => {
  const push = branchPush();
  type Mutable = Record<string, unknown> & { repository: Record<string, unknown>; head_commit: Record<string, unknown>; pusher: Record<string, unknown> };
  const mutate = (patch: (p: Mutable) => void) => {
    const copy = structuredClone(push) as Mutable;
    patch(copy);
    return copy;
  };
  const sha = 'a'.repeat(40);

  it.each<[string, Record<string, unknown>, { key?: string; delivery?: string | null }, Record<string, unknown>]>([
    ['deleted branch (deleted: true)', mutate((p) => { p.deleted = true; p.after = '0'.repeat(40); }), {}, { kind: 'ignored', reason: 'branch_deletion' }],
    ['deleted branch (zeros)', mutate((p) => { p.after = '0'.repeat(40); }), {}, { kind: 'ignored', reason: 'branch_deletion' }],
    ['tag', mutate((p) => { p.ref = 'refs/tags/v1.0'; }), {}, { kind: 'ignored', reason: 'tag' }],
    ['a note ref', mutate((p) => { p.ref = 'refs/notes/commits'; }), {}, { kind: 'ignored', reason: 'other_ref' }],
    ['a branch no app deploys', mutate((p) => { p.ref = 'refs/heads/feature/x'; }), {}, { kind: 'ignored', reason: 'other_branch' }],
    ['a bot\'s branch, named as no configured branch can be', mutate((p) => { p.ref = 'refs/heads/dependabot/npm_and_yarn/@babel/core-7.23.0'; }), {}, { kind: 'ignored', reason: 'other_branch', message: 'no app deploys branch "dependabot/npm_and_yarn/@babel/core-7.23.0" of this repository' }],
    ['another bot\'s branch', mutate((p) => { p.ref = 'refs/heads/renovate/@types-node-20.x+build.1'; }), {}, { kind: 'ignored', reason: 'other_branch' }],
    // Names git and the forges allow, which no configured branch can be: another branch, not a 400 the forge counts as a failure.
    ['an issue branch', mutate((p) => { p.ref = 'refs/heads/fix/#123-crash'; }), {}, { kind: 'ignored', reason: 'other_branch', message: 'no app deploys branch "fix/#123-crash" of this repository' }],
    ['a branch with a quote', mutate((p) => { p.ref = "refs/heads/bob's-wip"; }), {}, { kind: 'ignored', reason: 'other_branch' }],
    ['a branch with unicode', mutate((p) => { p.ref = 'refs/heads/brañch'; }), {}, { kind: 'ignored', reason: 'other_branch' }],
    ['develop, signed with the staging secret', mutate((p) => { p.ref = 'refs/heads/develop'; }), { key: 'staging-secret' }, { kind: 'push' }],
    ['develop, signed with the master apps\' secret', mutate((p) => { p.ref = 'refs/heads/develop'; }), {}, { kind: 'ignored', reason: 'other_branch' }],
    // A minimal payload (a script's, a test's) need not say what the branch was before.
    ['a push without before', mutate((p) => { delete p.before; }), {}, { kind: 'push', push: { before: null } }],
  ])('%s', async (_name, payload, options, expected) => {
    expect(await github(payload, options)).toMatchObject(expected);
  });

  it.each<[string, Record<string, unknown>, { key?: string; delivery?: string | null }, string]>([
    ['another app\'s secret', push, { key: 'other-secret' }, 'bad_signature'],
    ['a secret of nobody', push, { key: 'guess' }, 'bad_signature'],
    ['no repository', mutate((p) => { (p as Record<string, unknown>).repository = undefined; }), {}, 'missing_field'],
    ['an unknown repository', mutate((p) => { p.repository.full_name = 'x/y'; p.repository.clone_url = 'https://github.com/x/y.git'; p.repository.html_url = 'https://github.com/x/y'; p.repository.ssh_url = 'git@github.com:x/y.git'; p.repository.git_url = 'git://github.com/x/y.git'; }), {}, 'no_app'],
    ['no delivery id', push, { delivery: null }, 'missing_header'],
    ['a sha that is not hex', mutate((p) => { p.after = 'g'.repeat(40); }), {}, 'invalid_field'],
    ['an upper-case sha', mutate((p) => { p.after = sha.toUpperCase(); }), {}, 'invalid_field'],
    ['a short sha', mutate((p) => { p.after = sha.slice(1); }), {}, 'invalid_field'],
    ['a sha that is a number', mutate((p) => { p.after = 12345; }), {}, 'invalid_field'],
    ['no after', mutate((p) => { delete p.after; }), {}, 'missing_field'],
    ['a bad before', mutate((p) => { p.before = '$(reboot)'; }), {}, 'invalid_field'],
    ['no ref', mutate((p) => { delete p.ref; }), {}, 'missing_field'],
    ['a before that is no commit id', mutate((p) => { p.before = 'HEAD~1'; }), {}, 'invalid_field'],
    ['a ref with shell metacharacters', mutate((p) => { p.ref = 'refs/heads/$(touch /tmp/x)'; }), {}, 'invalid_field'],
    ['a ref with a control character', mutate((p) => { p.ref = 'refs/heads/a\u0001b'; }), {}, 'invalid_field'],
    ['a ref with ..', mutate((p) => { p.ref = 'refs/heads/../../etc'; }), {}, 'invalid_field'],
    ['a ref that looks like an option', mutate((p) => { p.ref = 'refs/heads/-f'; }), {}, 'invalid_field'],
    ['a ref with @{', mutate((p) => { p.ref = 'refs/heads/a@{1}'; }), {}, 'invalid_field'],
    ['an option-like ref with @', mutate((p) => { p.ref = 'refs/heads/-@x'; }), {}, 'invalid_field'],
    ['an option-like clone URL', mutate((p) => { p.repository.clone_url = '--upload-pack=touch /tmp/pwned'; }), {}, 'invalid_field'],
    ['a file:// clone URL', mutate((p) => { p.repository.clone_url = 'file:///etc'; }), {}, 'invalid_field'],
    ['a full name with ../', mutate((p) => { p.repository.full_name = '../../etc/passwd'; }), {}, 'invalid_field'],
    // Signed, so its sender holds the secret; still, the hosts to talk to come from the config.
    ['a clone URL on another host (matched by its web URL)', mutate((p) => { p.repository.clone_url = 'https://evil.example/Codertocat/Hello-World.git'; }), {}, 'repository_host_mismatch'],
    ['a web URL on another host (where statuses and links would go)', mutate((p) => { p.repository.html_url = 'https://evil.example/Codertocat/Hello-World'; }), {}, 'repository_host_mismatch'],
    ['a web URL on another host without its slashes (https:host), which a URL parser reads all the same', mutate((p) => { p.repository.html_url = 'https:evil.example/Codertocat/Hello-World'; }), {}, 'repository_host_mismatch'],
    ['a compare link on another host', mutate((p) => { p.compare = 'https://evil.example/compare/a...b'; }), {}, 'repository_host_mismatch'],
    ['every address of the repository on another host (the same owner/name)', mutate((p) => {
      for (const key of ['clone_url', 'html_url', 'url', 'git_url', 'ssh_url']) p.repository[key] = String(p.repository[key]).replace('github.com', 'evil.example');
      p.compare = String(p.compare).replace('github.com', 'evil.example');
    }), {}, 'repository_host_mismatch'],
    ['the repository named only by SSH addresses, on another host (nothing the host check could compare)', mutate((p) => {
      for (const key of ['clone_url', 'html_url', 'url', 'git_url', 'svn_url', 'mirror_url', 'homepage']) delete p.repository[key];
      p.repository.ssh_url = 'git@evil.example:Codertocat/Hello-World.git';
      delete p.compare;
    }), {}, 'repository_host_mismatch'],
  ])('refuses %s', async (_name, payload, options, code) => {
    await expect(github(payload, options)).rejects.toMatchObject({ code });
  });

  it('a push to a mirror of the same owner/name on another forge is that forge\'s app\'s: a branch only the other forge\'s app deploys is ignored there, not refused', async () => {
    const mirrored: WebhookApp[] = [
      { name: 'web', repo: 'https://github.com/Codertocat/Hello-World.git', branch: 'master', secret },
      { name: 'web-mirror', repo: 'https://gitlab.example/Codertocat/Hello-World.git', branch: 'develop', secret },
    ];
    const onMirror = mutate((p) => {
      for (const key of ['clone_url', 'html_url', 'url', 'git_url', 'ssh_url']) p.repository[key] = String(p.repository[key]).replace('github.com', 'gitlab.example');
      p.compare = String(p.compare).replace('github.com', 'gitlab.example');
    });
    const body = JSON.stringify(onMirror);
    const headers = readWebhookHeaders('github', { 'x-github-event': 'push', 'x-github-delivery': 'd-2', 'x-hub-signature-256': githubSignature(body, secret) });
    expect(await inspectWebhook({ headers, media: 'json', body: Buffer.from(body), apps: mirrored })).toMatchObject({ kind: 'ignored', reason: 'other_branch' });
  });

  it('an owner/name app takes webhooks only from the forge the config names (github.com, or forges.<provider>.api_url)', async () => {
    const ownerName: WebhookApp[] = [{ name: 'hello', repo: 'codertocat/hello-world', branch: 'master', secret }];
    const send = (payload: unknown, forges?: Parameters<typeof inspectWebhook>[0]['forges']) => {
      const body = JSON.stringify(payload);
      const headers = readWebhookHeaders('github', {
        'x-github-event': 'push', 'x-github-delivery': 'd-1',
        'x-hub-signature-256': githubSignature(body, secret),
      });
      return inspectWebhook({ headers, media: 'json', body: Buffer.from(body), apps: ownerName, forges });
    };
    expect(await send(push)).toMatchObject({ kind: 'push' });
    const elsewhere = mutate((p) => {
      for (const key of ['clone_url', 'html_url', 'url']) p.repository[key] = String(p.repository[key]).replace('github.com', 'ghe.example.com');
      p.compare = String(p.compare).replace('github.com', 'ghe.example.com');
    });
    await expect(send(elsewhere)).rejects.toMatchObject({ code: 'repository_host_mismatch', status: 400 });
    const ghe = { github: { api_url: 'https://ghe.example.com/api/v3' }, gitea: {}, gitlab: {} };
    expect(await send(elsewhere, ghe)).toMatchObject({ kind: 'push' });
    await expect(send(push, ghe)).rejects.toMatchObject({ code: 'repository_host_mismatch' });
  });

  it('an app whose repo is on this machine (a path, or file://) takes pushes naming that path, with no links kept; a push naming it on a forge is refused', async () => {
    const local: WebhookApp[] = [
      { name: 'hello', repo: '/srv/git/Hello-World.git', branch: 'master', secret },
      { name: 'remote', repo: 'https://github.com/acme/other', branch: 'master', secret },
    ];
    const send = (payload: unknown) => {
      const body = JSON.stringify(payload);
      const headers = readWebhookHeaders('github', { 'x-github-event': 'push', 'x-github-delivery': 'd-local', 'x-hub-signature-256': githubSignature(body, secret) });
      return inspectWebhook({ headers, media: 'json', body: Buffer.from(body), apps: local });
    };
    for (const address of ['/srv/git/Hello-World.git', 'file:///srv/git/hello-world']) {
      const decision = await send(mutate((p) => { p.repository.clone_url = address; }));
      if (decision.kind !== 'push') throw new Error('expected a push');
      expect(decision.apps.map((a) => a.name)).toEqual(['hello']);
      expect(decision.push.repository).toEqual({ fullName: 'Codertocat/Hello-World', cloneUrl: '/srv/git/Hello-World.git', htmlUrl: null });
      expect(decision.push.compareUrl).toBeNull();
    }
    // The same path on a forge is another repository; another path is no app's.
    const onForge = mutate((p) => { for (const key of ['clone_url', 'html_url', 'url']) p.repository[key] = 'https://github.com/srv/git/Hello-World'; });
    await expect(send(onForge)).rejects.toMatchObject({ code: 'repository_host_mismatch' });
    await expect(send(mutate((p) => { p.repository.clone_url = '/srv/git/other.git'; }))).rejects.toMatchObject({ code: 'no_app' });
    // A path for an app on a forge is not an address it could name; one that climbs is no app's path.
    const remote = mutate((p) => { p.repository.clone_url = '/srv/git/other.git'; p.repository.html_url = 'https://github.com/acme/other'; p.repository.full_name = 'acme/other'; });
    await expect(send(remote)).rejects.toMatchObject({ code: 'invalid_field' });
    await expect(send(mutate((p) => { p.repository.clone_url = '/srv/git/x/../Hello-World.git'; }))).rejects.toMatchObject({ code: 'no_app' });
    // Named both here and on a forge another app is configured on: whose addresses are whose cannot be told.
    const both = mutate((p) => { p.repository.clone_url = '/srv/git/Hello-World.git'; p.repository.html_url = 'https://github.com/acme/other'; p.repository.full_name = 'acme/other'; });
    await expect(send(both)).rejects.toMatchObject({ code: 'repository_host_mismatch' });
  });

  it('cuts long display text and drops control characters', async () => {
    const decision = await github(mutate((p) => { p.head_commit.message = `fix\u0000\u001b[31m ${'x'.repeat(10_000)}`; p.pusher.name = 'a\nb'; }));
    if (decision.kind !== 'push') throw new Error('expected a push');
    expect(decision.push.message!.startsWith('fix[31m x')).toBe(true);
    expect(Array.from(decision.push.message!)).toHaveLength(4096);
    expect(decision.push.pusher).toBe('ab');
    // Characters beyond U+FFFF count once, and are never cut in half.
    const astral = await github(mutate((p) => { p.head_commit.message = `${'x'.repeat(3_000)}${'\u{1F600}'.repeat(2_000)}`; }));
    if (astral.kind !== 'push') throw new Error('expected a push');
    const chars = Array.from(astral.push.message!);
    expect([chars.length, chars.at(-1), chars.at(-2)]).toEqual([4096, '…', '\u{1F600}']);
  });
});

describe('inspectWebhook for Gitea and GitLab', () => {
  const giteaPush = {
    ref: 'refs/heads/main', before: 'b'.repeat(40), after: 'c'.repeat(40), compare_url: 'http://gitea.local/o/r/compare/x...y',
    commits: [{ id: 'c'.repeat(40), message: 'msg' }],
    repository: { full_name: 'o/r', clone_url: 'http://gitea.local/o/r.git', ssh_url: 'ssh://git@gitea.local:2222/o/r.git', html_url: 'http://gitea.local/o/r' },
    pusher: { login: 'alice' },
  };
  const giteaApps: WebhookApp[] = [{ name: 'r', repo: 'git@gitea.local:o/r.git', branch: 'main', secret }];
  const inspect = (provider: Provider, headers: Record<string, string>, body: string, list = giteaApps) =>
    inspectWebhook({ headers: readWebhookHeaders(provider, headers), media: 'json', body: Buffer.from(body), apps: list });

  it('Gitea and Forgejo pushes verify with the HMAC hex header', async () => {
    const body = JSON.stringify(giteaPush);
    const signature = giteaSignature(body, secret);
    for (const prefix of ['gitea', 'forgejo', 'gogs']) {
      const decision = await inspect('gitea', { [`x-${prefix}-event`]: 'push', [`x-${prefix}-delivery`]: 'd-1', [`x-${prefix}-signature`]: signature }, body);
      expect(decision).toMatchObject({ kind: 'push', push: { provider: 'gitea', pusher: 'alice', message: 'msg', sha: 'c'.repeat(40), branch: 'main' } });
    }
    await expect(inspect('gitea', { 'x-gitea-event': 'push', 'x-gitea-delivery': 'd-1' }, body)).rejects.toMatchObject({ code: 'missing_signature' });
  });

  it('GitLab pushes verify with the token', async () => {
    const body = JSON.stringify({
      object_kind: 'push', ref: 'refs/heads/main', before: '0'.repeat(40), after: 'd'.repeat(40), user_username: 'bob',
      project: { path_with_namespace: 'g/p', git_http_url: 'https://gitlab.local/g/p.git', web_url: 'https://gitlab.local/g/p' },
      commits: [{ id: 'd'.repeat(40), message: 'hi' }],
    });
    const list: WebhookApp[] = [{ name: 'p', repo: 'https://gitlab.local/g/p', branch: 'main', secret }];
    const headers = { 'x-gitlab-event': 'Push Hook', 'x-gitlab-event-uuid': 'u-1', 'x-gitlab-token': secret };
    expect(await inspect('gitlab', headers, body, list)).toMatchObject({ kind: 'push', push: { provider: 'gitlab', pusher: 'bob', message: 'hi', compareUrl: null, delivery: 'u-1' } });
    await expect(inspect('gitlab', { ...headers, 'x-gitlab-token': 'nope' }, body, list)).rejects.toMatchObject({ code: 'bad_signature' });
    expect(await inspect('gitlab', { ...headers, 'x-gitlab-event': 'Tag Push Hook' }, body, list)).toMatchObject({ kind: 'ignored', reason: 'tag' });
  });

  it('an app cloned over SSH from a forge whose SSH host is not its web host takes its pushes once forges.<provider>.api_url says where the web side is', async () => {
    const body = JSON.stringify({
      object_kind: 'push', ref: 'refs/heads/main', before: '0'.repeat(40), after: 'd'.repeat(40), user_username: 'bob',
      project: { path_with_namespace: 'g/p', git_ssh_url: 'git@ssh.gitlab.example.com:g/p.git', git_http_url: 'https://gitlab.example.com/g/p.git', web_url: 'https://gitlab.example.com/g/p' },
      commits: [{ id: 'd'.repeat(40), message: 'hi' }],
    });
    const headers = readWebhookHeaders('gitlab', { 'x-gitlab-event': 'Push Hook', 'x-gitlab-event-uuid': 'u-2', 'x-gitlab-token': secret });
    const apps: WebhookApp[] = [{ name: 'p', repo: 'git@ssh.gitlab.example.com:g/p.git', branch: 'main', secret }];
    const send = (forges?: Parameters<typeof inspectWebhook>[0]['forges']) => inspectWebhook({ headers, media: 'json', body: Buffer.from(body), apps, forges });
    await expect(send(), 'the web side could be anywhere').rejects.toMatchObject({ code: 'repository_host_mismatch' });
    expect(await send({ github: {}, gitea: {}, gitlab: { api_url: 'https://gitlab.example.com/api/v4' } })).toMatchObject({ kind: 'push', push: { sha: 'd'.repeat(40) } });
    await expect(send({ github: {}, gitea: {}, gitlab: { api_url: 'https://elsewhere.example/api/v4' } })).rejects.toMatchObject({ code: 'repository_host_mismatch' });
  });

  it('an app of another branch of the repository with no host for this forge does not stop the push of this one', async () => {
    const body = JSON.stringify(giteaPush);
    const headers = { 'x-gitea-event': 'push', 'x-gitea-delivery': 'd-3', 'x-gitea-signature': giteaSignature(body, secret) };
    // `o/r` names no Gitea host (forges.gitea.api_url unset): a push of its branch is refused, one of main is not.
    const list: WebhookApp[] = [...giteaApps, { name: 'r-preview', repo: 'o/r', branch: 'preview', secret }];
    expect(await inspect('gitea', headers, body, list)).toMatchObject({ kind: 'push', apps: [{ name: 'r' }] });
    const preview = JSON.stringify({ ...giteaPush, ref: 'refs/heads/preview' });
    await expect(inspect('gitea', { ...headers, 'x-gitea-signature': giteaSignature(preview, secret) }, preview, list)).rejects.toMatchObject({ code: 'repository_host_mismatch' });
  });

  it('an app without a secret never takes webhooks', async () => {
    const body = JSON.stringify(giteaPush);
    const list: WebhookApp[] = [{ name: 'r', repo: 'o/r', branch: 'main' }];
    await expect(inspect('gitea', { 'x-gitea-event': 'push', 'x-gitea-delivery': 'd', 'x-gitea-signature': 'a'.repeat(64) }, body, list)).rejects.toMatchObject({ code: 'bad_signature', status: 401 });
  });
});
