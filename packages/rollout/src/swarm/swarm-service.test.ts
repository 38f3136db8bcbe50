import { createServer as createHttpServer } from 'node:http';
import { createServer, type Socket } from 'node:net';
import Docker from 'dockerode';
import { describe, expect, it } from 'vitest';
import { validateConfig } from '@slipway/config/load-config';
import { planSwarmRollout } from './swarm-rollout.js';
import { planUpstreamRewrite } from './task-watcher.js';
import { registryReference } from './registry-push.js';
import { liveEndpoints, managerClient, nodeAddress, SERVICE_NAME_MAX, serviceName, serviceSpec, SwarmRuntime, toAppTask, type AppService, type AppTask } from './swarm-service.js';

const SHA = 'ab'.repeat(20);
/** The spec as the Engine API reads it: JSON, asserted by its field names. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a JSON document checked field by field
type Json = any;
const app = validateConfig({
  engine: { type: 'swarm', registry: '10.77.0.11:5000' },
  apps: { web: { repo: '/srv/web.git', replicas: 3, port: 8080, env: { MODE: 'prod' }, placement: ['node.labels.role==web'], resources: { cpus: 0.5, memory_mb: 256 }, health: { path: '/up', timeout_s: 20 } } },
}, { file: null, env: {} }).apps.web!;

describe('managerClient', () => {
  it('refuses a certificate it cannot read as the configuration\'s error, naming its key (the CLI exits 2 on it)', () => {
    const engine = { type: 'swarm' as const, manager: 'tcp://127.0.0.1:2376', registry: '127.0.0.1:5000', tls: { ca: '/nonexistent/ca.pem', cert: '/nonexistent/cert.pem', key: '/nonexistent/key.pem' } };
    expect(() => managerClient(engine)).toThrow(expect.objectContaining({ code: 'config_invalid', message: expect.stringContaining('engine.tls.ca: cannot read /nonexistent/ca.pem (ENOENT)') }));
  });
});

describe('serviceName', () => {
  it.each([
    ['web', 'job-42', 'slipway-web-job-42'],
    ['web', 'Job_42:retry', 'slipway-web-job-42-retry'],
  ])('%s + %s -> %s', (a, release, name) => expect(serviceName(a, release)).toBe(name));

  it('keeps long names within Docker\'s 63 characters, distinct per release', () => {
    const a = serviceName('a'.repeat(60), 'release-1');
    const b = serviceName('a'.repeat(60), 'release-2');
    expect(a.length).toBeLessThanOrEqual(SERVICE_NAME_MAX);
    expect(a).not.toBe(b);
    expect(a).toMatch(/^[a-z0-9-]+$/);
  });
});

describe('serviceSpec', () => {
  it('is one replicated service per release: labels, init, host-mode port without a published one, placement, resources, health', () => {
    const spec = serviceSpec({ app, image: '10.77.0.11:5000/slipway/web:abababababab', sha: SHA, release: 'j7' }) as Json;
    const labels = { 'slipway.app': 'web', 'slipway.sha': SHA, 'slipway.release': 'j7' };
    expect(spec.Name).toBe('slipway-web-j7');
    expect(spec.Labels).toEqual(labels);
    expect(spec.Mode).toEqual({ Replicated: { Replicas: 3 } });
    expect(spec.EndpointSpec).toEqual({ Mode: 'dnsrr', Ports: [{ Protocol: 'tcp', TargetPort: 8080, PublishMode: 'host' }] });
    const c = spec.TaskTemplate.ContainerSpec;
    expect(c).toMatchObject({ Image: '10.77.0.11:5000/slipway/web:abababababab', Labels: labels, Init: true, StopGracePeriod: 10e9 });
    expect(c.Env).toEqual(['MODE=prod', 'SLIPWAY_HEALTH_URL=http://127.0.0.1:8080/up']);
    // The URL is in the environment, never in the script the shell runs.
    expect(c.Healthcheck.Test[0]).toBe('CMD-SHELL');
    expect(c.Healthcheck.Test[1]).not.toContain('/up');
    expect(c.Healthcheck.StartPeriod).toBe(20e9);
    expect(spec.TaskTemplate.Placement.Constraints).toEqual(['node.labels.role==web']);
    expect(spec.TaskTemplate.Resources).toEqual({ Limits: { NanoCPUs: 5e8, MemoryBytes: 256 * 1024 * 1024 }, Reservations: { NanoCPUs: 5e8, MemoryBytes: 256 * 1024 * 1024 } });
  });

  it('leaves out the sha label of an image deploy and resources nobody asked for', () => {
    const spec = serviceSpec({ app: { ...app, resources: undefined, placement: [] }, image: 'r:5000/x:1', sha: null, release: 'j8' }) as Json;
    expect(spec.Labels).toEqual({ 'slipway.app': 'web', 'slipway.release': 'j8' });
    expect(spec.TaskTemplate.Resources).toBeUndefined();
  });
});

describe('registryReference', () => {
  it('tags by the commit, or by the image id for an image deploy', () => {
    expect(registryReference('r:5000', 'web', SHA, 'sha256:' + 'c'.repeat(64))).toBe('r:5000/slipway/web:abababababab');
    expect(registryReference('r:5000', 'web', null, 'sha256:' + 'c'.repeat(64))).toBe('r:5000/slipway/web:id-cccccccccccc');
  });
});

const nodes = new Map([['n1', '10.77.0.11'], ['n2', '10.77.0.12']]);
const raw = (id: string, service: string, state: string, node: string | undefined, port?: number) => ({
  ID: id, ServiceID: service, NodeID: node, Slot: 1, DesiredState: 'running', CreatedAt: '2026-01-01T00:00:00Z',
  Status: { State: state, PortStatus: port ? { Ports: [{ TargetPort: 8080, PublishedPort: port, PublishMode: 'host' }, { TargetPort: 8080, PublishedPort: port, PublishMode: 'host' }] } : {} },
});

describe('nodeAddress', () => {
  it.each([
    ['its own address', { Status: { Addr: '10.77.0.12' } }, '10.77.0.12'],
    ['a manager that reports 0.0.0.0: its manager address', { Status: { Addr: '0.0.0.0' }, ManagerStatus: { Addr: '10.77.0.11:2377' } }, '10.77.0.11'],
    ['a manager that reports loopback: its manager address', { Status: { Addr: '127.0.0.1' }, ManagerStatus: { Addr: '10.77.0.11:2377' } }, '10.77.0.11'],
    ['IPv6, in brackets', { Status: { Addr: 'fd00::12' } }, '[fd00::12]'],
    ['an IPv6 manager address', { Status: { Addr: '::' }, ManagerStatus: { Addr: '[fd00::11]:2377' } }, '[fd00::11]'],
    ['nothing usable', { Status: { Addr: '0.0.0.0' } }, null],
  ])('%s', (_what, node, expected) => expect(nodeAddress(node)).toBe(expected));
});

describe('toAppTask and liveEndpoints', () => {
  it('gives a running task with a port its node address; a starting one none', () => {
    const tasks = [raw('t1', 's1', 'running', 'n1', 30001), raw('t2', 's1', 'starting', 'n2', 30002), raw('t3', 's1', 'pending', undefined)]
      .map((t) => toAppTask(t, 8080, nodes, new Map([['s1', 'j1']])));
    expect(tasks.map((t) => t.address)).toEqual(['10.77.0.11:30001', null, null]);
    expect(tasks.map((t) => t.node)).toEqual(['10.77.0.11', '10.77.0.12', null]);
    expect(liveEndpoints(tasks).map((t) => t.id)).toEqual(['t1']);
    expect(tasks[0]!.release).toBe('j1');
  });
});

describe('planSwarmRollout', () => {
  const service = (id: string, release: string, sha = 'cd'.repeat(20)): AppService => ({ id, name: `slipway-web-${release}`, labels: { 'slipway.app': 'web', 'slipway.sha': sha, 'slipway.release': release }, image: 'x', replicas: 3 });
  const task = (id: string, serviceId: string, address: string | null): AppTask => ({
    id, serviceId, release: '', slot: 1, nodeId: 'n1', node: '10.77.0.11', state: address ? 'running' : 'starting', desiredState: 'running', message: '', error: null, exitCode: null, address, createdAt: '',
  });
  const desired = { app, image: 'r/x:1', sha: SHA, release: 'j9' };

  it.each([
    ['first release', [], [], [], null, [], [], []],
    ['the live release serves, an unfinished one is a stray', [service('s1', 'j1'), service('s2', 'j2')], [task('t1aaaaaaaaaaaaa', 's1', '10.77.0.11:30001')], [], 'j1', ['s1'], ['s2'], ['10.77.0.11:30001']],
    ['a service whose task is keyed serves though the release says otherwise', [service('s1', 'j1'), service('s2', 'j2')], [task('t2aaaaaaaaaaaaa', 's2', '10.77.0.12:30002')],
      [{ key: '/p/t2aaaaaaaaaa', id: 't2aaaaaaaaaa', address: '10.77.0.12:30002' }], 'j1', ['s1', 's2'], [], ['10.77.0.12:30002']],
    // A worker died between its switch (etcd names j2's service) and its file: nginx still routes to j1's task.
    ['a service nginx still routes to serves though neither the keys nor the release name it', [service('s1', 'j1'), service('s2', 'j2')],
      [task('t1aaaaaaaaaaaaa', 's1', '10.77.0.11:30001'), task('t2aaaaaaaaaaaaa', 's2', '10.77.0.12:30002')],
      [{ key: '/p/t2aaaaaaaaaa', id: 't2aaaaaaaaaa', address: '10.77.0.12:30002' }], 'j2', ['s1', 's2'], [], ['10.77.0.11:30001', '10.77.0.12:30002'], ['10.77.0.11:30001']],
  ] as const)('%s', (_name, services, tasks, upstreams, releaseJob, serving, strays, drain, routed: readonly string[] = []) => {
    const plan = planSwarmRollout({ services, tasks, upstreams, routed, releaseJob }, desired);
    expect(plan.serving.map((s) => s.id)).toEqual(serving);
    expect(plan.strays.map((s) => s.id)).toEqual(strays);
    expect(plan.drain).toEqual(drain);
    expect(plan.spec.Name).toBe('slipway-web-j9');
    expect(plan.resume).toBeNull();
  });

  it('takes up this job\'s own service when its release is live already, and drains every other one', () => {
    // An earlier attempt of j9 switched to s9 and died mid-drain: s1 (the release before) may still carry requests.
    const services = [service('s1', 'j1'), service('s9', 'j9', SHA)];
    const tasks = [task('t1aaaaaaaaaaaaa', 's1', '10.77.0.11:30001'), task('t9aaaaaaaaaaaaa', 's9', '10.77.0.12:30009')];
    const upstreams = [{ key: '/p/t9aaaaaaaaaa', id: 't9aaaaaaaaaa', address: '10.77.0.12:30009' }];
    const plan = planSwarmRollout({ services, tasks, upstreams, routed: [], releaseJob: 'j9' }, desired);
    expect(plan.resume?.id).toBe('s9');
    expect(plan.serving.map((s) => s.id)).toEqual(['s1']);
    expect(plan.strays).toEqual([]);
    expect(plan.drain).toEqual(['10.77.0.11:30001']);
    // The live release's id but another commit (a Redis that lost its data counts job ids from 1 again): not this job's.
    const other = planSwarmRollout({ services: [service('s9', 'j9')], tasks: [task('t9aaaaaaaaaaaaa', 's9', '10.77.0.12:30009')], upstreams, routed: [], releaseJob: 'j9' }, desired);
    expect(other.resume).toBeNull();
    // An image deploy: its own service is the one running the very image.
    const image = { ...desired, sha: null };
    const byImage = (ran: string) => planSwarmRollout({ services: [{ ...service('s9', 'j9'), labels: { 'slipway.app': 'web', 'slipway.release': 'j9' }, image: ran }], tasks: [], upstreams: [], routed: [], releaseJob: 'j9' }, image);
    expect(byImage('r/x:1').resume?.id).toBe('s9');
    expect(byImage('r/x:0').resume).toBeNull();
  });
});

describe('planUpstreamRewrite', () => {
  const live = (id: string, address: string): AppTask => ({
    id, serviceId: 's1', release: 'j1', slot: 1, nodeId: 'n1', node: address.split(':')[0]!, state: 'running', desiredState: 'running', message: '', error: null, exitCode: null, address, createdAt: '',
  });
  const key = (id: string, address: string) => ({ key: `/p/${id.slice(0, 12)}`, id: id.slice(0, 12), address });

  it('puts the moved task and removes the lost one', () => {
    expect(planUpstreamRewrite('/p', [key('aaaaaaaaaaaa', '10.77.0.11:1'), key('bbbbbbbbbbbb', '10.77.0.13:1')], [live('aaaaaaaaaaaaxyz', '10.77.0.11:1'), live('ccccccccccccxyz', '10.77.0.12:2')]))
      .toEqual({ put: { '/p/cccccccccccc': '10.77.0.12:2' }, remove: ['/p/bbbbbbbbbbbb'] });
  });

  it('changes nothing when the keys match, and never empties the set', () => {
    expect(planUpstreamRewrite('/p', [key('aaaaaaaaaaaa', '10.77.0.11:1')], [live('aaaaaaaaaaaaxyz', '10.77.0.11:1')])).toBeNull();
    expect(planUpstreamRewrite('/p', [key('aaaaaaaaaaaa', '10.77.0.11:1')], [])).toBeNull();
  });
});

describe('SwarmRuntime against a manager that never answers', () => {
  it('gives each call up after its timeout as unavailable (retried), never as a refused spec; a create sends no spec as credentials', async () => {
    // A manager black-holed after the connection: it accepts, reads, and says nothing.
    const held: Socket[] = [];
    let received = '';
    const server = createServer((socket) => {
      held.push(socket);
      socket.on('data', (chunk: Buffer) => {
        received += chunk.toString('latin1');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    try {
      const runtime = new SwarmRuntime(new Docker({ host: '127.0.0.1', port, protocol: 'http' }), { timeoutMs: 300 });
      const started = Date.now();
      await expect(runtime.listAppServices('web')).rejects.toMatchObject({ code: 'unavailable', message: expect.stringContaining('did not answer within 0.3 s while listing the services of web') });
      await expect(runtime.appTasks('web', 8080)).rejects.toMatchObject({ code: 'unavailable' });
      await expect(runtime.createService(serviceSpec({ app, image: 'r:5000/x:1', sha: SHA, release: 'j9' }))).rejects.toMatchObject({ code: 'unavailable' });
      await expect(runtime.removeService('abc')).rejects.toMatchObject({ code: 'unavailable' });
      expect(Date.now() - started).toBeLessThan(5_000);
      // The create carried no credentials but empty ones: never the spec (dockerode's default with one argument),
      // which the manager would keep as the service's pull credentials, the app's environment with it.
      const auth = /POST \/services\/create[^]*?\r\nX-Registry-Auth: ([^\r]*)/i.exec(received)?.[1];
      expect(JSON.parse(Buffer.from(auth!, 'base64url').toString())).toEqual({});
      // The abandoned requests were aborted, not left open on the manager.
      await expect.poll(() => held.filter((s) => !s.destroyed && !s.readableEnded).length, { timeout: 2_000 }).toBe(0);
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('SwarmRuntime.createService whose answer is lost', () => {
  it('finds the service the manager made and answers with it, so that a failed rollout removes it; none made: unavailable', async () => {
    let made = false;
    const server = createHttpServer((req, res) => {
      if (req.method === 'POST' && req.url?.startsWith('/services/create')) {
        made = true;
        return; // Made, and the answer never comes.
      }
      if (req.method === 'GET' && req.url?.startsWith('/services')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(made ? [{ ID: 'svc-made', Spec: { Name: 'slipway-web-j9' } }, { ID: 'svc-other', Spec: { Name: 'slipway-web-j9x' } }] : []));
        return;
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    try {
      const runtime = new SwarmRuntime(new Docker({ host: '127.0.0.1', port, protocol: 'http' }), { timeoutMs: 300 });
      const spec = (release: string) => serviceSpec({ app, image: 'r:5000/x:1', sha: SHA, release });
      expect(await runtime.createService(spec('j9'))).toBe('svc-made');
      made = false;
      server.removeAllListeners('request');
      server.on('request', (req, res) => (req.method === 'GET' ? res.writeHead(200, { 'content-type': 'application/json' }).end('[]') : undefined));
      await expect(runtime.createService(spec('j10'))).rejects.toMatchObject({ code: 'unavailable' });
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
