import { describe, expect, it } from 'vitest';
import { clusterNetwork, daemonConfig, dockerdArgv, hostFstab, hostOf, networkPlan, subnetsOverlap } from '../../src/cluster/hosts.js';
import { registryConfig } from '../../src/cluster/registry.js';
import { etcdMemberArgv } from '../../src/cluster/etcd-cluster.js';

/** This machine's layout: cgroup v1 hierarchies under a tmpfs, plus the unified one. */
const HYBRID = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
41 22 0:38 / /sys/fs/cgroupish rw,relatime - tmpfs tmpfs rw
`;
/** A systemd machine on cgroup v2 only. */
const UNIFIED = `25 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw
26 25 0:23 / /sys rw,nosuid shared:2 - sysfs sysfs rw
27 26 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:3 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`;

describe('the plan of a cluster network', () => {
  const net = clusterNetwork(0);

  it('puts cluster 0 on 10.77.0.0/24, the issue example: registry host 1 at 10.77.0.11', () => {
    expect(net).toMatchObject({ subnet: '10.77.0.0/24', gateway: '10.77.0.1', switchNs: 'slipway-c0-sw', rootLink: 'slipway-c0' });
    expect(hostOf(net, 1)).toMatchObject({ index: 1, name: 'slipway-c0-h1', address: '10.77.0.11', cgroupParent: 'slipway-c0-h1' });
    expect(hostOf(clusterNetwork(42), 3).address).toBe('10.77.42.13');
  });

  it('names every link it creates in the root namespace within the kernel limit of 15 characters', () => {
    expect(clusterNetwork(254).rootLink.length).toBeLessThanOrEqual(15);
    expect(() => clusterNetwork(255)).toThrow();
    expect(() => clusterNetwork(-1)).toThrow();
  });

  it('creates the switch, one leg from the root namespace and one per host; addresses only inside the subnet, no route anywhere', () => {
    const plan = networkPlan(net, 3);
    // One `ip -batch` per namespace: the root first (it creates the others), then the switch, then each host.
    expect(plan.map((step) => step.namespace)).toEqual([undefined, 'slipway-c0-sw', 'slipway-c0-h1', 'slipway-c0-h2', 'slipway-c0-h3']);
    const lines = plan.flatMap((step) => step.commands);
    expect(lines.some((argv) => argv.includes('route'))).toBe(false);
    const added = lines.filter((argv) => argv[0] === 'addr' && argv[1] === 'add').map((argv) => argv[2]);
    expect(added).toEqual(['10.77.0.1/24', '10.77.0.11/24', '10.77.0.12/24', '10.77.0.13/24']);
    // The root namespace gets the namespaces and one link, the leg whose peer is born in the switch.
    const root = plan[0]!.commands;
    expect(root.filter((argv) => argv[0] === 'netns').map((argv) => argv.join(' '))).toEqual(['netns add slipway-c0-sw', 'netns add slipway-c0-h1', 'netns add slipway-c0-h2', 'netns add slipway-c0-h3']);
    expect(root.filter((argv) => argv[0] === 'link' && argv[1] === 'add')).toEqual([['link', 'add', 'slipway-c0', 'type', 'veth', 'peer', 'name', 'uplink', 'netns', 'slipway-c0-sw']]);
    expect(plan[1]!.commands).toContainEqual(['link', 'add', 'br0', 'type', 'bridge']);
    expect(plan[1]!.commands).toContainEqual(['link', 'add', 'h2', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', 'slipway-c0-h2']);
    // Batch lines are joined with spaces: no word may hold one.
    expect(lines.flat().every((word) => /^[\w./-]+$/.test(word))).toBe(true);
  });

  it('tells overlapping subnets from separate ones', () => {
    expect(subnetsOverlap('10.77.0.0/24', '10.77.0.0/24')).toBe(true);
    expect(subnetsOverlap('10.77.0.0/24', '10.0.0.0/8')).toBe(true);
    expect(subnetsOverlap('10.77.0.0/24', '10.77.0.128/25')).toBe(true);
    expect(subnetsOverlap('10.77.0.0/24', '10.77.1.0/24')).toBe(false);
    expect(subnetsOverlap('10.77.0.0/24', '172.17.0.0/16')).toBe(false);
    expect(subnetsOverlap('10.77.0.0/24', '0.0.0.0/0')).toBe(true);
  });
});

describe("the plan of a host's engine", () => {
  const host = hostOf(clusterNetwork(3), 2);

  it("re-mounts the machine's cgroup hierarchies as they are (cgroup v1 + unified), then a private /run", () => {
    expect(hostFstab(HYBRID)).toBe([
      'tmpfs /sys/fs/cgroup tmpfs rw,mode=755 0 0',
      'cgroup /sys/fs/cgroup/cpu cgroup rw,cpu,X-mount.mkdir 0 0',
      'cgroup /sys/fs/cgroup/systemd cgroup rw,name=systemd,X-mount.mkdir 0 0',
      'cgroup2 /sys/fs/cgroup/unified cgroup2 rw,X-mount.mkdir 0 0',
      'tmpfs /run tmpfs rw,mode=755 0 0',
      '',
    ].join('\n'));
  });

  it('re-mounts a cgroup v2 only machine with its one mount', () => {
    expect(hostFstab(UNIFIED).split('\n')[0]).toBe('cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate,memory_recursiveprot 0 0');
  });

  it('gives dockerd its own data-root, exec-root, pidfile, socket, cgroup parent and a tcp listener without TLS on its private address', () => {
    const argv = dockerdArgv(host, '/tmp/c3/h2');
    expect(argv[0]).toBe('dockerd');
    const flag = (name: string) => argv[argv.indexOf(name) + 1];
    expect(flag('--config-file')).toBe('/tmp/c3/h2/daemon.json');
    expect(flag('--data-root')).toBe('/tmp/c3/h2/data');
    expect(flag('--exec-root')).toBe('/tmp/c3/h2/exec');
    expect(flag('--pidfile')).toBe('/tmp/c3/h2/docker.pid');
    expect(flag('--cgroup-parent')).toBe('slipway-c3-h2');
    expect(argv.filter((a, i) => argv[i - 1] === '--host')).toEqual(['unix:///tmp/c3/h2/docker.sock', 'tcp://10.77.3.12:2375']);
    // Without it a tcp listener holds the start back ~15 s.
    expect(argv).toContain('--tls=false');
  });

  it("writes the key path into daemon.json (Docker 20.10 takes it only there) and trusts the cluster's registry", () => {
    expect(daemonConfig('/tmp/c3/h2', ['10.77.3.11:5000'])).toEqual({
      'deprecated-key-path': '/tmp/c3/h2/key.json',
      'insecure-registries': ['10.77.3.11:5000'],
    });
  });
});

describe('the plan of the registry and the etcd members', () => {
  it('serves plain HTTP on the private address, its blobs under the cluster directory, deletes allowed', () => {
    const yaml = registryConfig('/tmp/c0/registry', '10.77.0.11:5000');
    expect(yaml).toContain('addr: 10.77.0.11:5000');
    expect(yaml).toContain('rootdirectory: /tmp/c0/registry/data');
    expect(yaml).toMatch(/delete:\s*\{\s*enabled: true\s*\}/);
    expect(yaml).not.toContain('tls');
  });

  it('names every member in the initial cluster and listens on loopback only', () => {
    const members = [1, 2, 3].map((i) => ({ name: `m${i}`, clientPort: 100 + i, peerPort: 200 + i, dataDir: `/tmp/e/m${i}` }));
    const argv = etcdMemberArgv(members[1]!, members);
    const flag = (name: string) => argv[argv.indexOf(name) + 1];
    expect(flag('--name')).toBe('m2');
    expect(flag('--data-dir')).toBe('/tmp/e/m2');
    expect(flag('--listen-client-urls')).toBe('http://127.0.0.1:102');
    expect(flag('--initial-advertise-peer-urls')).toBe('http://127.0.0.1:202');
    expect(flag('--initial-cluster')).toBe('m1=http://127.0.0.1:201,m2=http://127.0.0.1:202,m3=http://127.0.0.1:203');
    expect(argv.join(' ')).not.toMatch(/0\.0\.0\.0|10\.77/);
  });
});
