import Docker from 'dockerode';

/**
 * Removes containers and images of test apps named `t<stackId>-…`, the
 * naming every test uses, so a run cleans up after itself even when a test
 * did not.
 */
export async function removeTestArtifacts(stackId: string, docker = new Docker()): Promise<number> {
  const prefix = `t${stackId}-`;
  const containers = await docker.listContainers({ all: true, filters: { label: ['slipway.app'] } });
  let removed = 0;
  for (const info of containers) {
    if (!(info.Labels['slipway.app'] ?? '').startsWith(prefix)) continue;
    await docker.getContainer(info.Id).remove({ force: true, v: true }).catch(() => {});
    removed++;
  }
  const images = await docker.listImages();
  for (const image of images) {
    for (const tag of image.RepoTags ?? []) {
      if (tag.startsWith(`slipway/${prefix}`)) await docker.getImage(tag).remove({ force: true }).catch(() => {});
    }
  }
  return removed;
}
