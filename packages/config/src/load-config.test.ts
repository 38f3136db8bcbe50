import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appConfig, ConfigError, configSecrets, loadConfig, loadPushConfig, parseConfig, sharedServerNames } from './load-config.js';
import { configReference } from './slipway-schema.js';

const FILE = '/etc/slipway/slipway.yml';
const env = { HELLO_SECRET: 's3cret-of-16-chars', PORT: '9090' };
const minimalApp = 'apps:\n  hello:\n    repo: https://github.com/acme/hello.git\n';

function problemsOf(text: string, vars: Record<string, string> = env): string {
  try {
    parseConfig(text, { file: FILE, env: vars });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('config was accepted');
}

describe('parseConfig defaults', () => {
  it('fills every default of the configuration contract', () => {
    const config = parseConfig(minimalApp, { file: FILE, env: {} });
    expect(config).toMatchObject({
      redis: 'redis://127.0.0.1:6379',
      etcd: ['http://127.0.0.1:2379'],
      docker: 'unix:///var/run/docker.sock',
      workdir: '/etc/slipway/.slipway',
      receiver: { host: '127.0.0.1', port: 3000, metrics: '127.0.0.1:3003' },
      dashboard: { host: '127.0.0.1', port: 3001, allowed_hosts: [] },
      jobs: { log_max_lines: 100_000, log_max_bytes: 10_485_760, keep_per_app: 200, keep_days: 30 },
      nginx: { conf_dir: '/etc/nginx/conf.d', check_cmd: ['nginx', '-t'], reload_cmd: ['nginx', '-s', 'reload'] },
      dns: { server: '127.0.0.1:5353', domain: 'slipway.internal', address_pool: '127.0.10.0/24' },
    });
    expect(config.apps.hello).toEqual({
      name: 'hello', repo: 'https://github.com/acme/hello.git', branch: 'master', secret: undefined,
      replicas: 2, port: 8080, host_ip: '127.0.0.1',
      health: { path: '/healthz', timeout_s: 30, interval_ms: 200 },
      listen: '80', server_name: [], drain_s: 5, stop_timeout_s: 10, build_timeout_s: 1800, build_context_max_mb: 2048, dockerfile: 'Dockerfile',
      build_args: {}, env: {}, etcd_prefix: '/slipway/apps/hello/upstream', routing: 'upstream',
      template: undefined, credentials: undefined, notify: [], placement: [],
    });
    expect(config.engine).toEqual({ type: 'docker' });
  });

  it('reads a front tier, its commands defaulting like the back\'s', () => {
    const two = parseConfig(`nginx:\n  front: { conf_dir: /etc/nginx-front/conf.d, socket_dir: /run/slipway-back, reload_cmd: [nginx, -c, /etc/nginx-front/nginx.conf, -s, reload] }\n${minimalApp}`, { file: FILE, env: {} });
    expect(two.nginx.front).toEqual({
      conf_dir: '/etc/nginx-front/conf.d', socket_dir: '/run/slipway-back',
      check_cmd: ['nginx', '-t'], reload_cmd: ['nginx', '-c', '/etc/nginx-front/nginx.conf', '-s', 'reload'],
    });
    expect(parseConfig(minimalApp, { file: FILE, env: {} }).nginx.front).toBeUndefined();
  });

  it('counts among its secrets what a secret-named ${VAR} put anywhere, and secret-named env and build_args values of 8+ characters', () => {
    const config = parseConfig([
      minimalApp,
      '    build_args: { GH_TOKEN: literal-build-token, DEBUG: "1" }',
      '    env: { API_KEY: app-api-key-value, SECRET_MODE: "true", LOG_LEVEL: verbose-debugging }',
      '    steps:',
      '      - name: publish',
      '        command: [sh, -c, "echo //npm.example/:_authToken=${NPM_TOKEN} > .npmrc && echo ${GREETING}"]',
      '        env: { DB_PASSWORD: step-db-password }',
      '',
    ].join('\n'), { file: FILE, env: { NPM_TOKEN: 'npm_interpolated_token', GREETING: 'hello-everyone' } });
    const secrets = configSecrets(config);
    for (const value of ['npm_interpolated_token', 'literal-build-token', 'app-api-key-value', 'step-db-password']) expect(secrets).toContain(value);
    for (const value of ['hello-everyone', 'verbose-debugging', 'true', '1']) expect(secrets).not.toContain(value);
  });

  it('takes resource limits on one engine too (its containers and test steps get them)', () => {
    const one = parseConfig(`${minimalApp}    resources: { cpus: 0.5, memory_mb: 64 }\n`, { file: FILE, env: {} });
    expect(one.apps.hello!.resources).toEqual({ cpus: 0.5, memory_mb: 64 });
    // Docker refuses a memory limit under 6 MiB when it starts the container: refused here, at load, by its key.
    expect(() => parseConfig(`${minimalApp}    resources: { memory_mb: 5 }\n`, { file: FILE, env: {} })).toThrow(/apps\.hello\.resources\.memory_mb/);
    expect(parseConfig(`${minimalApp}    resources: { memory_mb: 6 }\n`, { file: FILE, env: {} }).apps.hello!.resources).toEqual({ memory_mb: 6 });
  });

  it('reads a swarm engine: the manager defaults to docker, TLS and ssh files resolve against the config file', () => {
    const swarm = parseConfig(`engine: { type: swarm, registry: "10.77.0.11:5000" }\n${minimalApp}    placement: [node.labels.role==web]\n    resources: { cpus: 0.5, memory_mb: 256 }\n`, { file: FILE, env: {} });
    expect(swarm.engine).toEqual({ type: 'swarm', manager: 'unix:///var/run/docker.sock', registry: '10.77.0.11:5000' });
    expect(swarm.apps.hello).toMatchObject({ placement: ['node.labels.role==web'], resources: { cpus: 0.5, memory_mb: 256 } });
    const tls = parseConfig('engine:\n  type: swarm\n  manager: tcp://10.0.0.5:2376\n  tls: { ca: certs/ca.pem, cert: certs/cert.pem, key: certs/key.pem }\n  registry: registry.example.com:5000\n  registry_auth: { username: ci, password: "${REG_PASSWORD}" }\n', { file: FILE, env: { REG_PASSWORD: 'registry-password' } });
    expect(tls.engine).toEqual({
      type: 'swarm', manager: 'tcp://10.0.0.5:2376', registry: 'registry.example.com:5000', registry_auth: { username: 'ci', password: 'registry-password' },
      tls: { ca: '/etc/slipway/certs/ca.pem', cert: '/etc/slipway/certs/cert.pem', key: '/etc/slipway/certs/key.pem' },
    });
    expect(configSecrets(tls)).toContain('registry-password');
    const ssh = parseConfig('engine:\n  type: swarm\n  manager: ssh://deploy@m1.example:2222\n  ssh: { key: keys/id_ed25519, known_hosts: keys/known_hosts }\n  registry: registry.example.com:5000\n', { file: FILE, env: {} });
    expect(ssh.engine).toEqual({
      type: 'swarm', manager: 'ssh://deploy@m1.example:2222', registry: 'registry.example.com:5000',
      ssh: { key: '/etc/slipway/keys/id_ed25519', known_hosts: '/etc/slipway/keys/known_hosts' },
    });
  });

  it('reads the swarm\'s keys with engine.type: docker, and leaves them unused (the design\'s example of the December keys loads as written)', () => {
    const example = [
      'receiver:', '  metrics: 127.0.0.1:3003', '  processes: 1',
      'dashboard:', '  allowed_hosts: [deploy.example.com]',
      'jobs:', '  log_max_lines: 100000', '  log_max_bytes: 10485760', '  keep_per_app: 200', '  keep_days: 30',
      'router:', '  batch_ms: 200',
      'engine:', '  type: docker', '  manager: unix:///var/run/docker.sock', '  tls: {ca: ca.pem, cert: cert.pem, key: key.pem}',
      '  registry: 10.77.0.11:5000', '  registry_auth: {username: ci, password: ${REGISTRY_PASSWORD}}',
      'apps:', '  hello:', '    repo: https://github.com/acme/hello.git', '    secret: ${HELLO_WEBHOOK_SECRET}',
      '    build_timeout_s: 1800', '    placement: [node.labels.role==web]', '    resources: {cpus: 0.5, memory_mb: 256}',
      '    steps:', '      - name: test', '        command: [npm, test]', '        image: node:20', '        env: {CI: "true"}', '        timeout_s: 600',
    ].join('\n');
    const config = parseConfig(example, { file: FILE, env: { REGISTRY_PASSWORD: 'registry-password', HELLO_WEBHOOK_SECRET: 'hello-webhook-secret-0123' } });
    expect(config.engine).toMatchObject({ type: 'docker', registry: '10.77.0.11:5000' });
    expect(config.apps.hello).toMatchObject({ placement: ['node.labels.role==web'], build_timeout_s: 1800 });
    expect(configSecrets(config)).toContain('registry-password');
    // A typo is still one.
    expect(problemsOf('engine: { regsitry: "r.example:5000" }')).toContain('engine.regsitry: unknown key');
  });

  it('honours DOCKER_HOST when docker is not set; a swarm manager taken from it must be a URL', () => {
    expect(parseConfig(minimalApp, { file: FILE, env: { DOCKER_HOST: 'tcp://127.0.0.1:2375' } }).docker).toBe('tcp://127.0.0.1:2375');
    expect(parseConfig(minimalApp, { file: FILE, env: { DOCKER_HOST: '' } }).docker).toBe('unix:///var/run/docker.sock');
    // A process that never talks to Docker (the receiver, slipway jobs) starts whatever it says.
    expect(parseConfig(minimalApp, { file: FILE, env: { DOCKER_HOST: 'ssh://user@host' } }).docker).toBe('ssh://user@host');
    expect(problemsOf(`engine: { type: swarm, registry: "r.example:5000" }\n${minimalApp}`, { DOCKER_HOST: 'garbage' })).toContain('engine.manager: expected a unix://, tcp:// or ssh:// URL, got "garbage"');
    expect(parseConfig(`docker: unix:///run/docker.sock\n${minimalApp}`, { file: FILE, env: { DOCKER_HOST: 'garbage' } }).docker).toBe('unix:///run/docker.sock');
  });

  it('keeps numbers as typed where YAML would change them: a branch 1.10 is not 1.1', () => {
    const config = parseConfig(`queue: { prefix: "0010" }\napps:\n  v1:\n    repo: https://github.com/acme/v1.git\n    branch: 1.10\n    secret: 12345678901234567890123\n    port: 0080\n    build_timeout_s: 1e3\n    replicas: 3\n`, { file: FILE, env: {} });
    expect(config.apps.v1).toMatchObject({ branch: '1.10', secret: '12345678901234567890123', port: 80, build_timeout_s: 1000, replicas: 3 });
    expect(parseConfig(`${minimalApp}    branch: 2.0\n`, { file: FILE, env: {} }).apps.hello!.branch).toBe('2.0');
    expect(parseConfig(`${minimalApp}    port: 0x1F90\n`, { file: FILE, env: {} }).apps.hello!.port).toBe(8080);
  });

  it('interpolates ${VAR}, ${VAR:-fallback} and $$, and reads numbers from variables', () => {
    const config = parseConfig(`${minimalApp}    secret: \${HELLO_SECRET}\n    port: \${PORT}\n    listen: \${LISTEN:-127.0.0.1:8081}\n    env: { PRICE: "$$5" }\n`, { file: FILE, env });
    expect(config.apps.hello).toMatchObject({ secret: 's3cret-of-16-chars', port: 9090, listen: '127.0.0.1:8081', env: { PRICE: '$5' } });
  });

  it('accepts single values where lists are expected', () => {
    const config = parseConfig(`etcd: http://127.0.0.1:2379\n${minimalApp}    server_name: hello.example.com\n`, { file: FILE, env });
    expect(config.etcd).toEqual(['http://127.0.0.1:2379']);
    expect(config.apps.hello!.server_name).toEqual(['hello.example.com']);
  });

  it('reads ${VAR} unquoted in a flow mapping, as the documented example writes it', () => {
    const text = `dashboard: { host: 127.0.0.1, port: 3001, token: \${SLIPWAY_TEST_TOKEN} }\nengine: { type: swarm, registry: "r.example:5000", registry_auth: {username: ci, password: \${REGISTRY_PASSWORD}} }\n${minimalApp}    env: { A: \${NOPE:-x}, B: "$\${LITERAL}" }\n`;
    const config = parseConfig(text, { file: FILE, env: { ...env, SLIPWAY_TEST_TOKEN: 't'.repeat(40), REGISTRY_PASSWORD: 'p4ss' } });
    expect(config.dashboard.token).toBe('t'.repeat(40));
    expect(config.engine.registry_auth).toEqual({ username: 'ci', password: 'p4ss' });
    expect(config.apps.hello!.env).toEqual({ A: 'x', B: '${LITERAL}' });
    // A YAML error shows the line as written.
    expect(() => parseConfig('dashboard: { token: ${SLIPWAY_TEST_TOKEN}\n', { file: FILE, env })).toThrow(/YAML: /);
  });

  it('resolves relative paths against the config file', () => {
    const config = parseConfig(`workdir: work\nnginx: { conf_dir: nginx/conf.d }\n${minimalApp}    template: nginx/hello.tmpl\n`, { file: FILE, env });
    expect(config.workdir).toBe('/etc/slipway/work');
    expect(config.nginx.conf_dir).toBe('/etc/slipway/nginx/conf.d');
    expect(config.apps.hello!.template).toBe('/etc/slipway/nginx/hello.tmpl');
  });
});

// Each bad config and the exact problem line it must produce.
const bad: Array<[string, string, string]> = [
  ['wrong port type', `${minimalApp}    port: x`, 'apps.hello.port: expected a port 1-65535, got "x"'],
  ['port out of range', `${minimalApp}    port: 70000`, 'apps.hello.port: expected a port 1-65535, got 70000'],
  ['unknown top-level key', 'redis_url: redis://x', 'redis_url: unknown key (expected one of: redis, etcd, docker, workdir, queue, receiver, worker, dashboard, jobs, forges, router, nginx, engine, apps, dns)'],
  ['unknown app key', `${minimalApp}    replica: 3`, 'apps.hello.replica: unknown key'],
  ['unknown nested key', `${minimalApp}    health: { path: /h, timeout: 3 }`, 'apps.hello.health.timeout: unknown key (expected one of: path, timeout_s, interval_ms)'],
  ['unset variable', `${minimalApp}    secret: \${NOPE_SECRET}`, 'apps.hello.secret: environment variable NOPE_SECRET is not set'],
  ['a variable named like an object\'s own property (constructor), unset', `${minimalApp}    secret: \${constructor}`, 'apps.hello.secret: environment variable constructor is not set'],
  ['unset variable with a message', `${minimalApp}    secret: \${NOPE_SECRET:?make one with openssl rand -hex 32}`, 'apps.hello.secret: environment variable NOPE_SECRET is not set: make one with openssl rand -hex 32'],
  ['short webhook secret, not echoed', `${minimalApp}    secret: hunter2hunter2`, 'apps.hello.secret: expected a secret of 16+ characters, got one of 14 characters'],
  ['short dashboard token, not echoed', `dashboard: { token: abcdefghijklmnopqrstuvwxyz }\n${minimalApp}`, 'dashboard.token: expected a token of 32+ characters, no whitespace, got one of 26 characters'],
  ['dashboard token padded to length with spaces, not echoed', `dashboard: { token: "    abcdefghijklmnopqrstuvwxyz    " }\n${minimalApp}`, 'dashboard.token: expected a token of 32+ characters, no whitespace, got one of 34 characters'],
  ['forge token with a second line (read from a file), not echoed', `forges: { github: { token: "ghp_SecretTokenValue123\\nsecond" } }\n${minimalApp}`, 'forges.github.token: expected a token without whitespace, got one of 30 characters'],
  ['password in an ssh URL, not echoed', 'apps:\n  hello:\n    repo: ssh://deploy:pw0rd@git.example.com/a/b.git', 'apps.hello.repo: expected a git URL, got "ssh://***@git.example.com/a/b.git" (must not hold a password (use credentials.ssh_key for ssh))'],
  ['token as the user of a mistyped URL, not echoed', 'apps:\n  hello:\n    repo: htps://ghp_Secret123Token@github.com/acme/hello.git', 'apps.hello.repo: expected a git URL, got "htps://***@github.com/acme/hello.git" (expected an http(s)://'],
  ['a full ref as the branch', `${minimalApp}    branch: refs/heads/main`, 'apps.hello.branch: expected a branch name, got "refs/heads/main" (the branch\'s name, without refs/heads/: e.g. main)'],
  ['a remote-tracking name as the branch', `${minimalApp}    branch: origin/main`, 'apps.hello.branch: expected a branch name, got "origin/main" (the branch\'s name on the repository, not its remote-tracking name: e.g. main)'],
  ['a host name as the DNS server dnsmasq listens on', 'dns: { server: "localhost:5353" }', 'dns.server: expected an ip:port, got "localhost:5353" (an IPv4 address and a port, e.g. 127.0.0.1:5353)'],
  ['a wildcard over a whole top-level domain in allowed_hosts', 'dashboard: { allowed_hosts: ["*.com"] }', 'dashboard.allowed_hosts[0]: expected a host name, got "*.com" (a wildcard needs a domain of its own under it, e.g. *.example.com)'],
  ['the receiver\'s metrics on its webhook port', 'receiver: { host: 127.0.0.1, port: 3000, metrics: "0.0.0.0:3000" }', 'receiver.metrics: 0.0.0.0:3000 is the webhook\'s own port (receiver.host 127.0.0.1, receiver.port 3000); /metrics needs a listener of its own'],
  ['dns apps that together need more of the shared pool than it has', 'dns: { address_pool: 127.0.10.0/29 }\napps:\n  one: { repo: /srv/a.git, routing: dns, replicas: 2 }\n  two: { repo: /srv/b.git, routing: dns, replicas: 2 }', 'dns.address_pool: has 6 addresses; the dns apps (one: 2, two: 2 replicas) need 8 when they deploy at once (2 per replica)'],
  ['malformed interpolation', `${minimalApp}    template: \${oops`, 'apps.hello.template: malformed ${...} in "${oops"'],
  ['bad app name', 'apps:\n  Hello_World:\n    repo: /srv/git/hello.git', 'apps.Hello_World: invalid app name "Hello_World"'],
  ['app name with ../', 'apps:\n  "../etc":\n    repo: /srv/git/hello.git', 'apps.../etc: invalid app name "../etc"'],
  ['missing repo', 'apps:\n  hello:\n    replicas: 2', 'apps.hello.repo: is required (a git URL)'],
  ['option-like repo', 'apps:\n  hello:\n    repo: --upload-pack=touch /tmp/pwned', 'apps.hello.repo: expected a git URL, got "--upload-pack=touch /tmp/pwned" (must not start with "-")'],
  ['relative repo', 'apps:\n  hello:\n    repo: hello.git', 'apps.hello.repo: expected a git URL, got "hello.git"'],
  ['owner/name escaping', 'apps:\n  hello:\n    repo: ../etc', 'apps.hello.repo: expected a git URL, got "../etc"'],
  ['bad branch', `${minimalApp}    branch: "feature..x"`, 'apps.hello.branch: expected a branch name, got "feature..x"'],
  ['branch like an option', `${minimalApp}    branch: "-x"`, 'apps.hello.branch: expected a branch name, got "-x"'],
  ['zero replicas', `${minimalApp}    replicas: 0`, 'apps.hello.replicas: expected an integer 1-64, got 0'],
  ['fractional replicas', `${minimalApp}    replicas: 1.5`, 'apps.hello.replicas: expected an integer 1-64, got 1.5'],
  ['bad host_ip', `${minimalApp}    host_ip: 127.0.0.256`, 'apps.hello.host_ip: expected an IPv4 address, got "127.0.0.256"'],
  ['health path without slash', `${minimalApp}    health: { path: healthz }`, 'apps.hello.health.path: expected a URL path, got "healthz"'],
  ['negative drain', `${minimalApp}    drain_s: -1`, 'apps.hello.drain_s: expected a number 0-3600, got -1'],
  ['bad routing', `${minimalApp}    routing: consul`, 'apps.hello.routing: expected one of upstream, dns, got "consul"'],
  ['nginx injection in server_name', `${minimalApp}    server_name: ["a.com; include /etc/passwd"]`, 'apps.hello.server_name[0]: expected a host name, got "a.com; include /etc/passwd"'],
  ['bad listen', `${minimalApp}    listen: "0.0.0.0:99999"`, 'apps.hello.listen: expected a port or address:port, got "0.0.0.0:99999"'],
  ['listen on an address that is none (an octet over 255)', `${minimalApp}    listen: "999.1.1.1:80"`, 'apps.hello.listen: expected a port or address:port, got "999.1.1.1:80"'],
  ['listen on a host name of dots', `${minimalApp}    listen: "..:80"`, 'apps.hello.listen: expected a port or address:port, got "..:80"'],
  ['a registry host of three numbers', 'engine: { registry: "1.2.3:5000" }', 'engine.registry: expected a host:port, got "1.2.3:5000"'],
  ['dockerfile escaping the repo', `${minimalApp}    dockerfile: ../Dockerfile`, 'apps.hello.dockerfile: expected a path in the repository, got "../Dockerfile"'],
  ['bad env name', `${minimalApp}    env: { "BAD-NAME": x }`, 'apps.hello.env.BAD-NAME: invalid variable name "BAD-NAME"'],
  ['shell-string check_cmd', 'nginx:\n  check_cmd: "nginx -t"', 'nginx.check_cmd: expected an argv list (never a shell string), got "nginx -t"'],
  ['front without its socket dir', 'nginx:\n  front: { conf_dir: /etc/nginx-front/conf.d }', 'nginx.front.socket_dir: is required'],
  ['front socket dir not absolute', 'nginx:\n  front: { conf_dir: /etc/nginx-front/conf.d, socket_dir: run/back }', 'nginx.front.socket_dir: expected an absolute path, got "run/back"'],
  ['front socket dir that nginx would misread', 'nginx:\n  front: { conf_dir: /etc/nginx-front/conf.d, socket_dir: "/run/back;x" }', 'nginx.front.socket_dir: expected an absolute path, got "/run/back;x"'],
  ['front socket path too long for an app', `nginx:\n  front: { conf_dir: /etc/nginx-front/conf.d, socket_dir: /run/${'d'.repeat(90)} }\n${minimalApp}`, 'nginx.front.socket_dir: the socket of app hello would be 114 bytes long'],
  ['front on the back\'s conf dir', 'nginx:\n  conf_dir: /etc/nginx/conf.d\n  front: { conf_dir: /etc/nginx/conf.d/, socket_dir: /run/back }', 'nginx.front.conf_dir: must be another nginx\'s conf dir'],
  ['empty reload_cmd', 'nginx:\n  reload_cmd: []', 'nginx.reload_cmd: expected an argv list (never a shell string) with at least 1 item, got an empty list'],
  ['redis not a URL', 'redis: localhost:6379', 'redis: expected a redis:// URL, got "localhost:6379" (protocol must be redis or rediss)'],
  ['etcd not http', 'etcd: [grpc://127.0.0.1:2379]', 'etcd[0]: expected an http(s) URL, got "grpc://127.0.0.1:2379" (protocol must be http or https)'],
  ['apps not a mapping', 'apps: [hello]', 'apps: expected a mapping of app names, got ["hello"]'],
  ['app name ending in a dash', 'apps:\n  web-:\n    repo: /r/web.git', 'apps.web-: an app name may not end in "-": its images, slipway/web-:<sha12>, would not be valid Docker image names'],
  ['etcd_prefix with trailing slash', `${minimalApp}    etcd_prefix: /slipway/hello/`, 'apps.hello.etcd_prefix: expected an etcd key prefix, got "/slipway/hello/"'],
  ['overlapping etcd prefixes', 'apps:\n  a:\n    repo: /r/a.git\n    etcd_prefix: /up\n  b:\n    repo: /r/b.git\n    etcd_prefix: /up/b', 'apps.b.etcd_prefix: overlaps apps.a.etcd_prefix (/up)'],
  ['etcd_prefix over the release keys', `${minimalApp}    etcd_prefix: /slipway/apps/hello`, "apps.hello.etcd_prefix: overlaps Slipway's own keys (/slipway/apps/hello/…/release)"],
  ['etcd_prefix inside the locks', `${minimalApp}    etcd_prefix: /slipway/locks/x`, "apps.hello.etcd_prefix: overlaps Slipway's own keys (/slipway/locks/x)"],
  ['notify target without a URL', `${minimalApp}    notify: [{ type: slack }]`, 'apps.hello.notify[0].url: is required (an http(s) URL)'],
  ['unknown notify outcome', `${minimalApp}    notify: [{ type: webhook, url: "https://x.example", on: [deploy] }]`, 'apps.hello.notify[0].on[0]: expected one of failure, recovery, success, got "deploy"'],
  ['dns pool too small', `dns: { address_pool: 127.0.10.0/30 }\n${minimalApp}    routing: dns\n    replicas: 2`, 'apps.hello.replicas: a dns app needs 2 addresses per replica during a rollout; dns.address_pool has 2'],
  ['bad address pool', 'dns: { address_pool: 127.0.10.0 }', 'dns.address_pool: expected an IPv4 CIDR, got "127.0.10.0" (an IPv4 network with a prefix of 16-30 bits)'],
  ['unknown engine type', 'engine: { type: kubernetes }', 'engine.type: expected one of docker, swarm, got "kubernetes"'],
  ['unknown engine key', 'engine: { type: swarm, registry: "r.example:5000", regsitry_auth: {} }', 'engine.regsitry_auth: unknown key'],
  ['swarm without a registry', 'engine: { type: swarm }', 'engine.registry: is required with engine.type: swarm'],
  ['bad registry', 'engine: { type: swarm, registry: "http://r.example" }', 'engine.registry: expected a host:port, got "http://r.example"'],
  ['ssh manager with a password, not echoed', 'engine: { type: swarm, manager: "ssh://deploy:pw0rd@m1", registry: "r.example:5000" }', 'engine.manager: an ssh:// URL must not hold a password'],
  ['ssh manager with a path', 'engine: { type: swarm, manager: "ssh://deploy@m1/var/run/docker.sock", registry: "r.example:5000" }', 'engine.manager: an ssh:// manager has no path'],
  ['ssh manager whose host reads as an option', 'engine: { type: swarm, manager: "ssh://-oProxyCommand=x", registry: "r.example:5000" }', 'engine.manager:'],
  ['ssh files without ssh', 'engine: { type: swarm, manager: "tcp://m1:2376", registry: "r.example:5000", ssh: { key: id } }', 'engine.ssh: ssh files are for an ssh:// manager'],
  ['tls without tcp', 'engine: { type: swarm, registry: "r.example:5000", tls: { ca: a, cert: b, key: c } }', 'engine.tls: TLS files are for a tcp:// manager'],
  ['registry password not echoed', 'engine: { type: swarm, registry: "r.example:5000", registry_auth: { username: ci } }', 'engine.registry_auth.password: is required'],
  ['bad placement', `engine: { type: swarm, registry: "r.example:5000" }\n${minimalApp}    placement: ["node.role==manager; rm -rf /"]`, 'apps.hello.placement[0]: expected a constraint, got "node.role==manager; rm -rf /"'],
  ['bad resources', `engine: { type: swarm, registry: "r.example:5000" }\n${minimalApp}    resources: { cpus: 0, memory_mb: 1.5 }`, 'apps.hello.resources.cpus: expected a number 0.01-1024, got 0'],
  ['dns on a swarm', `engine: { type: swarm, registry: "r.example:5000" }\n${minimalApp}    routing: dns`, 'apps.hello.routing: routing: dns publishes on loopback addresses of one machine'],
  ['duplicate key', `${minimalApp}    port: 1\n    port: 2`, 'YAML: Map keys must be unique'],
  ['not YAML', 'apps: {hello: [', 'YAML:'],
  ['top level is a list', '- a\n- b', '(top level): expected a mapping, got ["a","b"]'],
  ['credentials in a notification URL', `${minimalApp}    notify: [{ type: slack, url: "https://hook:hunter2hunter2@hooks.example/T0/B0" }]`, 'apps.hello.notify[0].url: expected an http(s) URL, got one of 47 characters (must not carry a user or password (user:pass@))'],
  ['a key every object inherits', 'receiver: { constructor: 5 }', 'receiver.constructor: unknown key'],
  ['__proto__ as a key', 'receiver: { __proto__: { port: 1 } }', 'receiver.__proto__: unknown key'],
  ['__proto__ as a variable', `${minimalApp}    env: { __proto__: x }`, 'apps.hello.env.__proto__: invalid'],
  ['malformed ${ in a forge token', 'forges: { github: { token: "abcdefghijklmnopqrstuvwxyz${x" } }', 'forges.github.token: malformed ${...} in a value of 29 characters'],
  ['malformed ${ in a clone password', `${minimalApp}    credentials: { username: ci, password: "abcdefghijklmnopqrstuvwxyz\${x" }`, 'apps.hello.credentials.password: malformed ${...} in a value of 29 characters'],
  ['malformed ${ in a secret-named variable', `${minimalApp}    env: { API_TOKEN: "abcdefghijklmnopqrstuvwxyz\${x" }`, 'apps.hello.env.API_TOKEN: malformed ${...} in a value of 29 characters'],
  ['malformed ${ in a secret', `${minimalApp}    secret: "abcdefghijklmnopqrstuvwxyz\${x"`, 'apps.hello.secret: malformed ${...} in a value of 29 characters'],
];

describe('appConfig', () => {
  it('names configured apps only: what every object inherits is no app', () => {
    const config = parseConfig(minimalApp, { file: FILE, env: {} });
    const [name] = Object.keys(config.apps);
    expect(appConfig(config, name!).name).toBe(name);
    for (const inherited of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      expect(() => appConfig(config, inherited)).toThrow(expect.objectContaining({ code: 'unknown_app' }));
    }
  });
});

describe('parseConfig rejects bad configs with the file and key path', () => {
  it.each(bad)('%s', (_name, text, expected) => {
    const message = problemsOf(text);
    const line = message.split('\n').find((l) => l.includes(expected));
    expect(line, message).toBeDefined();
    expect(line!.startsWith(`${FILE}: `)).toBe(true);
    for (const secret of ['hunter2hunter2', 'abcdefghijklmnopqrstuvwxyz', 'pw0rd']) expect(message).not.toContain(secret);
  });

  it('reports every problem, not only the first', () => {
    const lines = problemsOf(`${minimalApp}    port: x\n    replicas: 0\n    routing: consul`).split('\n');
    expect(lines).toHaveLength(3);
  });

  it('never echoes the value of a secret variable into a message about another key', () => {
    const message = problemsOf(`${minimalApp}    secret: \${HELLO_SECRET}\n    port: x`);
    expect(message).not.toContain('s3cret');
  });
});

describe('loadConfig', () => {
  // Made in beforeAll, not while the file is collected: a run that filters these tests out runs no afterAll either.
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'slipway-config-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('prefers --config, then $SLIPWAY_CONFIG, then ./slipway.yml', () => {
    writeFileSync(join(dir, 'slipway.yml'), 'receiver: { port: 1001 }\n');
    writeFileSync(join(dir, 'env.yml'), 'receiver: { port: 1002 }\n');
    writeFileSync(join(dir, 'flag.yml'), 'receiver: { port: 1003 }\n');
    expect(loadConfig({ env: {}, cwd: dir }).receiver.port).toBe(1001);
    expect(loadConfig({ env: { SLIPWAY_CONFIG: 'env.yml' }, cwd: dir }).receiver.port).toBe(1002);
    expect(loadConfig({ path: 'flag.yml', env: { SLIPWAY_CONFIG: 'env.yml' }, cwd: dir }).receiver.port).toBe(1003);
    // Empty is unset (compose's `SLIPWAY_CONFIG: ${SLIPWAY_CONFIG}` with the variable unset), not the directory.
    expect(loadConfig({ env: { SLIPWAY_CONFIG: '' }, cwd: dir }).receiver.port).toBe(1001);
  });

  it('loadPushConfig reads what a push uses, not the secrets and other apps a pusher\'s environment lacks', () => {
    writeFileSync(join(dir, 'push.yml'), [
      'redis: redis://:${REDIS_PASSWORD}@127.0.0.1:6379',
      'workdir: work',
      'queue: { prefix: q }',
      'worker: { attempts: 5 }',
      'dashboard: { token: "${DASHBOARD_TOKEN}" }',
      'apps:',
      '  hello: { repo: "https://deploy:${GIT_TOKEN}@git.example.com/acme/hello.git", branch: main, secret: "${HELLO_SECRET}", env: { DATABASE_URL: "${DATABASE_URL}" } }',
      '  other: { repo: "${OTHER_REPO}" }',
      '',
    ].join('\n'));
    const config = loadPushConfig({ path: 'push.yml', env: { REDIS_PASSWORD: 'pw' }, cwd: dir }, 'hello');
    expect(config).toMatchObject({ redis: 'redis://:pw@127.0.0.1:6379', workdir: join(dir, 'work'), queue: { prefix: 'q' }, worker: { attempts: 5 } });
    expect(appConfig(config, 'hello')).toMatchObject({ name: 'hello', branch: 'main' });
    // What a push does use must still be there.
    expect(() => loadPushConfig({ path: 'push.yml', env: {}, cwd: dir }, 'hello')).toThrow('redis: environment variable REDIS_PASSWORD is not set');
    expect(() => appConfig(loadPushConfig({ path: 'push.yml', env: { REDIS_PASSWORD: 'pw' }, cwd: dir }, 'gone'), 'gone')).toThrow(/gone/);
  });

  it('names a missing file', () => {
    expect(() => loadConfig({ path: 'nope.yml', env: {}, cwd: dir })).toThrow(`${join(dir, 'nope.yml')}: cannot read config: file not found`);
  });
});

describe('README configuration reference', () => {
  it('is in step with the schema', () => {
    const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
    expect(readme).toContain(configReference());
  });
});

describe('sharedServerNames: apps nginx would serve on one listen under one name', () => {
  const config = (apps: string) => parseConfig(`apps:\n${apps}`, { file: FILE, env: {} });
  it('names two apps left on listen 80 and server_name _, and a name two apps give on one address however it is written', () => {
    expect(sharedServerNames(config('  a: { repo: /r/a.git }\n  b: { repo: /r/b.git }\n'))).toEqual([
      "apps.b.server_name: _ on listen 80 is apps.a's too: nginx sends every request for it to one of them (the file it reads first); give each app its own listen or server_name",
    ]);
    const spelt = config('  a: { repo: /r/a.git, listen: 8080, server_name: [www.example.com, example.com] }\n  b: { repo: /r/b.git, listen: "0.0.0.0:8080", server_name: Example.COM. }\n');
    expect(sharedServerNames(spelt)).toEqual([expect.stringMatching(/^apps\.b\.server_name: Example\.COM\. on listen 0\.0\.0\.0:8080 is apps\.a's too/)]);
  });

  it('names an app without names on a listen whose first file is another app\'s: that one is the default server', () => {
    expect(sharedServerNames(config('  web: { repo: /r/a.git, server_name: web.example.com }\n  zz: { repo: /r/b.git }\n'))).toEqual([
      "apps.zz.server_name: unset, on listen 80 where apps.web's file comes first: nginx sends every request for a name no app lists to web, and zz gets none; give zz its names or its own listen",
    ]);
    // First itself, it is the default server: it takes what web does not name.
    expect(sharedServerNames(config('  aa: { repo: /r/a.git }\n  web: { repo: /r/b.git, server_name: web.example.com }\n'))).toEqual([]);
  });

  it('says nothing of apps on their own listen, their own names, or their own addresses', () => {
    expect(sharedServerNames(config('  a: { repo: /r/a.git, listen: "127.0.0.1:8081" }\n  b: { repo: /r/b.git, listen: "127.0.0.1:8082" }\n'))).toEqual([]);
    expect(sharedServerNames(config('  a: { repo: /r/a.git, server_name: a.example.com }\n  b: { repo: /r/b.git, server_name: b.example.com }\n'))).toEqual([]);
    expect(sharedServerNames(config('  a: { repo: /r/a.git, listen: "127.0.0.1:80" }\n  b: { repo: /r/b.git, listen: "127.0.0.2:80" }\n'))).toEqual([]);
  });
});
