import { readFile, writeFile } from 'node:fs/promises';
import Docker from 'dockerode';
import type { Etcd3 } from 'etcd3';
import { describe, expect, it } from 'vitest';
import type { AppConfig } from '@slipway/config/types';
import { UnavailableError } from '@slipway/core/slipway-error';
import { freePort, ownNginx, startEtcd, stopProcess, tempDir } from '@slipway/devstack/testing';
import { createEtcdClient } from '@slipway/etcd/client';
import { listenerHolders, nginxNames } from '@slipway/router/nginx';
import { etcdKeys } from '@slipway/etcd/keys';
import { rollout, type RolloutOptions } from '../src/rollout.js';
import { appContainers, buildImage, deadPort, docker, etcdRelay, fetchText, testApp, watchServing, useRolloutWorld } from './fixtures.js';

describe('a failed rollout leaves the previous release serving, its file and keys as they were, no stray container', () => {
  let nginx: Awaited<ReturnType<typeof ownNginx>>;
  let etcd: Etcd3;
  useRolloutWorld((w) => ({ nginx, etcd } = w));

  /** Deploys v1, runs `attempt` with traffic flowing, and checks everything is as before. */
  async function failedAttempt(app: AppConfig, attempt: (base: RolloutOptions) => Promise<unknown>, options: { etcd?: Etcd3 } = {}) {
    const client = options.etcd ?? etcd;
    const base: RolloutOptions = { app, nginx: nginx.settings, docker, etcd: client, image: await buildImage(app.name, 'v1'), sha: '1'.repeat(40), job: 'good' };
    const good = await rollout(base);
    const file = nginxNames.path(nginx.settings.conf_dir, app.name);
    const before = {
      file: await readFile(file, 'utf8'),
      keys: await client.getAll().prefix(`${app.etcd_prefix}/`).strings(),
      release: await client.get(etcdKeys.release(app.name)).string(),
    };
    const workers = (await listenerHolders(app.listen))?.workers;
    expect(workers?.length).toBeGreaterThan(0);
    const traffic = watchServing(app.listen);
    const lines: string[] = [];
    const attemptStarted = Date.now();
    const err = await attempt({ ...base, log: (l) => lines.push(l) }).then(() => null, (e: unknown) => e);
    const attemptMs = Date.now() - attemptStarted;
    const served = await traffic.stop();
    expect(err, 'the attempt should fail').toBeInstanceOf(Error);
    expect(served.answers, `nginx answered during the attempt (${served.count} requests)`).toEqual(['200 v1']);
    expect(await readFile(file, 'utf8')).toBe(before.file);
    expect((await listenerHolders(app.listen))?.workers, 'nginx was not reloaded').toEqual(workers);
    expect((await appContainers(app.name)).map((c) => c.Id).sort()).toEqual(good.containers.map((c) => c.id).sort());
    return { err: err as Error & { code: string }, lines, before, file, good, attemptMs };
  }
  async function keysUnchanged(client: Etcd3, app: AppConfig, before: { keys: Record<string, string>; release: string | null }) {
    expect(await client.getAll().prefix(`${app.etcd_prefix}/`).strings()).toEqual(before.keys);
    expect(await client.get(etcdKeys.release(app.name)).string()).toBe(before.release);
  }

  it('a new container that exits: health_failed at once, quoting its log', async () => {
    const app = await testApp();
    const crash = await buildImage(app.name, 'v2', 'crash', 'crash');
    const { err, before, attemptMs } = await failedAttempt(app, (base) => rollout({ ...base, image: crash, job: 'crash' }));
    expect(err.code).toBe('health_failed');
    expect(err.message).toMatch(/(exited with code 3|crashed and was restarted) before answering 2xx/);
    expect(err.message).toContain('fatal: cannot open database');
    // At once: before health.timeout_s (20 s) would have ended the attempt, which a rollout that missed
    // the exit would wait out in full. The attempt alone is timed (image build and first release
    // excluded); starting, probing and removing the container took 12.7 s in a loaded CI run.
    expect(attemptMs).toBeLessThan(app.health.timeout_s * 1000);
    await keysUnchanged(etcd, app, before);
  });

  it('a container of the attempt it never learnt of (a create past the engine\'s deadline, made all the same) goes with the undo', async () => {
    const app = await testApp({ health: { timeout_s: 3, interval_ms: 100 } });
    const unhealthy = await buildImage(app.name, 'v2', 'unhealthy', 'unhealthy');
    let late: Promise<Docker.Container> | undefined;
    const { err } = await failedAttempt(app, (base) => rollout({
      ...base, image: unhealthy, job: 'late',
      log: (line) => {
        base.log?.(line);
        // Once planned (a container there before would be a stray, removed by the plan): what Docker made of a
        // create the runtime gave up on, with the attempt's labels, never started, its id known to no one.
        if (line.startsWith('starting ') || /^serving now/.test(line)) late ??= docker.createContainer({ Image: unhealthy, Labels: { 'slipway.app': app.name, 'slipway.release': 'late' } });
      },
    }));
    expect(err.code).toBe('health_failed');
    expect(late, 'the container was made while the attempt ran').toBeDefined();
    await expect((await late!).inspect()).rejects.toMatchObject({ statusCode: 404 });
  });

  it('a new container that never gets healthy: health_failed after health.timeout_s', async () => {
    const app = await testApp({ health: { timeout_s: 2, interval_ms: 100 } });
    const unhealthy = await buildImage(app.name, 'v2', 'unhealthy', 'unhealthy');
    const { err, lines, before } = await failedAttempt(app, (base) => rollout({ ...base, image: unhealthy, job: 'unhealthy' }));
    expect(err.code).toBe('health_failed');
    expect(err.message).toMatch(/did not answer 2xx on \/healthz within 2 s \(\d+ attempts, last: HTTP 404\)/);
    expect(err.message).toContain('starting v2');
    // Each attempt is logged with its answer (the first may come before the app listens: a connection reset).
    expect(lines.join('\n')).toMatch(/health: [0-9a-f]{12} attempt \d+: HTTP 404/);
    await keysUnchanged(etcd, app, before);
  });

  it('a candidate config that check_cmd rejects: nginx_check_failed, nothing reloaded', async () => {
    const dir = tempDir();
    const app = await testApp({ template: `${dir.path}/app.tmpl` });
    const good = 'upstream {{upstream}} {\n  {{servers}}\n}\nserver { listen {{listen}}; location / { proxy_pass http://{{upstream}}; } }\n';
    await writeFile(app.template!, good);
    const v2 = await buildImage(app.name, 'v2');
    const { err, before } = await failedAttempt(app, async (base) => {
      await writeFile(app.template!, good.replace('location', 'no_such_directive on; location'));
      return rollout({ ...base, image: v2, job: 'bad-template' });
    });
    expect(err.code).toBe('nginx_check_failed');
    expect(err.message).toContain('unknown directive "no_such_directive"');
    await keysUnchanged(etcd, app, before);
    dir.remove();
  });

  it('etcd unreachable in the middle (stopped during the health check): unavailable, retryable', async () => {
    const dir = tempDir('slipway-rollout-etcd-');
    let own = await startEtcd(dir.path, await freePort(), await freePort());
    const client = createEtcdClient([own.url]);
    try {
      const app = await testApp();
      const slow = await buildImage(app.name, 'v2', 'slow-start', 'slow');
      let stopped: Promise<void> | undefined;
      const { err, before } = await failedAttempt(app, (base) => rollout({
        ...base, image: slow, job: 'etcd-dies', onStep: (step) => {
          if (step === 'health') stopped = stopProcess(own.pid);
        },
      }), { etcd: client });
      await stopped;
      expect(err).toBeInstanceOf(UnavailableError);
      expect(err).toMatchObject({ code: 'unavailable', service: 'etcd' });
      own = await startEtcd(dir.path, own.port, own.peerPort);
      await keysUnchanged(client, app, before);
    } finally {
      client.close();
      await stopProcess(own.pid);
      dir.remove();
    }
  });

  it('etcd unreachable from the start: unavailable, no container started', async () => {
    const app = await testApp();
    const dead = createEtcdClient([`http://127.0.0.1:${await deadPort()}`]);
    const err = await rollout({ app, nginx: nginx.settings, docker, etcd: dead, image: await buildImage(app.name, 'v1'), sha: null, job: 'x' }).catch((e: unknown) => e);
    dead.close();
    expect(err).toMatchObject({ code: 'unavailable', service: 'etcd' });
    expect(await appContainers(app.name)).toEqual([]);
  });

  it('an apply that fails past the switch with etcd gone before the revert: the new containers stay, since etcd names them', async () => {
    const dir = tempDir('slipway-rollout-etcd-');
    let own = await startEtcd(dir.path, await freePort(), await freePort());
    const client = createEtcdClient([own.url]);
    try {
      const app = await testApp();
      const base: RolloutOptions = { app, nginx: nginx.settings, docker, etcd: client, image: await buildImage(app.name, 'v1'), sha: null, job: 'good' };
      const good = await rollout(base);
      // Its "reload" stops etcd and reloads nothing: nginx keeps its workers (not applied), and the revert finds etcd gone.
      const stopEtcd = [process.execPath, '-e', `process.kill(${own.pid})`];
      const lines: string[] = [];
      const err = await rollout({ ...base, nginx: { ...nginx.settings, reload_cmd: stopEtcd }, image: await buildImage(app.name, 'v2'), job: 'revert-fails', log: (l) => lines.push(l) })
        .then(() => null, (e: unknown) => e);
      expect(err).toMatchObject({ code: 'nginx_reload_failed' });
      expect(lines.join('\n')).toMatch(/could not revert the etcd switch: .*the new containers stay, since etcd names them/);
      own = await startEtcd(dir.path, own.port, own.peerPort);
      // Whatever etcd names runs: the new containers (it names them) and the old ones (nginx still routes to them).
      const named = Object.keys(await client.getAll().prefix(`${app.etcd_prefix}/`).strings()).map((key) => key.split('/').pop());
      const running = (await appContainers(app.name)).filter((c) => c.State === 'running').map((c) => c.Id.slice(0, 12));
      expect(named.length).toBeGreaterThan(0);
      expect(running).toEqual(expect.arrayContaining([...named, ...good.containers.map((c) => c.id.slice(0, 12))]));
      expect(await fetchText(app.listen)).toBe('200 v1');
    } finally {
      client.close();
      await stopProcess(own.pid);
      dir.remove();
    }
  });

  it('a switch etcd makes but answers too late is seen as made: the rollout completes, never removing what etcd names', async () => {
    const relay = await etcdRelay();
    try {
      const app = await testApp();
      const base: RolloutOptions = { app, nginx: nginx.settings, docker, etcd: relay.client, image: await buildImage(app.name, 'v1'), sha: null, job: 'before' };
      await rollout(base);
      // From the moment the candidate passed its check, etcd's answers are held for 6.5 s: the switch goes through, its answer
      // comes after the call's 5 s deadline (without asking again, the rollout removed the new containers etcd then named).
      const lines: string[] = [];
      const result = await rollout({ ...base, image: await buildImage(app.name, 'v2'), job: 'late-answer', log: (line) => {
        lines.push(line);
        if (line.startsWith('nginx: ') && line.includes('passed check_cmd')) {
          relay.hold();
          setTimeout(() => relay.release(), 6500);
        }
      } });
      expect(result.release.job).toBe('late-answer');
      expect(await fetchText(app.listen)).toBe('200 v2');
      const named = Object.keys(await etcd.getAll().prefix(`${app.etcd_prefix}/`).strings()).map((key) => key.split('/').pop()!);
      const running = (await appContainers(app.name)).filter((c) => c.State === 'running').map((c) => c.Id.slice(0, 12));
      expect(named.length).toBeGreaterThan(0);
      expect(running).toEqual(expect.arrayContaining(named));
    } finally {
      relay.release();
      relay.client.close();
      relay.cut();
    }
  });

  it('a lock lost before the switch (etcd cut off past its lease): unavailable, not the commit\'s fault, though another rollout removed its containers', async () => {
    const app = await testApp({ health: { timeout_s: 20, interval_ms: 100 } });
    const relay = await etcdRelay();
    try {
      const image = await buildImage(app.name, 'v2', 'unhealthy', 'unhealthy');
      let cut = false;
      const { err, lines } = await failedAttempt(app, (base) => rollout({ ...base, etcd: relay.client, lockTtlS: 2, image, job: 'lost', log: (line) => {
        base.log!(line);
        if (!line.startsWith('started ') || cut) return;
        cut = true;
        // Cut off from etcd once its containers run; the lease runs out (the client says lost after twice its TTL),
        // and the rollout that takes the app over removes them as strays.
        relay.cut();
        setTimeout(() => void appContainers(app.name).then((all) => Promise.all(all.filter((c) => c.Labels['slipway.release'] === 'lost')
          .map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => {})))), 5_500);
      } }));
      expect(err).toMatchObject({ code: 'unavailable', service: 'etcd' });
      expect(err.message).toMatch(/^lost the rollout lock of \S+ before the switch .*another rollout may have taken the app over; nothing was switched \(/);
      expect(lines.join('\n')).not.toContain('switched');
    } finally {
      relay.client.close();
      relay.cut();
    }
  });

  it('Docker unreachable: unavailable, and the lock is free again at once', async () => {
    const app = await testApp();
    const deadDocker = new Docker({ socketPath: '/nonexistent/docker.sock' });
    const { err, before } = await failedAttempt(app, (base) => rollout({ ...base, docker: deadDocker, job: 'no-docker' }));
    expect(err).toMatchObject({ code: 'unavailable', service: 'docker' });
    await keysUnchanged(etcd, app, before);
    const image = await buildImage(app.name, 'v2');
    const started = Date.now();
    await rollout({ app, nginx: nginx.settings, docker, etcd, image, sha: null, job: 'after' });
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(await fetchText(app.listen)).toBe('200 v2');
  });

  it('cancelled before the switch: cancelled, its containers removed; after the switch the signal is ignored', async () => {
    const app = await testApp();
    const slow = await buildImage(app.name, 'v2', 'slow-start', 'slow');
    const { err, before } = await failedAttempt(app, (base) => {
      const abort = new AbortController();
      return rollout({ ...base, image: slow, job: 'cancel-me', signal: abort.signal, onStep: (s) => s === 'health' && abort.abort() });
    });
    expect(err.code).toBe('cancelled');
    await keysUnchanged(etcd, app, before);

    const abort = new AbortController();
    const result = await rollout({ app, nginx: nginx.settings, docker, etcd, image: slow, sha: null, job: 'too-late', signal: abort.signal, onStep: (s) => s === 'drain' && abort.abort() });
    expect(result.release.job).toBe('too-late');
    expect(await fetchText(app.listen)).toBe('200 v2');
  });

  it('an image Slipway did not build that sets slipway.step (deploy --image): container_start_failed, naming the label', async () => {
    const app = await testApp();
    const v2 = await buildImage(app.name, 'v2');
    const labelled = `slipway/${app.name}:labelled`;
    const dir = tempDir('slipway-labelled-');
    try {
      await writeFile(`${dir.path}/Dockerfile`, `FROM ${v2}\nLABEL slipway.step=web\n`);
      const stream = await docker.buildImage({ context: dir.path, src: ['Dockerfile'] }, { t: labelled });
      await new Promise((resolve, reject) => docker.modem.followProgress(stream, (e) => (e ? reject(e) : resolve(null))));
    } finally {
      dir.remove();
    }
    const { err, before } = await failedAttempt(app, (base) => rollout({ ...base, image: labelled, sha: null, job: 'labelled' }));
    expect(err.code).toBe('container_start_failed');
    expect(err.message).toContain(`${labelled} sets the label slipway.step`);
    await keysUnchanged(etcd, app, before);
  });

  it('routing: dns without the `dns` settings is refused as unsupported, touching nothing', async () => {
    const app = await testApp({ routing: 'dns' });
    await expect(rollout({ app, nginx: nginx.settings, docker, etcd, image: 'slipway/none:1', sha: null, job: 'dns' })).rejects.toMatchObject({ code: 'unsupported' });
    expect(await appContainers(app.name)).toEqual([]);
  });
});
