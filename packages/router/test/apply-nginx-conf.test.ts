import { existsSync } from 'node:fs';
import { readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { Agent, createServer, request, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CommandError } from '@slipway/core/run-command';
import { freePort, ownNginx, tempDir, testAppName } from '@slipway/devstack/testing';
import { applyNginxConf, prepareNginxConf } from '../src/nginx-apply.js';
import { rejectedFile, runCheck } from '../src/nginx-check.js';
import { listenersHolders, reloadNginx } from '../src/nginx-reload.js';
import { nginxNames, renderNginxConf, routeSnapshot } from '../src/render.js';
import { EmptyUpstreamError, NginxCheckError, NginxReloadError } from '../src/router-errors.js';
import { appsConfig, backend, fetchText } from './helpers.js';

/** `node -e COUNT_AND_RUN <file> <argv…>`: runs argv (no shell), then appends a line `<start ms> <end ms>` to <file>. */
const COUNT_AND_RUN = `
const [file, ...argv] = process.argv.slice(1);
const start = Date.now();
const run = require('node:child_process').spawnSync(argv[0], argv.slice(1), { stdio: 'inherit' });
require('node:fs').appendFileSync(file, start + ' ' + Date.now() + '\\n');
process.exit(run.status ?? 1);`;

describe('applyNginxConf', () => {
  let nginx: Awaited<ReturnType<typeof ownNginx>>;
  const backends: Array<Awaited<ReturnType<typeof backend>>> = [];
  let a: string;
  let b: string;

  beforeAll(async () => {
    nginx = await ownNginx();
    for (const body of ['a', 'b']) backends.push(await backend(body));
    [a, b] = backends.map((x) => x.address) as [string, string];
  });
  afterAll(async () => {
    await nginx?.stop();
    await Promise.all(backends.map((x) => x.close()));
  });

  async function newApp(over: Record<string, unknown> = {}) {
    const name = testAppName();
    const listen = `127.0.0.1:${await freePort()}`;
    return appsConfig({ [name]: { listen, ...over } })[name]!;
  }
  const leftovers = async () => (await readdir(nginx.settings.conf_dir)).filter((f) => f.endsWith('.tmp'));

  it('writes slipway-<app>.conf, reloads, and skips everything when nothing changed', async () => {
    const app = await newApp();
    const first = await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(app, [a]) });
    expect(first).toMatchObject({ file: nginxNames.path(nginx.settings.conf_dir, app.name), changed: true, reloaded: true, reload: { outcome: 'confirmed' } });
    expect(await fetchText(app.listen)).toBe('200 a');

    const before = await stat(first.file);
    const again = await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(app, [a]) });
    expect(again).toEqual({ file: first.file, changed: false, reloaded: false });
    expect((await stat(first.file)).mtimeMs).toBe(before.mtimeMs);

    await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(app, [b]) });
    expect(await fetchText(app.listen)).toBe('200 b');
    expect(await leftovers()).toEqual([]);
  });

  it('a file someone else renamed in first is trusted only once a reload was seen applied after it: else the commit reloads and waits', async () => {
    const app = await newApp();
    const { file } = await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(app, [a]) });
    const content = renderNginxConf(await routeSnapshot(app, [b]));
    const prepared = await prepareNginxConf({ nginx: nginx.settings, app, content });
    // The router renders the same switch and renames it in first; its reload has not happened (it may never).
    await writeFile(`${file}.router.tmp`, content);
    await rename(`${file}.router.tmp`, file);
    expect(await prepared.commit()).toMatchObject({ reloaded: true, reload: { outcome: 'confirmed' } });
    expect(await fetchText(app.listen)).toBe('200 b');
  });

  it('refuses an empty upstream and keeps the previous file', async () => {
    const app = await newApp();
    const { file } = await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(app, [a]) });
    const previous = await readFile(file, 'utf8');
    await expect(applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(app, []) })).rejects.toThrow(EmptyUpstreamError);
    expect(await readFile(file, 'utf8')).toBe(previous);
    expect(await fetchText(app.listen)).toBe('200 a');
  });

  it('checks the candidate, not the live file: a rejected candidate leaves the live file and nginx as they were', async () => {
    const dir = tempDir();
    const app = await newApp({ template: `${dir.path}/app.conf.tmpl` });
    await writeFile(app.template!, 'upstream {{upstream}} {\n  {{servers}}\n}\nserver { listen {{listen}}; location / { proxy_pass http://{{upstream}}; } }\n');
    const { file } = await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(app, [a]) });
    expect(await fetchText(app.listen)).toBe('200 a');
    const previous = await readFile(file, 'utf8');

    await writeFile(app.template!, 'upstream {{upstream}} {\n  {{servers}}\n}\nserver { listen {{listen}}; no_such_directive on; location / { proxy_pass http://{{upstream}}; } }\n');
    const err = await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(app, [b]) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NginxCheckError);
    expect((err as NginxCheckError).code).toBe('nginx_check_failed');
    expect((err as NginxCheckError).message).toContain('unknown directive "no_such_directive"');
    expect(await readFile(file, 'utf8')).toBe(previous);
    expect(await fetchText(app.listen)).toBe('200 a');
    expect(await leftovers()).toEqual([]);

    // A broken live file (edited by hand, never loaded) does not block a good candidate.
    await writeFile(file, 'this is not nginx;\n');
    await writeFile(app.template!, 'upstream {{upstream}} {\n  {{servers}}\n}\nserver { listen {{listen}}; location / { proxy_pass http://{{upstream}}; } }\n');
    await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(app, [b]) });
    expect(await fetchText(app.listen)).toBe('200 b');
    dir.remove();
  });

  it('two candidates that pass apart and clash together (each its address\'s default server): one fails nginx_check_failed, the other and the rest of the batch are applied', async () => {
    // One batch for all three: a reload just before, and a window long enough for the three commits.
    const settings = { ...nginx.settings, batchMs: 1500 };
    const shared = `127.0.0.1:${await freePort()}`;
    const [x, y, z] = [await newApp({ listen: shared }), await newApp({ listen: shared }), await newApp()] as const;
    const server = (app: typeof x, body: string, options = '') => `server {\n    listen ${app.listen}${options};\n    server_name ${app.name};\n    return 200 "${body}";\n}\n`;
    await (await prepareNginxConf({ nginx: settings, app: z, content: server(z, 'z1') })).commit();
    // Each checked beside the other's file as it is now (none): both pass.
    const candidates = [
      await prepareNginxConf({ nginx: settings, app: x, content: server(x, 'x', ' default_server') }),
      await prepareNginxConf({ nginx: settings, app: y, content: server(y, 'y', ' default_server') }),
      await prepareNginxConf({ nginx: settings, app: z, content: server(z, 'z2') }),
    ];
    const [cx, cy, cz] = await Promise.allSettled(candidates.map((c) => c.commit()));
    // In one batch, the one nginx reads second fails; if the commits split across two batches (a loaded
    // machine), the one that came second is found by leaving it out: either way exactly one fails, alone.
    const lost = ([[x, cx!], [y, cy!]] as const).filter(([, result]) => result.status === 'rejected');
    const reasons = lost.map(([app, result]) => `${app.name}: ${String((result as PromiseRejectedResult).reason)}`).join('\n');
    expect(lost.map(([app]) => app.name), `exactly one of the two clashing candidates fails; failed:\n${reasons}`).toHaveLength(1);
    const [loser, lostResult] = lost[0]!;
    const winner = loser === x ? y : x;
    const err = (lostResult as PromiseRejectedResult).reason as NginxCheckError;
    expect(err).toBeInstanceOf(NginxCheckError);
    expect(err.message).toContain(`nginx rejected the candidate config for ${loser.name}`);
    expect(err.message).toContain(`a duplicate default server for ${shared}`);
    for (const kept of [winner === x ? cx! : cy!, cz!]) expect(kept, kept.status === 'rejected' ? String(kept.reason) : '').toMatchObject({ status: 'fulfilled', value: { reloaded: true } });
    expect(await fetchText(shared)).toBe(`200 ${winner.name === x.name ? 'x' : 'y'}`);
    expect(await fetchText(z.listen)).toBe('200 z2');
    // The loser's previous file (none) is back.
    expect((await readdir(settings.conf_dir)).filter((name) => name.includes(loser.name))).toEqual([]);
  });

  it('a clash whose other half came in an earlier batch: the newcomer is found by leaving it out, and fails alone', async () => {
    const settings = { ...nginx.settings, batchMs: 1500 };
    const shared = `127.0.0.1:${await freePort()}`;
    const [p, q, z] = [await newApp({ listen: shared }), await newApp({ listen: shared }), await newApp()] as const;
    const server = (app: typeof p, body: string, options = '') => `server {\n    listen ${app.listen}${options};\n    server_name ${app.name};\n    return 200 "${body}";\n}\n`;
    // nginx names the file it reads second: that one goes live first, alone, so that nginx serves it when the other comes.
    const [early, late] = [p, q].sort((a, b) => (a.name < b.name ? 1 : -1)) as [typeof p, typeof p];
    await (await prepareNginxConf({ nginx: settings, app: z, content: server(z, 'z1') })).commit();
    const candidates = [
      await prepareNginxConf({ nginx: settings, app: early, content: server(early, 'early', ' default_server') }),
      await prepareNginxConf({ nginx: settings, app: late, content: server(late, 'late', ' default_server') }),
      await prepareNginxConf({ nginx: settings, app: z, content: server(z, 'z2') }),
    ];
    await candidates[0]!.commit();
    const [cl, cz] = await Promise.allSettled([candidates[1]!.commit(), candidates[2]!.commit()]);
    expect(cl).toMatchObject({ status: 'rejected', reason: { code: 'nginx_check_failed' } });
    expect(((cl as PromiseRejectedResult).reason as Error).message).toContain(`nginx rejected the candidate config for ${late.name}`);
    expect(cz).toMatchObject({ status: 'fulfilled', value: { reloaded: true } });
    expect(await fetchText(shared)).toBe('200 early');
    expect(await fetchText(z.listen)).toBe('200 z2');
    expect((await readdir(settings.conf_dir)).filter((name) => name.includes(late.name))).toEqual([]);
  });

  it('a clash nobody will put back (files renamed in by hand, a reload of a file behind) holds no batch: each reload fails at once, in nginx\'s words', async () => {
    const shared = `127.0.0.1:${await freePort()}`;
    const [x, y, z] = [await newApp({ listen: shared }), await newApp({ listen: shared }), await newApp()] as const;
    const files = [x, y].map((app) => nginxNames.path(nginx.settings.conf_dir, app.name));
    try {
      for (const [i, app] of [x, y].entries()) await writeFile(files[i]!, `server {\n    listen ${shared} default_server;\n    server_name ${app.name};\n    return 200 "${app.name}";\n}\n`);
      const second = [x.name, y.name].sort()[1] === x.name ? files[0]! : files[1]!;
      const zFile = nginxNames.path(nginx.settings.conf_dir, z.name);
      // As the router re-syncing the app behind, again and again, beside another app's switch.
      for (let round = 0; round < 3; round++) {
        const started = Date.now();
        const [behind, other] = await Promise.allSettled([
          reloadNginx({ nginx: nginx.settings, listen: shared, file: second }),
          reloadNginx({ nginx: nginx.settings, listen: z.listen, file: zFile }),
        ]);
        expect(behind).toMatchObject({ status: 'rejected', reason: { code: 'nginx_check_failed' } });
        expect(other).toMatchObject({ status: 'rejected', reason: { code: 'nginx_reload_failed' } });
        expect(((other as PromiseRejectedResult).reason as Error).message).toContain('a duplicate default server');
        expect(Date.now() - started, 'waited on a file nobody puts back').toBeLessThan(5_000);
      }
    } finally {
      for (const file of files) await rm(file, { force: true });
    }
  });

  it('a broken file an app\'s file includes from elsewhere holds no batch: no ticket puts it back, so each reload fails at once', async () => {
    const [x, z] = [await newApp(), await newApp()] as const;
    const snippets = tempDir('slipway-snippet-');
    const snippet = join(snippets.path, 'shared.conf');
    const xFile = nginxNames.path(nginx.settings.conf_dir, x.name);
    try {
      await writeFile(snippet, 'this is not nginx;\n');
      await writeFile(xFile, `include ${snippet};\n`);
      const started = Date.now();
      const err = await reloadNginx({ nginx: nginx.settings, listen: z.listen, file: nginxNames.path(nginx.settings.conf_dir, z.name) }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'nginx_reload_failed' });
      expect((err as Error).message).toContain(snippet);
      expect(Date.now() - started, 'waited on a file nobody puts back').toBeLessThan(5_000);
    } finally {
      await rm(xFile, { force: true });
      snippets.remove();
    }
  });

  it('checks files in a directory whose name nginx would misread unquoted (a space, ;, {)', async () => {
    const odd = tempDir('slipway-odd dir;{x}-');
    try {
      const good = join(odd.path, 'slipway-good.conf');
      const bad = join(odd.path, 'slipway-bad.conf');
      await writeFile(good, `server {\n    listen 127.0.0.1:${await freePort()};\n    return 200 "ok";\n}\n`);
      await writeFile(bad, 'this is not nginx;\n');
      await runCheck(nginx.settings, [good], good);
      const err = await runCheck(nginx.settings, [good, bad], bad).catch((e: unknown) => e);
      expect(rejectedFile((err as CommandError).tail)).toBe(bad);
    } finally {
      odd.remove();
    }
  });

  it('checks each candidate beside the other apps\' files', async () => {
    const one = await newApp();
    const two = await newApp();
    await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(one, [a]) });
    await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(two, [b]) });
    expect([await fetchText(one.listen), await fetchText(two.listen)]).toEqual(['200 a', '200 b']);

    // A template reusing the other app's upstream name is caught by the check, not by a failed reload.
    const dir = tempDir();
    const clash = { ...two, template: `${dir.path}/clash.tmpl` };
    await writeFile(clash.template, `upstream slipway_${one.name} {\n  {{servers}}\n}\nserver { listen {{listen}}; location / { proxy_pass http://slipway_${one.name}; } }\n`);
    await expect(applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(clash, [a]) })).rejects.toThrow(/duplicate upstream/);
    expect(await fetchText(two.listen)).toBe('200 b');
    dir.remove();
  });

  it('blames a candidate only for what it brings: another app\'s broken live file is nginx_conf_broken, a check that cannot run nginx_check_not_run', async () => {
    const broken = await newApp();
    const app = await newApp();
    const { file } = await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(broken, [a]) });
    const good = await readFile(file, 'utf8');
    const ownFile = nginxNames.path(nginx.settings.conf_dir, app.name);
    try {
      await writeFile(file, 'this is not nginx;\n');
      const err = await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(app, [b]) }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'nginx_conf_broken', fault: 'slipway' });
      expect((err as Error).message).toContain(`nginx rejects ${file}, which is not ${app.name}'s`);
      expect(existsSync(ownFile)).toBe(false);
      // Nor is a file it includes from elsewhere (a shared snippet) that nginx names: not the candidate, so not the commit's.
      const snippets = tempDir('slipway-snippet-');
      const snippet = join(snippets.path, 'shared.conf');
      await writeFile(snippet, 'this is not nginx either;\n');
      await writeFile(file, `${good}\ninclude ${snippet};\n`);
      try {
        const included = await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(app, [b]) }).catch((e: unknown) => e);
        expect(included).toMatchObject({ code: 'nginx_conf_broken', fault: 'slipway' });
        expect((included as Error).message).toContain(`nginx rejects ${snippet}, which is not ${app.name}'s`);
        expect(existsSync(ownFile)).toBe(false);
      } finally {
        snippets.remove();
      }
    } finally {
      await writeFile(file, good);
    }
    const unrunnable = await applyNginxConf({ nginx: { ...nginx.settings, check_cmd: ['/nonexistent/slipway-test/nginx', '-t'] }, snapshot: await routeSnapshot(app, [b]) }).catch((e: unknown) => e);
    expect(unrunnable).toMatchObject({ code: 'nginx_check_not_run', fault: 'slipway' });
    expect(existsSync(ownFile)).toBe(false);
    expect(await leftovers()).toEqual([]);

    await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(app, [b]) });
    expect(await fetchText(app.listen)).toBe('200 b');
  });

  it('a reload that fails puts the previous file back, and says when nginx could not be reloaded with it either', async () => {
    const app = await newApp();
    const { file } = await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(app, [a]) });
    const previous = await readFile(file, 'utf8');
    const failing = { ...nginx.settings, reload_cmd: ['sh', '-c', 'echo "reload refused" >&2; exit 1'] };
    const err = await applyNginxConf({ nginx: failing, snapshot: await routeSnapshot(app, [b]) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NginxReloadError);
    expect((err as Error).message).toMatch(/^nginx reload failed: .*reload refused/s);
    expect((err as Error).message).toContain('; the previous file was put back, but reloading nginx with it failed (nginx reload failed:');
    expect(await readFile(file, 'utf8')).toBe(previous);
    expect(await fetchText(app.listen)).toBe('200 a');
  });

  it('removes the candidates and put-back files of the app that a killed apply left, once they are an hour old', async () => {
    const app = await newApp();
    const dir = nginx.settings.conf_dir;
    const own = nginxNames.file(app.name);
    const old = [join(dir, `.${own}.0badc0de.tmp`), join(dir, `${own}.0badc0de.restore`)];
    const young = join(dir, `.${own}.0fresh00.tmp`);
    for (const file of [...old, young]) await writeFile(file, 'left over\n');
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    for (const file of old) await utimes(file, twoHoursAgo, twoHoursAgo);
    try {
      await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(app, [a]) });
      expect(old.filter((file) => existsSync(file))).toEqual([]);
      expect(existsSync(young), 'a candidate of a minute ago may be an apply under way').toBe(true);
    } finally {
      await rm(young, { force: true });
    }
  });

  it('fails, naming the holder, when another process has the app\'s listen address (nginx cannot bind it), and keeps no file', async () => {
    // What a container published on a port Docker chose (docker-proxy) does to an app whose nginx has not listened yet.
    const squatter = await backend('not nginx');
    const app = appsConfig({ [testAppName()]: { listen: squatter.address } });
    const [only] = Object.values(app);
    try {
      const err = await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(only!, [a]) }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NginxReloadError);
      expect((err as NginxReloadError).message).toMatch(new RegExp(`nginx could not listen on ${squatter.address}: pid ${process.pid} \\(.+\\) holds it`));
      await expect(stat(nginxNames.path(nginx.settings.conf_dir, only!.name))).rejects.toThrow(/ENOENT/);
      expect(await fetchText(squatter.address)).toBe('200 not nginx');
      expect(await leftovers()).toEqual([]);
    } finally {
      await squatter.close();
    }
  });

  it('names the holder too when it listens on every IPv6 address (which takes IPv4 too: Node\'s, Java\'s and Go\'s default)', async () => {
    const squatter = createServer((_req, res) => res.end('dual stack'));
    await new Promise<void>((resolve) => squatter.listen(0, '::', resolve));
    const port = (squatter.address() as AddressInfo).port;
    const app = appsConfig({ [testAppName()]: { listen: `127.0.0.1:${port}` } });
    const [only] = Object.values(app);
    try {
      const err = await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(only!, [a]) }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NginxReloadError);
      expect((err as NginxReloadError).message).toMatch(new RegExp(`nginx could not listen on 127.0.0.1:${port}: pid ${process.pid} \\(.+\\) holds it`));
      await expect(stat(nginxNames.path(nginx.settings.conf_dir, only!.name))).rejects.toThrow(/ENOENT/);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  });

  it('a new address nginx refuses at its reload is not answered as applied: another app\'s workers still accepting show nginx kept its previous config', async () => {
    const served = await newApp();
    await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(served, [a]) });
    // An address of no interface here (TEST-NET-1), which nginx -t would refuse (it binds), past a check_cmd that does not
    // (one run elsewhere, or none): the reload cannot bind it, and nginx keeps its previous config.
    const [unbindable] = Object.values(appsConfig({ [testAppName()]: { listen: `192.0.2.1:${await freePort()}` } }));
    const unchecked = { ...nginx.settings, check_cmd: ['true'] };
    const err = await applyNginxConf({ nginx: unchecked, snapshot: await routeSnapshot(unbindable!, [b]) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NginxReloadError);
    expect((err as Error).message).toMatch(/nginx did not apply/);
    await expect(stat(nginxNames.path(nginx.settings.conf_dir, unbindable!.name))).rejects.toThrow(/ENOENT/);
    expect(await fetchText(served.listen)).toBe('200 a');
  });

  it('a file whose reload nginx did not apply (its writer died before putting the previous one back) is reloaded again by the next apply of it, not taken for served', async () => {
    const served = await newApp();
    await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(served, [a]) });
    const [unbindable] = Object.values(appsConfig({ [testAppName()]: { listen: `192.0.2.1:${await freePort()}` } }));
    const unchecked = { ...nginx.settings, check_cmd: ['true'] };
    const snapshot = await routeSnapshot(unbindable!, [b]);
    const file = nginxNames.path(nginx.settings.conf_dir, unbindable!.name);
    try {
      // What a worker killed after its rename and its reload left: the file in place, the reload signalled and not applied.
      await writeFile(`${file}.tmp`, renderNginxConf(snapshot));
      await rename(`${file}.tmp`, file);
      expect((await reloadNginx({ nginx: unchecked, listen: unbindable!.listen, file })).outcome).toBe('not_applied');
      // The same content again (the job's next attempt, the router): nginx still serves without it, so it is reloaded, and fails as it did.
      const err = await applyNginxConf({ nginx: unchecked, snapshot }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NginxReloadError);
      expect((err as Error).message).toMatch(/nginx did not apply/);
    } finally {
      await rm(file, { force: true });
    }
    expect(await fetchText(served.listen)).toBe('200 a');
  });

  it('keeps upstream connections alive for plain requests and passes a WebSocket upgrade, per request, with no map', async () => {
    const one = await newApp();
    const two = await newApp();
    const [r1, r2] = [await recordingBackend(), await recordingBackend()];
    try {
      const { file } = await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(one, [r1.address]) });
      await applyNginxConf({ nginx: nginx.settings, snapshot: await routeSnapshot(two, [r2.address]) });
      expect(await readFile(file, 'utf8')).not.toMatch(/^\s*map /m);
      // The second reload is confirmed once workers accept on two's new address; the previous
      // workers may still accept on one's for a moment, and a connection one of them takes is
      // closed when it exits (its client then reconnects, to a new upstream connection).
      await oneGeneration(one.listen, two.listen);

      const client = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        for (let i = 0; i < 3; i++) expect(await plainGet(one.listen, client)).toBe(200);
        expect(await upgradeEcho(one.listen, 'ping')).toBe('ping');
        expect(await plainGet(two.listen, client)).toBe(200);
        expect(await plainGet(one.listen, client)).toBe(200);
      } finally {
        client.destroy();
      }
      const plain = r1.seen.filter((s) => s.upgrade === undefined);
      expect(plain.map((s) => s.connection)).toEqual([undefined, undefined, undefined, undefined]);
      // Every plain request rode the same upstream connection: nginx kept it alive.
      expect(new Set(plain.map((s) => s.remotePort)).size).toBe(1);
      expect(r1.seen.filter((s) => s.upgrade !== undefined)).toMatchObject([{ upgrade: 'websocket', connection: 'upgrade' }]);
      expect(r2.seen).toMatchObject([{ upgrade: undefined, connection: undefined }]);
    } finally {
      await Promise.all([r1.close(), r2.close()]);
    }
  });

  describe('switches landing together (router.batch_ms)', () => {
    /** reload_cmd wrapped so that every reload leaves a line in a file: how many nginx got. */
    const counting = (file: string) => ({
      ...nginx.settings,
      reload_cmd: [process.execPath, '-e', COUNT_AND_RUN, file, ...nginx.settings.reload_cmd],
    });
    const reloads = async (file: string) => (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean).length;

    it('a switch whose new address another process holds fails alone, before its file goes in: the rest of its batch is applied', async () => {
      const squatter = await backend('not nginx');
      const [held] = Object.values(appsConfig({ [testAppName()]: { listen: squatter.address } }));
      const fine = await newApp();
      const batched = { ...nginx.settings, batchMs: 300 };
      try {
        const [h, f] = await Promise.allSettled([held!, fine].map(async (app) => applyNginxConf({ nginx: batched, snapshot: await routeSnapshot(app, [a]) })));
        expect(h!.status).toBe('rejected');
        expect(((h as PromiseRejectedResult).reason as Error).message).toMatch(new RegExp(`nginx could not listen on ${squatter.address}: pid ${process.pid} \\(.+\\) holds it`));
        expect(f, 'the other switch of the batch').toMatchObject({ status: 'fulfilled' });
        expect(await fetchText(fine.listen)).toBe('200 a');
        expect(existsSync(nginxNames.path(nginx.settings.conf_dir, held!.name))).toBe(false);
      } finally {
        await squatter.close();
      }
    });

    it('share one reload; each candidate is checked on its own, and each waits until nginx serves it', async () => {
      const dir = tempDir();
      const count = `${dir.path}/reloads`;
      const apps = await Promise.all(Array.from({ length: 8 }, () => newApp()));
      // A quiet spell first: the batch window counts from the previous reload.
      await new Promise((r) => setTimeout(r, 400));
      const dryRun = counting(count);
      const bad = { ...apps[7]!, template: `${dir.path}/bad.tmpl` };
      // Renders, but nginx rejects it: only its own switch fails.
      await writeFile(bad.template, `upstream slipway_${bad.name} {\n  {{servers}}\n}\nserver { listen {{listen}}; no_such_directive on; location / { proxy_pass http://slipway_${bad.name}; } }\n`);
      const results = await Promise.allSettled([
        ...apps.slice(0, 7).map(async (app) => applyNginxConf({ nginx: { ...dryRun, batchMs: 1500 }, snapshot: await routeSnapshot(app, [a]) })),
        (async () => applyNginxConf({ nginx: { ...dryRun, batchMs: 1500 }, snapshot: await routeSnapshot(bad, [a]) }))(),
      ]);
      expect(results.slice(0, 7).map((r) => r.status)).toEqual(Array(7).fill('fulfilled'));
      expect(results[7]).toMatchObject({ status: 'rejected', reason: { code: 'nginx_check_failed' } });
      for (const r of results.slice(0, 7)) expect((r as PromiseFulfilledResult<{ reload?: { outcome: string } }>).value.reload?.outcome).toBe('confirmed');
      for (const app of apps.slice(0, 7)) expect(await fetchText(app.listen)).toBe('200 a');
      // The first goes at once; those arriving within the window after it share the next reload (a slow check may miss it).
      expect(await reloads(count)).toBeLessThanOrEqual(3);
      expect(await leftovers()).toEqual([]);

      // Without a window, every switch reloads on its own (what the burst bench compares against), one at a time.
      await writeFile(count, '');
      await Promise.all(apps.slice(0, 7).map(async (app) => applyNginxConf({ nginx: { ...dryRun, batchMs: 0 }, snapshot: await routeSnapshot(app, [b]) })));
      expect(await reloads(count)).toBe(7);
      const spans = (await readFile(count, 'utf8')).split('\n').filter(Boolean).map((line) => line.split(' ').map(Number) as [number, number]).sort((x, y) => x[0] - y[0]);
      for (let i = 1; i < spans.length; i++) expect(spans[i]![0], 'a reload began before the previous one ended').toBeGreaterThanOrEqual(spans[i - 1]![1]);
      for (const app of apps.slice(0, 7)) expect(await fetchText(app.listen)).toBe('200 b');
      dir.remove();
    });
  });

  it.each([
    ['{main} placeholder', (s: { checkCmd: string[] }) => [...s.checkCmd.slice(0, -2), '-t', '-c', '{main}'], true],
    ['a check_cmd that says no', () => ['false'], false],
  ])('runs check_cmd with %s', async (_what, cmd, ok) => {
    const app = await newApp();
    const settings = { ...nginx.settings, check_cmd: cmd(nginx.service) };
    const result = applyNginxConf({ nginx: settings, snapshot: await routeSnapshot(app, [a]) });
    if (ok) {
      await result;
      expect(await fetchText(app.listen)).toBe('200 a');
    } else {
      // It says no without the candidate too: not the commit's fault.
      await expect(result).rejects.toMatchObject({ code: 'nginx_conf_broken', fault: 'slipway' });
      await expect(stat(nginxNames.path(settings.conf_dir, app.name))).rejects.toThrow(/ENOENT/);
    }
  });
});

/** What a backend saw of one request: the hop-by-hop headers nginx sent and the upstream connection it came on. */
interface Seen { connection: string | undefined; upgrade: string | undefined; remotePort: number | undefined }

/** A backend that records each request's Connection and Upgrade headers, and echoes on an upgraded connection. */
async function recordingBackend(): Promise<{ address: string; seen: Seen[]; close: () => Promise<void> }> {
  const seen: Seen[] = [];
  const record = (headers: IncomingHttpHeaders, socket: Socket) =>
    seen.push({ connection: headers.connection, upgrade: headers.upgrade, remotePort: socket.remotePort });
  const upgraded = new Set<Socket>();
  const server = createServer((req, res) => {
    record(req.headers, req.socket);
    res.end('plain\n');
  });
  server.on('upgrade', (req, socket: Socket) => {
    record(req.headers, socket);
    upgraded.add(socket);
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => new Promise((resolve) => {
      for (const s of upgraded) s.destroy();
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** GET / through nginx on the given agent; the status. */
function plainGet(listen: string, agent: Agent): Promise<number> {
  const [host, port] = splitListen(listen);
  return new Promise((resolve, reject) => {
    request({ host, port, path: '/', agent, timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    }).on('error', reject).end();
  });
}

/** Waits (up to 5 s) until the same nginx workers, and only they, accept on both addresses. */
async function oneGeneration(a: string, b: string): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const holders = await listenersHolders([a, b]);
    const workers = [a, b].map((listen) => [...(holders.get(listen)?.workers ?? [])].sort().join(','));
    if (workers[0] !== '' && workers[0] === workers[1]) return;
    if (Date.now() > deadline) throw new Error(`workers on ${a} and ${b} still differ: ${workers.join(' / ')}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Asks nginx for a WebSocket upgrade, sends `text` on the upgraded connection, and returns what comes back. */
function upgradeEcho(listen: string, text: string): Promise<string> {
  const [host, port] = splitListen(listen);
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path: '/', timeout: 2000, headers: { Connection: 'Upgrade', Upgrade: 'websocket' } });
    req.on('upgrade', (res, socket, head) => {
      if (res.statusCode !== 101) return reject(new Error(`status ${res.statusCode}`));
      let got = head.toString();
      socket.on('data', (chunk: Buffer) => {
        got += chunk.toString();
        if (got.length >= text.length) {
          socket.destroy();
          resolve(got);
        }
      });
      socket.write(text);
    });
    req.on('response', (res) => reject(new Error(`no upgrade: status ${res.statusCode}`)));
    req.on('error', reject).end();
  });
}

function splitListen(listen: string): [string, number] {
  const at = listen.lastIndexOf(':');
  return [listen.slice(0, at), Number(listen.slice(at + 1))];
}
