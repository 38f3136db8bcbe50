import { spawnSync } from 'node:child_process';

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
 * and Debian's chromium for the dashboard's browser tests. `npm test`
 * installs them with the rest, before any test starts, so no test's timer
 * runs while apt-get does.
 */
export const TEST_PACKAGES: Record<string, string> = { ...STACK_PACKAGES, ...CLUSTER_PACKAGES, chromium: '/usr/bin/chromium' };

function installed(pkg: string): boolean {
  const res = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return res.status === 0 && res.stdout.includes('install ok installed');
}

/** nginx-light and nginx both provide /usr/sbin/nginx; either will do. */
function satisfied(pkg: string): boolean {
  if (pkg === 'nginx-light') return installed('nginx-light') || installed('nginx') || installed('nginx-core');
  return installed(pkg);
}

/**
 * Installs whatever is missing with apt-get (non-interactive, no
 * recommends). Runs `apt-get update` first only when something is missing.
 * Package install scripts must not start services: policy-rc.d is honoured
 * by Debian's invoke-rc.d, and there is no init here anyway.
 */
export function ensureSystemPackages(packages: readonly string[] = Object.keys(STACK_PACKAGES), log: (line: string) => void = console.error): void {
  const missing = packages.filter((pkg) => !satisfied(pkg));
  if (missing.length === 0) return;
  const asRoot = process.getuid?.() === 0 ? [] : ['sudo', '-n'];
  log(`installing Debian packages: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const run = (args: string[]) => {
    const [file, ...rest] = [...asRoot, ...args];
    const res = spawnSync(file!, rest, { stdio: ['ignore', 'inherit', 'inherit'], env });
    if (res.status !== 0) throw new Error(`${args.join(' ')} failed (exit ${res.status ?? res.signal})`);
  };
  run(['apt-get', 'update', '-q']);
  run(['apt-get', 'install', '-y', '-q', '--no-install-recommends', ...missing]);
  const still = missing.filter((pkg) => !satisfied(pkg));
  if (still.length) throw new Error(`still missing after apt-get install: ${still.join(' ')}`);
}
