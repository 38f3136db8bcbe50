import Docker from 'dockerode';
import { afterAll, describe, expect, it } from 'vitest';
import { BASE_IMAGE, testAppName } from '@slipway/devstack/testing';
import { DockerRuntime } from '../src/container-runtime.js';

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
});
