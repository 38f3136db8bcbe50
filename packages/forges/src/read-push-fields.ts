import type { Provider } from './provider.js';

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
