import { readFile } from 'node:fs/promises';
import type Docker from 'dockerode';
import type { Etcd3 } from 'etcd3';
import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import { etcdKeys, readAppsKeys, type AppKeys, type UpstreamKey, type Upstreams } from '@slipway/etcd/keys';
import { compareIps, dnsNames, renderDnsNginxConf, resolveHost } from '@slipway/router/dns';
import { backListen, nginxNames, reloadSignalledFor, renderedUpstreams, renderFrontConf, renderNginxConf, routeSnapshot } from '@slipway/router/nginx';
import { LABELS } from '@slipway/core/docker';
import { DockerRuntime, type AppContainer } from './container-runtime.js';
import { probe } from './health.js';
import { ofLiveDnsRelease } from './plan-rollout.js';
import { SwarmRuntime } from './swarm/swarm-service.js';
import { parseReleaseRecord, type ReleaseRecord } from './release-store.js';

/** One element of `slipway status --json` (the CLI contract, docs/contracts.md). */
export interface AppStatus {
  app: string;
  release: ReleaseRecord | null;
  /** On a swarm each is a task of the app's services, with its node's address and its service's name; null on one engine. */
  containers: Array<{ id: string; address: string | null; healthy: boolean; node: string | null; service: string | null }>;
  upstreams: string[];
  nginx: { file: string; inSync: boolean };
  /** Differences between Docker, etcd and nginx, one sentence each; empty when all agree. */
  drift: string[];
}

export interface AppStatusOptions {
  app: AppConfig;
  nginx: SlipwayConfig['nginx'];
  docker: Docker;
  etcd: Etcd3;
  /** The configuration's `dns` settings; without them a routing: dns app's file is only required to exist. */
  dns?: SlipwayConfig['dns'];
  /** engine.type: swarm: a client of the manager (managerClient); the app's tasks are read there instead of `docker`'s containers. */
  manager?: Docker;
  /** The app's containers, already listed with those of other apps (appStatuses); otherwise listed here. */
  containers?: Promise<AppContainer[]>;
  /** The app's upstream keys and release, already read with those of other apps (appStatuses); otherwise read here. */
  keys?: Promise<AppKeys>;
}

const STATUS_PROBE_MS = 1_000;

type CheckedContainer = AppContainer & { healthy: boolean; node: string | null; service: string | null };

/**
 * Reads Docker (containers by label, each probed once on its health path),
 * etcd (upstream keys, release) and the nginx file, and says where they
 * disagree. For a routing: dns app, pass `dns`: the file is compared with
 * the dns rendering and the DNS answer with the keys (without it the file
 * is only required to exist). Throws UnavailableError when etcd or Docker
 * cannot be reached.
 */
export async function appStatus(options: AppStatusOptions): Promise<AppStatus> {
  const { app, nginx } = options;
  const file = nginxNames.path(nginx.conf_dir, app.name);
  const [listed, { upstreams, release: stored }, live] = await Promise.all([
    options.containers ?? (options.manager ? swarmContainers(options.manager, app) : new DockerRuntime(options.docker).listAppContainers(app.name, app.port)),
    options.keys ?? readAppsKeys(options.etcd, [keyed(app)]).then((all) => all.get(app.name)!),
    readFile(file, 'utf8').catch(() => null),
  ]);
  const release = parseReleaseRecord(stored);
  const unreadable = stored !== null && release === null;
  // A job's test step runs in a container of the app's too (labelled with the step): it never serves, and is no leftover of a rollout.
  const containers = listed.filter((c) => c.labels?.[LABELS.step] === undefined);
  const checked = await Promise.all(containers.map(async (c: AppContainer & { node?: string | null; service?: string | null }): Promise<CheckedContainer> => {
    const where = { node: c.node ?? null, service: c.service ?? null };
    if (c.state !== 'running' || c.address === null) return { ...c, ...where, healthy: false };
    const { status = 0 } = await probe(`http://${c.address}${app.health.path}`, STATUS_PROBE_MS);
    return { ...c, ...where, healthy: status >= 200 && status < 300 };
  }));

  const drift = containerDrift(app, checked, upstreams, { routed: new Set(live === null ? [] : renderedUpstreams(live)), releaseJob: release?.job ?? null });
  const inSync = await routingDrift(options, file, live, upstreams.live, drift);
  if (upstreams.live.length === 0 && release) drift.push(`release ${release.job} is recorded but no upstream key is live under ${app.etcd_prefix}/`);
  if (unreadable) drift.push(`the release record ${etcdKeys.release(app.name)} cannot be read (not a release record): what is live is not known from it`);

  return {
    app: app.name,
    release,
    containers: checked.map((c) => ({ id: c.id, address: c.address, healthy: c.healthy, node: c.node, service: c.service })),
    upstreams: upstreams.live.map((u) => u.address),
    nginx: { file, inSync },
    drift,
  };
}

/**
 * appStatus of each of `apps`, a promise each in the same order (one that
 * fails does not hide the others). etcd is read for all of them at once
 * (readAppsKeys) and, on one engine, Docker is asked once for the
 * containers of all of them: per app, those requests were most of what a
 * status of many apps cost.
 */
export function appStatuses(options: Omit<AppStatusOptions, 'app' | 'containers' | 'keys'> & { apps: readonly AppConfig[] }): Array<Promise<AppStatus>> {
  const { apps, ...shared } = options;
  if (apps.length < 2) return apps.map((app) => appStatus({ ...shared, app }));
  const keys = readAppsKeys(shared.etcd, apps.map(keyed));
  const listed = shared.manager ? null : new DockerRuntime(shared.docker).listAppsContainers(new Map(apps.map((app) => [app.name, app.port])));
  return apps.map((app) => appStatus({
    ...shared, app,
    keys: keys.then((all) => all.get(app.name)!),
    containers: listed?.then((all) => all.get(app.name) ?? []),
  }));
}

const keyed = (app: AppConfig) => ({ name: app.name, prefix: app.etcd_prefix });

/**
 * The app's tasks on the swarm that are meant to run, as containers: the
 * task id stands for the container id (the upstream keys are named by it),
 * with its node's address and its service's name.
 */
async function swarmContainers(manager: Docker, app: AppConfig): Promise<Array<AppContainer & { node: string | null; service: string | null }>> {
  const swarm = new SwarmRuntime(manager);
  const [services, tasks] = await Promise.all([swarm.listAppServices(app.name), swarm.appTasks(app.name, app.port)]);
  const names = new Map(services.map((s) => [s.id, s.name]));
  return tasks.filter((t) => t.desiredState === 'running').map((t) => ({
    id: t.id, name: names.get(t.serviceId) ?? t.serviceId, image: services.find((s) => s.id === t.serviceId)?.image ?? '', state: t.state, labels: {},
    address: t.address, node: t.node, service: names.get(t.serviceId) ?? null,
  }));
}

/**
 * Docker against etcd: keys without a healthy container at their address,
 * keys that are no address, containers without a key (each said as the
 * next rollout's planner takes it: drained if nginx routes to it or, with
 * routing: dns, if it is of the live release; else removed).
 */
function containerDrift(app: AppConfig, checked: readonly CheckedContainer[], upstreams: Upstreams, live: { routed: ReadonlySet<string>; releaseJob: string | null }): string[] {
  const drift: string[] = [];
  const byId = new Map(checked.map((c) => [c.id.slice(0, 12), c]));
  for (const u of upstreams.live) {
    const c = byId.get(u.id);
    if (!c) drift.push(`etcd key ${u.key} points to ${u.address}, but container ${u.id} does not exist`);
    else if (c.state !== 'running') drift.push(`etcd key ${u.key} points to container ${u.id}, which is ${c.state}`);
    else if (c.address !== u.address) drift.push(`etcd key ${u.key} says ${u.address}, but container ${u.id} is published on ${c.address}`);
    else if (!c.healthy) drift.push(`live container ${u.id} (${u.address}) fails its health check on ${app.health.path}`);
  }
  for (const u of upstreams.invalid) drift.push(`etcd key ${u.key} holds ${JSON.stringify(u.address.slice(0, 60))}, not a host:port`);
  const keyed = new Set(upstreams.live.map((u) => u.id));
  for (const c of checked) {
    if (keyed.has(c.id.slice(0, 12))) continue;
    const why = c.address !== null && live.routed.has(c.address)
      ? 'nginx still routes to it (a switch whose file or reload did not follow); the next rollout drains it with the others'
      : ofLiveDnsRelease(app, live.releaseJob, c)
        ? `it is of the live release ${live.releaseJob}, not registered yet (the registrar registers it once it answers on ${app.health.path})`
        : 'a leftover of an unfinished rollout (the next rollout removes it)';
    drift.push(`container ${c.id.slice(0, 12)} (${c.address ?? c.state}) is not in etcd: ${why}`);
  }
  return drift;
}

/** With a front tier (`nginx.front`): whether its file for the app is what the configuration renders to; pushes to `drift` when not. */
async function frontInSync(options: AppStatusOptions, drift: string[]): Promise<boolean> {
  const { app, nginx } = options;
  if (!nginx.front) return true;
  const back = backListen(nginx, app.name)!;
  const file = nginxNames.path(nginx.front.conf_dir, app.name);
  const live = await readFile(file, 'utf8').catch(() => null);
  if (live === renderFrontConf(app, back)) return true;
  drift.push(live === null
    ? `front nginx file ${file} does not exist (the next rollout, or \`slipway router --once\`, writes it)`
    : `front nginx file ${file} differs from what the configuration renders to (the next rollout, or \`slipway router --once\`, rewrites it)`);
  return false;
}

/** etcd against what routes traffic (the nginx file; for routing: dns the DNS answer too); pushes to `drift`, returns whether the file is in sync. */
async function routingDrift(options: AppStatusOptions, file: string, live: string | null, keys: readonly UpstreamKey[], drift: string[]): Promise<boolean> {
  const { app } = options;
  let expected: string | null = null;
  try {
    const back = backListen(options.nginx, app.name);
    if (app.routing === 'dns') expected = options.dns ? renderDnsNginxConf({ app, dns: options.dns, back }) : live;
    else expected = keys.length > 0 ? renderNginxConf(await routeSnapshot(app, keys.map((u) => u.address), back)) : null;
  } catch (err) {
    drift.push(`the ${app.routing === 'dns' ? 'configuration does' : 'etcd keys do'} not render: ${(err as Error).message.split('\n', 1)[0]}`);
  }
  const frontOk = await frontInSync(options, drift);
  // The file as it should be, but nginx never asked to read it (a worker stopped between its rename and its reload):
  // nginx still serves what the file said before. (A file that differs is said to differ.)
  const read = live === null || live !== expected || await reloadSignalledFor(options.nginx, file);
  const inSync = live !== null && expected !== null && live === expected && frontOk && read;
  if (app.routing === 'dns' && options.dns && keys.length > 0) {
    const host = dnsNames.host(app.name, options.dns.domain);
    // In the order resolveHost gives (numeric): as text, 127.0.10.10 would sort before 127.0.10.9 and read as drift.
    const keyed = [...new Set(keys.map((u) => u.address.split(':')[0]!))].sort(compareIps);
    const answered = await resolveHost(options.dns.server, host).catch((err: Error) => err.message);
    if (typeof answered === 'string') drift.push(answered);
    else if (answered.join() !== keyed.join()) drift.push(`DNS answers ${host} with ${answered.join(', ') || 'nothing'}, but etcd has ${keyed.join(', ')} (is \`slipway router\` feeding ${options.dns.server}?)`);
  }
  if (live === null) drift.push(`nginx file ${file} does not exist`);
  else if (!read) drift.push(`nginx has not been asked to read ${file} since it was written (a worker stopped between writing it and reloading nginx?): nginx serves what it said before; \`slipway router --once\`, or the next rollout, reloads it`);
  else if (expected === null && app.routing !== 'dns' && keys.length === 0) {
    drift.push(`nginx file ${file} is there, but no upstream key is live under ${app.etcd_prefix}/ to render it from (nginx serves what the file says)`);
  } else if (expected !== null && live !== expected) {
    drift.push(app.routing === 'dns'
      ? `nginx file ${file} differs from what the configuration renders to (the next rollout, or \`slipway router\` at its start, rewrites it)`
      : `nginx file ${file} differs from what the etcd keys render to (\`slipway router --once\` rewrites it)`);
  }
  return inSync;
}
