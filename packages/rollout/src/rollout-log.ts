import type { AppConfig } from '@slipway/config/types';
import type { AppContainer } from './container-runtime.js';
import type { DrainResult } from './drain-connections.js';
import type { PreparedRoute } from './route-proxy.js';
import type { ReleaseRecord } from './release-store.js';

/*
 * What a rollout says in the job log, one function per line, kept apart
 * from the steps that say it (execute-rollout.ts) so that either can be
 * read without the other. The job log is what a user reads live.
 */

const s = (n: number, one = '', many = 's') => (n === 1 ? one : many);
const short = (id: string) => id.slice(0, 12);
const headline = (err: unknown) => (err as Error).message.split('\n', 1)[0];

export const rolloutLog = {
  begin: (app: AppConfig, image: string, sha: string | null, job: string) =>
    `rollout of ${app.name}: image ${image}${sha ? ` (commit ${sha})` : ''}, job ${job}, ${app.replicas} replica${s(app.replicas)}`,

  serving: (serving: readonly AppContainer[], previous: ReleaseRecord | null) => (serving.length > 0
    ? `serving now: ${serving.map((c) => `${short(c.id)} (${c.address ?? c.state})`).join(', ')}${previous ? `, release ${previous.job} (${previous.image})` : ''}`
    : 'nothing serving yet: first release'),

  removedStray: (id: string) => `removed stray container ${short(id)}`,

  registrar: (app: string, holder: string) => `registrar: ${app} is served by ${holder}`,

  addresses: (pool: string, addresses: readonly string[], port: number) => `addresses from ${pool}: ${addresses.join(', ')} (port ${port})`,

  started: (id: string, name: string, address: string | null) => `started ${short(id)} (${name}) on ${address ?? 'no address: it stopped at once'}`,

  prepared: (prepared: PreparedRoute, count: number) => {
    if (prepared.fileChanged !== undefined) {
      return prepared.fileChanged ? 'nginx: the app\'s file changes (first deploy or configuration change); the candidate passed check_cmd' : 'nginx: the app\'s file stays as it is (routing: dns)';
    }
    return prepared.changed ? `nginx: candidate config for ${count} address${s(count, '', 'es')} passed check_cmd` : 'nginx: config already routes to the new set';
  },

  switched: (prefix: string, added: readonly string[], removed: number, lease: { id: string; ttlS: number } | undefined, job: string) =>
    `etcd: switched ${prefix}/ to ${added.join(', ')} (removed ${removed} key${s(removed)})`
    + `${lease ? ` on lease ${lease.id} (${lease.ttlS} s) for the registrar to take over` : ''} and recorded release ${job}`,

  applyFailed: (err: unknown) => `nginx: apply failed, reverting the etcd switch: ${headline(err)}`,

  revertFailed: (err: unknown) => `could not revert the etcd switch: ${(err as Error).message}; the new containers stay, since etcd names them (nginx went back to the previous ones); the next deploy, or \`slipway router --once\` once etcd answers, settles it`,

  revertRaced: () => 'did not revert the etcd switch: the release changed meanwhile, or this rollout lost the app\'s lock (another may have taken it); the new containers stay, as etcd names them',

  drainingStrays: (busy: readonly string[]) => `strays still carry connections (${busy.join(', ')}; a rollout that lost the app's lock may be draining them): drained before they go`,
  routingAsEtcd: (routed: readonly string[], keyed: readonly string[]) => `nginx still routes to ${routed.length ? routed.join(', ') : 'nothing'} while etcd names ${keyed.join(', ')} (a switch whose nginx file was never put in place): nginx is brought to etcd's set`,
  drainingUnrouted: (addresses: readonly string[]) => `draining the strays before they go (${addresses.join(', ')}): nginx routed to them until the reload that caught it up just now`,
  drainingReverted: (addresses: readonly string[]) => `draining the new containers before they go (${addresses.join(', ')}): a router may have routed to them before the revert`,

  applied: (applied: Awaited<ReturnType<PreparedRoute['commit']>>) => {
    if (applied.dnsMs !== undefined) {
      return `dns: the DNS server answers the new set ${applied.dnsMs} ms after the switch; `
        + `${applied.reloaded ? 'nginx file written and reloaded once (first deploy or configuration change)' : 'nginx not reloaded (its file does not depend on the containers)'}`;
    }
    return applied.reloaded
      ? `nginx: reloaded; old workers stopped accepting after ${applied.ms} ms${applied.confirmed ? '' : ' (assumed: workers not observable)'}`
      : `nginx: already applied by the router (waited ${applied.ms} ms for its reload)`;
  },

  drained: (drain: DrainResult, timeoutMs: number) => {
    const settle = drain.settleMs ? `waited ${(drain.settleMs / 1000).toFixed(1)} s for nginx's resolver caches, then ` : '';
    return settle + (drain.drained
      ? `drained: connections closed after ${(drain.ms / 1000).toFixed(1)} s`
      : `drained: drain_s (${timeoutMs / 1000} s) elapsed with ${drain.open} connection${s(drain.open)} open (${Object.entries(drain.openBy).map(([a, n]) => `${a}: ${n}`).join(', ')})`);
  },

  stopped: (id: string, ms: number) => `stopped and removed ${short(id)} in ${(ms / 1000).toFixed(1)} s`,

  notStopped: (id: string, err: unknown) => `could not stop ${short(id)}: ${(err as Error).message}; the next rollout removes it`,

  handedOver: (waited: { left: number; ms: number }, timeoutMs: number) => (waited.left === 0
    ? `registrar took over the keys${waited.ms > 0 ? ` (waited ${waited.ms} ms)` : ''}`
    : `registrar has not taken over ${waited.left} key${s(waited.left)} within ${timeoutMs} ms; they expire with the switch's lease unless it does`),

  pruned: (pruned: number, kept: number) => `release history: dropped ${pruned} entr${s(pruned, 'y', 'ies')} beyond the newest ${kept}`,
  imagesPruned: (tags: readonly string[]) => `removed ${tags.length} image${s(tags.length, '', 's')} no kept release uses: ${tags.join(', ')}`,

  done: (app: string, job: string, addresses: readonly string[], ms: number) => `done: ${app} serves release ${job} from ${addresses.join(', ')} (${(ms / 1000).toFixed(1)} s)`,

  removedNew: (id: string) => `removed new container ${short(id)}`,

  notRemovedNew: (id: string, err: unknown) => `could not remove new container ${short(id)} (${(err as Error).message}); the next rollout removes it as a stray`,
};
