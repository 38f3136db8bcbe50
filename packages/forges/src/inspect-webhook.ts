import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import { isBranchName, isGitBranchName, quote } from '@slipway/core/validate';
import type { Push } from '@slipway/queue/job-types';
import { configuredRepository, forgeWebRoot, isSafeCloneUrl, OWNER_NAME, type Provider, webHostOf } from './forge-address.js';
import { isLocalRepo, matchApps } from './match-apps.js';
import { normalisePush, pushIgnoreReason, readPushFields } from './normalise-push.js';
import { verifySignature } from './verify-signature.js';
import { decodeWebhookBody } from './webhook-body.js';
import { WebhookError } from './webhook-error.js';
import { classifyEvent, type IgnoreReason, type MediaType, type WebhookHeaders } from './webhook-headers.js';

// What a receiver reads before it hands the body over: which forge (the path), its headers and media type (before
// the body is read), and the error all of them throw.
export { isProvider, type Provider } from './forge-address.js';
export { WebhookError, type WebhookErrorCode } from './webhook-error.js';
export { checkContentEncoding, readWebhookHeaders, webhookMediaType, type HeaderBag, type IgnoreReason, type MediaType, type WebhookHeaders } from './webhook-headers.js';

/** The part of an app's config a webhook decision needs. */
export type WebhookApp = Pick<AppConfig, 'name' | 'repo' | 'branch' | 'secret'>;

export interface InspectWebhookInput<A extends WebhookApp> {
  headers: WebhookHeaders;
  media: MediaType;
  body: Uint8Array;
  /** The configured apps; the same array on every call (it is indexed once). */
  apps: readonly A[];
  /** Where `owner/name` apps' forges are (`forges.<provider>.api_url`). Default: none configured. */
  forges?: SlipwayConfig['forges'];
}

export type WebhookDecision<A extends WebhookApp> =
  | { kind: 'ignored'; reason: IgnoreReason; message: string }
  /** Verified push of a branch some apps deploy: one job per app, in config order. */
  | { kind: 'push'; push: Push; apps: A[] };

/**
 * Decides what a webhook request means, in order: event header (anything but
 * a push or ping is dropped unread) → body (checked, and the repository it
 * names read without parsing it) → apps of that repository (404) →
 * signature with those apps' secrets (401; only apps whose secret verified
 * go on) → ping → the body parsed → tag, deletion → validated push (400)
 * → apps of that branch → their hosts. Throws WebhookError for every
 * refusal. No I/O. Every web address the payload gives for its
 * repository must be on the host the configuration names for each app the
 * push is for (400 `repository_host_mismatch`): a signed body still does
 * not choose where Slipway clones from, posts statuses to or links to.
 */
export async function inspectWebhook<A extends WebhookApp>(input: InspectWebhookInput<A>): Promise<WebhookDecision<A>> {
  const { headers } = input;
  if (headers.event === null) throw new WebhookError('missing_header', 'the event header is missing');
  const event = classifyEvent(headers.provider, headers.event);
  if (event.kind === 'ignored') return event;

  // Read without being parsed: only a body whose signature verifies is built into a document.
  const body = decodeWebhookBody(headers.provider, input.media, input.body);
  const identity = body.identity;
  if (identity === null) {
    // An organisation-level ping names no repository: there is no secret to check it with.
    if (event.kind === 'ping') return { kind: 'ignored', reason: 'ping', message: 'pong' };
    throw new WebhookError('missing_field', 'the payload names no repository');
  }
  // By path on any host: a payload naming the repository on another host only (every address of it moved) is
  // refused as repository_host_mismatch below once signed, not answered as if no app were configured for it.
  const candidates = matchApps(input.apps, identity, undefined, { anyHost: true });
  if (candidates.length === 0) throw new WebhookError('no_app', 'no app is configured for this repository');

  const verified = await appsWithValidSignature(headers, body.signed(), candidates);
  if (event.kind === 'ping') return { kind: 'ignored', reason: 'ping', message: 'pong' };

  const fields = readPushFields(headers.provider, body.payload());
  const ignored = pushIgnoreReason(fields);
  if (ignored) return { kind: 'ignored', ...ignored };
  // Git and the forges allow branch names no configured branch can have (bots' `@` and `+`, `fix/#12`, `bob's-wip`,
  // `brañch`): such a push is another branch, answered 200, not a bad ref. A 4xx would count as a failed delivery,
  // and GitLab disables a webhook that fails repeatedly. A ref no git would send is still refused (400).
  const otherBranch = typeof fields.ref === 'string' && fields.ref.startsWith('refs/heads/') ? fields.ref.slice('refs/heads/'.length) : null;
  if (otherBranch !== null && !isBranchName(otherBranch) && isGitBranchName(otherBranch)) {
    return { kind: 'ignored', reason: 'other_branch', message: `no app deploys branch ${JSON.stringify(otherBranch)} of this repository` };
  }
  const push = normalisePush(headers.provider, headers.delivery, fields);
  // The apps on the payload's own hosts (a mirror of the same owner/name on another forge is another repository);
  // only when it names none of them at all, the apps of the path elsewhere, each of which the host check refuses.
  const elsewhere = matchApps(verified, identity).length === 0;
  const apps = matchApps(verified, identity, push.ref, { anyHost: elsewhere });
  if (apps.length === 0) {
    return { kind: 'ignored', reason: 'other_branch', message: `no app deploys branch ${JSON.stringify(push.branch)} of this repository` };
  }
  // Checked for the apps the push is for: an app of another branch of the same repository, configured with no host
  // for this forge, does not stop this one's deploys. Its addresses (clone, web) and the links the push is shown with.
  const links = [push.repository.htmlUrl, push.compareUrl].filter((url): url is string => url !== null);
  // Matched by path alone, the host check needs an address to compare: one naming the repository only by SSH
  // addresses on other hosts would otherwise pass it (forges always send a web address; a signed body need not).
  if (elsewhere && ![...identity.urls, ...links].some((url) => webHostOf(url) !== null)) {
    const names = apps.map((app) => app.name).join(', ');
    throw new WebhookError('repository_host_mismatch', `the payload names its repository on no host configured for ${names}, and no web address of it to compare`);
  }
  let local = false;
  for (const app of apps) {
    if (isLocalRepo(app)) {
      // Matched by its own path (not by a path elsewhere): there is no host to check the web addresses against.
      if (elsewhere) throw new WebhookError('repository_host_mismatch', `the payload names its repository on another host, not the repository on this machine ${app.repo} configured for ${app.name}`);
      local = true;
      continue;
    }
    const host = configuredHost(app, headers.provider, identity.fullName, input.forges ?? NO_FORGES);
    assertOnHost(app, host, [...identity.urls, ...links], headers.provider);
  }
  if (local && apps.some((app) => !isLocalRepo(app))) {
    // One repository, named both on this machine and on a forge: which addresses are whose cannot be told.
    throw new WebhookError('repository_host_mismatch', `the payload names its repository both on this machine and on a forge: ${apps.map((app) => `${app.name} (${app.repo})`).join(', ')}`);
  }
  if (!local) {
    if (!isSafeCloneUrl(push.repository.cloneUrl)) throw new WebhookError('invalid_field', `repository clone URL is not an acceptable git URL: ${quote(push.repository.cloneUrl)}`);
    return { kind: 'push', push, apps };
  }
  // Nothing in the configuration vouches for the links of a push to a repository on this machine: none are kept,
  // and the repository is named as configured.
  const repository = { ...push.repository, cloneUrl: apps.find(isLocalRepo)!.repo, htmlUrl: null };
  return { kind: 'push', push: { ...push, compareUrl: null, repository }, apps };
}

async function appsWithValidSignature<A extends WebhookApp>(headers: WebhookHeaders, signed: string, candidates: A[]): Promise<A[]> {
  if (headers.sha1Only) {
    throw new WebhookError('missing_signature', 'only the SHA-1 X-Hub-Signature was sent; X-Hub-Signature-256 is required');
  }
  if (headers.credential === null) {
    throw new WebhookError('missing_signature', headers.provider === 'gitlab' ? 'the X-Gitlab-Token header is missing' : 'the signature header is missing');
  }
  const secrets = [...new Set(candidates.map((app) => app.secret).filter((s): s is string => typeof s === 'string' && s !== ''))];
  if (secrets.length === 0) throw new WebhookError('bad_signature', 'no webhook secret is configured for the apps of this repository');
  const valid = new Set<string>();
  for (const secret of secrets) {
    if (await verifySignature(headers, signed, secret)) valid.add(secret);
  }
  const verified = candidates.filter((app) => app.secret !== undefined && valid.has(app.secret));
  if (verified.length === 0) {
    throw new WebhookError('bad_signature', headers.provider === 'gitlab' ? 'the token does not match' : 'the signature does not match');
  }
  return verified;
}

const NO_FORGES: SlipwayConfig['forges'] = { github: {}, gitea: {}, gitlab: {} };

/**
 * The payload's repository must be where the configuration says the app's
 * is: each http(s) address it names (clone, web: what links and statuses
 * would follow) on the configured host. (An app with a host in its repo
 * is this push's only when the payload names that host, or names none of
 * the apps' hosts at all, which this check then refuses; an `owner/name`
 * app's host comes from `forges.<provider>`, or the public forge.) SSH addresses are not
 * compared: forges may serve SSH under another name, and Slipway never
 * uses a payload's.
 */
function configuredHost(app: WebhookApp, provider: Provider, fullName: string | null, forges: SlipwayConfig['forges']): string[] {
  const configured = configuredRepository(app, provider, forges, fullName ?? undefined);
  if (!configured?.host) {
    throw new WebhookError('repository_host_mismatch', `${app.name}'s repo ${app.repo} names no forge host for a ${provider} push: set forges.${provider}.api_url, or repo to the repository's URL`);
  }
  // An SSH address names the forge's SSH host, which may not be its web host (GitLab's gitlab_ssh_host,
  // Gitea's SSH_DOMAIN): the web side of `forges.<provider>.api_url`, when set, is the app's too.
  const apiWeb = isSshRepo(app) && forges[provider]?.api_url ? forgeWebRoot(provider, forges) : null;
  const apiHost = apiWeb ? new URL(apiWeb).hostname.toLowerCase() : null;
  return apiHost && apiHost !== configured.host ? [configured.host, apiHost] : [configured.host];
}

/** A repo given as an SSH address (scp-like or ssh://): not http(s), not owner/name. */
const isSshRepo = (app: WebhookApp) => !/^https?:\/\//i.test(app.repo) && !OWNER_NAME.test(app.repo);

/** Every address a URL parser reads as http(s) must be on one of `hosts`, those configured for `app`. */
function assertOnHost(app: WebhookApp, hosts: readonly string[], addresses: readonly string[], provider: Provider): void {
  for (const address of addresses) {
    const on = webHostOf(address);
    if (on !== null && !hosts.includes(on)) {
      const hint = isSshRepo(app) ? ` (if ${hosts[0]} is only the forge's SSH host, set forges.${provider}.api_url to its web side)` : '';
      throw new WebhookError('repository_host_mismatch', `the payload's repository is on ${on}, not on ${hosts.join(' or ')} where ${app.name}'s repo is configured${hint}`);
    }
  }
}
