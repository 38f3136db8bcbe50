import Docker from 'dockerode';
import { afterAll, describe, expect, it } from 'vitest';
import { BASE_IMAGE, testAppName } from '@slipway/devstack/testing';
import { CONTAINER_LOG_OPTS, DockerRuntime } from '../src/container-runtime.js';

describe('DockerRuntime.startContainer: the log on disk is bounded', () => {
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
});
