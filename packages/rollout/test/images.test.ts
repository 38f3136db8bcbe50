import { spawnSync } from 'node:child_process';
import { Readable } from 'node:stream';
import Docker from 'dockerode';
import { afterAll, describe, expect, it } from 'vitest';
import { BASE_IMAGE, testAppName } from '@slipway/devstack/testing';
import { DockerRuntime, pruneBuiltImages } from '../src/container-runtime.js';
import { imageHasShell, serviceSpec } from '../src/swarm/swarm-service.js';
import { testApp } from './fixtures.js';

describe('DockerRuntime.pruneImages', () => {
  const docker = new Docker();
  const app = testAppName();
  const repo = `slipway/${app}`;
  let container: Docker.Container | undefined;

  afterAll(async () => {
    await container?.remove({ force: true }).catch(() => {});
    const left = await docker.listImages({ filters: { reference: [`${repo}:*`] } });
    for (const tag of left.flatMap((i) => i.RepoTags ?? [])) await docker.getImage(tag).remove().catch(() => {});
  });

  it('removes the app\'s built images no kept release uses; keeps kept ones, ones a container uses and tags a build never gives', async () => {
    for (const tag of ['aaaaaaaaaaaa', 'bbbbbbbbbbbb', 'cccccccccccc', 'latest']) await docker.getImage(BASE_IMAGE).tag({ repo, tag });
    // Tags of one image are separate names: each goes unless kept (removing one leaves the image to the others).
    container = await docker.createContainer({ Image: `${repo}:cccccccccccc`, Labels: { 'slipway.app': app } });
    const removed = await new DockerRuntime(docker).pruneImages(app, new Set([`${repo}:bbbbbbbbbbbb`]));
    expect(removed).toContain(`${repo}:aaaaaaaaaaaa`);
    expect(removed).not.toContain(`${repo}:bbbbbbbbbbbb`);
    expect(removed).not.toContain(`${repo}:latest`);
    const left = (await docker.listImages({ filters: { reference: [`${repo}:*`] } })).flatMap((i) => i.RepoTags ?? []).sort();
    expect(left).toContain(`${repo}:bbbbbbbbbbbb`);
    expect(left).toContain(`${repo}:latest`);
    expect(left).not.toContain(`${repo}:aaaaaaaaaaaa`);
  });

  it('on a swarm manager: the registry\'s tags too, publish ids included, each request through the manager\'s call', async () => {
    const published = `127.0.0.1:5999/${repo}`;
    const tags = [`${published}:dddddddddddd`, `${published}:eeeeeeeeeeee`, `${published}:id-ffffffffffff`, `${published}:mine`, `${repo}:dddddddddddd`];
    for (const tag of tags) {
      const [name, version] = [tag.slice(0, tag.lastIndexOf(':')), tag.slice(tag.lastIndexOf(':') + 1)];
      await docker.getImage(BASE_IMAGE).tag({ repo: name, tag: version });
    }
    const asked: string[] = [];
    const removed = await pruneBuiltImages(docker, [repo, published], new Set([`${published}:eeeeeeeeeeee`]), (doing, call) => {
      asked.push(doing);
      return call(AbortSignal.timeout(30_000));
    });
    // The first test's kept tag is not kept here: it goes too.
    expect(removed.sort()).toEqual([`${published}:dddddddddddd`, `${published}:id-ffffffffffff`, `${repo}:bbbbbbbbbbbb`, `${repo}:dddddddddddd`]);
    const left = (await docker.listImages({ filters: { reference: [`${published}:*`] } })).flatMap((i) => i.RepoTags ?? []).sort();
    expect(left).toEqual([`${published}:eeeeeeeeeeee`, `${published}:mine`]);
    expect(asked).toContain(`removing ${published}:dddddddddddd`);
    for (const tag of left) await docker.getImage(tag).remove().catch(() => {});
  });
});

describe('imageHasShell', () => {
  const docker = new Docker();
  const app = testAppName();
  const scratch = `slipway/${app}:no-shell`;

  afterAll(async () => {
    await docker.getImage(scratch).remove().catch(() => {});
  });

  it('says whether an image has the /bin/sh Docker\'s health check runs, and leaves no container behind', async () => {
    // A distroless-like image: one file, no shell (imported: nothing is pulled here).
    const tar = spawnSync('tar', ['-c', '-C', '/etc', 'hostname'], { maxBuffer: 1 << 20 });
    await new Promise<void>((resolve, reject) => {
      void docker.importImage(Readable.from([tar.stdout]), { repo: `slipway/${app}`, tag: 'no-shell' }).then((stream) => {
        docker.modem.followProgress(stream, (err: Error | null) => (err ? reject(err) : resolve()));
      }, reject);
    });
    expect(await imageHasShell(docker, BASE_IMAGE, app)).toBe(true);
    expect(await imageHasShell(docker, scratch, app)).toBe(false);
    expect(await imageHasShell(docker, `slipway/${app}:not-here`, app)).toBeUndefined();
    expect(await docker.listContainers({ all: true, filters: { label: [`slipway.app=${app}`] } })).toEqual([]);
    const spec = serviceSpec({ app: await testApp(), image: scratch, sha: null, release: 'j1', shell: false }) as { TaskTemplate: { ContainerSpec: { Healthcheck: unknown } } };
    expect(spec.TaskTemplate.ContainerSpec.Healthcheck).toEqual({ Test: ['NONE'] });
  });
});
