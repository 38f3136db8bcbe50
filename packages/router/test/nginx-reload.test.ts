import { spawn } from 'node:child_process';
import { mkdir, readdir, readlink, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processStart } from '@slipway/core/run-command';
import { freePort, ownNginx, testAppName } from '@slipway/devstack/testing';
import { applyNginxConf } from '../src/nginx-apply.js';
import { LEADER_STALE_MS, OWNERLESS_STALE_MS, RELOAD_CONFIRM_MAX_MS, reloadNginx } from '../src/nginx-reload.js';
import { routeSnapshot } from '../src/render.js';
import { appsConfig, backend, fetchText } from './helpers.js';

/**
 * How long a reload is waited for: the confirmation window (timeoutMs) is
 * extended while nginx's master is visibly working on the reload, and only
 * then. Its own nginx: the large file below slows every reload of it.
 */
describe('reloadNginx on a slow nginx', () => {
  let nginx: Awaited<ReturnType<typeof ownNginx>>;
  let server: Awaited<ReturnType<typeof backend>>;
  let app: ReturnType<typeof appsConfig>[string];
  const settings = () => ({ ...nginx.settings, batchMs: 0 });

  beforeAll(async () => {
    nginx = await ownNginx();
    server = await backend('a');
    const name = testAppName();
    app = appsConfig({ [name]: { listen: `127.0.0.1:${await freePort()}` } })[name]!;
    await applyNginxConf({ nginx: settings(), snapshot: await routeSnapshot(app, [server.address]) });
    // 300,000 geo entries: nginx's master needs ~0.3 s (more on a loaded machine) to read its configuration.
    const lines = Array.from({ length: 300_000 }, (_, i) => `  10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32 1;`);
    await writeFile(join(nginx.settings.conf_dir, 'slow-to-parse.conf'), `geo $slipway_slow_to_parse {\n  default 0;\n${lines.join('\n')}\n}\n`);
  });
  afterAll(async () => {
    await nginx?.stop();
    await server?.close();
  });

  it('waits past the window while the master is parsing, and confirms', async () => {
    const result = await reloadNginx({ nginx: settings(), listen: app.listen, timeoutMs: 20 });
    expect(result.outcome).toBe('confirmed');
    expect(await fetchText(app.listen)).toBe('200 a');
  });

  it('does not take a master pausing inside a reload for one that does nothing', async () => {
    // nginx's master sleeps 100 ms between starting new workers and retiring the old ones: here it
    // is stopped for as long just after reload_cmd signalled it, so the window ends during the pause.
    const pid = nginx.service.pid;
    const woken = join(nginx.settings.conf_dir, '..', `woken-${process.pid}`);
    const pausing = ['sh', '-c', `"$@" && kill -STOP ${pid} && { (sleep 0.1; kill -CONT ${pid}; : > "${woken}") >/dev/null 2>&1 & }`, 'sh', ...nginx.settings.reload_cmd];
    try {
      const result = await reloadNginx({ nginx: { ...settings(), reload_cmd: pausing }, listen: app.listen, timeoutMs: 20 });
      expect(result.outcome).toBe('confirmed');
    } finally {
      process.kill(pid, 'SIGCONT');
      // Its own CONT done before the next test stops the master (a late one would wake it there); none
      // comes when reload_cmd failed, and that failure is the one to report.
      for (let waited = 0; waited < 5000 && !(await stat(woken).then(() => true, () => false)); waited += 50) await sleep(50);
      await rm(woken, { force: true });
    }
    expect(await fetchText(app.listen)).toBe('200 a');
  });

  it('does not wait past the window for a master that does nothing', async () => {
    process.kill(nginx.service.pid, 'SIGSTOP');
    try {
      const started = Date.now();
      const result = await reloadNginx({ nginx: settings(), listen: app.listen, timeoutMs: 300 });
      expect(result.outcome).toBe('not_applied');
      // The window and two more looks at the master, plus reload_cmd reading the large file: far below RELOAD_CONFIRM_MAX_MS.
      expect(Date.now() - started).toBeLessThan(RELOAD_CONFIRM_MAX_MS / 3);
    } finally {
      process.kill(nginx.service.pid, 'SIGCONT');
    }
    // Woken, it applies the reload it was sent.
    const result = await reloadNginx({ nginx: settings(), listen: app.listen, timeoutMs: 20 });
    expect(result.outcome).toBe('confirmed');
    expect(await fetchText(app.listen)).toBe('200 a');
  }, RELOAD_CONFIRM_MAX_MS * 2);
});

describe('the reload batch directory', () => {
  let nginx: Awaited<ReturnType<typeof ownNginx>>;
  let server: Awaited<ReturnType<typeof backend>>;
  beforeAll(async () => {
    nginx = await ownNginx();
    server = await backend('b');
  });
  afterAll(async () => {
    await nginx?.stop();
    await server?.close();
  });

  it('takes only whole tickets: a ticket still being written, and an unreadable old one, break no reload', async () => {
    const name = testAppName();
    const app = appsConfig({ [name]: { listen: `127.0.0.1:${await freePort()}` } })[name]!;
    await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(app, [server.address]) });
    const dir = join(nginx.settings.conf_dir, '.slipway-reload');
    // A ticket's temporary file before its write (empty), and a ticket a full disk cut short, a minute old.
    await writeFile(join(dir, 'ticket-mabc123-0123456789ab.json.1a2b3c4d.tmp'), '');
    const torn = join(dir, 'ticket-mabc124-0123456789ab.json');
    await writeFile(torn, '{"listen":"127.0.');
    const old = new Date(Date.now() - 120_000);
    await utimes(torn, old, old);
    expect((await reloadNginx({ nginx: nginx.settings, listen: app.listen })).outcome).toBe('confirmed');
    expect(await fetchText(app.listen)).toBe('200 b');
    expect(await readdir(dir)).not.toContain('ticket-mabc124-0123456789ab.json');
  });

  it('takes a torn state file for a missing one (a power loss between its write and its rename reaching the disk)', async () => {
    const name = testAppName();
    const app = appsConfig({ [name]: { listen: `127.0.0.1:${await freePort()}` } })[name]!;
    await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(app, [server.address]) });
    const dir = join(nginx.settings.conf_dir, '.slipway-reload');
    await writeFile(join(dir, 'signalled.json'), '');
    await writeFile(join(dir, 'refused.json'), '{"files":{"slip');
    // The same file again: whether nginx has read it is asked of signalled.json (torn: not known, so reloaded).
    expect(await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(app, [server.address]) })).toMatchObject({ changed: false, reloaded: true });
    const other = await backend('c');
    try {
      await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(app, [other.address]) });
      expect(await fetchText(app.listen)).toBe('200 c');
    } finally {
      await other.close();
    }
  });

  it('takes a dead leader\'s lock over at once, an ownerless one within seconds, and never a live leader\'s', async () => {
    const name = testAppName();
    const app = appsConfig({ [name]: { listen: `127.0.0.1:${await freePort()}` } })[name]!;
    await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(app, [server.address]) });
    const lock = join(nginx.settings.conf_dir, '.slipway-reload', 'lock');
    const pidns = await readlink('/proc/self/ns/pid');
    const leave = async (pid: number) => {
      await mkdir(lock);
      await writeFile(join(lock, 'owner'), JSON.stringify({ pid, start: processStart(pid), pidns, token: 'left' }));
    };

    // A leader killed mid-batch (a worker's kill -9): its process is gone, so its lock is, without waiting the 95 s a lock of
    // another pid namespace gets.
    const dead = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    await leave(dead.pid!);
    dead.kill('SIGKILL');
    await new Promise((resolve) => dead.once('exit', resolve));
    const afterDead = reloadNginx({ nginx: nginx.settings, listen: app.listen }).then((r) => r.outcome);
    expect(await Promise.race([afterDead, sleep(LEADER_STALE_MS / 4).then(() => 'waiting for the lock to age')])).toBe('confirmed');

    // A lock whose maker died between its mkdir and its owner file: taken over once OWNERLESS_STALE_MS old, not 95 s.
    await mkdir(lock);
    const made = new Date(Date.now() - OWNERLESS_STALE_MS - 1000);
    await utimes(lock, made, made);
    const afterOwnerless = reloadNginx({ nginx: nginx.settings, listen: app.listen }).then((r) => r.outcome);
    expect(await Promise.race([afterOwnerless, sleep(LEADER_STALE_MS / 4).then(() => 'waiting for the lock to age')])).toBe('confirmed');

    // A live leader (this process) keeps its lock: the reload waits for it.
    await leave(process.pid);
    const waiting = reloadNginx({ nginx: nginx.settings, listen: app.listen });
    expect(await Promise.race([waiting.then(() => 'reloaded'), sleep(1500).then(() => 'waiting')])).toBe('waiting');
    await rm(lock, { recursive: true });
    expect((await waiting).outcome).toBe('confirmed');
  });
});
