import { rename, writeFile } from 'node:fs/promises';
import type { Etcd3 } from 'etcd3';
import { describe, expect, it } from 'vitest';
import type { AppConfig } from '@slipway/config/types';
import { etcdKeys, readUpstreams } from '@slipway/etcd/keys';
import { ownNginx, waitFor } from '@slipway/devstack/testing';
import { backListen, nginxNames, renderNginxConf, routeSnapshot } from '@slipway/router/nginx';
import { routerOnce } from '@slipway/router/watch';
import { acquireAppLock } from '../src/app-lock.js';
import { containerSpec, DockerRuntime } from '../src/container-runtime.js';
import { EtcdReleaseStore } from '../src/release-store.js';
import { removeStrayContainers, rollout } from '../src/rollout.js';
import { appStatus } from '../src/status.js';
import { buildImage, docker, fetchText, testApp, useRolloutWorld, watchServing } from './fixtures.js';

/*
 * A worker killed (OOM, kill -9) after its switch renamed the new nginx
 * file in and before it signalled the reload: etcd and the file name the
 * new set, nginx still serves the old one, and nothing else would reload.
 */
describe('a switch whose reload never came', () => {
  let nginx: Awaited<ReturnType<typeof ownNginx>>;
  let etcd: Etcd3;
  useRolloutWorld((w) => ({ nginx, etcd } = w));

  /** v1 live and served; v2 started, switched in etcd and (unless `renamed: false`) renamed into nginx's file, never reloaded. */
  async function killedAfterRename(app: AppConfig, { renamed = true } = {}): Promise<void> {
    await rollout({ app, nginx: nginx.settings, docker, etcd, image: await buildImage(app.name, 'v1'), sha: null, job: 'job-1' });
    const image = await buildImage(app.name, 'v2');
    const runtime = new DockerRuntime(docker);
    const started = await Promise.all([0, 1].map(() => runtime.startContainer(containerSpec({ app, image, sha: null, release: 'job-2' }), app.port)));
    for (const c of started) await waitFor(`${c.id.slice(0, 12)} to answer`, async () => (await fetchText(c.address!)) === '200 v2');
    const lock = await acquireAppLock(etcd, app.name, { job: 'job-2' });
    try {
      await new EtcdReleaseStore(etcd).switchRelease({
        app: app.name, lock, remove: (await readUpstreams(etcd, app.etcd_prefix)).live,
        add: Object.fromEntries(started.map((c) => [etcdKeys.upstream(app.etcd_prefix, c.id), c.address!])),
        release: { sha: null, image, job: 'job-2', at: new Date().toISOString() },
      });
    } finally {
      await lock.release();
    }
    const file = nginxNames.path(nginx.settings.conf_dir, app.name);
    if (!renamed) return;
    await writeFile(`${file}.killed`, renderNginxConf(await routeSnapshot(app, started.map((c) => c.address!), backListen(nginx.settings, app.name))));
    await rename(`${file}.killed`, file);
    expect(await fetchText(app.listen), 'nginx still serves the previous file').toBe('200 v1');
  }

  it('the next rollout has nginx read the file before it plans: the containers nginx served are not removed under it', async () => {
    const app = await testApp({ replicas: 2 });
    await killedAfterRename(app);
    const v3 = await buildImage(app.name, 'v3');
    const serving = watchServing(app.listen);
    const lines: string[] = [];
    await rollout({ app, nginx: nginx.settings, docker, etcd, image: v3, sha: null, job: 'job-3', log: (l) => lines.push(l) });
    const seen = await serving.stop();
    expect(seen.answers.filter((a) => !/^200 v[123]$/.test(a)), `every request answered (${seen.count})`).toEqual([]);
    expect(lines.join('\n')).toMatch(/nginx had not been asked to read .* reloaded before planning/);
    expect(await fetchText(app.listen)).toBe('200 v3');
  });

  it('a switch whose nginx file was never put in place: the retry\'s clean-up (its job went live) routes nginx to etcd\'s set first, then drains and removes what nginx served', async () => {
    const app = await testApp({ replicas: 2, drain_s: 5 });
    await killedAfterRename(app, { renamed: false });
    const v1 = (await new DockerRuntime(docker).listAppContainers(app.name, app.port)).filter((c) => c.labels['slipway.release'] === 'job-1').map((c) => c.id);
    expect(v1).toHaveLength(2);
    const serving = watchServing(app.listen);
    const lines: string[] = [];
    const removed = await removeStrayContainers({ app, nginx: nginx.settings, docker, etcd, job: 'job-2', log: (l) => lines.push(l) });
    const seen = await serving.stop();
    expect(seen.answers.filter((a) => !/^200 v[12]$/.test(a)), `every request answered (${seen.count})`).toEqual([]);
    expect(lines.join('\n')).toMatch(/nginx still routes to .* while etcd names .*: nginx is brought to etcd's set\nnginx: reloaded/);
    expect(lines.join('\n')).toMatch(/draining the strays before they go .*\n.*drained: connections closed/);
    expect(removed.sort()).toEqual([...v1].sort());
    expect(await fetchText(app.listen)).toBe('200 v2');
    expect((await appStatus({ app, nginx: nginx.settings, docker, etcd })).drift).toEqual([]);
  });

  it('the router reloads it on its next sync, though the file is what etcd says', async () => {
    const app = await testApp({ replicas: 2 });
    // The earlier tests' apps, not named below, have their files removed (and nginx reloaded) by this first sync: the
    // sync under test then has only this app's unread file to reload.
    await routerOnce({ apps: { [app.name]: app }, nginx: nginx.settings, etcd });
    await killedAfterRename(app);
    // status does not call it in sync: the file is what etcd says, but nginx serves what it said before.
    const before = await appStatus({ app, nginx: nginx.settings, docker, etcd });
    expect(before.nginx.inSync).toBe(false);
    expect(before.drift.join('\n')).toMatch(/nginx has not been asked to read .* since it was written/);
    const lines: string[] = [];
    const [result] = await routerOnce({ apps: { [app.name]: app }, nginx: nginx.settings, etcd, log: (l) => lines.push(l) });
    expect(result).toMatchObject({ outcome: 'applied' });
    expect(lines.join('\n')).toMatch(/had not been asked to read/);
    expect(await fetchText(app.listen)).toBe('200 v2');
    const [again] = await routerOnce({ apps: { [app.name]: app }, nginx: nginx.settings, etcd });
    expect(again, 'once read, a sync does nothing').toMatchObject({ outcome: 'unchanged' });
    expect((await appStatus({ app, nginx: nginx.settings, docker, etcd })).nginx.inSync).toBe(true);
  });
});
