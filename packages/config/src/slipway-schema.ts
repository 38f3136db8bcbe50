import { APP_NAME, isBranchName, quote } from '@slipway/core/validate';
import { dict, INVALID, list, num, obj, oneOf, port, str, type Schema } from './schema.js';
import type { StepConfig } from './types.js';

/*
 * The shape of slipway.yml: every key, its check, its default and its doc,
 * in one tree the loader validates with and the README's reference table
 * is generated from.
 */

// --- Checks of single values

/** Each returns null when the value is fine, else a short reason. */
type Check = (value: string) => string | null;

const ipv4: Check = (v) => {
  const parts = v.split('.');
  return parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255) ? null : 'invalid';
};

/** `host:port` with a port 1-65535: its host, or null. */
const hostOf = (v: string): string | null => {
  const m = /^(.+):(\d{1,5})$/.exec(v);
  return m && Number(m[2]) >= 1 && Number(m[2]) <= 65535 ? m[1]! : null;
};

/** A DNS name of letters, digits and inner hyphens per label; one of digits and dots only is an IPv4 address or nothing. */
const dnsName = (v: string): boolean =>
  !/^[\d.]+$/.test(v) && v.length <= 253 && v.split('.').every((label) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(label));

/** `host:port` whose host is an IPv4 address or a DNS name (`999.1.1.1`, `-` or `..` are neither). */
const hostPort: Check = (v) => {
  const host = hostOf(v);
  return host === null || (ipv4(host) && !dnsName(host)) ? 'invalid' : null;
};

/** An IPv4 address and port: where a server of Slipway's own binds (dnsmasq's --listen-address takes no name). */
const ipPort: Check = (v) => {
  const host = hostOf(v);
  if (host === null) return 'invalid';
  return ipv4(host) ? 'an IPv4 address and a port, e.g. 127.0.0.1:5353' : null;
};

const hostname: Check = (v) =>
  /^(\*\.)?[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,62})(\.[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,62}))*\.?$|^_$|^localhost$/.test(v) ? null : 'invalid';

/** A Host the dashboard serves: `*.com` would let in any name under a top-level domain, anyone's, which a DNS rebinding needs. */
const allowedHost: Check = (v) =>
  hostname(v) ?? (v.startsWith('*.') && !v.slice(2).replace(/\.$/, '').includes('.') ? 'a wildcard needs a domain of its own under it, e.g. *.example.com' : null);

const url = (protocols: string[]): Check => (v) => {
  try {
    const parsed = new URL(v);
    return protocols.includes(parsed.protocol.replace(/:$/, '')) ? null : `protocol must be ${protocols.join(' or ')}`;
  } catch {
    return 'invalid';
  }
};

/**
 * An address Slipway POSTs to or links to: http(s), with no user or
 * password in it (fetch refuses such a URL, quoting it whole in its error,
 * and a link would show it): a token goes in its own key.
 */
const webUrl: Check = (v) => {
  const problem = url(['http', 'https'])(v);
  if (problem) return problem;
  const parsed = new URL(v);
  return parsed.username || parsed.password ? 'must not carry a user or password (user:pass@)' : null;
};

/** Where git may clone from; never something git could read as an option. */
const repoUrl: Check = (v) => {
  if (v.startsWith('-')) return 'must not start with "-"';
  if (/[\s\0]/.test(v)) return 'must not contain whitespace';
  // git would see such a password in its argv; an http(s) one is moved into credentials before git runs.
  if (/^(?!https?:)[a-z][a-z0-9+.-]*:\/\/[^/@]*:[^/@]*@/i.test(v)) return 'must not hold a password (use credentials.ssh_key for ssh)';
  if (/^(https?|ssh|git|file):\/\/[^/]/.test(v) || /^file:\/\/\//.test(v)) return null;
  if (/^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/].*/.test(v)) return null; // scp-like git@host:owner/name
  if (v.startsWith('/')) return null; // a local path
  // owner/name: matches webhooks from any forge; deploys clone it from the forge `forges` names.
  if (/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/.test(v) && !v.split('/').some((p) => p === '.' || p === '..' || p.startsWith('-'))) return null;
  return 'expected an http(s)://, ssh://, git://, file:// URL, user@host:path, an absolute path or owner/name';
};

const minLength = (min: number): Check => (v) => (v.length >= min ? null : `shorter than ${min} characters`);

const branch: Check = (v) => {
  if (!isBranchName(v)) return 'invalid';
  // A full ref or a remote-tracking name is a valid name for a branch no one pushes to: every push would be ignored.
  if (v.startsWith('refs/')) return `the branch's name, without refs/heads/: e.g. ${v.replace(/^refs\/(heads\/)?/, '')}`;
  if (/^origin\//.test(v)) return `the branch's name on the repository, not its remote-tracking name: e.g. ${v.slice('origin/'.length)}`;
  return null;
};

const etcdPrefix: Check = (v) =>
  /^\/[A-Za-z0-9._\/-]*[A-Za-z0-9._-]$/.test(v) && !v.includes('//') ? null : 'must start with "/", not end with "/", and use only [A-Za-z0-9._/-]';

const urlPath: Check = (v) => (/^\/[\x21-\x7e]*$/.test(v) ? null : 'must start with "/" and contain no spaces');

/** A path inside the repository: relative, no way out of it. */
const repoPath: Check = (v) =>
  !v.startsWith('/') && !v.split('/').includes('..') && v.length > 0 && !v.startsWith('-') ? null : 'must be a relative path inside the repository';

const absolutePath: Check = (v) => (v.startsWith('/') && !/[\s;{}'"\\]/.test(v) ? null : 'must be absolute, with no spaces, quotes or ;{}');

/** nginx `listen`: a port, or address:port. */
const listen: Check = (v) => {
  if (/^\d{1,5}$/.test(v)) return Number(v) >= 1 && Number(v) <= 65535 ? null : 'invalid';
  return hostPort(v);
};

const cidr: Check = (v) => {
  const m = /^(.+)\/(\d{1,2})$/.exec(v);
  if (!m || ipv4(m[1]!) || Number(m[2]) < 16 || Number(m[2]) > 30) return 'an IPv4 network with a prefix of 16-30 bits';
  return null;
};

/** A Swarm placement constraint: `node.<attribute> (==|!=) <value>`, nothing a shell or Docker could read otherwise. */
const placementConstraint: Check = (v) =>
  /^(node|engine)\.[A-Za-z0-9._-]+\s*(==|!=)\s*[A-Za-z0-9._\/:-]+$/.test(v) ? null : 'expected node.<attribute>==<value> or !=';

const envName = (v: string) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(v);

/** A step's name: it prefixes log lines and labels a container, so a plain word. */
const stepName: Check = (v) => (/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(v) ? null : 'letters, digits, "_", "." and "-", up to 63, starting with a letter or digit');

/** A Docker image reference (`node:20`, `registry:5000/team/tool@sha256:…`); never something Docker could read as an option. */
const imageRef: Check = (v) => (/^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$/.test(v) ? null : 'invalid');

// --- The schema

/** A token sent in a header: whitespace or a control character (a second line of the file it was read from) is refused at load, not by each request. */
const headerToken: Check = (v) => (/[\s\u0000-\u001f\u007f]/.test(v) ? 'has whitespace or a control character (a header cannot carry it; a second line of the file it came from?)' : null);

/** Shortest webhook secret and dashboard token accepted: guessable ones are refused at load. */
const MIN_SECRET = 16;
const MIN_TOKEN = 32;

const argv = (dflt: string[], doc: string) =>
  list(str({ type: 'a string' }), { min: 1, default: dflt, doc, type: 'an argv list (never a shell string)' });

const step = obj({
  name: str({ check: stepName, type: 'a step name', doc: 'Names the step in the job log (each output line is prefixed `<name> | `), on the timeline and in a failure (`step_failed: <name> exited <code>`). Unique in the list.' }),
  command: list(str({ type: 'a string' }), { min: 1, type: 'an argv list (never a shell string)', doc: 'What the step runs, as argv, in a throwaway container (no published ports, no Docker socket, the app\'s resources); exit 0 passes. A shell is `[sh, -c, "…"]`.' }),
  image: str({ optional: true, check: imageRef, type: 'an image reference', doc: 'Image the step runs in. Default: the image just built (exactly what will be deployed). Pulled when the worker\'s Docker host does not have it.' }),
  env: dict(str({ secret: 'by-name' }), { keyType: 'variable name', key: envName, placeholder: '<VAR>', doc: 'Environment of the step\'s container; values of secret-like names (`*TOKEN*`, `*PASSWORD*`, `*SECRET*`, `*KEY*`…) are scrubbed from the log.' }),
  timeout_s: num({ min: 1, max: 86400, integer: true, default: 600, doc: 'The step (its image pull included) is stopped after this long and the job fails with `step_timeout`.' }),
});

/** A list of steps whose names are unique: a job's failure and its timeline name one step. */
function stepList(options: { optional?: boolean; default?: StepConfig[]; doc: string }): Schema<StepConfig[]> {
  const inner = list(step, options) as Schema<StepConfig[]>;
  return {
    ...inner,
    parse: (raw, path, ctx) => {
      const parsed = inner.parse(raw, path, ctx);
      if (parsed === INVALID) return INVALID;
      const seen = new Set<string>();
      let ok = true;
      parsed.forEach((s, i) => {
        if (seen.has(s.name)) {
          ctx.error(`${path}[${i}].name`, `${quote(s.name)} names an earlier step too`);
          ok = false;
        }
        seen.add(s.name);
      });
      return ok ? parsed : INVALID;
    },
  };
}

const app = obj({
  repo: str({ check: repoUrl, type: 'a git URL', doc: 'Repository whose pushes deploy this app, and what is cloned (matching is case-insensitive and ignores `.git`). `owner/name` matches that repository on any forge and clones it from the forge `forges.<provider>.api_url` names (default github.com, gitlab.com; Gitea needs it). A path on this machine (absolute, or `file://`) matches a push naming that same path.' }),
  branch: str({ default: 'master', check: branch, type: 'a branch name', doc: 'Pushes to other refs are ignored.' }),
  secret: str({ optional: true, check: minLength(MIN_SECRET), type: `a secret of ${MIN_SECRET}+ characters`, secret: true, doc: `Webhook HMAC secret (GitHub, Gitea) or token (GitLab), at least ${MIN_SECRET} characters. Without it, webhooks for this app are refused.` }),
  replicas: num({ min: 1, max: 64, integer: true, default: 2, doc: 'Containers serving the app.' }),
  port: port({ default: 8080, doc: 'Port the app listens on inside its container.' }),
  host_ip: str({ default: '127.0.0.1', check: ipv4, type: 'an IPv4 address', doc: 'Address container ports are published on (upstream routing).' }),
  health: obj({
    path: str({ default: '/healthz', check: urlPath, type: 'a URL path', doc: 'Probed on each new container; any 2xx status is healthy (the body is not waited for; each probe has 2 s to answer).' }),
    timeout_s: num({ min: 1, max: 3600, default: 30, doc: 'How long a new container may take to become healthy.' }),
    interval_ms: num({ min: 10, max: 60000, integer: true, default: 200, doc: 'Time between probes.' }),
  }),
  listen: str({ default: '80', check: listen, type: 'a port or address:port', doc: "nginx `listen` for this app. Take a port below the kernel's ephemeral range (32768 and up here), which Docker publishes container ports from: a port taken there fails the rollout." }),
  server_name: list(str({ check: hostname, type: 'a host name' }), { default: [], single: true, doc: 'nginx `server_name`s; empty means `_` (any). Apps on one `listen` need names of their own: nginx sends a shared name\'s requests to one of them only (the router and the worker warn at start).' }),
  drain_s: num({ min: 0, max: 3600, default: 5, doc: 'Longest wait after the switch for old containers to finish their connections.' }),
  stop_timeout_s: num({ min: 0, max: 3600, integer: true, default: 10, doc: 'SIGTERM grace before SIGKILL.' }),
  build_timeout_s: num({ min: 1, max: 86400, integer: true, default: 1800, doc: 'The build is stopped after this long and the job fails with `build_timeout`; the checkout before it (resolving a ref included) gets as long again, on its own (past it: `unavailable`, tried again).' }),
  build_context_max_mb: num({ min: 1, max: 1_048_576, integer: true, default: 2048, doc: 'Most the build context may hold, in MiB (the regular files `.dockerignore` leaves in, summed); a commit over it fails with `build_failed` before anything is sent to Docker.' }),
  steps: stepList({ optional: true, doc: 'Run in order after the build, before anything is started for traffic; all must pass, else nothing is rolled out. When set (even `[]`), a `.slipway.yml` in the pushed commit is ignored. Image deploys and rollbacks run none.' }),
  dockerfile: str({ default: 'Dockerfile', check: repoPath, type: 'a path in the repository', doc: 'Dockerfile to build, relative to the repository root.' }),
  build_args: dict(str({ secret: 'by-name' }), { keyType: 'build argument', key: envName, placeholder: '<ARG>', doc: 'Docker build arguments.' }),
  env: dict(str({ secret: 'by-name' }), { keyType: 'variable name', key: envName, placeholder: '<VAR>', doc: 'Environment of the app\'s containers.' }),
  etcd_prefix: str({ optional: true, check: etcdPrefix, type: 'an etcd key prefix', doc: 'Upstream keys, one per live container. Default `/slipway/apps/<app>/upstream`.' }),
  routing: oneOf(['upstream', 'dns'] as const, { default: 'upstream', doc: '`upstream`: render + reload nginx; `dns`: nginx resolves the live set, no reload.' }),
  template: str({ optional: true, type: 'a file path', doc: 'Own nginx template for this app (relative to the config file).' }),
  notify: list(obj({
    type: oneOf(['slack', 'webhook'] as const, { doc: '`slack`: a Slack-compatible incoming webhook; `webhook`: JSON signed with HMAC-SHA256.' }),
    url: str({ check: webUrl, type: 'an http(s) URL', secret: true, doc: 'Where the notification is POSTed (a secret: a Slack webhook\'s address is its credential; an error names its length only).' }),
    secret: str({ optional: true, secret: true, doc: 'For `webhook`: signs the body (`X-Slipway-Signature-256: sha256=<hex>`).' }),
    on: list(oneOf(['failure', 'recovery', 'success'] as const), { type: 'a list of failure, recovery, success', default: ['failure', 'recovery'], single: true, doc: 'Outcomes that notify: a failure, the first success after a failure, every success.' }),
  }), { default: [], doc: 'Notification targets; a target that is down never fails or delays a deploy.' }),
  placement: list(str({ check: placementConstraint, type: 'a constraint' }), { default: [], single: true, doc: 'engine.type: swarm only (read and unused on one engine): Swarm placement constraints of the app\'s service (`node.labels.role==web`, `node.hostname!=db1`).' }),
  resources: obj({
    cpus: num({ min: 0.01, max: 1024, optional: true, doc: 'CPU limit per replica and per test step (on a swarm also the reservation, so Swarm places by it).' }),
    memory_mb: num({ min: 6, max: 4_194_304, integer: true, optional: true, doc: 'Memory limit per replica and per test step, in MiB (on a swarm also the reservation; Docker refuses less than 6).' }),
  }, { optional: true }),
  credentials: obj({
    username: str({ optional: true, doc: 'User for http(s) clones.' }),
    password: str({ optional: true, secret: true, doc: 'Password or access token for http(s) clones; never logged.' }),
    ssh_key: str({ optional: true, type: 'a file path', doc: 'Private key for ssh:// and user@host: clones (relative to the config file).' }),
  }, { optional: true }),
});

export const slipwaySchema = obj({
  redis: str({ default: 'redis://127.0.0.1:6379', check: url(['redis', 'rediss']), type: 'a redis:// URL', doc: 'Redis holding the queue, job records and logs.' }),
  etcd: list(str({ check: url(['http', 'https']), type: 'an http(s) URL' }), { min: 1, single: true, default: ['http://127.0.0.1:2379'], doc: 'etcd endpoints.' }),
  docker: str({ optional: true, check: url(['unix', 'tcp', 'http', 'https']), type: 'a unix:// or tcp:// URL', doc: 'Docker engine. Default `$DOCKER_HOST`, else `unix:///var/run/docker.sock`.' }),
  workdir: str({ default: './.slipway', doc: 'Clone cache and build contexts (relative to the config file).' }),
  queue: obj({
    prefix: str({ default: 'slipway', check: (v) => (/^[A-Za-z0-9:_-]{1,64}$/.test(v) ? null : 'invalid'), type: 'a Redis key prefix', doc: 'Prefix of every Redis key; give each installation (or test) its own.' }),
  }),
  receiver: obj({
    host: str({ default: '127.0.0.1', doc: 'Address the webhook receiver listens on.' }),
    port: port({ default: 3000, doc: 'Its port.' }),
    body_limit_mb: num({ min: 1, max: 100, default: 25, doc: 'Larger webhook bodies are answered 413.' }),
    delivery_retention_h: num({ min: 0, max: 8760, default: 72, doc: 'How long delivery ids (and each app\'s pushed commits) are remembered to answer redeliveries and replays as duplicates.' }),
    metrics: str({ default: '127.0.0.1:3003', check: hostPort, type: 'an address:port', doc: 'Where the receiver serves `GET /metrics` (Prometheus): a listener of its own, never the webhook port.' }),
    processes: num({ min: 1, max: 64, integer: true, default: 1, doc: 'Receiver processes sharing the webhook port (node:cluster), for hosts with cores to spare; one restarts if it crashes, `/metrics` sums them all.' }),
  }),
  worker: obj({
    concurrency: num({ min: 1, max: 64, integer: true, default: 2, doc: 'Jobs one worker runs at once (different apps; one app deploys at a time).' }),
    attempts: num({ min: 1, max: 100, integer: true, default: 5, doc: 'Tries for a job whose failure was an unreachable Redis, etcd or Docker.' }),
    backoff_ms: num({ min: 10, max: 3600000, integer: true, default: 2000, doc: 'First retry delay, doubled each time.' }),
    metrics: str({ default: '127.0.0.1:3002', check: hostPort, type: 'an address:port', doc: 'Where the worker serves `GET /metrics` (Prometheus). A second worker on the machine whose port is taken serves none and says so.' }),
  }),
  dashboard: obj({
    host: str({ default: '127.0.0.1', doc: 'Address the dashboard listens on.' }),
    port: port({ default: 3001, doc: 'Its port.' }),
    token: str({ optional: true, check: (v) => (/\s/.test(v) ? 'has whitespace (a Bearer token cannot carry it)' : minLength(MIN_TOKEN)(v)), type: `a token of ${MIN_TOKEN}+ characters, no whitespace`, secret: true, doc: `Sign-in token, at least ${MIN_TOKEN} characters; the dashboard refuses to start without one.` }),
    public_url: str({ optional: true, check: webUrl, type: 'an http(s) URL', doc: 'How users reach the dashboard; commit statuses and notifications link to `<public_url>/jobs/<id>`. Default `http://<host>:<port>`.' }),
    allowed_hosts: list(str({ check: allowedHost, type: 'a host name' }), { default: [], single: true, doc: 'Host names (with any port or none; `*.example.com` for its subdomains) served besides `host:port` and `public_url`\'s host; any other Host is answered 421 (DNS rebinding).' }),
  }),
  jobs: obj({
    log_max_lines: num({ min: 10, max: 10_000_000, integer: true, default: 100_000, doc: 'Lines kept per job log; past it the end is kept (nine tenths of the cap), after the first lines, with a notice of what was cut between.' }),
    log_max_bytes: num({ min: 4096, max: 1_073_741_824, integer: true, default: 10_485_760, doc: 'Bytes kept per job log, likewise.' }),
    keep_per_app: num({ min: 1, max: 1_000_000, integer: true, default: 200, doc: 'Retention: the newest N finished jobs of each app are kept, with their logs ...' }),
    keep_days: num({ min: 0, max: 3650, default: 30, doc: '... and every job younger than this many days.' }),
  }),
  forges: obj({
    github: obj({
      token: str({ optional: true, check: headerToken, type: 'a token without whitespace', secret: true, doc: 'Token allowed to post commit statuses (`repo:status`); without one, no statuses are posted.' }),
      api_url: str({ optional: true, check: webUrl, type: 'an http(s) URL', doc: 'Default: from the app\'s configured repo (`https://api.github.com` for github.com, `<forge>/api/v3` for GitHub Enterprise), never from a webhook.' }),
    }),
    gitea: obj({
      token: str({ optional: true, check: headerToken, type: 'a token without whitespace', secret: true, doc: 'Gitea/Forgejo/Gogs access token with write access to the repository.' }),
      api_url: str({ optional: true, check: webUrl, type: 'an http(s) URL', doc: 'Default: `<forge>/api/v1` of the app\'s configured repo, never from a webhook.' }),
    }),
    gitlab: obj({
      token: str({ optional: true, check: headerToken, type: 'a token without whitespace', secret: true, doc: 'GitLab access token with the `api` scope.' }),
      api_url: str({ optional: true, check: webUrl, type: 'an http(s) URL', doc: 'Default: `<forge>/api/v4` of the app\'s configured repo (gitlab.com for `owner/name`), never from a webhook.' }),
    }),
  }, { doc: 'Where to post commit statuses for webhook-triggered jobs.' }),
  router: obj({
    batch_ms: num({ min: 0, max: 10_000, integer: true, default: 200, doc: 'Reloads of nginx are at least this far apart: switches (of any app, from any worker or the router) within it share one reload, each checked on its own. 0: every switch reloads on its own (still one reload at a time).' }),
  }),
  nginx: obj({
    conf_dir: str({ default: '/etc/nginx/conf.d', doc: 'Slipway writes `slipway-<app>.conf` here.' }),
    check_cmd: argv(['nginx', '-t'], 'Checks a candidate config, never the live file: see [checking the candidate](docs/architecture.md#checking-the-candidate).'),
    reload_cmd: argv(['nginx', '-s', 'reload'], 'Reloads nginx after a checked change.'),
    front: obj({
      conf_dir: str({ check: absolutePath, type: 'an absolute path', doc: 'Front tier: the conf dir of a second nginx, the one clients connect to. Slipway writes each app\'s `slipway-<app>.conf` here (its `listen` and `server_name`, forwarding to the back); a deploy never changes it, so this nginx is reloaded only when an app\'s `listen` or `server_name` changes. See [two tiers](docs/architecture.md#two-tiers-no-reset-on-a-reload).' }),
      check_cmd: argv(['nginx', '-t'], 'Checks a candidate front file, as `nginx.check_cmd` does the back\'s.'),
      reload_cmd: argv(['nginx', '-s', 'reload'], 'Reloads the front nginx (only after a change of its files).'),
      socket_dir: str({ check: absolutePath, type: 'an absolute path', doc: 'Where the back nginx (`nginx.conf_dir`) listens for each app, on a unix socket `slipway-<app>.sock`, instead of on the app\'s `listen`. Slipway creates it; the front\'s workers must be able to reach it.' }),
    }, { optional: true, doc: 'Optional: a front nginx that holds clients\' connections and is not reloaded by deploys. nginx 1.22 closes every idle keep-alive connection of its old workers on a reload; behind a front, only the front\'s own connections to the back are closed, and the front sends an idempotent request again on a fresh one.' }),
  }),
  engine: obj({
    type: oneOf(['docker', 'swarm'] as const, { default: 'docker', doc: '`docker`: every container on the one engine of `docker`; `swarm`: each release is a Swarm service on the cluster `engine.manager` manages (see "Running on several servers"). The swarm\'s keys (`manager`, `tls`, `ssh`, `registry`, `registry_auth`, `apps.<app>.placement`) are read and unused with `docker`.' }),
    manager: str({ optional: true, check: url(['unix', 'tcp', 'http', 'https', 'ssh']), type: 'a unix://, tcp:// or ssh:// URL', doc: 'swarm: a manager\'s Docker endpoint. Default: `docker`. `ssh://[user@]host[:port]` runs `docker system dial-stdio` there through the `ssh` client, as `docker -H ssh://` does: its keys, agent and `known_hosts` apply, or those of `engine.ssh`; a host key not known there is refused, whatever the ssh config says.' }),
    ssh: obj({
      key: str({ optional: true, type: 'a file path', doc: 'swarm, ssh://: the private key to log in with (relative to the config file); default: the ssh client\'s own (its agent, `~/.ssh`).' }),
      known_hosts: str({ optional: true, type: 'a file path', doc: 'swarm, ssh://: the host keys trusted for the manager, instead of the user\'s and the system\'s `known_hosts` (relative to the config file).' }),
    }, { optional: true }),
    tls: obj({
      ca: str({ type: 'a file path', doc: 'swarm, tcp://: CA certificate the manager\'s certificate is checked against (relative to the config file).' }),
      cert: str({ type: 'a file path', doc: 'Client certificate.' }),
      key: str({ type: 'a file path', doc: 'Client key.' }),
    }, { optional: true }),
    registry: str({ optional: true, check: hostPort, type: 'a host:port', doc: 'swarm (required): registry images are pushed to (from the manager\'s engine) and the nodes pull from: `<registry>/slipway/<app>:<sha12>`.' }),
    registry_auth: obj({
      username: str({ doc: 'Registry user.' }),
      password: str({ secret: true, doc: 'Its password or token; never logged.' }),
    }, { optional: true }),
  }),
  apps: dict(app, { keyType: 'app name', key: (name) => APP_NAME.test(name), placeholder: '<app>', doc: 'App names match `[a-z0-9][a-z0-9-]{0,62}` and do not end in `-` (a Docker image name cannot).' }),
  dns: obj({
    server: str({ default: '127.0.0.1:5353', check: ipPort, type: 'an ip:port', doc: 'The DNS server nginx asks (dnsmasq, started by Slipway, listens on this IPv4 address: not a host name).' }),
    domain: str({ default: 'slipway.internal', check: hostname, type: 'a domain', doc: '`<app>.<domain>` answers the live containers.' }),
    address_pool: str({ default: '127.0.10.0/24', check: cidr, type: 'an IPv4 CIDR', doc: 'One loopback address per container of a `dns` app.' }),
  }),
});

/**
 * A repository's own `.slipway.yml` (the pipeline that lives with the
 * code): `steps:` only, shaped as `apps.<app>.steps`, read without
 * interpolation.
 */
export const repositoryFileSchema = obj({
  steps: stepList({ default: [], doc: 'Steps of the pushed commit, used when `apps.<app>.steps` is not set.' }),
});

// --- The README's reference table

export const REFERENCE_START = '<!-- config-reference:start (generated from packages/config; a test keeps it in step) -->';
export const REFERENCE_END = '<!-- config-reference:end -->';

/** The README's configuration table, generated from the schema that validates. */
export function configReference(): string {
  const rows = slipwaySchema.docs('').map((row) => {
    const cells = [`\`${row.key}\``, row.type.replace(/^an? /, ''), row.default ? `\`${row.default}\`` : '', row.doc];
    return `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
  });
  return [REFERENCE_START, '| key | type | default | meaning |', '|---|---|---|---|', ...rows, REFERENCE_END].join('\n');
}
