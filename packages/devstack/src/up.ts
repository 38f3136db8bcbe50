import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Docker from 'dockerode';
import { runCommand } from '@slipway/core/run-command';
import { ensureBaseImage } from './base-image.js';
import { createFixtureRepo, git } from './fixture-app.js';
import { freePort, isPortFree } from './free-port.js';
import { startProcess, type RunningProcess } from './harness.js';
import { startStack, stopStack } from './stack.js';

const DEMO_APP = 'hello';

/** The preferred port when it is free, else any free one. */
async function portNear(preferred: number): Promise<number> {
  return (await isPortFree(preferred)) ? preferred : freePort();
}

/**
 * `npm start`: the services on loopback, a demo app with a `production`
 * remote, then the receiver, worker and router of Slipway as child
 * processes, until Ctrl-C stops all of it.
 */
export async function up(options: { log: (line: string) => void; dir?: string }): Promise<number> {
  const root = resolve(options.dir ?? '.slipway');
  const stack = await startStack({ dir: join(root, 'stack'), log: options.log });
  await ensureBaseImage();
  const bin = (name: string) => resolve('node_modules/.bin', name);

  // The demo app: its repository (what Slipway clones), a working copy to edit, a production remote.
  const demo = join(root, 'demo');
  mkdirSync(demo, { recursive: true });
  if (!existsSync(join(demo, `${DEMO_APP}.git`))) await createFixtureRepo(demo, { version: 'hello from Slipway v1', name: DEMO_APP });
  const work = join(demo, `${DEMO_APP}-work`);
  const appPort = await portNear(8080);
  const receiverPort = await portNear(3000);
  const dashboardPort = await portNear(3001);
  // The dashboard's sign-in token: made once, kept with the demo, never in the config file.
  const tokenFile = join(root, 'dashboard-token');
  if (!existsSync(tokenFile)) writeFileSync(tokenFile, randomBytes(24).toString('base64url'), { mode: 0o600 });
  const token = readFileSync(tokenFile, 'utf8').trim();
  const configFile = join(root, 'slipway.yml');
  writeFileSync(configFile, JSON.stringify({
    redis: stack.redis!.url,
    etcd: [stack.etcd!.url],
    workdir: join(root, 'work'),
    receiver: { host: '127.0.0.1', port: receiverPort },
    // A local demo keeps its token in its own 0600 config; production configs use ${SLIPWAY_DASHBOARD_TOKEN}.
    dashboard: { host: '127.0.0.1', port: dashboardPort, token },
    nginx: { conf_dir: stack.nginx!.confDir, check_cmd: stack.nginx!.checkCmd, reload_cmd: stack.nginx!.reloadCmd },
    apps: {
      [DEMO_APP]: {
        repo: `file://${join(demo, `${DEMO_APP}.git`)}`,
        secret: '${HELLO_WEBHOOK_SECRET:-demo-webhook-secret}',
        replicas: 2, port: 8080, listen: `127.0.0.1:${appPort}`, drain_s: 2, stop_timeout_s: 5,
      },
    },
  }, null, 2), { mode: 0o600 });
  const production = join(demo, 'production.git');
  await runCommand([bin('slipway'), '--config', configFile, 'remote', 'add', DEMO_APP, production]);
  await git(work, 'remote', 'remove', 'production').catch(() => {});
  await git(work, 'remote', 'add', 'production', production);

  const env = { SLIPWAY_CONFIG: configFile };
  const children: Array<[string, RunningProcess]> = [
    ['receiver', startProcess([bin('slipway-receiver'), '--config', configFile], { env })],
    ['worker', startProcess([bin('slipway-worker'), '--config', configFile], { env })],
    ['router', startProcess([bin('slipway'), '--config', configFile, 'router'], { env })],
    ['dashboard', startProcess([bin('slipway-dashboard'), '--config', configFile], { env })],
  ];
  for (const [name, child] of children) {
    child.child.stdout!.on('data', (chunk: Buffer) => process.stderr.write(prefixLines(name, chunk)));
    child.child.stderr!.on('data', (chunk: Buffer) => process.stderr.write(prefixLines(name, chunk)));
  }

  options.log('deploying the demo app…');
  await runCommand([bin('slipway'), '--config', configFile, 'deploy', DEMO_APP, '--wait'], { timeoutMs: 300_000 })
    .catch((err: Error) => options.log(`first deploy failed: ${err.message}`));

  console.log(`
Slipway is up.
  Redis     ${stack.redis!.url}
  etcd      ${stack.etcd!.url}
  nginx     ${stack.nginx!.mainConf} (Slipway writes ${stack.nginx!.confDir})
  Docker    ${stack.docker!.host}
  receiver  http://127.0.0.1:${receiverPort}/hooks/{github,gitea,gitlab}
  dashboard http://127.0.0.1:${dashboardPort}/  (sign-in token: ${token})
  config    ${configFile}

Three things to try:
  1. push to deploy:  cd ${work} && echo "hello v2" > www/index.html && git commit -qam v2 && git push production master
  2. open the app:    curl http://127.0.0.1:${appPort}/
  3. see the jobs:    npx slipway --config ${configFile} jobs

Ctrl-C stops everything.`);

  await new Promise<void>((done) => {
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
  options.log('stopping…');
  for (const [, child] of children) await child.stop('SIGTERM', 30_000);
  // The demo app's containers go too; the next start deploys it again.
  const docker = new Docker();
  for (const c of await docker.listContainers({ all: true, filters: { label: [`slipway.app=${DEMO_APP}`] } }).catch(() => [])) {
    await docker.getContainer(c.Id).remove({ force: true }).catch(() => {});
  }
  await stopStack(stack, options.log);
  return 0;
}

function prefixLines(name: string, chunk: Buffer): string {
  return chunk.toString().split('\n').filter(Boolean).map((line) => `[${name}] ${line}\n`).join('');
}
