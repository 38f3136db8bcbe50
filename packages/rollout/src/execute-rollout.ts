import { scrubSecrets } from '@slipway/core/logger';
import { UnavailableError } from '@slipway/core/slipway-error';
import type { ContainerRuntime } from './container-runtime.js';
import { drainConnections, type DrainResult } from './drain-connections.js';
import { etcdKeys } from '@slipway/etcd/keys';
import { RELEASES_KEPT } from './etcd-release-store.js';
import { planRollout } from './plan-rollout.js';
import type { ReleaseStore, RouteLease, SwitchReceipt } from './release-store.js';
import type { PreparedRoute, RouteProxy } from './route-proxy.js';
import { allocateAddresses } from './address-pool.js';
import { publishOn } from './container-spec.js';
import { CancelledError, RegistrarUnavailableError } from './rollout-errors.js';
import type { RolloutRequest, RolloutResult } from './rollout-types.js';
import { startReplicas, type StartedContainer } from './start-replicas.js';
import { waitHealthy } from './wait-healthy.js';

/** The three seams a rollout works through (STYLE.md: seams, not mocks). */
export interface RolloutSeams {
  runtime: ContainerRuntime;
  store: ReleaseStore;
  proxy: RouteProxy;
}

const SECRET_NAME = /SECRET|TOKEN|PASSWORD|PASSWD|PASS|KEY|CREDENTIAL|DSN|DATABASE_URL|AUTH/i;

/**
 * The thin executor: takes the lock, reads the current state, plans, and
 * applies the plan's steps through the seams. Until the etcd switch, any
 * failure (or the signal) removes the new containers and leaves everything
 * as it was; an nginx apply that fails after the switch reverts the switch.
 * After that nothing aborts: drain and stop problems are logged, not thrown.
 */
export async function executeRollout(seams: RolloutSeams, request: RolloutRequest): Promise<RolloutResult> {
  const { runtime, store, proxy } = seams;
  const { app, image, sha, job } = request;
  const log = request.log ?? (() => {});
  const onStep = request.onStep ?? (() => {});
  const secrets = Object.entries(app.env).filter(([name]) => SECRET_NAME.test(name)).map(([, value]) => value);
  const scrub = (text: string) => scrubSecrets(text, secrets);
  const t0 = Date.now();
  const timings = { lock: 0, plan: 0, start: 0, health: 0, switch: 0, drain: 0, stop: 0, total: 0 };
  const cancelled = (step: string) => {
    if (request.signal?.aborted) throw new CancelledError(step);
  };

  log(`rollout of ${app.name}: image ${image}${sha ? ` (commit ${sha})` : ''}, job ${job}, ${app.replicas} replica${app.replicas === 1 ? '' : 's'}`);
  cancelled('the start');
  const lock = await store.lock(app.name, { job, signal: request.signal, log, waitMs: request.lockWaitMs, ttlS: request.lockTtlS });
  timings.lock = Date.now() - t0;

  const started: StartedContainer[] = [];
  let prepared: PreparedRoute | undefined;
  let receipt: SwitchReceipt | undefined;
  let switched = false;
  let routeLease: RouteLease | undefined;
  try {
    const [containers, upstreams, routed, previous] = await Promise.all([
      runtime.listAppContainers(app.name, app.port), store.upstreams(app.etcd_prefix), proxy.routed(app), store.currentRelease(app.name),
    ]);
    const plan = planRollout({ containers, upstreams, routed, releaseJob: previous?.job ?? null }, { app, image, sha, release: job, addressPool: request.dns?.address_pool });
    log(plan.serving.length > 0
      ? `serving now: ${plan.serving.map((c) => `${c.id.slice(0, 12)} (${c.address ?? c.state})`).join(', ')}${previous ? `, release ${previous.job} (${previous.image})` : ''}`
      : 'nothing serving yet: first release');
    plan.notes.forEach((note) => log(note));
    // `at` is when it goes live: set at the switch.
    const release = { sha, image, job, at: '' };
    const result: RolloutResult = {
      app: app.name, release, previous, containers: [], stopped: [], strays: plan.strays.map((c) => c.id), leftovers: [], drain: null, timings,
    };
    timings.plan = Date.now() - t0 - timings.lock;
    let mark = Date.now();
    const phase = (name: keyof typeof timings) => {
      timings[name] += Date.now() - mark;
      mark = Date.now();
    };

    for (const step of plan.steps) {
      switch (step.kind) {
        case 'remove-strays':
          for (const id of step.ids) {
            await runtime.forceRemove(id);
            log(`removed stray container ${id.slice(0, 12)}`);
          }
          phase('plan');
          break;
        case 'check-registrar': {
          const holder = await store.registrar(app.name);
          if (holder === null) throw new RegistrarUnavailableError(app.name);
          log(`registrar: ${app.name} is served by ${holder}`);
          phase('plan');
          break;
        }
        case 'start': {
          cancelled('the start');
          onStep('start');
          const base = { runtime, app: app.name, port: step.port, started, log };
          if (step.addressPool === undefined) {
            await startReplicas({ ...base, specs: Array.from({ length: step.replicas }, () => step.spec) });
          } else {
            // Allocate and create under one lock: the next allocation (any app, any worker) sees these containers' labels.
            const poolLock = await store.addressLock({ job, signal: request.signal, log, ttlS: request.lockTtlS });
            try {
              const addresses = allocateAddresses(step.addressPool, await runtime.addressesInUse(), step.replicas);
              log(`addresses from ${step.addressPool}: ${addresses.join(', ')} (port ${step.port})`);
              await startReplicas({ ...base, specs: addresses.map((address) => publishOn(step.spec, step.port, address)) });
            } finally {
              await poolLock.release();
            }
          }
          phase('start');
          break;
        }
        case 'health': {
          cancelled('the start');
          onStep('health');
          // The first failure stops the other probes: no point waiting for them.
          const stopProbes = new AbortController();
          const signal = request.signal ? AbortSignal.any([request.signal, stopProbes.signal]) : stopProbes.signal;
          const probes = started.map((container) => waitHealthy({
            runtime, container, path: step.path, timeoutMs: step.timeoutMs, intervalMs: step.intervalMs, signal, log, scrub,
          }).catch((err: unknown) => {
            stopProbes.abort();
            throw err;
          }));
          const outcomes = await Promise.allSettled(probes);
          const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected' && !(o.reason instanceof CancelledError && !request.signal?.aborted));
          if (failure) throw failure.reason;
          phase('health');
          break;
        }
        case 'check-proxy':
          cancelled('the health check');
          onStep('switch');
          prepared = await proxy.prepare(app, started.map((c) => c.address!));
          if (prepared.fileChanged !== undefined) {
            log(prepared.fileChanged ? 'nginx: the app\'s file changes (first deploy or configuration change); the candidate passed check_cmd' : 'nginx: the app\'s file stays as it is (routing: dns)');
          } else {
            log(prepared.changed ? `nginx: candidate config for ${started.length} address${started.length === 1 ? '' : 'es'} passed check_cmd` : 'nginx: config already routes to the new set');
          }
          break;
        case 'switch': {
          cancelled('the switch');
          if (lock.lost) throw new UnavailableError('etcd', `lost the rollout lock of ${app.name} (etcd unreachable for longer than its lease); nothing was switched`);
          const add = Object.fromEntries(started.map((c) => [etcdKeys.upstream(step.prefix, c.id), c.address!]));
          if (step.leaseTtlS !== undefined) routeLease = await store.routeLease(step.leaseTtlS);
          release.at = new Date().toISOString();
          receipt = await store.switchRelease({ app: app.name, remove: upstreams, add, release, lock, leaseId: routeLease?.id });
          switched = true;
          log(`etcd: switched ${step.prefix}/ to ${Object.values(add).join(', ')} (removed ${upstreams.length} key${upstreams.length === 1 ? '' : 's'})`
            + `${routeLease ? ` on lease ${routeLease.id} (${step.leaseTtlS} s) for the registrar to take over` : ''} and recorded release ${job}`);
          break;
        }
        case 'apply-proxy': {
          let applied;
          try {
            applied = await prepared!.commit();
          } catch (err) {
            log(`nginx: apply failed, reverting the etcd switch: ${(err as Error).message.split('\n', 1)[0]}`);
            switched = false;
            await store.revertSwitch(receipt!).catch((revertErr: Error) => log(`could not revert the etcd switch: ${revertErr.message}; run \`slipway router --once\` once etcd answers`));
            throw err;
          }
          if (applied.dnsMs !== undefined) {
            log(`dns: the DNS server answers the new set ${applied.dnsMs} ms after the switch; `
              + `${applied.reloaded ? 'nginx file written and reloaded once (first deploy or configuration change)' : 'nginx not reloaded (its file does not depend on the containers)'}`);
          } else {
            log(applied.reloaded
              ? `nginx: reloaded; old workers stopped accepting after ${applied.ms} ms${applied.confirmed ? '' : ' (assumed: workers not observable)'}`
              : `nginx: already applied by the router (waited ${applied.ms} ms for its reload)`);
          }
          result.containers = started.map((c) => ({ id: c.id, address: c.address! }));
          phase('switch');
          break;
        }
        case 'drain':
          onStep('drain');
          result.drain = await drainConnections(step.addresses, step.timeoutMs, { settleMs: step.settleMs });
          log(drainLine(result.drain, step.timeoutMs));
          phase('drain');
          break;
        case 'stop':
          await Promise.all(step.ids.map(async (id) => {
            const s = Date.now();
            try {
              await runtime.stopAndRemove(id, step.timeoutS);
              result.stopped.push(id);
              log(`stopped and removed ${id.slice(0, 12)} in ${((Date.now() - s) / 1000).toFixed(1)} s`);
            } catch (err) {
              result.leftovers.push(id);
              log(`could not stop ${id.slice(0, 12)}: ${(err as Error).message}; the next rollout removes it`);
            }
          }));
          phase('stop');
          break;
        case 'hand-over': {
          const waited = await handOver(routeLease!, step.prefix, step.timeoutMs);
          log(waited.left === 0
            ? `registrar took over the keys${waited.ms > 0 ? ` (waited ${waited.ms} ms)` : ''}`
            : `registrar has not taken over ${waited.left} key${waited.left === 1 ? '' : 's'} within ${step.timeoutMs} ms; they expire with the switch's lease unless it does`);
          break;
        }
      }
    }
    if (!plan.steps.some((s) => s.kind === 'drain')) onStep('drain');
    const pruned = await store.pruneReleases(app.name, RELEASES_KEPT).catch(() => 0);
    if (pruned > 0) log(`release history: dropped ${pruned} entr${pruned === 1 ? 'y' : 'ies'} beyond the newest ${RELEASES_KEPT}`);
    timings.total = Date.now() - t0;
    log(`done: ${app.name} serves release ${job} from ${result.containers.map((c) => c.address).join(', ')} (${(timings.total / 1000).toFixed(1)} s)`);
    onStep('done');
    return result;
  } catch (err) {
    if (!switched) {
      await prepared?.discard().catch(() => {});
      await removeStarted(runtime, started, log);
    }
    throw err;
  } finally {
    // Never revoked: keys the registrar has not taken over yet (or restored by a revert) must outlive the rollout.
    routeLease?.release();
    await lock.release();
  }
}

/** Waits until no key under `prefix/` is on the switch's lease any more: the registrar renews them on its own leases. */
async function handOver(lease: RouteLease, prefix: string, timeoutMs: number): Promise<{ left: number; ms: number }> {
  const started = Date.now();
  for (;;) {
    const left = await lease.keysOnLease(prefix).catch(() => -1);
    if (left === 0 || Date.now() - started >= timeoutMs) return { left, ms: Date.now() - started };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function removeStarted(runtime: ContainerRuntime, started: readonly StartedContainer[], log: (line: string) => void): Promise<void> {
  await Promise.all(started.map(async ({ id }) => {
    try {
      await runtime.forceRemove(id);
      log(`removed new container ${id.slice(0, 12)}`);
    } catch (err) {
      log(`could not remove new container ${id.slice(0, 12)} (${(err as Error).message}); the next rollout removes it as a stray`);
    }
  }));
}

function drainLine(drain: DrainResult, timeoutMs: number): string {
  const settle = drain.settleMs ? `waited ${(drain.settleMs / 1000).toFixed(1)} s for nginx's resolver caches, then ` : '';
  return settle + (drain.drained
    ? `drained: connections closed after ${(drain.ms / 1000).toFixed(1)} s`
    : `drained: drain_s (${timeoutMs / 1000} s) elapsed with ${drain.open} connection${drain.open === 1 ? '' : 's'} open (${Object.entries(drain.openBy).map(([a, n]) => `${a}: ${n}`).join(', ')})`);
}
