import { createServer, type AddressInfo } from 'node:net';
import Docker from 'dockerode';
import { afterAll, describe, expect, it } from 'vitest';
import { BASE_IMAGE, testAppName } from '@slipway/devstack/testing';
import { CONTAINER_LOG_OPTS, DockerRuntime } from '../src/container-runtime.js';

describe('DockerRuntime.startContainer: the log on disk is bounded; a taken host port is not the commit\'s', () => {
  const docker = new Docker();
  const app = testAppName();
  const started: string[] = [];

  afterAll(async () => {
    for (const id of started) await docker.getContainer(id).remove({ force: true }).catch(() => {});
  });

  const spec = (extra: Docker.HostConfig = {}): Docker.ContainerCreateOptions => ({
    Image: BASE_IMAGE,
    Cmd: ['sleep', '60'],
    Labels: { 'slipway.app': app },
    ExposedPorts: { '8080/tcp': {} },
    HostConfig: { PortBindings: { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] }, ...extra },
  });

  it('gives json-file its size bound on an engine that logs to json-file, and leaves a spec that names its own driver alone', async () => {
    expect((await docker.info() as { LoggingDriver: string }).LoggingDriver).toBe('json-file');
    const runtime = new DockerRuntime(docker);

    const bounded = await runtime.startContainer(spec(), 8080);
    started.push(bounded.id);
    const { HostConfig } = await docker.getContainer(bounded.id).inspect();
    expect(HostConfig.LogConfig).toMatchObject({ Type: 'json-file', Config: CONTAINER_LOG_OPTS });

    const own = await runtime.startContainer(spec({ LogConfig: { Type: 'none', Config: {} } }), 8080);
    started.push(own.id);
    expect((await docker.getContainer(own.id).inspect()).HostConfig.LogConfig).toMatchObject({ Type: 'none' });
  });

  it('a host address or port taken meanwhile (a pool address another rollout picked) is unavailable, tried again, not the commit\'s container_start_failed; nothing is left', async () => {
    const runtime = new DockerRuntime(docker);
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = String((holder.address() as AddressInfo).port);
    try {
      const err = await runtime.startContainer(spec({ PortBindings: { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: port }] } }), 8080).then(() => null, (e: unknown) => e);
      expect(err).toMatchObject({ code: 'unavailable' });
      expect((err as Error).message).toMatch(/address already in use|port is already allocated/);
      expect(await docker.listContainers({ all: true, filters: { label: [`slipway.app=${app}`] } }).then((cs) => cs.filter((c) => !started.includes(c.Id)))).toEqual([]);
    } finally {
      holder.close();
    }
  });
});
