import { randomBytes } from 'node:crypto';
import { accessSync, constants, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type Document, parseDocument, visit } from 'yaml';
import { sshTarget } from '@slipway/core/docker-ssh';
import { SlipwayError } from '@slipway/core/slipway-error';
import { INVALID, type ParseContext } from './schema.js';
import { repositoryFileSchema, slipwaySchema } from './slipway-schema.js';
import type { AppConfig, SlipwayConfig, StepConfig } from './types.js';

/** A configuration that cannot be used; `problems` are `key.path: message` lines. */
export class ConfigError extends SlipwayError {
  readonly file: string | null;
  readonly problems: readonly string[];

  constructor(file: string | null, problems: readonly string[]) {
    const where = file ?? 'config';
    super('config_invalid', problems.map((p) => `${where}: ${p}`).join('\n'), { fault: 'request' });
    this.name = 'ConfigError';
    this.file = file;
    this.problems = problems;
  }
}

export interface LoadConfigOptions {
  /** `--config`; wins over `$SLIPWAY_CONFIG` and `./slipway.yml`. */
  path?: string;
  /** Environment for `${VAR}`, `SLIPWAY_CONFIG` and `DOCKER_HOST`. */
  env: Readonly<Record<string, string | undefined>>;
  /** Directory `./slipway.yml` is looked for in. Default: the current directory. */
  cwd?: string;
}

/** Finds, reads and validates `slipway.yml`; throws ConfigError naming file and key path. */
export function loadConfig(options: LoadConfigOptions): SlipwayConfig {
  const { file, text } = readConfigFile(options);
  return parseConfig(text, { file, env: options.env });
}

/** What loadPushConfig says an app's `repo` is: a git remote's hook never reads it. */
const PUSH_HOOK_REPO = '/nonexistent/read-by-the-worker.git';

/**
 * The part of `slipway.yml` a push to a Slipway remote uses, found and read
 * as loadConfig does: Redis, the queue, the worker's retries, the workdir,
 * and of `app` its branch (its `repo` is a placeholder). The git hook runs with the
 * pusher's environment (an SSH login's), which holds none of the services'
 * secrets: a `${VAR}` in a webhook secret, a token, another app or an
 * app's `env` is not read, so its absence does not refuse the push.
 */
export function loadPushConfig(options: LoadConfigOptions, app: string): SlipwayConfig {
  const { file, text } = readConfigFile(options);
  const raw = parseYaml(text, file);
  const whole = (raw !== null && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
  const apps = (whole.apps !== null && typeof whole.apps === 'object' ? whole.apps : {}) as Record<string, unknown>;
  const own = apps[app];
  const part: Record<string, unknown> = {};
  for (const key of ['redis', 'queue', 'worker', 'workdir'] as const) if (key in whole) part[key] = whole[key];
  if (own !== null && typeof own === 'object') {
    // Its repo is not read: a push brings its commit, and the worker, not the hook, knows where the repository is
    // (an address may carry a token from the environment: `https://deploy:${GIT_TOKEN}@…`).
    const { branch } = own as Record<string, unknown>;
    part.apps = { [app]: { repo: PUSH_HOOK_REPO, ...(branch === undefined ? {} : { branch }) } };
  } else {
    part.apps = {};
  }
  return validateConfig(part, { file, env: options.env });
}

function readConfigFile(options: LoadConfigOptions): { file: string; text: string } {
  // Empty is unset, as a compose file's `SLIPWAY_CONFIG: ${SLIPWAY_CONFIG}` makes it.
  const file = resolve(options.cwd ?? process.cwd(), options.path ?? (options.env.SLIPWAY_CONFIG || 'slipway.yml'));
  try {
    return { file, text: readFileSync(file, 'utf8') };
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (err as Error).message;
    throw new ConfigError(file, [`cannot read config: ${reason}`]);
  }
}

/** Validates config text. `file` names it in errors and anchors relative paths. */
export function parseConfig(text: string, options: { file: string | null; env: LoadConfigOptions['env'] }): SlipwayConfig {
  return validateConfig(parseYaml(text, options.file), options);
}

/** A `${VAR}`, `${VAR:-word}` or `${VAR:?word}` reference as written (see shieldReferences and the schema's interpolate). */
const REFERENCE_TEXT = /\$\{[A-Za-z_][A-Za-z0-9_]*(?::[-?][^}\n"']*)?\}/g;

function parseYaml(text: string, file: string | null): unknown {
  const shield = shieldReferences(text);
  const doc = parseDocument(shield.text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(file, doc.errors.map((e) => `YAML: ${shield.restore(e.message.split('\n')[0]!)}`));
  }
  return asWritten(doc, shield.restore).toJS() ?? {};
}

/**
 * `${VAR}` stands unquoted in a flow mapping too (`dashboard: { token:
 * ${TOKEN} }`), where YAML would read its braces as a mapping of its own:
 * each reference is parsed as a plain word, and put back in the strings
 * YAML returns (interpolated later, by the schema).
 */
function shieldReferences(text: string): { text: string; restore: (parsed: string) => string } {
  const nonce = randomBytes(6).toString('hex');
  const references: string[] = [];
  const word = new RegExp(`slipwayref${nonce}n(\\d+)x`, 'g');
  return {
    text: text.replace(REFERENCE_TEXT, (reference) => `slipwayref${nonce}n${references.push(reference) - 1}x`),
    restore: (parsed) => parsed.replace(word, (_word, n: string) => references[Number(n)]!),
  };
}

/**
 * The document with each plain number that YAML would change kept as its
 * text: `branch: 1.10` is the branch "1.10", not 1.1; `0010`, `1e3` and a
 * 23-digit secret stay as typed. Numbers that read back the same (`2`,
 * `8080`, `0.5`) stay numbers; a number key wants its text as well. Strings
 * get their `${…}` references back (`restore`).
 */
function asWritten(doc: Document, restore: (parsed: string) => string): Document {
  visit(doc, {
    Scalar(_key, node) {
      const { value, source } = node;
      if (typeof value === 'string') node.value = restore(value);
      // (0x1F90 and 0o17 are numbers as written: YAML's own forms of them.)
      else if ((typeof value === 'number' || typeof value === 'bigint') && node.type === 'PLAIN' && source !== undefined && String(value) !== source && !/^0[xo]/i.test(source)) node.value = source;
    },
  });
  return doc;
}

/** Validates an already-parsed object (as from YAML or JSON). */
export function validateConfig(raw: unknown, options: { file: string | null; env: LoadConfigOptions['env'] }): SlipwayConfig {
  const problems: string[] = [];
  const secretValues = new Set<string>();
  const ctx: ParseContext = { env: options.env, secretValues, error: (path, message) => problems.push(`${path || '(top level)'}: ${message}`) };
  const parsed = slipwaySchema.parse(raw, '', ctx);
  if (parsed === INVALID || problems.length > 0) throw new ConfigError(options.file, problems);
  // $DOCKER_HOST stands in for `docker` when the file has none (empty: unset, as for docker). Only what parses it at
  // load (a swarm's manager) checks it here: a process that never talks to Docker does not refuse to start over it.
  const dockerHost = options.env.DOCKER_HOST || 'unix:///var/run/docker.sock';

  const base = options.file ? dirname(options.file) : process.cwd();
  const apps: Record<string, AppConfig> = {};
  for (const [name, app] of Object.entries(parsed.apps)) {
    apps[name] = {
      ...app,
      name,
      secret: app.secret,
      etcd_prefix: app.etcd_prefix ?? `/slipway/apps/${name}/upstream`,
      template: app.template === undefined ? undefined : resolve(base, app.template),
      credentials: app.credentials?.ssh_key ? { ...app.credentials, ssh_key: resolve(base, app.credentials.ssh_key) } : app.credentials,
    } as AppConfig;
  }
  const config: SlipwayConfig = {
    ...parsed,
    file: options.file,
    docker: parsed.docker ?? dockerHost,
    workdir: resolve(base, parsed.workdir),
    // Like every path of the file: the worker, the router and the CLI must agree on it, wherever each was started.
    nginx: { ...parsed.nginx, conf_dir: resolve(base, parsed.nginx.conf_dir) },
    apps,
    engine: {
      ...parsed.engine,
      manager: parsed.engine.type === 'swarm' ? parsed.engine.manager ?? parsed.docker ?? dockerHost : parsed.engine.manager,
      tls: parsed.engine.tls && { ca: resolve(base, parsed.engine.tls.ca), cert: resolve(base, parsed.engine.tls.cert), key: resolve(base, parsed.engine.tls.key) },
      ssh: parsed.engine.ssh && {
        ...(parsed.engine.ssh.key !== undefined ? { key: resolve(base, parsed.engine.ssh.key) } : {}),
        ...(parsed.engine.ssh.known_hosts !== undefined ? { known_hosts: resolve(base, parsed.engine.ssh.known_hosts) } : {}),
      },
    },
  };
  const crossProblems = crossCheck(config);
  if (crossProblems.length > 0) throw new ConfigError(options.file, crossProblems);
  readSecrets.set(config, [...secretValues]);
  return config;
}

/** The secret values each loaded configuration's reading met (ParseContext.secretValues), for configSecrets. */
const readSecrets = new WeakMap<object, string[]>();

/**
 * Slipway's own etcd keys: the release record, its history and the rollout
 * locks. An upstream prefix at, above or inside them would be wiped or
 * misread by a switch.
 */
function reservedKey(prefix: string): string | null {
  const mine = [/^\/slipway\/locks(\/|$)/, /^\/slipway\/apps\/[^/]+\/(releases?|registrar)(\/|$)/];
  if (mine.some((pattern) => pattern.test(prefix))) return prefix;
  if (/^\/slipway(\/apps(\/[^/]+)?)?$/.test(prefix)) return `${prefix}/…/release`;
  return null;
}

/** Rules that span keys: things each key is fine alone but wrong together. */
function crossCheck(config: SlipwayConfig): string[] {
  const problems: string[] = [];
  const prefixes = new Map<string, string>();
  const pool = poolSize(config);
  for (const app of Object.values(config.apps)) {
    // The name's pattern allows it, Docker's image names do not: every build of the app would fail.
    if (app.name.endsWith('-')) problems.push(`apps.${app.name}: an app name may not end in "-": its images, slipway/${app.name}:<sha12>, would not be valid Docker image names`);
    const other = [...prefixes].find(([p]) => app.etcd_prefix.startsWith(`${p}/`) || p.startsWith(`${app.etcd_prefix}/`) || p === app.etcd_prefix);
    if (other) problems.push(`apps.${app.name}.etcd_prefix: overlaps apps.${other[1]}.etcd_prefix (${other[0]})`);
    prefixes.set(app.etcd_prefix, app.name);
    const reserved = reservedKey(app.etcd_prefix);
    if (reserved) problems.push(`apps.${app.name}.etcd_prefix: overlaps Slipway's own keys (${reserved})`);
    if (app.routing === 'dns' && app.template !== undefined) {
      problems.push(`apps.${app.name}.template: own templates are for routing: upstream; a dns app's nginx file is Slipway's`);
    }
    const swarm = config.engine.type === 'swarm';
    if (swarm && app.routing === 'dns') problems.push(`apps.${app.name}.routing: routing: dns publishes on loopback addresses of one machine; with engine.type: swarm use routing: upstream`);
    if (app.routing === 'dns' && pool < app.replicas * 2) {
      problems.push(`apps.${app.name}.replicas: a dns app needs 2 addresses per replica during a rollout; dns.address_pool has ${pool}`);
    }
  }
  // The pool is shared: dns apps deploying at once need 2 addresses per replica each, all together.
  const dnsApps = Object.values(config.apps).filter((app) => app.routing === 'dns');
  const needed = dnsApps.reduce((sum, app) => sum + app.replicas * 2, 0);
  if (dnsApps.length > 1 && needed > pool && dnsApps.every((app) => app.replicas * 2 <= pool)) {
    problems.push(`dns.address_pool: has ${pool} addresses; the dns apps (${dnsApps.map((a) => `${a.name}: ${a.replicas}`).join(', ')} replicas) need ${needed} when they deploy at once (2 per replica)`);
  }
  const front = config.nginx.front;
  if (front) {
    if (front.conf_dir.replace(/\/+$/, '') === config.nginx.conf_dir.replace(/\/+$/, '')) {
      problems.push('nginx.front.conf_dir: must be another nginx\'s conf dir than nginx.conf_dir (the front is never reloaded by a deploy)');
    }
    // A unix socket's path holds at most 107 bytes (sun_path); nginx refuses a longer one only at the check.
    const longest = Object.keys(config.apps).reduce((a, b) => (b.length > a.length ? b : a), '');
    const path = `${front.socket_dir.replace(/\/+$/, '')}/slipway-${longest}.sock`;
    if (longest && Buffer.byteLength(path) > 107) problems.push(`nginx.front.socket_dir: the socket of app ${longest} would be ${Buffer.byteLength(path)} bytes long (${path}); unix sockets allow 107`);
  }
  problems.push(...listenerClashes(config));
  problems.push(...engineProblems(config.engine));
  return problems;
}

/** How many container addresses `dns.address_pool` holds (its network and broadcast addresses aside). */
function poolSize(config: SlipwayConfig): number {
  return 2 ** (32 - Number(config.dns.address_pool.split('/')[1])) - 2;
}

/**
 * The receiver's metrics listener on its webhook address and port: in the
 * one process that opens both, whichever binds first takes the port (with
 * `processes` above 1 the primary's metrics do, and every receiver process
 * then exits unable to listen; with one, metrics are dropped). A wildcard
 * host (`0.0.0.0`, `::`) takes the port on every address.
 */
function listenerClashes(config: SlipwayConfig): string[] {
  const m = /^\[?(.*?)\]?:(\d+)$/.exec(config.receiver.metrics);
  if (!m || Number(m[2]) !== config.receiver.port) return [];
  const wildcard = (host: string) => host === '0.0.0.0' || host === '::' || host === '';
  const [metricsHost, webhookHost] = [m[1]!, config.receiver.host];
  if (metricsHost !== webhookHost && !wildcard(metricsHost) && !wildcard(webhookHost)) return [];
  return [`receiver.metrics: ${config.receiver.metrics} is the webhook's own port (receiver.host ${webhookHost}, receiver.port ${config.receiver.port}); /metrics needs a listener of its own`];
}

/** What is wrong with an ssh:// manager URL, or null. */
function sshTargetProblem(url: string): string | null {
  try {
    sshTarget(url);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

function engineProblems(engine: SlipwayConfig['engine']): string[] {
  // With engine.type: docker the swarm's keys are read (a typo in one is still an error) and not used: switching
  // engine.type back and forth leaves them in place, as the documented example does.
  if (engine.type !== 'swarm') return [];
  const problems: string[] = [];
  // The manager may be $DOCKER_HOST's (its default is docker's, whose default that is), unchecked by the schema.
  const protocol = engine.manager ? (URL.canParse(engine.manager) ? new URL(engine.manager).protocol.replace(/:$/, '') : 'invalid') : null;
  if (protocol === 'invalid') problems.push(`engine.manager: expected a unix://, tcp:// or ssh:// URL, got ${JSON.stringify(engine.manager)} (the default is docker, else $DOCKER_HOST)`);
  if (protocol === 'ssh') {
    const problem = sshTargetProblem(engine.manager!);
    if (problem) problems.push(`engine.manager: ${problem}`);
  }
  if (engine.tls && protocol !== 'tcp' && protocol !== 'https') problems.push('engine.tls: TLS files are for a tcp:// manager');
  if (engine.ssh && protocol !== 'ssh') problems.push('engine.ssh: ssh files are for an ssh:// manager');
  if (!engine.registry) problems.push('engine.registry: is required with engine.type: swarm (where images are pushed and the nodes pull from)');
  return problems;
}

// --- A repository's own file

/** The file at the root of a pushed commit that may hold its steps. */
export const REPOSITORY_FILE = '.slipway.yml';

/**
 * Validates the text of a commit's {@link REPOSITORY_FILE}: `steps:` only,
 * in the shape of `apps.<app>.steps`. Nothing in it is interpolated: what a
 * pusher writes must never read the environment Slipway runs with. A
 * problem is the commit's (`repository_file_invalid`, fault `commit`), its
 * message naming the file, the commit and each key path.
 */
export function parseRepositoryFile(text: string, commit: string): { steps: StepConfig[] } {
  const where = `${REPOSITORY_FILE} of commit ${commit.slice(0, 12)}`;
  const invalid = (problems: string[]) =>
    new SlipwayError('repository_file_invalid', problems.map((p) => `${where}: ${p}`).join('\n'), { fault: 'commit' });
  const shield = shieldReferences(text);
  const doc = parseDocument(shield.text, { uniqueKeys: true });
  if (doc.errors.length > 0) throw invalid(doc.errors.map((e) => `YAML: ${shield.restore(e.message.split('\n')[0]!)}`));
  asWritten(doc, shield.restore);
  const problems: string[] = [];
  const ctx: ParseContext = { env: {}, interpolate: false, error: (path, message) => problems.push(`${path || '(top level)'}: ${message}`) };
  let value: unknown;
  try {
    value = doc.toJS() ?? {};
  } catch (err) {
    // The YAML library's own bounds (a file of nested aliases, "billion laughs"): still the commit's file.
    throw invalid([`YAML: ${((err as Error).message ?? String(err)).split('\n')[0]}`]);
  }
  const parsed = repositoryFileSchema.parse(value, '', ctx);
  if (parsed === INVALID || problems.length > 0) throw invalid(problems);
  return parsed as { steps: StepConfig[] };
}

// --- What every consumer asks of a loaded configuration

/**
 * The files of a swarm engine (`engine.tls`, `engine.ssh`) that cannot be
 * read, as `key.path: message` lines: what the processes that talk to the
 * manager (the worker, the dashboard) check when they start, so that a
 * missing certificate is a configuration error naming its key, not a
 * stack trace. Not part of loading: a receiver given the same file never
 * reads them. None for `engine.type: docker`.
 */
export function engineFileProblems(config: Pick<SlipwayConfig, 'engine'>): string[] {
  const { engine } = config;
  if (engine.type !== 'swarm') return [];
  const files: Array<[string, string | undefined]> = [
    ['engine.tls.ca', engine.tls?.ca], ['engine.tls.cert', engine.tls?.cert], ['engine.tls.key', engine.tls?.key],
    ['engine.ssh.key', engine.ssh?.key], ['engine.ssh.known_hosts', engine.ssh?.known_hosts],
  ];
  const problems: string[] = [];
  for (const [key, file] of files) {
    if (file === undefined) continue;
    try {
      accessSync(file, constants.R_OK);
    } catch (err) {
      problems.push(`${key}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
  return problems;
}

/**
 * Apps nginx would serve on the same `listen` with a server name in common
 * (two apps leaving both unset share `80` and `_`). nginx only warns
 * ("conflicting server name … ignored") and sends every request for that
 * name to the app whose file it read first: the other's deploys succeed
 * and it serves nothing. Said by the router and the worker when they
 * start, not refused: a configuration used by the receiver alone, or one
 * whose nginx is another's concern, is valid.
 */
export function sharedServerNames(config: Pick<SlipwayConfig, 'apps'>): string[] {
  const seen = new Map<string, string>();
  const said: string[] = [];
  const listenOf = (app: AppConfig) => (/^\d+$/.test(app.listen) ? `*:${app.listen}` : app.listen.toLowerCase().replace(/^0\.0\.0\.0:/, '*:'));
  // `_` names nothing: an app without names serves only as the default server of its listen, the first file nginx reads.
  const files = (app: AppConfig) => `slipway-${app.name}.conf`;
  const byFile = Object.values(config.apps).sort((a, b) => (files(a) < files(b) ? -1 : files(a) > files(b) ? 1 : 0));
  for (const app of byFile.filter((a) => a.server_name.length === 0)) {
    const first = byFile.find((other) => listenOf(other) === listenOf(app));
    if (first && first !== app && first.server_name.length > 0) {
      said.push(`apps.${app.name}.server_name: unset, on listen ${app.listen} where apps.${first.name}'s file comes first: nginx sends every request for a name no app lists to ${first.name}, and ${app.name} gets none; give ${app.name} its names or its own listen`);
    }
  }
  for (const app of Object.values(config.apps)) {
    const listen = listenOf(app);
    for (const name of app.server_name.length > 0 ? app.server_name : ['_']) {
      const key = `${listen} ${name.toLowerCase().replace(/\.$/, '')}`;
      const other = seen.get(key);
      if (other === undefined) seen.set(key, app.name);
      else if (other !== app.name) said.push(`apps.${app.name}.server_name: ${name} on listen ${app.listen} is apps.${other}'s too: nginx sends every request for it to one of them (the file it reads first); give each app its own listen or server_name`);
    }
  }
  return said;
}

/** The named app, or an `unknown_app` error listing the ones that exist. */
export function appConfig(config: SlipwayConfig, name: string): AppConfig {
  // Own keys only: `constructor` or `__proto__` is no app, whatever Object.prototype holds.
  const app = Object.hasOwn(config.apps, name) ? config.apps[name] : undefined;
  if (!app) {
    const known = Object.keys(config.apps);
    throw new SlipwayError('unknown_app', `unknown app ${JSON.stringify(name)}${known.length ? ` (configured: ${known.join(', ')})` : ' (no apps configured)'}`, { status: 404, fault: 'request' });
  }
  return app;
}

/**
 * Every secret value the configuration holds (webhook secrets, clone
 * passwords, notification secrets, forge tokens, the dashboard token, the
 * values of secret-named variables and env or build_args entries), for
 * scrubbing free text (build output, error messages) before it is stored or
 * shown. Values shorter than 4 characters are left out: they would match
 * everywhere and protect nothing.
 */
export function configSecrets(config: Pick<SlipwayConfig, 'apps' | 'forges' | 'dashboard'> & Partial<Pick<SlipwayConfig, 'engine'>>): string[] {
  const found = new Set<string>();
  const add = (value: string | undefined) => {
    if (value && value.length >= 4) found.add(value);
  };
  // What a secret-named `${VAR}` put anywhere (a step's command: `echo //registry/:_authToken=${NPM_TOKEN} > .npmrc`),
  // and the secret-named entries of env and build_args (a build argument the Dockerfile makes an ENV a step prints).
  // Read by name, so at 8 characters or more: a `SECRET_MODE: "true"` must not star out every "true" of every log.
  for (const value of readSecrets.get(config) ?? []) if (value.length >= 8) add(value);
  for (const app of Object.values(config.apps)) {
    add(app.secret);
    add(app.credentials?.password);
    for (const target of app.notify) add(target.secret);
  }
  for (const forge of Object.values(config.forges)) add(forge.token);
  add(config.dashboard.token);
  add(config.engine?.registry_auth?.password);
  return [...found];
}
