import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { giteaSignature, githubSignature } from '@slipway/devstack/testing';

/** A repository as forges describe it in a push. */
export interface RepoDescription {
  /** `owner/name` */
  fullName: string;
  cloneUrl: string;
  htmlUrl: string;
}

export interface PushDescription {
  repo: RepoDescription;
  before: string;
  after: string;
  branch?: string;
  message?: string;
}

/** A request as a forge would send it. */
export interface WebhookRequest {
  path: string;
  headers: Record<string, string>;
  body: string;
}

/** A forge's JSON payload, edited field by field: its shape is the forge's, not ours. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- fixture JSON, mutated in place
type Payload = Record<string, any>;

const examples = createRequire(import.meta.url)('@octokit/webhooks-examples') as Array<{ name: string; examples: Array<Record<string, unknown>> }>;

/** GitHub's own push example (from @octokit/webhooks-examples), pointed at our repository and commits. */
export function githubPush(push: PushDescription): Record<string, unknown> {
  const example = structuredClone(examples.find((e) => e.name === 'push')!.examples.find((e) => e.ref === 'refs/heads/master' && !e.deleted)!) as Payload;
  example.ref = `refs/heads/${push.branch ?? 'master'}`;
  example.before = push.before;
  example.after = push.after;
  example.created = false;
  example.deleted = false;
  Object.assign(example.repository, {
    full_name: push.repo.fullName, name: push.repo.fullName.split('/')[1], html_url: push.repo.htmlUrl,
    clone_url: push.repo.cloneUrl, git_url: push.repo.cloneUrl, ssh_url: push.repo.cloneUrl, url: push.repo.htmlUrl,
  });
  example.head_commit = { ...example.head_commit, id: push.after, message: push.message ?? 'release' };
  // The example's compare link is on github.com: a forge links to itself (and the receiver checks that it does).
  example.compare = `${push.repo.htmlUrl}/compare/${push.before.slice(0, 12)}...${push.after.slice(0, 12)}`;
  return example;
}

/** Gitea's documented push payload, pointed at our repository and commits. */
export function giteaPush(push: PushDescription): Record<string, unknown> {
  const payload = JSON.parse(readFileSync(new URL('./gitea-push.json', import.meta.url), 'utf8')) as Payload;
  delete payload.secret;
  payload.ref = `refs/heads/${push.branch ?? 'master'}`;
  payload.before = push.before;
  payload.after = push.after;
  payload.commits = [{ ...payload.commits[0], id: push.after, message: push.message ?? 'release' }];
  Object.assign(payload.repository, { full_name: push.repo.fullName, name: push.repo.fullName.split('/')[1], html_url: push.repo.htmlUrl, clone_url: push.repo.cloneUrl, ssh_url: push.repo.cloneUrl });
  payload.compare_url = `${push.repo.htmlUrl}/compare/${push.before}...${push.after}`;
  return payload;
}

/** GitHub, JSON body or its `payload=` form encoding; the signature covers the bytes sent. */
export function githubRequest(payload: unknown, secret: string, form = false): WebhookRequest {
  const json = JSON.stringify(payload);
  const body = form ? `payload=${encodeURIComponent(json)}` : json;
  return {
    path: '/hooks/github',
    body,
    headers: {
      'content-type': form ? 'application/x-www-form-urlencoded' : 'application/json',
      'x-github-event': 'push',
      'x-github-delivery': randomUUID(),
      'x-hub-signature-256': githubSignature(body, secret),
    },
  };
}

/** Gitea, JSON or form: Gitea signs the JSON payload itself either way. */
export function giteaRequest(payload: unknown, secret: string, form = false): WebhookRequest {
  const json = JSON.stringify(payload);
  return {
    path: '/hooks/gitea',
    body: form ? `payload=${encodeURIComponent(json)}` : json,
    headers: {
      'content-type': form ? 'application/x-www-form-urlencoded' : 'application/json',
      'x-gitea-event': 'push',
      'x-gitea-delivery': randomUUID(),
      'x-gitea-signature': giteaSignature(json, secret),
    },
  };
}

export async function send(receiverUrl: string, request: WebhookRequest): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${receiverUrl}${request.path}`, { method: 'POST', headers: request.headers, body: request.body });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}
