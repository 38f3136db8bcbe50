import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import type { Etcd3 } from 'etcd3';
import { describe, expect, it } from 'vitest';
import { nginxNames } from '@slipway/router/nginx';
import { etcdKeys } from '@slipway/etcd/keys';
import { freePort, ownNginx } from '@slipway/devstack/testing';
import { appStatus, appStatuses } from '../src/status.js';
import { currentRelease, listReleases, rollbackTarget } from '../src/release-store.js';
import { rollout, type RolloutOptions, type RolloutStepName } from '../src/rollout.js';
import { appContainers, buildImage, docker, fetchText, testApp, useRolloutWorld } from './fixtures.js';

const SHA1 = '1'.repeat(40);
const SHA2 = '2'.repeat(40);
const SHA3 = '3'.repeat(40);

/**
 * What `slipway rollback` amounts to: the target picked from the kept
 * history (rollbackApp of @slipway/queue/deploy-requests), its image rolled out again
 * by the worker, with no build.
 */
async function rollback(options: Omit<RolloutOptions, 'image' | 'sha'> & { to?: string }) {
  const target = rollbackTarget(await listReleases(options.etcd, options.app.name), await currentRelease(options.etcd, options.app.name), options.to);
  return rollout({ ...options, image: target.image, sha: target.sha });
}

describe('rollout', () => {
  let nginx: Awaited<ReturnType<typeof ownNginx>>;
  let etcd: Etcd3;
  useRolloutWorld((w) => ({ nginx, etcd } = w));

  it('starts labelled replicas, switches etcd and nginx, drains and removes the old ones, records releases; rollback needs no rebuild', async () => {
    const app = await testApp({ env: { GREETING: 'hi', API_TOKEN: 'tok-secret-123' } });
    const [v1, v2, v3] = await Promise.all(['v1', 'v2', 'v3'].map((v) => buildImage(app.name, v)));
    const base = { app, nginx: nginx.settings, docker, etcd };

    const lines: string[] = [];
    const steps: RolloutStepName[] = [];
    const first = await rollout({ ...base, image: v1!, sha: SHA1, job: 'job-1', log: (l) => lines.push(l), onStep: (s) => steps.push(s) });
    expect(steps).toEqual(['start', 'health', 'switch', 'drain', 'done']);
    expect(first.previous).toBeNull();
    expect(first.containers).toHaveLength(2);
    expect(await fetchText(app.listen)).toBe('200 v1');
    expect(lines.join('\n')).toContain('nothing serving yet: first release');

    // Labels, env, published on host_ip with a Docker-chosen port, restart policy, stop timeout.
    const info = await docker.getContainer(first.containers[0]!.id).inspect();
    expect(info.Config.Labels).toMatchObject({ 'slipway.app': app.name, 'slipway.sha': SHA1, 'slipway.release': 'job-1' });
    expect(info.Config.Env).toEqual(expect.arrayContaining(['GREETING=hi', 'API_TOKEN=tok-secret-123']));
    expect(info.HostConfig.PortBindings).toEqual({ '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] });
    expect(info.HostConfig.RestartPolicy).toMatchObject({ Name: 'unless-stopped' });
    expect((info.Config as { StopTimeout?: number }).StopTimeout).toBe(5);

    const keys = await etcd.getAll().prefix(`${app.etcd_prefix}/`).strings();
    expect(keys).toEqual(Object.fromEntries(first.containers.map((c) => [`${app.etcd_prefix}/${c.id.slice(0, 12)}`, c.address])));

    const second = await rollout({ ...base, image: v2!, sha: SHA2, job: 'job-2', log: (l) => lines.push(l) });
    expect(await fetchText(app.listen)).toBe('200 v2');
    expect(second.previous).toMatchObject({ sha: SHA1, image: v1, job: 'job-1' });
    expect(second.stopped.sort()).toEqual(first.containers.map((c) => c.id).sort());
    expect(second.drain?.drained).toBe(true);
    expect(lines.join('\n')).toMatch(/drained: connections closed after \d+\.\d s/);
    expect((await appContainers(app.name)).map((c) => c.Id).sort()).toEqual(second.containers.map((c) => c.id).sort());

    // The live file is what the router would render; status sees no drift.
    const status = await appStatus({ app, nginx: nginx.settings, docker, etcd });
    expect(status).toMatchObject({ app: app.name, release: { sha: SHA2, image: v2, job: 'job-2' }, nginx: { file: nginxNames.path(nginx.settings.conf_dir, app.name), inSync: true }, drift: [] });
    expect(status.containers.every((c) => c.healthy)).toBe(true);
    // node and service are a swarm's; on one engine they are there, null.
    expect(status.containers.map((c) => [c.node, c.service])).toEqual(second.containers.map(() => [null, null]));
    expect(status.upstreams.sort()).toEqual(second.containers.map((c) => c.address).sort());

    await rollout({ ...base, image: v3!, sha: SHA3, job: 'job-3' });
    expect((await listReleases(etcd, app.name)).map((r) => r.job)).toEqual(['job-3', 'job-2', 'job-1']);

    // Back to the previous release, then to a named commit: the images are reused, nothing is built.
    const back = await rollback({ ...base, job: 'job-4' });
    expect(back.release).toMatchObject({ sha: SHA2, image: v2, job: 'job-4' });
    expect(await fetchText(app.listen)).toBe('200 v2');
    await rollback({ ...base, job: 'job-5', to: SHA1.slice(0, 7) });
    expect(await fetchText(app.listen)).toBe('200 v1');
    expect(await currentRelease(etcd, app.name)).toMatchObject({ sha: SHA1, image: v1, job: 'job-5' });
    await expect(rollback({ ...base, job: 'job-6', to: 'abcdef0' })).rejects.toMatchObject({ code: 'release_not_found' });
  });

  it('prunes images of releases no longer kept, but not those of jobs still to run (keepImages: a queued rollback)', async () => {
    const app = await testApp({ replicas: 1 });
    const v1 = await buildImage(app.name, 'v1');
    // Two names no release uses: one a queued rollback still needs.
    for (const tag of ['aaaa0000aaaa', 'bbbb0000bbbb']) await docker.getImage(v1).tag({ repo: `slipway/${app.name}`, tag });
    await rollout({ app, nginx: nginx.settings, docker, etcd, image: v1, sha: SHA1, job: 'keep-1', keepImages: [`slipway/${app.name}:aaaa0000aaaa`] });
    const tags = (await docker.listImages({ filters: { reference: [`slipway/${app.name}:*`] } })).flatMap((i) => i.RepoTags ?? []);
    expect(tags).toContain(`slipway/${app.name}:aaaa0000aaaa`);
    expect(tags).not.toContain(`slipway/${app.name}:bbbb0000bbbb`);

    // Asked when pruning: a rollback queued while the rollout ran is kept too; jobs that cannot be read prune nothing.
    for (const tag of ['cccc0000cccc', 'dddd0000dddd']) await docker.getImage(v1).tag({ repo: `slipway/${app.name}`, tag });
    let queued: string[] = [];
    await rollout({
      app, nginx: nginx.settings, docker, etcd, image: v1, sha: SHA1, job: 'keep-2', keepImages: async () => queued,
      log: (line) => {
        if (line.startsWith('serving now')) queued = [`slipway/${app.name}:cccc0000cccc`];
      },
    });
    const after = (await docker.listImages({ filters: { reference: [`slipway/${app.name}:*`] } })).flatMap((i) => i.RepoTags ?? []);
    expect(after).toContain(`slipway/${app.name}:cccc0000cccc`);
    expect(after).not.toContain(`slipway/${app.name}:dddd0000dddd`);
    await docker.getImage(v1).tag({ repo: `slipway/${app.name}`, tag: 'eeee0000eeee' });
    await rollout({ app, nginx: nginx.settings, docker, etcd, image: v1, sha: SHA1, job: 'keep-3', keepImages: () => Promise.reject(new Error('Redis is unreachable')) });
    const unread = (await docker.listImages({ filters: { reference: [`slipway/${app.name}:*`] } })).flatMap((i) => i.RepoTags ?? []);
    expect(unread).toContain(`slipway/${app.name}:eeee0000eeee`);
  });

  it('status says why it is out of sync when the release record cannot be read, or a file is there with no key to render it from', async () => {
    const app = await testApp({ replicas: 1 });
    await rollout({ app, nginx: nginx.settings, docker, etcd, image: await buildImage(app.name, 'v1'), sha: null, job: 'drift' });
    await etcd.put(etcdKeys.release(app.name)).value('{"not":"a release"}');
    expect((await appStatus({ app, nginx: nginx.settings, docker, etcd })).drift.join('\n')).toContain(`the release record ${etcdKeys.release(app.name)} cannot be read`);
    await etcd.delete().prefix(`${app.etcd_prefix}/`);
    await etcd.delete().key(etcdKeys.release(app.name));
    const status = await appStatus({ app, nginx: nginx.settings, docker, etcd });
    expect(status.nginx.inSync).toBe(false);
    expect(status.drift.join('\n')).toContain('is there, but no upstream key is live');
  });

  it('removes strays of a crashed attempt and reports drift until then', async () => {
    const app = await testApp({ replicas: 1 });
    const [v1, v2] = await Promise.all(['v1', 'v2'].map((v) => buildImage(app.name, v)));
    const base = { app, nginx: nginx.settings, docker, etcd };
    await rollout({ ...base, image: v1!, sha: null, job: 'a' });

    // What a worker killed between start and switch leaves behind: a labelled container nothing routes to.
    const stray = await docker.createContainer({ Image: v2!, Labels: { 'slipway.app': app.name, 'slipway.release': 'crashed' } });
    await stray.start();
    // A job's test step, running meanwhile: a container of the app too (labelled with its step), neither listed nor a leftover.
    const step = await docker.createContainer({ Image: v2!, Labels: { 'slipway.app': app.name, 'slipway.release': 'testing', 'slipway.step': 'unit' } });
    await step.start();
    // An operator's one-off `docker run` of a built image (a migration): the image's own labels, no release. Not Slipway's.
    const oneOff = await docker.createContainer({ Image: v2!, Labels: { 'slipway.app': app.name, 'slipway.sha': 'a'.repeat(40) } });
    await oneOff.start();
    const status = await appStatus({ app, nginx: nginx.settings, docker, etcd }).finally(() => step.remove({ force: true }));
    expect(status.drift.join('\n')).toMatch(new RegExp(`container ${stray.id.slice(0, 12)} .*not in etcd`));
    expect(JSON.stringify(status)).not.toContain(step.id.slice(0, 12));
    expect(JSON.stringify(status)).not.toContain(oneOff.id.slice(0, 12));
    // Asked for several apps at once (one Docker listing for all): each sees its own containers, the same status.
    const other = await testApp({ replicas: 1 });
    const [mine, theirs] = await Promise.all(appStatuses({ apps: [app, other], nginx: nginx.settings, docker, etcd }));
    expect(mine).toEqual(status);
    expect(theirs).toMatchObject({ app: other.name, release: null, containers: [], upstreams: [] });
    expect(theirs!.drift).toEqual([`nginx file ${nginxNames.path(nginx.settings.conf_dir, other.name)} does not exist`]);

    const lines: string[] = [];
    const result = await rollout({ ...base, image: v2!, sha: null, job: 'b', log: (l) => lines.push(l) });
    expect(result.strays).toEqual([stray.id]);
    expect(lines.join('\n')).toContain(`removed stray container ${stray.id.slice(0, 12)}`);
    expect((await oneOff.inspect()).State.Running, 'the one-off was left running').toBe(true);
    await oneOff.remove({ force: true });
    expect((await appContainers(app.name)).map((c) => c.Id)).toEqual(result.containers.map((c) => c.id));
    expect(await fetchText(app.listen)).toBe('200 v2');
    // An image deploy: no slipway.sha label, sha null in the record.
    expect((await docker.getContainer(result.containers[0]!.id).inspect()).Config.Labels['slipway.sha']).toBeUndefined();
    expect(JSON.parse((await etcd.get(etcdKeys.release(app.name)).string())!)).toMatchObject({ sha: null, image: v2, job: 'b' });
    expect(await readFile(nginxNames.path(nginx.settings.conf_dir, app.name), 'utf8')).toContain(`server ${result.containers[0]!.address};`);
  });
  it('drains a stray that still carries connections before it goes, instead of cutting them (a rollout that lost its lock may be draining it)', async () => {
    const app = await testApp({ replicas: 1, drain_s: 20 });
    const [v1, v2] = await Promise.all(['v1', 'v2'].map((v) => buildImage(app.name, v)));
    const base = { app, nginx: nginx.settings, docker, etcd };
    await rollout({ ...base, image: v1!, sha: null, job: 'a' });
    const port = await freePort();
    const stray = await docker.createContainer({
      Image: v1!, Labels: { 'slipway.app': app.name, 'slipway.release': 'draining' },
      HostConfig: { PortBindings: { [`${app.port}/tcp`]: [{ HostIp: '127.0.0.1', HostPort: String(port) }] } },
    });
    await stray.start();
    // Until the stray's server listens, Docker's proxy takes a connection and closes it at once: wait for an answer first.
    for (let i = 0; i < 100 && !(await fetchText(`127.0.0.1:${port}`)).startsWith('200'); i++) await new Promise((r) => setTimeout(r, 100));
    // A client of the release that was live before, still connected while that release drains.
    const client = connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => client.once('connect', resolve).once('error', reject));
    let cut = false;
    client.on('close', () => (cut = true)).on('error', () => {});
    const lines: string[] = [];
    const rolling = rollout({ ...base, image: v2!, sha: null, job: 'b', log: (l) => lines.push(l) });
    await new Promise((r) => setTimeout(r, 1500));
    expect(cut, 'the stray\'s connection was not cut').toBe(false);
    expect((await stray.inspect()).State.Running).toBe(true);
    client.end();
    const result = await rolling;
    expect(result.strays).toEqual([stray.id]);
    expect(lines.join('\n')).toMatch(new RegExp(`strays still carry connections \\(127\\.0\\.0\\.1:${port}: 1;.*\\n.*drained: connections closed`));
    expect(await fetchText(app.listen)).toBe('200 v2');
  });
  it('status says a container nginx still routes to (its key gone from etcd) is drained by the next rollout, not removed as a leftover', async () => {
    const app = await testApp({ replicas: 2 });
    const base = { app, nginx: nginx.settings, docker, etcd };
    const result = await rollout({ ...base, image: await buildImage(app.name, 'v1'), sha: null, job: 'a' });
    const [kept, unkeyed] = result.containers as [{ id: string; address: string }, { id: string; address: string }];
    await etcd.delete().key(`${app.etcd_prefix}/${unkeyed.id.slice(0, 12)}`);
    const { drift } = await appStatus(base);
    expect(drift).toContain(`container ${unkeyed.id.slice(0, 12)} (${unkeyed.address}) is not in etcd: nginx still routes to it (a switch whose file or reload did not follow); the next rollout drains it with the others`);
    expect(drift.join('\n')).not.toContain(kept.id.slice(0, 12));
  });
});
