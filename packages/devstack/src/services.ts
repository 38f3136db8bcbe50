import { connect } from 'node:net';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'node:http';
import { Resolver } from 'node:dns/promises';
import { userInfo } from 'node:os';
import { spawnSync } from 'node:child_process';
import { answersWhileAlive, ExitedError, findExecutable, isAlive, stillRuns, waitFor, spawnService, stopProcess } from './processes.js';
import { processStart } from '@slipway/core/run-command';

/** Sends raw bytes to a TCP service and resolves with what it answers first. */
export function tcpExchange(host: string, port: number, payload: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let data = '';
    const done = (err?: Error) => {
      socket.destroy();
      if (err) reject(err);
      else resolve(data);
    };
    socket.setTimeout(timeoutMs, () => done(new Error(`no answer from ${host}:${port}`)));
    socket.on('connect', () => socket.write(payload));
    socket.on('data', (chunk) => {
      data += chunk.toString('utf8');
      if (data.includes('\n')) done();
    });
    socket.on('error', done);
    socket.on('end', () => done());
  });
}

export async function httpOk(url: string, timeoutMs = 1000): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

export const DOCKER_SOCKET = '/var/run/docker.sock';

export interface DockerEngine {
  /** Set when this stack started dockerd (and so may stop it). */
  pid?: number;
  /** When that dockerd started (processStart): a pid reused since, after a reboot say, is not it. */
  start?: string;
  host: string;
}

/** The dockerd this stack started, still running: the same process (its start time), not one that reused its pid. */
export function ownDockerd(engine: DockerEngine | undefined): engine is DockerEngine & { pid: number } {
  return engine?.pid !== undefined && engine.start !== undefined && stillRuns(engine.pid, engine.start);
}

/** `GET /_ping` over the socket: true when an engine answers. */
export function dockerAnswers(socketPath = DOCKER_SOCKET): Promise<boolean> {
  if (!existsSync(socketPath)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/_ping', timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

/**
 * Uses the engine at the default socket when one answers; otherwise starts
 * dockerd (its own data root, the default socket) and waits for it.
 */
export async function ensureDockerEngine(logDir: string): Promise<DockerEngine> {
  const host = `unix://${DOCKER_SOCKET}`;
  if (await dockerAnswers()) return { host };
  // dockerd as any other user exits at once, and the wait below would only time out.
  if (process.getuid?.() !== 0) throw new Error(`no Docker engine answers this user on ${DOCKER_SOCKET}, and only root can start dockerd: start Docker and add this user to the docker group, or run as root`);
  mkdirSync(logDir, { recursive: true });
  const log = join(logDir, 'dockerd.log');
  const pid = spawnService(['dockerd', '--host', host], log);
  try {
    // Ours exiting is no failure while another engine comes up meanwhile (the system's, starting at boot, whose pid
    // file made ours exit): any engine that answers on the socket is used. Only none answering for 10 s after is.
    let exitedAt: number | null = null;
    await waitFor('the Docker engine to answer on /var/run/docker.sock', async () => {
      if (await dockerAnswers()) return true;
      exitedAt ??= isAlive(pid) ? null : Date.now();
      if (exitedAt !== null && Date.now() - exitedAt > 10_000) throw new ExitedError(`dockerd (pid ${pid}) exited before it answered, and no other engine answers on ${DOCKER_SOCKET}; see ${log}`);
      return false;
    }, { timeoutMs: 90_000, intervalMs: 200 });
    if (!isAlive(pid)) return { host };
  } catch (err) {
    // Not yet in the stack's state, and its argv does not name the stack's directory: nothing else would stop it.
    await stopProcess(pid, 30_000);
    throw err;
  }
  return { pid, start: processStart(pid) ?? undefined, host };
}

export interface RedisService { pid: number; port: number; url: string }

export async function redisAnswers(port: number): Promise<boolean> {
  return (await tcpExchange('127.0.0.1', port, 'PING\r\n').catch(() => '')).startsWith('+PONG');
}

/** redis-server on loopback, persisted to an append-only file, data and log under `dir`. */
export async function startRedis(dir: string, port: number): Promise<RedisService> {
  mkdirSync(dir, { recursive: true });
  const pid = spawnService([
    'redis-server', '--bind', '127.0.0.1', '--port', String(port), '--dir', dir,
    // An append-only file, as a production Redis should have: a restarted Redis keeps its queue.
    '--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec', '--protected-mode', 'yes', '--daemonize', 'no',
    '--loglevel', 'warning',
  ], join(dir, 'redis.log'));
  const what = `redis on port ${port}`;
  await waitFor(what, answersWhileAlive(what, pid, join(dir, 'redis.log'), () => redisAnswers(port)), { timeoutMs: 15_000 });
  return { pid, port, url: `redis://127.0.0.1:${port}` };
}

export interface EtcdService { pid: number; port: number; peerPort: number; url: string; dataDir: string }

export const etcdHealthy = (url: string) => httpOk(`${url}/health`);

/** Builds the etcd argv; pure so a restart (tests restart etcd) uses the very same one. */
export function etcdArgv(dataDir: string, port: number, peerPort: number): string[] {
  const client = `http://127.0.0.1:${port}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  return [
    'etcd', '--name', 'slipway', '--data-dir', dataDir,
    '--listen-client-urls', client, '--advertise-client-urls', client,
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
    '--initial-cluster', `slipway=${peer}`, '--initial-cluster-state', 'new',
    // Keeps an hour of revisions: every put is history until compacted, and a
    // year of deploys would otherwise reach etcd's space quota (then it refuses writes).
    '--auto-compaction-mode', 'periodic', '--auto-compaction-retention', '1h',
    // A switch of N replicas is one transaction of 2N + 3 operations: 131 at replicas: 64, past etcd's default 128.
    '--max-txn-ops', '1024',
    '--log-level', 'warn', '--logger', 'zap',
  ];
}

/** A single-node etcd on loopback with its data under `dir`. */
export async function startEtcd(dir: string, port: number, peerPort: number): Promise<EtcdService> {
  const dataDir = join(dir, 'data');
  mkdirSync(dataDir, { recursive: true });
  const pid = spawnService(etcdArgv(dataDir, port, peerPort), join(dir, 'etcd.log'), { ...process.env, ETCD_UNSUPPORTED_ARCH: process.arch === 'x64' ? '' : process.arch });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`etcd at ${url}`, answersWhileAlive(`etcd at ${url}`, pid, join(dir, 'etcd.log'), () => etcdHealthy(url)), { timeoutMs: 30_000 });
  return { pid, port, peerPort, url, dataDir };
}

export interface DnsmasqService {
  pid: number;
  port: number;
  /** `127.0.0.1:<port>`: what slipway.yml's `dns.server` should be. */
  server: string;
  /** Names under it are answered from `hostsDir` only. */
  domain: string;
  /** dnsmasq's `--hostsdir`: where Slipway writes one hosts file per `routing: dns` app. */
  hostsDir: string;
}

/** The domain of slipway.yml's default `dns.domain`. */
export const DEVSTACK_DNS_DOMAIN = 'slipway.internal';

/**
 * The dnsmasq argv of the stack. Pure; the same options as the one Slipway
 * runs in production (`dnsmasqArgv` of @slipway/router, which the devstack cannot
 * import: the router's tests depend on the devstack), checked against
 * `dnsmasq --help` 2.90: foreground, log to stderr, nothing forwarded, no
 * /etc/hosts, loopback only, `--hostsdir` re-read by inotify (a replaced
 * or removed file drops its old names), 1 s TTL.
 */
export function dnsmasqArgv(options: { port: number; domain: string; hostsDir: string; pidFile: string }): string[] {
  return [
    'dnsmasq', '--keep-in-foreground', '--log-facility=-', '--no-resolv', '--no-hosts',
    '--listen-address=127.0.0.1', '--bind-interfaces', `--port=${options.port}`,
    `--local=/${options.domain}/`, `--hostsdir=${options.hostsDir}`, '--local-ttl=1',
    `--pid-file=${options.pidFile}`,
    // Not `nobody` (dnsmasq's default when started as root): the hosts directory is private to the stack.
    `--user=${userInfo().username}`,
  ];
}

/** True when something answers DNS on 127.0.0.1:`port` for `domain` (NXDOMAIN counts: it answered). */
export async function dnsmasqAnswers(port: number, domain = DEVSTACK_DNS_DOMAIN): Promise<boolean> {
  const resolver = new Resolver({ timeout: 300, tries: 1 });
  resolver.setServers([`127.0.0.1:${port}`]);
  try {
    await resolver.resolve4(`devstack-probe.${domain}`);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOTFOUND' || code === 'ENODATA';
  }
}

/** dnsmasq on 127.0.0.1:`port` (UDP and TCP) answering `*.<domain>` from `<dir>/hosts`; log in `<dir>/dnsmasq.log`. */
export async function startDnsmasq(dir: string, port: number, domain = DEVSTACK_DNS_DOMAIN): Promise<DnsmasqService> {
  const hostsDir = join(dir, 'hosts');
  mkdirSync(hostsDir, { recursive: true });
  const pid = spawnService(dnsmasqArgv({ port, domain, hostsDir, pidFile: join(dir, 'dnsmasq.pid') }), join(dir, 'dnsmasq.log'));
  await waitFor(`dnsmasq on port ${port}`, () => dnsmasqAnswers(port, domain), { timeoutMs: 15_000, intervalMs: 50 });
  return { pid, port, server: `127.0.0.1:${port}`, domain, hostsDir };
}

export interface NginxService {
  pid: number;
  /** Directory nginx runs under: its main config, pid file, logs and temp files. */
  prefix: string;
  /** The main config: includes `confDir/*.conf`. */
  mainConf: string;
  /** What Slipway's `nginx.conf_dir` should be. */
  confDir: string;
  /** A loopback port answering `GET /__devstack` with 200, to probe nginx itself. */
  statusPort: number;
  /** For slipway.yml's `nginx.check_cmd` / `nginx.reload_cmd`. */
  checkCmd: string[];
  reloadCmd: string[];
}

/**
 * Started as root, nginx runs its workers as `nobody`, who cannot reach a
 * stack under a private home (`/root/slipway/.slipway/stack`, mode 0700):
 * the body of a large request goes to a temp file under the prefix, and a
 * front's workers connect to the back's unix sockets there. The workers
 * run as the user the stack is started by.
 */
function workerUser(): string {
  return process.getuid?.() === 0 ? 'user root;\n' : '';
}

/** The main nginx.conf of a stack: everything under `prefix`, Slipway's files included. */
export function renderMainConf(prefix: string, confDir: string, statusPort: number): string {
  const tmp = (name: string) => `${name}_temp_path ${join(prefix, 'tmp', name)};`;
  return `# Written by @slipway/devstack. Slipway's per-app files live in ${confDir}.
${workerUser()}worker_processes 2;
pid ${join(prefix, 'nginx.pid')};
error_log ${join(prefix, 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  # Each Slipway app adds a variable (its Connection map): with nginx's defaults (1024, 64) every reload
  # of ~90 apps warns that it could not build an optimal hash; these hold 300 apps of long names.
  variables_hash_max_size 2048;
  variables_hash_bucket_size 128;
  ${tmp('client_body')}
  ${tmp('proxy')}
  ${tmp('fastcgi')}
  ${tmp('uwsgi')}
  ${tmp('scgi')}
  server {
    listen 127.0.0.1:${statusPort};
    location = /__devstack { return 200 "ok\\n"; }
  }
  include ${join(confDir, '*.conf')};
}
`;
}

/**
 * An nginx of its own: a prefix directory, a main config including
 * `confDir`, a master process in the foreground of its own process group.
 */
export async function startNginx(prefix: string, statusPort: number, confDir = join(prefix, 'conf.d')): Promise<NginxService> {
  for (const dir of [prefix, confDir, ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((d) => join(prefix, 'tmp', d))]) {
    mkdirSync(dir, { recursive: true, mode: 0o777 });
  }
  const mainConf = join(prefix, 'nginx.conf');
  writeFileSync(mainConf, renderMainConf(prefix, confDir, statusPort));
  // The full path: Slipway runs the check and reload commands with its own PATH, which may lack /usr/sbin.
  const base = [findExecutable('nginx'), '-p', `${prefix}/`, '-c', mainConf];
  const pid = spawnService([...base, '-e', join(prefix, 'error.log'), '-g', 'daemon off;'], join(prefix, 'nginx.out'));
  const what = `nginx on port ${statusPort}`;
  await waitFor(what, answersWhileAlive(what, pid, join(prefix, 'error.log'), () => httpOk(`http://127.0.0.1:${statusPort}/__devstack`)), { timeoutMs: 15_000 });
  return {
    pid, prefix, mainConf, confDir, statusPort,
    checkCmd: [...base, '-t', '-q'],
    reloadCmd: [...base, '-s', 'reload'],
  };
}

/** Debian packages the stack needs, by the binary that proves each is there. */
export const STACK_PACKAGES: Record<string, string> = {
  'docker.io': '/usr/sbin/dockerd',
  'etcd-server': '/usr/bin/etcd',
  'etcd-client': '/usr/bin/etcdctl',
  'nginx-light': '/usr/sbin/nginx',
  'redis-server': '/usr/bin/redis-server',
  'busybox-static': '/bin/busybox',
  'dnsmasq-base': '/usr/sbin/dnsmasq',
  git: '/usr/bin/git',
  wrk: '/usr/bin/wrk',
  'docker-compose': '/usr/bin/docker-compose',
  // ss: counting the connections still open to an old container while it drains.
  iproute2: '/usr/bin/ss',
};

/**
 * What the cluster harness (`cluster/cluster.ts`) needs besides the stack:
 * the registry, and nsenter/unshare to run a host's engine in its namespaces.
 */
export const CLUSTER_PACKAGES: Record<string, string> = {
  'docker-registry': '/usr/bin/docker-registry',
  'util-linux': '/usr/bin/nsenter',
  iproute2: '/usr/sbin/ip',
};

/**
 * What the tests need besides the stack: the cluster harness's packages,
 * Debian's chromium for the dashboard's browser tests, ssh. `npm test`
 * installs them with the rest, before any test starts, so no test's timer
 * runs while apt-get does.
 */
export const TEST_PACKAGES: Record<string, string> = {
  ...STACK_PACKAGES, ...CLUSTER_PACKAGES, chromium: '/usr/bin/chromium',
  // A swarm manager behind ssh:// (engine.manager): the client Slipway runs, and an sshd of the test's own.
  'openssh-client': '/usr/bin/ssh', 'openssh-server': '/usr/sbin/sshd',
};

function installed(pkg: string): boolean {
  const res = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return res.status === 0 && res.stdout.includes('install ok installed');
}

/** Whether `name` is an executable on PATH or in the sbin directories. */
function hasExecutable(name: string): boolean {
  try {
    findExecutable(name);
    return true;
  } catch {
    return false;
  }
}

/**
 * nginx-light and nginx both provide /usr/sbin/nginx; either will do. A
 * Docker engine from anywhere will do for docker.io: installed over Docker's
 * own docker-ce (or moby-engine), apt-get -y would remove it to make room.
 */
function satisfied(pkg: string): boolean {
  if (pkg === 'nginx-light') return installed('nginx-light') || installed('nginx') || installed('nginx-core');
  if (pkg === 'docker.io') return installed('docker.io') || installed('docker-ce') || installed('moby-engine') || hasExecutable('dockerd');
  return installed(pkg);
}

const POLICY_RC_D = '/usr/sbin/policy-rc.d';
export const POLICY_MARKER = '# Written by Slipway while it installs packages';

/** Runs `argv` as root (through `asRoot`); false when it could not (a sudoers rule allowing only apt-get, say). */
function asRootDid(asRoot: string[], argv: string[], input?: string): boolean {
  const [file, ...args] = [...asRoot, ...argv];
  return spawnSync(file!, args, { input, stdio: [input === undefined ? 'ignore' : 'pipe', 'ignore', 'ignore'] }).status === 0;
}

/** A policy-rc.d of ours this old was left, whatever its pid says. */
const POLICY_STALE_MS = 2 * 60 * 60_000;

/**
 * Whose our policy-rc.d is: 'none' (absent, or the host's own), 'live' (an
 * install of another Slipway process under way: npm start and npm test
 * started together), or 'left' (its process is gone).
 */
export function policyOwner(file = POLICY_RC_D): 'none' | 'live' | 'left' {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  if (!text.includes(POLICY_MARKER)) return 'none';
  const pid = Number(/\(pid (\d+)\)/.exec(text)?.[1]);
  if (!pid || pid === process.pid) return 'left';
  // No install takes this long: its pid, alive, is another process's now (a reboot, a container restarted).
  if (Date.now() - (statSync(file, { throwIfNoEntry: false })?.mtimeMs ?? 0) > POLICY_STALE_MS) return 'left';
  try {
    process.kill(pid, 0);
    return 'live';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? 'live' : 'left';
  }
}

/** Ours, left by an install that was killed before it removed it: until removed, no package upgrade on the host restarts its service. */
function removeLeftoverPolicy(asRoot: string[], log: (line: string) => void): void {
  if (policyOwner() !== 'left') return;
  if (asRootDid(asRoot, ['rm', '-f', POLICY_RC_D])) log(`removed ${POLICY_RC_D}, left by an install that was stopped`);
  else log(`${POLICY_RC_D}, left by an install that was stopped, could not be removed: remove it, or package upgrades restart no service`);
}

/** A dpkg run stopped midway (Ctrl-C during a first install) leaves it "interrupted": apt-get refuses all until it is finished. */
function dpkgInterrupted(): boolean {
  try {
    return readdirSync('/var/lib/dpkg/updates').length > 0;
  } catch {
    return false;
  }
}

/**
 * Debian's packages start their services when installed (redis on 6379,
 * nginx on 80, etcd, dockerd) on a host with an init; the stack runs its
 * own on loopback and wants none of them. invoke-rc.d and
 * deb-systemd-invoke ask /usr/sbin/policy-rc.d first: exit 101 says no. Put
 * there for the install when there is none, removed after.
 */
function withoutServiceStarts(asRoot: string[], log: (line: string) => void, run: () => void): void {
  // Another Slipway process's install: its file goes when it ends, so this one waits for that and puts its own.
  const deadline = Date.now() + APT_LOCK_WAIT_S * 1000;
  while (policyOwner() === 'live' && Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
  // The host's own is left alone.
  if (existsSync(POLICY_RC_D)) return run();
  const text = `#!/bin/sh\n${POLICY_MARKER} (pid ${process.pid}): no service starts.\nexit 101\n`;
  // As root, made only if no other install made one this instant (O_EXCL); through sudo, as well as tee can.
  const placed = asRoot.length === 0
    ? (() => {
      try {
        writeFileSync(POLICY_RC_D, text, { flag: 'wx', mode: 0o755 });
        return true;
      } catch {
        return false;
      }
    })()
    : asRootDid(asRoot, ['tee', POLICY_RC_D], text) && asRootDid(asRoot, ['chmod', '755', POLICY_RC_D]);
  if (!placed && !existsSync(POLICY_RC_D)) log(`could not write ${POLICY_RC_D}: the packages' services may start as they install`);
  try {
    run();
  } finally {
    // Only while it is still this install's.
    if (placed && existsSync(POLICY_RC_D) && readFileSync(POLICY_RC_D, 'utf8').includes(`(pid ${process.pid})`)) asRootDid(asRoot, ['rm', '-f', POLICY_RC_D]);
  }
}

/**
 * Units a package enables at boot that the stack does not want: it runs
 * its own redis, etcd and nginx on loopback, and sshd only for a test.
 * Disabled when this run installed the package (never one the host had).
 */
const BOOT_UNITS: Record<string, string[]> = {
  'openssh-server': ['ssh.service', 'ssh.socket'],
  'redis-server': ['redis-server.service'],
  'etcd-server': ['etcd.service'],
  'nginx-light': ['nginx.service'],
};

function disableAtBoot(asRoot: string[], installed: readonly string[], log: (line: string) => void): void {
  const units = installed.flatMap((pkg) => BOOT_UNITS[pkg] ?? []);
  if (units.length === 0 || !hasExecutable('systemctl')) return;
  // Offline too (no running systemd): it removes the links the packages made. One by one: a unit this release lacks fails alone.
  const left = units.filter((unit) => !asRootDid(asRoot, ['systemctl', 'disable', '--quiet', unit]));
  if (left.length > 0) log(`could not disable ${left.join(', ')} at boot: they start with the host`);
}

/** How long apt-get waits for another one to let go of dpkg's lock. */
const APT_LOCK_WAIT_S = 300;

/**
 * Installs whatever is missing with apt-get (non-interactive, no
 * recommends). Runs `apt-get update` first only when something is missing.
 * Package install scripts start no service (withoutServiceStarts).
 */
export function ensureSystemPackages(packages: readonly string[] = Object.keys(STACK_PACKAGES), log: (line: string) => void = console.error): void {
  const asRoot = process.getuid?.() === 0 ? [] : ['sudo', '-n'];
  removeLeftoverPolicy(asRoot, log);
  const missing = packages.filter((pkg) => !satisfied(pkg));
  if (missing.length === 0) return;
  log(`installing Debian packages: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const run = (args: string[]) => {
    const [file, ...rest] = [...asRoot, ...args];
    const res = spawnSync(file!, rest, { stdio: ['ignore', 'inherit', 'inherit'], env });
    if ((res.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
      throw new Error(`${file} is not installed, and ${args[0]} must run as root to install ${missing.join(' ')}: run this as root, or install sudo and let this user run apt-get without a password`);
    }
    if (res.status !== 0) throw new Error(`${args.join(' ')} failed (${res.error ? res.error.message : `exit ${res.status ?? res.signal}`})${asRoot.length > 0 ? ': as a user other than root, this needs sudo without a password (sudo -n)' : ''}`);
  };
  // Another apt-get (unattended-upgrades on a fresh machine, or npm start and npm test started together) holds dpkg's
  // lock for a while: waited for, rather than failing at once.
  const lockWait = ['-o', `DPkg::Lock::Timeout=${APT_LOCK_WAIT_S}`];
  run(['apt-get', ...lockWait, 'update', '-q']);
  const install = () => run(['apt-get', ...lockWait, 'install', '-y', '-q', '--no-install-recommends', ...missing]);
  withoutServiceStarts(asRoot, log, () => {
    try {
      install();
    } catch (err) {
      // apt-get refuses all once dpkg was interrupted; asked after apt-get had dpkg's lock (waited for, unlike dpkg's).
      if (!dpkgInterrupted()) throw err;
      log('dpkg was interrupted (an install stopped midway): finishing it (dpkg --configure -a), then installing again');
      try {
        run(['dpkg', '--force-confold', '--configure', '-a']);
      } catch {
        // Another dpkg running (its updates were what was seen), or one that cannot finish: the install's error says more.
        throw err;
      }
      install();
    }
  });
  disableAtBoot(asRoot, missing, log);
  const still = missing.filter((pkg) => !satisfied(pkg));
  if (still.length) throw new Error(`still missing after apt-get install: ${still.join(' ')}`);
}
