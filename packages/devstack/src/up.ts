import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Docker from 'dockerode';
import { processStart, runCommand } from '@slipway/core/run-command';
import { ensureBaseImage } from './base-image.js';
import { createFixtureRepo, git } from './fixture-app.js';
import { freePort, isPortFree, startProcess, stillRuns, stopProcess, type RunningProcess } from './processes.js';
import { startGitHttpServer, type GitHttpServer } from './git-http-server.js';
import { AlreadyRunningError, claimStart } from './start-lock.js';
import { ALL_SERVICES, frontSocketDir, stackConfDir, startStack, stopStack, type StackState } from './stack.js';

const DEMO_APP = 'hello';
/** The signals that end `npm start`: Ctrl-C, `kill`, and a closed terminal. */
const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
/** How long the first deploy of the demo may take (a cold build cache included). */
const FIRST_DEPLOY_MS = 300_000;
/** The longest path of a unix socket (sun_path, less its terminating NUL). */
const MAX_SOCKET_PATH = 107;

/** The preferred port when it is free, else any free one. */
async function portNear(preferred: number): Promise<number> {
  return (await isPortFree(preferred)) ? preferred : freePort();
}

/** A random value kept in a 0600 file under the demo: made once, the same on every start. */
function keptSecret(file: string): string {
  if (!existsSync(file)) writeFileSync(file, randomBytes(24).toString('base64url'), { mode: 0o600 });
  return readFileSync(file, 'utf8').trim();
}

/**
 * Output that outlives its reader. With `npm start | tee log`, Ctrl-C ends
 * `tee` too, and the next write to the closed pipe fails with EPIPE; left
 * unhandled, that error would kill this process before it stopped anything.
 */
function ignoreClosedOutput(): void {
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});
}

/** Slipway's processes a start runs, written as each starts: see stopLeftChildren. */
const CHILDREN_FILE = 'children.json';

interface ChildRecord {
  name: string;
  pid: number;
  start: string;
}

/** Names the processes of this start in `root`, each with its start time (so that a pid used again later is not taken for it). */
export function recordChildren(root: string, children: ReadonlyArray<readonly [string, RunningProcess]>): void {
  const records: ChildRecord[] = children.flatMap(([name, { child }]) => {
    const start = child.pid === undefined ? null : processStart(child.pid);
    return start === null ? [] : [{ name, pid: child.pid!, start }];
  });
  writeFileSync(join(root, CHILDREN_FILE), JSON.stringify(records));
}

/**
 * Stops the receiver, worker, router and dashboard an earlier start left
 * running: one killed (kill -9, out of memory) before it could stop them.
 * They would share this start's Redis and etcd, take its jobs and rewrite
 * its nginx files, and hold its ports. Only processes that still are the
 * ones recorded (same pid and start time) are stopped.
 */
export async function stopLeftChildren(root: string, log: (line: string) => void): Promise<number> {
  const file = join(root, CHILDREN_FILE);
  let records: ChildRecord[] = [];
  try {
    records = JSON.parse(readFileSync(file, 'utf8')) as ChildRecord[];
  } catch {
    // None recorded, or cut short by the kill: nothing known to stop.
  }
  const left = records.filter((r) => typeof r.pid === 'number' && typeof r.start === 'string' && stillRuns(r.pid, r.start));
  await Promise.all(left.map(async (r) => {
    log(`stopping the ${r.name} (pid ${r.pid}) an earlier npm start left running when it was killed`);
    await stopProcess(r.pid, 30_000);
  }));
  rmSync(file, { force: true });
  return left.length;
}

class Interrupted extends Error {}

/**
 * `npm start`: the services on loopback, a demo app with a `production`
 * remote, then the receiver, worker, router and dashboard of Slipway as
 * child processes, until Ctrl-C (or SIGTERM, SIGHUP) stops all of it. A
 * signal while it is still starting, or a failure, stops what was started
 * too: nothing of Slipway's outlives this process.
 */
export async function up(options: { log: (line: string) => void; dir?: string }): Promise<number> {
  ignoreClosedOutput();
  const { log } = options;
  const root = resolve(options.dir ?? '.slipway');
  mkdirSync(root, { recursive: true });
  let claim: { release(): void };
  try {
    claim = claimStart(root);
  } catch (err) {
    if (!(err instanceof AlreadyRunningError)) throw err;
    log(err.message);
    return 1;
  }
  // This start holds the directory now: whatever processes an earlier one recorded are that killed start's.
  await stopLeftChildren(root, log).catch((err: Error) => log(`could not stop what an earlier npm start left running: ${err.message}`));
  const stopSignal = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopSignal.signal.aborted) log(`${signal}: still stopping…`);
    else stopSignal.abort();
  };
  for (const signal of STOP_SIGNALS) process.on(signal, onSignal);
  const interrupted = new Promise<void>((done) => stopSignal.signal.addEventListener('abort', () => done(), { once: true }));
  const checkpoint = () => {
    if (stopSignal.signal.aborted) throw new Interrupted();
  };

  const children: Array<[string, RunningProcess]> = [];
  const servers: GitHttpServer[] = [];
  let stack: StackState | undefined;
  let code = 0;
  try {
    const stackDir = join(root, 'stack');
    // Two tiers, so that no deploy resets a client's keep-alive connection; one when the
    // repository's path is too long for the back's unix sockets (107 bytes).
    const twoTiers = Buffer.byteLength(join(frontSocketDir(stackDir), `slipway-${DEMO_APP}.sock`)) <= MAX_SOCKET_PATH;
    if (!twoTiers) log(`${stackDir} is too long a path for nginx's unix sockets: one nginx tier, whose reloads reset idle keep-alive connections`);
    // The demo's nginx files of an earlier run route to its containers, which every stop removes; loaded
    // by the nginx started below, they would listen on the demo's port (8080) and move it elsewhere.
    for (const tier of ['back', 'front'] as const) rmSync(join(stackConfDir(stackDir, tier), `slipway-${DEMO_APP}.conf`), { force: true });
    stack = await startStack({ dir: stackDir, log, services: twoTiers ? [...ALL_SERVICES, 'front'] : ALL_SERVICES });
    // An nginx a killed start left running, taken up here, still has those files loaded: it reads its config again
    // without them, so the demo's port is free for this start. The killed start's containers go too.
    for (const tier of [stack.nginx, stack.front]) {
      if (tier) await runCommand(tier.reloadCmd).catch((err: Error) => log(`could not reload ${tier.mainConf}: ${err.message}`));
    }
    await removeDemoContainers();
    checkpoint();
    await ensureBaseImage();
    checkpoint();
    const shown = await startSlipway(root, stack, { children, servers }, stopSignal.signal, log);
    checkpoint();
    console.log(shown);
    await interrupted;
  } catch (err) {
    if (!(err instanceof Interrupted)) {
      log(`could not start: ${(err as Error).message}`);
      code = 1;
    }
  } finally {
    log('stopping…');
    for (const [, child] of children) await child.stop('SIGTERM', 30_000);
    rmSync(join(root, CHILDREN_FILE), { force: true });
    for (const server of servers) await server.close();
    // The demo app's containers go too; the next start deploys it again.
    await removeDemoContainers();
    if (stack) await stopStack(stack, log);
    for (const signal of STOP_SIGNALS) process.off(signal, onSignal);
    claim.release();
  }
  return code;
}

/** Removes the demo app's containers (by label), whichever start made them; none there is fine, as is no Docker engine. */
async function removeDemoContainers(): Promise<void> {
  const docker = new Docker();
  for (const c of await docker.listContainers({ all: true, filters: { label: [`slipway.app=${DEMO_APP}`] } }).catch(() => [])) {
    await docker.getContainer(c.Id).remove({ force: true }).catch(() => {});
  }
}

/**
 * The demo app's repository in `demo` (what Slipway clones) and its
 * working copy, made whole or made again: a first start killed while it
 * made them left a repository without `master`, or no working copy, and
 * every later start would have failed on it. Returns the working copy.
 */
export async function ensureDemoRepo(demo: string): Promise<string> {
  const bare = join(demo, `${DEMO_APP}.git`);
  const work = join(demo, `${DEMO_APP}-work`);
  if (!(await runCommand(['git', '--git-dir', bare, 'rev-parse', '--verify', '-q', 'refs/heads/master']).then(() => true, () => false))) {
    for (const dir of [bare, work]) rmSync(dir, { recursive: true, force: true });
    await createFixtureRepo(demo, { version: 'hello from Slipway v1', name: DEMO_APP });
  } else if (!existsSync(join(work, '.git'))) {
    rmSync(work, { recursive: true, force: true });
    // Its branch by name, whatever the bare repository's HEAD names.
    await git(demo, 'clone', '-q', '-b', 'master', bare, work);
  }
  return work;
}

/** The demo app, its config, Slipway's processes and the first deploy; returns what to print. */
async function startSlipway(
  root: string,
  stack: StackState,
  started: { children: Array<[string, RunningProcess]>; servers: GitHttpServer[] },
  signal: AbortSignal,
  log: (line: string) => void,
): Promise<string> {
  const { children, servers } = started;
  const bin = (name: string) => resolve('node_modules/.bin', name);

  // The demo app: its repository (what Slipway clones), a working copy to edit, a production remote.
  const demo = join(root, 'demo');
  mkdirSync(demo, { recursive: true });
  const work = await ensureDemoRepo(demo);
  // The printed `git commit` must work on a machine whose git knows no user yet.
  if (!(await runCommand(['git', 'config', 'user.email'], { cwd: work }).catch(() => null))) {
    await runCommand(['git', 'config', 'user.name', 'Slipway demo'], { cwd: work });
    await runCommand(['git', 'config', 'user.email', 'demo@slipway.invalid'], { cwd: work });
  }
  // The demo's "forge": its repository over git's smart HTTP, so that Slipway clones it as it
  // would from GitHub, and a push webhook naming that URL (signed with the demo's secret) deploys.
  const forge = await startGitHttpServer({ root: demo, mount: 'demo', port: await portNear(9080) });
  servers.push(forge);
  const repoUrl = `${forge.url}/demo/${DEMO_APP}.git`;
  const appPort = await portNear(8080);
  const receiverPort = await portNear(3000);
  const dashboardPort = await portNear(3001);
  // The dashboard's sign-in token and the webhook secret: made once, kept with the demo.
  const token = keptSecret(join(root, 'dashboard-token'));
  const secret = keptSecret(join(root, 'webhook-secret'));
  const configFile = join(root, 'slipway.yml');
  writeFileSync(configFile, JSON.stringify({
    redis: stack.redis!.url,
    etcd: [stack.etcd!.url],
    workdir: join(root, 'work'),
    receiver: { host: '127.0.0.1', port: receiverPort, metrics: `127.0.0.1:${await portNear(3003)}` },
    worker: { metrics: `127.0.0.1:${await portNear(3002)}` },
    // A local demo keeps its secrets in its own 0600 config; production configs use ${VAR}.
    dashboard: { host: '127.0.0.1', port: dashboardPort, token },
    nginx: {
      conf_dir: stack.nginx!.confDir, check_cmd: stack.nginx!.checkCmd, reload_cmd: stack.nginx!.reloadCmd,
      // Clients connect to the front, which deploys never reload; the stack's nginx behind it does the switching.
      ...(stack.front ? { front: { conf_dir: stack.front.confDir, check_cmd: stack.front.checkCmd, reload_cmd: stack.front.reloadCmd, socket_dir: stack.front.socketDir } } : {}),
    },
    apps: {
      [DEMO_APP]: {
        repo: repoUrl,
        secret,
        replicas: 2, port: 8080, listen: `127.0.0.1:${appPort}`, drain_s: 2, stop_timeout_s: 5,
      },
    },
  }, null, 2), { mode: 0o600 });
  const production = join(demo, 'production.git');
  await runCommand([bin('slipway'), '--config', configFile, 'remote', 'add', DEMO_APP, production]);
  await git(work, 'remote', 'remove', 'production').catch(() => {});
  await git(work, 'remote', 'add', 'production', production);

  const env = { SLIPWAY_CONFIG: configFile };
  const start = (name: string, argv: string[]) => {
    // Its output goes to the terminal; only its end is kept (the stack runs for days).
    const child = startProcess(argv, { env, keepChars: 64 * 1024 });
    children.push([name, child]);
    recordChildren(root, children);
    child.child.stdout!.on('data', (chunk: Buffer) => process.stderr.write(prefixLines(name, chunk)));
    child.child.stderr!.on('data', (chunk: Buffer) => process.stderr.write(prefixLines(name, chunk)));
  };
  start('receiver', [bin('slipway-receiver'), '--config', configFile]);
  start('worker', [bin('slipway-worker'), '--config', configFile]);
  start('router', [bin('slipway'), '--config', configFile, 'router']);
  start('dashboard', [bin('slipway-dashboard'), '--config', configFile]);

  log('deploying the demo app…');
  const first = await runCommand([bin('slipway'), '--config', configFile, 'deploy', DEMO_APP, '--wait'], { timeoutMs: FIRST_DEPLOY_MS, signal })
    .then(() => null, (err: Error) => err.message);
  // The launcher by its path: `npx slipway` outside the repository would offer to fetch a package of that name.
  const slipway = `${shellWord(bin('slipway'))} --config ${shellWord(configFile)}`;
  if (first !== null && !signal.aborted) log(`the first deploy of ${DEMO_APP} failed (see its log with: ${slipway} logs <job>): ${first}`);
  // Slipway stays up, to show that deploy's log and take the push that fixes it; but the app is not there yet.
  const status = first === null ? 'Slipway is up.' : `Slipway is up, but the first deploy of ${DEMO_APP} FAILED (above): its URL answers once a push deploys it.`;

  const next = nextVersion(join(work, 'www', 'index.html'));
  const index = shellWord(join(work, 'www', 'index.html'));
  const cd = shellWord(work);
  return `
${status}
  Redis     ${stack.redis!.url}
  etcd      ${stack.etcd!.url}
  nginx     ${stack.front ? `${stack.front.mainConf} (the front, which clients connect to and deploys never reload; Slipway writes ${stack.front.confDir})
            ${stack.nginx!.mainConf} (the back, behind it on unix sockets in ${stack.front.socketDir}; Slipway writes ${stack.nginx!.confDir})` : `${stack.nginx!.mainConf} (Slipway writes ${stack.nginx!.confDir})`}
  Docker    ${stack.docker!.host}
  receiver  http://127.0.0.1:${receiverPort}/hooks/{github,gitea,gitlab}  (webhook secret: apps.${DEMO_APP}.secret in the config)
  dashboard http://127.0.0.1:${dashboardPort}/  (sign-in token: cat ${shellWord(join(root, 'dashboard-token'))})
  config    ${configFile}
  repo      ${repoUrl}  (the demo's bare repository ${join(demo, `${DEMO_APP}.git`)}, served over HTTP)

Three things to try:
  1. push to deploy:  echo "hello v${next}" > ${index} && git -C ${cd} commit -qam v${next} && git -C ${cd} push production master && git -C ${cd} push -q origin master
  2. open the app:    curl http://127.0.0.1:${appPort}/
  3. see the jobs:    ${slipway} jobs

Ctrl-C stops everything.`;
}

/** The version after the one the demo's working copy holds (`… v2` → 3), so the printed push always changes something. */
function nextVersion(indexFile: string): number {
  const current = /v(\d+)\s*$/.exec(existsSync(indexFile) ? readFileSync(indexFile, 'utf8') : '');
  return current ? Number(current[1]) + 1 : 2;
}

/** A path as one word of a shell line a user copies: quoted only when it has to be. */
function shellWord(path: string): string {
  return /^[\w@%+=:,./-]+$/.test(path) ? path : `'${path.replaceAll("'", "'\\''")}'`;
}

function prefixLines(name: string, chunk: Buffer): string {
  return chunk.toString().split('\n').filter(Boolean).map((line) => `[${name}] ${line}\n`).join('');
}
