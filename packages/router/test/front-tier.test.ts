import { execFileSync } from 'node:child_process';
import { lstat, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer, request, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, ownFrontTier, ownNginx, startLoad, testAppName, type TwoTierSettings } from '@slipway/devstack/testing';
import { applyNginxConf } from '../src/nginx-apply.js';
import { listenerHolders } from '../src/nginx-reload.js';
import { nginxNames, routeSnapshot } from '../src/render.js';
import { NginxCheckError, NginxReloadError } from '../src/router-errors.js';
import { backListen } from '../src/tiers.js';
import { appsConfig, backend, fetchText } from './helpers.js';

/** Switches made under load: each reloads the back nginx once. */
const SWITCHES = 12;
const LOAD_CLIENTS = 20;

describe('two tiers (nginx.front): deploys reload only the back', () => {
  let back: Awaited<ReturnType<typeof ownNginx>>;
  let front: Awaited<ReturnType<typeof ownFrontTier>>;
  let nginx: TwoTierSettings;
  const backends: Array<Awaited<ReturnType<typeof backend>>> = [];

  beforeAll(async () => {
    back = await ownNginx();
    front = await ownFrontTier(back.settings);
    nginx = front.settings;
    for (const body of ['a', 'b']) backends.push(await backend(body));
  });
  afterAll(async () => {
    await Promise.all([back?.stop(), front?.stop()]);
    await Promise.all(backends.map((x) => x.close()));
  });

  async function newApp() {
    const name = testAppName();
    return appsConfig({ [name]: { listen: `127.0.0.1:${await freePort()}` } })[name]!;
  }

  it('serves the app on its listen through the front, the back on its own socket, and leaves the front alone on a switch', async () => {
    const app = await newApp();
    const [a, b] = backends.map((x) => x.address) as [string, string];
    const first = await applyNginxConf({ nginx, snapshot: await routeSnapshot(app, [a]) });
    expect(first).toMatchObject({ changed: true, reloaded: true, reload: { outcome: 'confirmed' } });
    expect(await fetchText(app.listen)).toBe('200 a');

    // The back listens on the app's socket only, the front on the app's listen only.
    const socket = backListen(nginx, app.name)!;
    expect(socket).toBe(`unix:${join(nginx.front.socket_dir, `slipway-${app.name}.sock`)}`);
    const backFile = await readFile(nginxNames.path(back.settings.conf_dir, app.name), 'utf8');
    expect(backFile).toContain(`listen ${socket};`);
    expect(backFile).not.toContain(app.listen);
    const frontPath = nginxNames.path(nginx.front.conf_dir, app.name);
    const frontFile = await readFile(frontPath, 'utf8');
    expect(frontFile).toContain(`listen ${app.listen};`);
    expect(frontFile).toContain(`server ${socket};`);
    expect((await listenerHolders(app.listen))?.master).toBe(front.service.pid);
    expect((await listenerHolders(socket))?.master).toBe(back.service.pid);

    // A switch: the back's file and workers change, the front's file and workers do not.
    const frontWritten = (await stat(frontPath)).mtimeMs;
    const frontWorkers = (await listenerHolders(app.listen))!.workers;
    const switched = await applyNginxConf({ nginx, snapshot: await routeSnapshot(app, [b]) });
    expect(switched).toMatchObject({ changed: true, reloaded: true, reload: { outcome: 'confirmed' } });
    expect(await fetchText(app.listen)).toBe('200 b');
    expect((await stat(frontPath)).mtimeMs).toBe(frontWritten);
    expect((await listenerHolders(app.listen))!.workers).toEqual(frontWorkers);

    // Nothing changed: nothing is written or reloaded on either tier.
    expect(await applyNginxConf({ nginx, snapshot: await routeSnapshot(app, [b]) })).toMatchObject({ changed: false, reloaded: false });
  });

  it('passes the client\'s own address to the app, not the front\'s', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const server = createServer((req, res) => {
      seen.push(req.headers);
      res.end('ok\n');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const app = await newApp();
      await applyNginxConf({ nginx, snapshot: await routeSnapshot(app, [`127.0.0.1:${(server.address() as AddressInfo).port}`]) });
      const [host, port] = app.listen.split(':');
      // node:http, not fetch, which does not let a caller set Host.
      const status = await new Promise<number | undefined>((resolve, reject) => {
        request({ host, port, headers: { Host: 'shop.example.com', 'X-Forwarded-For': '203.0.113.9' } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode));
        }).on('error', reject).end();
      });
      expect(status).toBe(200);
      expect(seen.at(-1)).toMatchObject({
        host: 'shop.example.com',
        'x-real-ip': '127.0.0.1',
        // The client's own X-Forwarded-For, then the address the front saw it from.
        'x-forwarded-for': '203.0.113.9, 127.0.0.1',
        'x-forwarded-proto': 'http',
      });
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  // A POST too: the front resends one the back's reload closed its connection under (it never reached the back's app).
  it.each(['GET', 'POST'] as const)(`loses no keep-alive %s across ${SWITCHES} switches, which each reload the back`, async (method) => {
    const app = await newApp();
    const [a, b] = backends.map((x) => x.address) as [string, string];
    await applyNginxConf({ nginx, snapshot: await routeSnapshot(app, [a]) });
    const load = startLoad({ url: `http://${app.listen}`, clients: LOAD_CLIENTS, keepAlive: true, gapMs: 5, method });
    await new Promise((r) => setTimeout(r, 300));
    const reloads: string[] = [];
    for (let k = 0; k < SWITCHES; k++) {
      const result = await applyNginxConf({ nginx, snapshot: await routeSnapshot(app, [k % 2 === 0 ? b : a]) });
      reloads.push(result.reload?.outcome ?? 'none');
      await new Promise((r) => setTimeout(r, 150));
    }
    const report = await load.stop();
    console.log(`two tiers: ${report.requests} keep-alive ${method}s by ${LOAD_CLIENTS} clients across ${SWITCHES} back reloads: `
      + `${report.socketErrors.length} without an answer, ${report.failures.length} not 2xx; bodies ${JSON.stringify(report.bodies)}`);
    expect(reloads).toEqual(Array(SWITCHES).fill('confirmed'));
    expect(report.socketErrors).toEqual([]);
    expect(report.failures).toEqual([]);
    expect(report.ok).toBeGreaterThan(SWITCHES * LOAD_CLIENTS);
  });

  it('binds the back\'s socket over one a killed nginx left behind', async () => {
    const app = await newApp();
    const path = backListen(nginx, app.name)!.slice('unix:'.length);
    await mkdir(dirname(path), { recursive: true });
    // A process that listened on it and exited without closing: the file stays, nobody listens.
    execFileSync(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(path)}, () => process.exit(0))`]);
    expect((await lstat(path)).isSocket()).toBe(true);
    const applied = await applyNginxConf({ nginx, snapshot: await routeSnapshot(app, [backends[0]!.address]) });
    expect(applied).toMatchObject({ changed: true, reloaded: true, reload: { outcome: 'confirmed' } });
    expect(await fetchText(app.listen)).toBe('200 a');
  });

  it('puts the back\'s previous file back when the front cannot take its own', async () => {
    const app = await newApp();
    // Another process holds the app's listen: the front's reload cannot bind it and keeps its previous config.
    const squatter = createServer((_req, res) => res.end('squatter\n'));
    const [host, port] = app.listen.split(':');
    await new Promise<void>((resolve) => squatter.listen(Number(port), host, resolve));
    try {
      await expect(applyNginxConf({ nginx, snapshot: await routeSnapshot(app, [backends[0]!.address]) })).rejects.toBeInstanceOf(NginxReloadError);
      // Neither tier kept a file for the app: the back's, made live first, was taken back.
      await expect(readFile(nginxNames.path(back.settings.conf_dir, app.name), 'utf8')).rejects.toThrow(/ENOENT/);
      await expect(readFile(nginxNames.path(nginx.front.conf_dir, app.name), 'utf8')).rejects.toThrow(/ENOENT/);
      expect(await listenerHolders(backListen(nginx, app.name)!)).toBeNull();
    } finally {
      squatter.close();
    }
  });

  it('fails the apply when the back never listens on a new socket, instead of assuming it does', async () => {
    const app = await newApp();
    // A back whose reload does nothing: its check passes, but no nginx ever binds the app's socket.
    const deaf = { ...nginx, reload_cmd: ['true'] };
    const applying = applyNginxConf({ nginx: deaf, snapshot: await routeSnapshot(app, [backends[0]!.address]) });
    await expect(applying).rejects.toThrow(/did not apply the new config .*nobody accepts on unix:/);
    // The back's file was taken back and the front was never given one: no tier forwards to a socket nobody serves.
    await expect(readFile(nginxNames.path(back.settings.conf_dir, app.name), 'utf8')).rejects.toThrow(/ENOENT/);
    await expect(readFile(nginxNames.path(nginx.front.conf_dir, app.name), 'utf8')).rejects.toThrow(/ENOENT/);
  });

  it('keeps both tiers as they were when the front rejects its file', async () => {
    const app = await newApp();
    const [a, b] = backends.map((x) => x.address) as [string, string];
    await applyNginxConf({ nginx, snapshot: await routeSnapshot(app, [a]) });
    const backPath = nginxNames.path(back.settings.conf_dir, app.name);
    const backBefore = await readFile(backPath, 'utf8');
    // Another front file that claims the same upstream name: the front's check of this app's file fails.
    const clash = nginxNames.path(nginx.front.conf_dir, `${app.name}-clash`);
    await writeFile(clash, `upstream ${nginxNames.upstream(app.name)} { server 127.0.0.1:9; }\n`);
    try {
      const frontPath = nginxNames.path(nginx.front.conf_dir, app.name);
      const moved = { ...app, listen: `127.0.0.1:${await freePort()}` };
      await expect(applyNginxConf({ nginx, snapshot: await routeSnapshot(moved, [b]) })).rejects.toBeInstanceOf(NginxCheckError);
      expect(await readFile(backPath, 'utf8')).toBe(backBefore);
      expect(await readFile(frontPath, 'utf8')).toContain(`listen ${app.listen};`);
      expect(await fetchText(app.listen)).toBe('200 a');
    } finally {
      await writeFile(clash, '');
    }
  });
});
