import { rmSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import type { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '@slipway/core/run-command';
import { type EtcdService, freePort, ownNginx, startEtcd, startTcpRelay, stopProcess, tempDir, testAppName, testStack, uniqueName } from '@slipway/devstack/testing';
import { createEtcdClient } from '@slipway/etcd/client';
import { etcdKeys } from '@slipway/etcd/keys';
import { nginxNames } from '../src/render.js';
import { routerOnce, watchRouter, type RouteSyncResult, type RouterHandle } from '../src/watch.js';
import { appsConfig, backend, fetchText, within } from './helpers.js';

/** The very command an operator would type. */
const etcdctl = (url: string, ...args: string[]) =>
  runCommand(['etcdctl', '--endpoints', url, ...args], { env: { ...process.env, ETCDCTL_API: '3' } });

describe('router', () => {
  let nginx: Awaited<ReturnType<typeof ownNginx>>;
  const backends: Array<Awaited<ReturnType<typeof backend>>> = [];
  let etcd: Etcd3;
  let etcdUrl: string;

  beforeAll(async () => {
    nginx = await ownNginx();
    for (const body of ['a', 'b', 'c']) backends.push(await backend(body));
    etcdUrl = testStack().etcd!.url;
    etcd = createEtcdClient([etcdUrl]);
  });
  afterAll(async () => {
    etcd?.close();
    await nginx?.stop();
    await Promise.all(backends.map((x) => x.close()));
  });
  const address = (i: number) => backends[i]!.address;

  async function twoApps() {
    const [one, two, off] = [testAppName(), testAppName(), testAppName()];
    const base = uniqueName('/test/router');
    return appsConfig({
      [one]: { listen: `127.0.0.1:${await freePort()}`, etcd_prefix: `${base}/${one}` },
      [two]: { listen: `127.0.0.1:${await freePort()}`, etcd_prefix: `${base}/${two}` },
      [off]: { listen: `127.0.0.1:${await freePort()}`, etcd_prefix: `${base}/${off}`, routing: 'dns' },
    });
  }

  it('--once renders every upstream app from its keys and keeps the file of an app with none', async () => {
    const apps = await twoApps();
    const [one, two, off] = Object.values(apps) as [typeof apps[string], typeof apps[string], typeof apps[string]];
    await etcd.put(`${one.etcd_prefix}/aaaaaaaaaaaa`).value(address(0));
    await etcd.put(`${one.etcd_prefix}/bbbbbbbbbbbb`).value(address(1));
    await etcd.put(`${one.etcd_prefix}/cccccccccccc`).value('127.0.0.1:1; include /etc/shadow');
    const lines: string[] = [];
    const results = await routerOnce({ apps, nginx: nginx.settings, etcd, log: (l) => lines.push(l) });
    expect(results.map((r) => [r.app, r.outcome])).toEqual([[one.name, 'applied'], [two.name, 'empty']]);
    const served = new Set<string>();
    for (let i = 0; i < 10; i++) served.add(await fetchText(one.listen));
    expect([...served].sort()).toEqual(['200 a', '200 b']);
    expect(lines.join('\n')).toMatch(/ignoring .*cccccccccccc.*not a host:port/);
    expect(lines.join('\n')).toMatch(new RegExp(`${two.name}: no live upstream`));
    await expect(readFile(nginxNames.path(nginx.settings.conf_dir, off.name))).rejects.toThrow(/ENOENT/);

    expect((await routerOnce({ apps, nginx: nginx.settings, etcd })).map((r) => r.outcome)).toEqual(['unchanged', 'empty']);
    await etcd.delete().prefix(`${one.etcd_prefix}/`);
    expect((await routerOnce({ apps, nginx: nginx.settings, etcd })).map((r) => r.outcome)).toEqual(['empty', 'empty']);
    expect(await fetchText(one.listen)).toMatch(/^200 [ab]$/);
  });

  it('--once removes the file of an app no longer configured (renamed, removed), so that nginx stops serving it', async () => {
    const apps = await twoApps();
    const [one, two, off] = Object.values(apps) as [typeof apps[string], typeof apps[string], typeof apps[string]];
    await etcd.put(`${one.etcd_prefix}/aaaaaaaaaaaa`).value(address(0));
    await etcd.put(`${two.etcd_prefix}/aaaaaaaaaaaa`).value(address(2));
    await routerOnce({ apps, nginx: nginx.settings, etcd });
    expect(await fetchText(two.listen)).toBe('200 c');
    // Another Slipway's app beside ours in the same conf_dir (no release in our etcd): its file is not ours to remove.
    const theirs = nginxNames.path(nginx.settings.conf_dir, testAppName());
    await writeFile(theirs, '# another Slipway\'s app\n');
    // `two` is gone from the configuration (renamed, say), after it went live: its file goes, and nginx stops listening for it.
    await etcd.put(etcdKeys.release(two.name)).value(JSON.stringify({ sha: null, image: 'x', job: '1', at: new Date().toISOString() }));
    const lines: string[] = [];
    const results = await routerOnce({ apps: { [one.name]: one, [off.name]: off }, nginx: nginx.settings, etcd, log: (l) => lines.push(l) });
    expect(results.map((r) => [r.app, r.outcome])).toEqual([[one.name, 'unchanged']]);
    await expect(readFile(nginxNames.path(nginx.settings.conf_dir, two.name))).rejects.toThrow(/ENOENT/);
    expect(lines.join('\n')).toContain(`removed ${nginxNames.path(nginx.settings.conf_dir, two.name)}: no app of that name is configured any more`);
    await within(3000, async () => (await fetchText(two.listen)).startsWith('error'), `nginx no longer serving ${two.name}`);
    expect(await fetchText(one.listen)).toBe('200 a');
    expect(await readFile(theirs, 'utf8')).toBe('# another Slipway\'s app\n');
    await rm(theirs);
    await etcd.delete().key(etcdKeys.release(two.name));
  });

  // The removal's reload goes through the batch and is observed: a reload_cmd that fails, and one that returns 0 and
  // signals nothing (nginx's old workers go on accepting on two's address), fail the app whose file went.
  it.each([
    ['could not be reloaded after it', ['sh', '-c', 'echo "reload refused" >&2; exit 1'], /reload refused/],
    ['did not apply the reload after it', ['true'], /did not apply/],
  ])('--once fails an app whose file it removed when nginx %s: nginx may serve it still', async (_, reloadCmd, error) => {
    const apps = await twoApps();
    const [one, two, off] = Object.values(apps) as [typeof apps[string], typeof apps[string], typeof apps[string]];
    await etcd.put(`${one.etcd_prefix}/aaaaaaaaaaaa`).value(address(0));
    await etcd.put(`${two.etcd_prefix}/aaaaaaaaaaaa`).value(address(2));
    await routerOnce({ apps, nginx: nginx.settings, etcd });
    await etcd.put(etcdKeys.release(two.name)).value(JSON.stringify({ sha: null, image: 'x', job: '1', at: new Date().toISOString() }));
    try {
      const results = await routerOnce({ apps: { [one.name]: one, [off.name]: off }, nginx: { ...nginx.settings, reload_cmd: reloadCmd }, etcd });
      expect(results.map((r) => [r.app, r.outcome])).toEqual([[one.name, 'unchanged'], [two.name, 'failed']]);
      expect(results[1]!.error?.message).toMatch(error);
    } finally {
      await etcd.delete().key(etcdKeys.release(two.name));
      await runCommand(nginx.settings.reload_cmd);
    }
  });

  it('--once does not put a file in place whose keys changed while it was checked (a whole rollout may fit in a slow check)', async () => {
    const apps = await twoApps();
    const [one] = Object.values(apps) as [typeof apps[string]];
    await etcd.put(`${one.etcd_prefix}/aaaaaaaaaaaa`).value(address(0));
    await routerOnce({ apps: { [one.name]: one }, nginx: nginx.settings, etcd });
    // The keys move on (a rollout switched to c and stopped b's container) while the router checks the file of b.
    await etcd.delete().key(`${one.etcd_prefix}/aaaaaaaaaaaa`);
    await etcd.put(`${one.etcd_prefix}/bbbbbbbbbbbb`).value(address(1));
    const slow = { ...nginx.settings, check_cmd: ['sh', '-c', 'sleep 1.5; exec "$@"', 'check', ...nginx.settings.check_cmd] };
    const syncing = routerOnce({ apps: { [one.name]: one }, nginx: slow, etcd });
    await new Promise((resolve) => setTimeout(resolve, 500));
    await etcd.delete().key(`${one.etcd_prefix}/bbbbbbbbbbbb`);
    await etcd.put(`${one.etcd_prefix}/cccccccccccc`).value(address(2));
    expect((await syncing).map((r) => r.outcome)).toEqual(['deferred']);
    expect(await readFile(nginxNames.path(nginx.settings.conf_dir, one.name), 'utf8')).not.toContain(address(1));
    expect((await routerOnce({ apps: { [one.name]: one }, nginx: nginx.settings, etcd })).map((r) => r.outcome)).toEqual(['applied']);
    expect(await fetchText(one.listen)).toBe('200 c');
  });

  it('--once syncs apps side by side, so that their switches share reloads', async () => {
    const base = uniqueName('/test/router');
    const names = Array.from({ length: 6 }, () => testAppName());
    const apps = appsConfig(Object.fromEntries(await Promise.all(names.map(async (name) => [name, { listen: `127.0.0.1:${await freePort()}`, etcd_prefix: `${base}/${name}` }] as const))));
    for (const app of Object.values(apps)) await etcd.put(`${app.etcd_prefix}/aaaaaaaaaaaa`).value(address(0));
    const dir = tempDir();
    const count = `${dir.path}/reloads`;
    // Every reload leaves a line: how many nginx got.
    const counting = { ...nginx.settings, batchMs: 300, reload_cmd: ['sh', '-c', 'echo reload >> "$0"; exec "$@"', count, ...nginx.settings.reload_cmd] };
    try {
      const results = await routerOnce({ apps, nginx: counting, etcd });
      expect(results.map((r) => [r.app, r.outcome])).toEqual(names.map((name) => [name, 'applied']));
      for (const app of Object.values(apps)) expect(await fetchText(app.listen)).toBe('200 a');
      const reloads = (await readFile(count, 'utf8')).split('\n').filter(Boolean).length;
      expect(reloads, 'six switches, one after the other, would be six reloads').toBeLessThanOrEqual(3);
    } finally {
      await etcd.delete().prefix(`${base}/`);
      dir.remove();
    }
  });

  it('watch mode: an etcdctl put or del reaches nginx (the times printed)', async () => {
    const apps = await twoApps();
    const [one, two] = Object.values(apps) as [typeof apps[string], typeof apps[string]];
    await etcd.put(`${one.etcd_prefix}/aaaaaaaaaaaa`).value(address(0));
    const syncs: RouteSyncResult[] = [];
    const handle = await watchRouter({ apps, nginx: nginx.settings, etcd, onSync: (r) => syncs.push(r) });
    try {
      expect(await fetchText(one.listen)).toBe('200 a');
      const timings: number[] = [];
      await etcdctl(etcdUrl, 'put', `${one.etcd_prefix}/bbbbbbbbbbbb`, address(1));
      await etcdctl(etcdUrl, 'del', `${one.etcd_prefix}/aaaaaaaaaaaa`);
      // Two changes, two reloads: the second waits out router.batch_ms after the first (a loaded CI machine took 1.0-1.1 s).
      timings.push(await within(2000, async () => (await fetchText(one.listen)) === '200 b', 'put+del reaching nginx'));
      await etcdctl(etcdUrl, 'put', `${two.etcd_prefix}/cccccccccccc`, address(2));
      // A check and a reload: under a second on an idle machine, up to 1.7 s with three busy loops on its two cores.
      timings.push(await within(2000, async () => (await fetchText(two.listen)) === '200 c', 'put for the second app'));
      console.log(`router: etcdctl change → nginx serving it: ${timings.map((t) => `${t} ms`).join(', ')}`);

      // Deleting the last key keeps the previous file: the app stays up.
      await etcdctl(etcdUrl, 'del', `${two.etcd_prefix}/cccccccccccc`);
      await within(2000, async () => syncs.some((s) => s.app === two.name && s.outcome === 'empty'), 'empty sync');
      expect(await fetchText(two.listen)).toBe('200 c');
    } finally {
      await handle.close();
    }
  });

  it('watch mode leaves an app to the rollout holding its lock, and syncs it once the lock goes', async () => {
    const apps = await twoApps();
    const [one] = Object.values(apps) as [typeof apps[string]];
    await etcd.put(`${one.etcd_prefix}/aaaaaaaaaaaa`).value(address(0));
    const syncs: RouteSyncResult[] = [];
    const handle = await watchRouter({ apps, nginx: nginx.settings, etcd, onSync: (r) => syncs.push(r) });
    const lock = etcdKeys.lock(one.name);
    try {
      expect(await fetchText(one.listen)).toBe('200 a');
      // A rollout's switch: its lock held, the keys changed; the rollout renames its own file in.
      await etcd.put(lock).value(JSON.stringify({ job: 'test' }));
      await etcdctl(etcdUrl, 'put', `${one.etcd_prefix}/bbbbbbbbbbbb`, address(1));
      await etcdctl(etcdUrl, 'del', `${one.etcd_prefix}/aaaaaaaaaaaa`);
      await within(2000, async () => syncs.some((s) => s.app === one.name && s.outcome === 'deferred'), 'a deferred sync');
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(await fetchText(one.listen), 'the router wrote nothing while the rollout held the app').toBe('200 a');
      // The rollout ends: no key of the app changes, and the router still catches up.
      await etcd.delete().key(lock);
      await within(3000, async () => (await fetchText(one.listen)) === '200 b', 'the sync after the lock went');
    } finally {
      await etcd.delete().key(lock);
      await handle.close();
    }
  });

  /** The router watching an etcd of the test's own (which it may stop and start again), one app serving backend a. */
  async function withOwnEtcd(test: (world: { one: { listen: string; etcd_prefix: string }; client: Etcd3; lines: string[]; own: () => EtcdService; restart: (afterStop?: () => Promise<void>) => Promise<void> }) => Promise<void>) {
    const dir = tempDir('slipway-router-etcd-');
    let own: EtcdService | undefined = await startEtcd(dir.path, await freePort(), await freePort());
    const client = createEtcdClient([own.url]);
    const apps = await twoApps();
    const one = Object.values(apps)[0]!;
    let handle: RouterHandle | undefined;
    const lines: string[] = [];
    try {
      await client.put(`${one.etcd_prefix}/aaaaaaaaaaaa`).value(address(0));
      handle = await watchRouter({ apps, nginx: nginx.settings, etcd: client, log: (l) => lines.push(l) });
      expect(await fetchText(one.listen)).toBe('200 a');
      await test({
        one, client, lines, own: () => own!,
        restart: async (afterStop) => {
          const { port, peerPort, pid } = own!;
          own = undefined;
          await stopProcess(pid);
          await afterStop?.();
          own = await startEtcd(dir.path, port, peerPort);
        },
      });
    } finally {
      await handle?.close();
      client.close();
      if (own) await stopProcess(own.pid);
      dir.remove();
    }
  }

  it('watch mode survives etcd cancelling a watch (compacted past a quiet app\'s revision, then a restart)', () => withOwnEtcd(async ({ one, client, lines, own, restart }) => {
    // Other keys move on while this app is quiet, and etcd compacts its history past the app's watch.
    for (let i = 0; i < 20; i++) await client.put(`/test/router-compact-other/${i}`).value('x');
    const revision = (await client.get('/test/router-compact-other/0').exec()).header.revision;
    await etcdctl(own().url, 'compact', revision);
    await restart();
    // The client resumes from the app's old revision; etcd cancels that watch, and it is made again.
    await within(5000, async () => lines.some((l) => /cancel/i.test(l)), 'the cancelled watch');
    await etcdctl(own().url, 'put', `${one.etcd_prefix}/aaaaaaaaaaaa`, address(1));
    await within(3000, async () => (await fetchText(one.listen)) === '200 b', 'a put after the cancelled watch reaching nginx');
  }));

  it('watch mode follows an etcd replaced by a new one (its revisions begin again): the watch is made again from now, not left waiting', () => withOwnEtcd(async ({ one, client, lines, own, restart }) => {
    // The watch has seen revisions a new etcd reaches only after many writes.
    for (let i = 0; i < 30; i++) await client.put(`${one.etcd_prefix}/bbbbbbbbbbbb`).value(address(0));
    await client.delete().key(`${one.etcd_prefix}/bbbbbbbbbbbb`);
    const { dataDir } = own();
    await restart(async () => rmSync(dataDir, { recursive: true, force: true }));
    await within(5000, async () => lines.some((l) => l.includes('etcd watch re-established')), 'the watch reconnecting');
    // A put after the reconnection's re-sync (30 ms on): only the watch can bring it.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await etcdctl(own().url, 'put', `${one.etcd_prefix}/aaaaaaaaaaaa`, address(1));
    await within(3000, async () => (await fetchText(one.listen)) === '200 b', 'a put to the new etcd reaching nginx');
    expect(lines.some((l) => /behind revision \d+ this watch had seen/.test(l))).toBe(true);
  }));

  it('watch mode notices an etcd that stopped answering on an open connection (no reset: power lost, a partition) within seconds, and follows it once it answers', async () => {
    const apps = await twoApps();
    const one = Object.values(apps)[0]!;
    await etcd.put(`${one.etcd_prefix}/aaaaaaaaaaaa`).value(address(0));
    // The router's etcd connection through a relay that can hold back etcd's answers (pings' acks included), as a
    // partition does: held, not lost, and delivered once it heals.
    let answering = true;
    const held: Array<{ client: import('node:net').Socket; chunk: Buffer }> = [];
    const answer = () => {
      answering = true;
      for (const { client, chunk } of held.splice(0)) if (!client.destroyed) client.write(chunk);
    };
    const target = new URL(etcdUrl);
    const relay = await startTcpRelay({ host: target.hostname, port: Number(target.port) }, {
      toClient: (chunk, { client }) => {
        if (answering) client.write(chunk);
        else held.push({ client, chunk });
      },
    });
    const client = createEtcdClient([`http://127.0.0.1:${relay.port}`]);
    const lines: string[] = [];
    const handle = await watchRouter({ apps, nginx: nginx.settings, etcd: client, log: (l) => lines.push(l) });
    try {
      expect(await fetchText(one.listen)).toBe('200 a');
      answering = false;
      await within(25_000, async () => lines.some((l) => l.includes('etcd watch lost')), 'the silent connection noticed');
      answer();
      await etcd.put(`${one.etcd_prefix}/aaaaaaaaaaaa`).value(address(1));
      await within(5000, async () => (await fetchText(one.listen)) === '200 b', 'a put reaching nginx once etcd answers again');
    } finally {
      answer();
      await handle.close();
      client.close();
      relay.cut();
    }
  }, 60_000);

  it('watch mode survives an etcd restart', () => withOwnEtcd(async ({ one, lines, own, restart }) => {
    await restart(async () => {
      // While etcd is away nginx keeps serving what it had.
      await within(5000, async () => lines.some((l) => l.includes('etcd watch lost')), 'the watch noticing');
      expect(await fetchText(one.listen)).toBe('200 a');
    });
    await etcdctl(own().url, 'put', `${one.etcd_prefix}/aaaaaaaaaaaa`, address(1));
    // Within a second of etcd answering again (the watch reconnects at most WATCH_RECONNECT_MAX_MS apart).
    const ms = await within(2000, async () => (await fetchText(one.listen)) === '200 b', 'a put after the restart reaching nginx');
    console.log(`router: first put after etcd restart reached nginx in ${ms} ms`);
    expect(lines.join('\n')).toContain('etcd watch re-established');
  }));
});
