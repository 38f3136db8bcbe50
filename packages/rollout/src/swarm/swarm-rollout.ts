import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import type { EngineConfig } from '@slipway/config/types';
import { LABELS } from '@slipway/core/docker';
import { scrubSecrets } from '@slipway/core/logger';
import { firstLine, SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { etcdKeys, type UpstreamKey } from '@slipway/etcd/keys';
import type { AppLock } from '../app-lock.js';
import { DockerRuntime, pruneBuiltImages, type ContainerHealthState } from '../container-runtime.js';
import { drainBusyStrays, drainConnections, drainReverted } from '../drain-connections.js';
import { LOG_TAIL_LINES, waitAllHealthy } from '../health.js';
import { RELEASES_KEPT, revertAfterFailedApply, type ReleaseRecord, type ReleaseStore, type SwitchReceipt } from '../release-store.js';
import type { PreparedRoute, RouteProxy } from '../route-proxy.js';
import { blameLockLoss, CancelledError, HealthCheckError, SwitchOutcomeUnknownError } from '../rollout-errors.js';
import { rolloutLog as say } from '../rollout-log.js';
import { imagesToKeep, type RolloutRequest, type RolloutResult } from '../rollout.js';
import { inRegistry, pinInRegistry, publishImage } from './registry-push.js';
import { askManager, imageHasShell, liveEndpoints, serviceSpec, type AppService, type AppTask, type ServiceRuntime, type ServiceSpec } from './swarm-service.js';

/*
 * The deploy story on a swarm: blue/green by service. The new release is a
 * service of its own; its tasks are health-checked by Slipway's probe at
 * `<node address>:<published port>`, the etcd keys switch to them in one
 * transaction, nginx is checked and reloaded, the old tasks drain by
 * observation, and only then is the old service removed. Any failure
 * before the switch removes the new service; the old one keeps serving.
 */

/** How often the new service's tasks are read while they start. */
const TASK_POLL_MS = 250;
/** Rounds of health checks of a release whose tasks stop after passing theirs, before it is taken for one that does not stay up. */
const HEALTH_ROUNDS = 3;
/**
 * Added to `health.timeout_s` for the tasks to be placed, pull the image
 * from the registry and start: a first pull on a node is not the app's
 * fault. Past both, the rollout fails: `health_failed` once a task had
 * started, `docker_error` when none ever did.
 */
export const PULL_ALLOWANCE_MS = 120_000;
/** Failed attempts of one slot (Swarm replaces a task that exits or turns unhealthy) before the release is given up. */
export const MAX_TASK_FAILURES = 2;

/** Why a release's tasks are given up (see tasksVerdict). */
export type TasksVerdict =
  /** A slot's tasks exited or turned unhealthy MAX_TASK_FAILURES times: the app's doing. */
  | { kind: 'failed'; task: AppTask; times: number }
  /** A slot's tasks were rejected by their nodes that often, none having run: the registry, a pull, an engine. */
  | { kind: 'rejected'; task: AppTask; times: number }
  /** A task started, and its health check did not pass within health.timeout_s. */
  | { kind: 'slow'; task: AppTask }
  /** The time ran out with no task of the release ever started: placement, resources or the pull. */
  | { kind: 'unplaced'; task: AppTask | undefined }
  /** The time ran out after some task had started. */
  | { kind: 'late'; task: AppTask | undefined };

/**
 * Whether a release's tasks are given up yet, and why: pure, from the
 * tasks, when each was first seen starting or running (`startedAt`), and
 * the clock. Null while they may still come up.
 */
export function tasksVerdict(tasks: readonly AppTask[], startedAt: ReadonlyMap<string, number>, clock: { now: number; deadline: number; startTimeoutMs: number }): TasksVerdict | null {
  const failed = tasks.filter((t) => ['failed', 'rejected', 'shutdown', 'orphaned'].includes(t.state) && t.desiredState !== 'running' && t.error);
  const bySlot = new Map<number, AppTask[]>();
  for (const t of failed) bySlot.set(t.slot, [...(bySlot.get(t.slot) ?? []), t]);
  const given = [...bySlot.values()].find((list) => list.length >= MAX_TASK_FAILURES);
  if (given) {
    const ran = given.find((t) => t.state !== 'rejected');
    return ran ? { kind: 'failed', task: ran, times: given.length } : { kind: 'rejected', task: given[0]!, times: given.length };
  }
  const slow = tasks.find((t) => t.state === 'starting' && t.desiredState === 'running' && clock.now - startedAt.get(t.id)! > clock.startTimeoutMs);
  if (slow) return { kind: 'slow', task: slow };
  if (clock.now < clock.deadline) return null;
  const task = tasks.find((t) => t.desiredState === 'running' && !t.address) ?? tasks[0];
  return startedAt.size === 0 ? { kind: 'unplaced', task } : { kind: 'late', task };
}

export interface SwarmSeams {
  swarm: ServiceRuntime;
  store: ReleaseStore;
  proxy: RouteProxy;
}

export interface SwarmEngine {
  engine: EngineConfig;
  /** The worker's engine, where the image was built. */
  source: Docker;
  manager: Docker;
}

/** What is there, read under the app's lock. */
export interface SwarmCurrent {
  services: readonly AppService[];
  tasks: readonly AppTask[];
  upstreams: readonly UpstreamKey[];
  /** The addresses nginx's live file routes to (it lags etcd when a worker died between its switch and its file). */
  routed: readonly string[];
  /** The job of the live release, or null. */
  releaseJob: string | null;
}

export interface SwarmPlan {
  /**
   * This job's own service when its release is live already: an earlier
   * attempt of the job switched to it and died before it finished (its
   * worker killed mid-drain). Taken up, not created again (its name is the
   * release's), and neither drained nor removed.
   */
  resume: AppService | null;
  /** Services serving now: removed after the switch and the drain. */
  serving: AppService[];
  /** The app's other services (left by an attempt that died before its switch): removed first. */
  strays: AppService[];
  /** What the old tasks answer on: the current keys and the serving tasks' endpoints, drained after the switch. */
  drain: string[];
  spec: ServiceSpec;
}

/**
 * Whether `service` is the one a rollout of `desired` made, by its name and
 * by what it runs: a job id is a Redis counter's, and a Redis that lost its
 * data counts from 1 again, so a new job may bear the id (and the service
 * name) of the live release of another commit, which is not its own to
 * take up, nor to remove as one it made.
 */
export function isOwnService(service: AppService, name: string, desired: { sha: string | null; image: string }): boolean {
  return service.name === name && (desired.sha ? service.labels[LABELS.sha] === desired.sha : service.image === desired.image);
}

/**
 * Plans a swarm rollout. Pure. A service serves when it is the live
 * release's, when a current key names one of its tasks, or when nginx
 * routes to one of its tasks; any other service of the app is a stray
 * (the lock says no other rollout runs).
 */
export function planSwarmRollout(current: SwarmCurrent, desired: Parameters<typeof serviceSpec>[0]): SwarmPlan {
  const spec = serviceSpec(desired);
  const resume = current.releaseJob === desired.release ? current.services.find((s) => isOwnService(s, spec.Name!, desired)) ?? null : null;
  const ownTasks = new Set(current.tasks.filter((t) => t.serviceId === resume?.id).map((t) => t.id.slice(0, 12)));
  const keyed = new Set(current.upstreams.map((u) => u.id));
  const routed = new Set(current.routed);
  const namedServices = new Set(current.tasks.filter((t) => keyed.has(t.id.slice(0, 12)) || (t.address !== null && routed.has(t.address))).map((t) => t.serviceId));
  // Taking up a release that went live, every other service may still carry requests from before that switch
  // (the attempt died mid-drain): drained and removed after, none removed first as a stray.
  const isServing = (s: AppService) => resume !== null || (current.releaseJob !== null && s.labels[LABELS.release] === current.releaseJob) || namedServices.has(s.id);
  const serving = current.services.filter((s) => s !== resume && isServing(s));
  const servingIds = new Set(serving.map((s) => s.id));
  const drain = new Set([
    ...current.upstreams.filter((u) => !ownTasks.has(u.id)).map((u) => u.address),
    ...liveEndpoints(current.tasks.filter((t) => servingIds.has(t.serviceId))).map((t) => t.address!),
  ]);
  return { resume, serving, strays: current.services.filter((s) => s !== resume && !isServing(s)), drain: [...drain].sort(), spec };
}

/** Task states a task does not leave. */
const ENDED = new Set(['complete', 'shutdown', 'failed', 'rejected', 'orphaned', 'remove']);
/** How long a task Swarm is stopping is watched for how it ends (a failure of its own, or Swarm's doing). */
const SETTLE_MS = 10_000;

const SECRET_NAME = /SECRET|TOKEN|PASSWORD|PASSWD|PASS|KEY|CREDENTIAL|DSN|DATABASE_URL|AUTH/i;

/**
 * A swarm rollout: publish the image to the registry (before the lock:
 * two apps push at once), then under the lock: plan, remove strays,
 * create the service, wait for its tasks, probe, check nginx, switch,
 * apply, drain, remove the old service.
 */
export async function executeSwarmRollout(seams: SwarmSeams, engine: SwarmEngine, request: RolloutRequest): Promise<RolloutResult> {
  const run = new SwarmRun(seams, request);
  run.log(say.begin(request.app, request.image, request.sha, request.job));
  run.checkCancelled('the start');
  const image = await run.publish(engine);
  const shell = await run.lookForShell(engine, image);
  await run.takeLock();
  try {
    const plan = await run.readAndPlan(image, shell);
    await run.deploy(plan);
    return await run.finish(engine);
  } catch (err) {
    await run.undo();
    throw run.blame(err);
  } finally {
    await run.lock?.release();
  }
}

class SwarmRun {
  readonly log: (line: string) => void;
  private readonly onStep: NonNullable<RolloutRequest['onStep']>;
  private readonly scrub: (text: string) => string;
  private readonly t0 = Date.now();
  private readonly timings: RolloutResult['timings'] = { lock: 0, plan: 0, start: 0, health: 0, switch: 0, drain: 0, stop: 0, total: 0, push: 0, pull: 0 };
  lock?: AppLock;
  /** The release's service: created by this attempt (`created`), or taken up from an earlier one (see SwarmPlan.resume). */
  private service?: { id: string; name: string };
  /** The service this rollout asked the manager to create, until it answered. */
  private creating?: string;
  /** Set only when this attempt created the service: what a failure before the switch removes. */
  private created?: { id: string; name: string };
  private tasks: AppTask[] = [];
  private upstreams: UpstreamKey[] = [];
  private prepared?: PreparedRoute;
  private receipt?: SwitchReceipt;
  private switched = false;
  /** etcd neither confirmed nor refused the switch: the new service may be what it names, so it stays. */
  private switchUnknown = false;
  private record!: ReleaseRecord;
  private result!: RolloutResult;

  constructor(private readonly seams: SwarmSeams, private readonly request: RolloutRequest) {
    this.log = request.log ?? (() => {});
    this.onStep = request.onStep ?? (() => {});
    const secrets = Object.entries(request.app.env).filter(([name]) => SECRET_NAME.test(name)).map(([, value]) => value);
    this.scrub = (text) => scrubSecrets(text, secrets);
  }

  checkCancelled(during: string): void {
    if (this.request.signal?.aborted) throw new CancelledError(during);
  }

  blame(err: unknown): unknown {
    return blameLockLoss(this.request.app.name, err, { switched: this.switched, lockLost: this.lock?.lost ?? false });
  }

  /** The registry reference to run, pinned by digest: the image itself when it names the registry already (a rollback), else pushed there. */
  async publish({ engine, source, manager }: SwarmEngine): Promise<string> {
    const began = Date.now();
    const { image, app, sha } = this.request;
    if (inRegistry(image, engine.registry!)) {
      const pinned = await pinInRegistry(manager, image, engine.registry!, engine.registry_auth);
      this.log(`registry: ${pinned === image ? image : `${image} (${pinned.slice(pinned.lastIndexOf('@') + 1)})`} is in the registry already; the nodes pull it`);
      return pinned;
    }
    const published = await publishImage({ source, manager, registry: engine.registry!, auth: engine.registry_auth, app: app.name, image, sha, log: this.log, signal: this.request.signal });
    this.timings.push = Date.now() - began;
    return published.image;
  }

  /** Whether the image has the /bin/sh Docker's health check runs (see ServiceSpecInput.shell): asked of the engine that built it, else the manager. */
  async lookForShell({ source, manager }: SwarmEngine, published: string): Promise<boolean | undefined> {
    const { image, app } = this.request;
    // A rollback's or a take-up's image may be on the manager alone (its registry reference, kept there).
    const shell = await imageHasShell(source, image, app.name).catch(() => undefined)
      ?? await imageHasShell(manager, published, app.name).catch(() => undefined);
    if (shell === false) this.log(`${image} has no /bin/sh: its tasks run without Docker's health check, Slipway's probe alone gating traffic`);
    return shell;
  }

  async takeLock(): Promise<void> {
    const { app, job, signal, lockWaitMs, lockTtlS } = this.request;
    const began = Date.now();
    this.lock = await this.seams.store.lock(app.name, { job, signal, log: this.log, waitMs: lockWaitMs, ttlS: lockTtlS });
    this.timings.lock = Date.now() - began;
  }

  async readAndPlan(image: string, shell: boolean | undefined): Promise<SwarmPlan> {
    const began = Date.now();
    const { swarm, store, proxy } = this.seams;
    const { app, sha, job } = this.request;
    // As on one engine: a service nginx still serves, past a switch whose reload never came, is no stray.
    const caughtUp = await proxy.catchUp(app);
    if (caughtUp) this.log(caughtUp);
    const [services, tasks, upstreams, routed, previous] = await Promise.all([
      swarm.listAppServices(app.name), swarm.appTasks(app.name, app.port), store.upstreams(app.etcd_prefix), proxy.routed(app), store.currentRelease(app.name),
    ]);
    this.upstreams = upstreams;
    const plan = planSwarmRollout({ services, tasks, upstreams, routed, releaseJob: previous?.job ?? null }, { app, image, sha, release: job, shell });
    this.log(plan.serving.length > 0
      ? `serving now: service${plan.serving.length === 1 ? '' : 's'} ${plan.serving.map((s) => s.name).join(', ')} at ${plan.drain.join(', ') || 'no address'}${previous ? `, release ${previous.job} (${previous.image})` : ''}`
      : 'nothing serving yet: first release');
    this.record = { sha, image, job, at: '' };
    this.result = { app: app.name, release: this.record, previous, containers: [], stopped: [], strays: plan.strays.map((s) => s.id), leftovers: [], drain: null, timings: this.timings };
    const strayIds = new Set(plan.strays.map((s) => s.id));
    // nginx routed to them until a reload that caught it up just now: drained in full, as after a switch.
    await drainBusyStrays(liveEndpoints(tasks.filter((t) => strayIds.has(t.serviceId))).map((t) => t.address!), app.drain_s, this.log, caughtUp ? { listen: proxy.listen(app) } : undefined);
    for (const stray of plan.strays) {
      await swarm.removeService(stray.id);
      this.log(`removed stray service ${stray.name} (not live, left by an unfinished rollout)`);
    }
    this.timings.plan = Date.now() - began;
    return plan;
  }

  async deploy(plan: SwarmPlan): Promise<void> {
    const { app } = this.request;
    const { swarm, store, proxy } = this.seams;
    let mark = Date.now();
    const phase = (name: keyof RolloutResult['timings']) => {
      this.timings[name] = (this.timings[name] ?? 0) + Date.now() - mark;
      mark = Date.now();
    };

    this.checkCancelled('the start');
    this.onStep('start');
    const name = plan.spec.Name!;
    if (plan.resume) {
      this.service = { id: plan.resume.id, name };
      this.log(`service ${name} of this job is live already (an earlier attempt switched to it and did not finish): taking it up, not starting it again`);
    } else {
      // Strays are gone by now; a service that serves under this name is not this job's (see isOwnService).
      const taken = plan.serving.find((s) => s.name === name);
      if (taken) {
        throw new SlipwayError('docker_error', `a service named ${name} exists already and runs another ${this.request.sha ? 'commit' : 'image'} (release ${taken.labels[LABELS.release] ?? '?'}): job ids count from 1 again after Redis lost its data, and this job bears the id of an earlier one. Its service was not created (its image is in the registry); deploy again (a new job has a later id)`, { fault: 'slipway' });
      }
      this.creating = name;
      this.service = this.created = { id: await swarm.createService(plan.spec), name };
      this.log(`created service ${name} (${app.replicas} replica${app.replicas === 1 ? '' : 's'} of ${this.record.image}${app.placement.length ? `, placement ${app.placement.join(', ')}` : ''})`);
    }
    try {
      this.tasks = await this.waitForTasks();
      phase('start');

      this.checkCancelled('the start');
      this.onStep('health');
      // A task that passed its probe may stop before the others pass theirs (it crashed, its node was drained): Swarm
      // refills its slot with another task, at another address. The set switched to is the one running now, probed.
      for (let round = 1; ; round++) {
        await waitAllHealthy(this.tasks.map((t) => ({ id: t.id, address: t.address })), {
          runtime: this.healthRuntime(), path: app.health.path, timeoutMs: app.health.timeout_s * 1000, intervalMs: app.health.interval_ms,
          signal: this.request.signal, log: this.log, scrub: this.scrub,
        });
        const gone = await this.tasksGone();
        if (gone.length === 0) break;
        if (round >= HEALTH_ROUNDS) {
          // Its own exits are the release's; tasks Swarm stopped (a node drained or lost) are the cluster's.
          const crashed = gone.find((t) => t.ended === 'failed');
          if (crashed) throw new HealthCheckError(crashed.id, `exited after answering its health check, as tasks of ${name} kept doing (${HEALTH_ROUNDS} rounds): the release does not stay up`, '');
          throw new UnavailableError('swarm', `tasks of ${name} kept being stopped by Swarm after answering their health check (${HEALTH_ROUNDS} rounds: nodes drained or lost?); nothing was switched, and the job is tried again`);
        }
        this.log(`task${gone.length === 1 ? '' : 's'} ${gone.map((t) => t.id.slice(0, 12)).join(', ')} stopped after answering ${gone.length === 1 ? 'its' : 'their'} health check: waiting for the service's tasks again`);
        this.tasks = await this.waitForTasks();
      }
      phase('health');
    } catch (err) {
      // Taken up, the release is what etcd names live already: a task of it failing now (a probe, a slot Swarm is
      // refilling) is not this job's failure, and its predecessor's services must still go. Left as etcd has it.
      if (!plan.resume || err instanceof CancelledError || err instanceof UnavailableError) throw err;
      // ... as long as some task of it runs: with none, it serves nothing, and what served before it stays.
      const running = liveEndpoints(await swarm.appTasks(app.name, app.port, this.service.id).catch(() => []));
      if (running.length === 0) throw err;
      this.switched = true;
      this.log(`the live service ${name} is not whole again (${firstLine(err)}): it stays live as etcd names it (${running.length} task${running.length === 1 ? '' : 's'} running), the router's task watcher following its tasks as Swarm replaces them; what served before it goes`);
      this.result.containers = running.map((t) => ({ id: t.id, address: t.address! }));
      await this.retire(plan, phase);
      return;
    }

    this.checkCancelled('the health check');
    this.onStep('switch');
    const addresses = this.tasks.map((t) => t.address!);
    this.prepared = await proxy.prepare(app, addresses);
    this.log(say.prepared(this.prepared, addresses.length));
    this.checkCancelled('the switch');
    // Once more right before the switch (the candidate's check took a while): never keys for a task that is gone.
    const gone = await this.tasksGone();
    if (gone.length > 0) {
      throw new UnavailableError('swarm', `task${gone.length === 1 ? '' : 's'} ${gone.map((t) => t.id.slice(0, 12)).join(', ')} of ${name} stopped just before the switch; nothing was switched, and the job is tried again`);
    }
    if (this.lock!.lost) throw new UnavailableError('etcd', `lost the rollout lock of ${app.name} (etcd unreachable for longer than its lease); nothing was switched`);
    const add = Object.fromEntries(this.tasks.map((t) => [etcdKeys.upstream(app.etcd_prefix, t.id), t.address!]));
    this.record.at = new Date().toISOString();
    this.request.onSwitching?.();
    try {
      this.receipt = await store.switchRelease({ app: app.name, remove: this.upstreams, add, release: this.record, lock: this.lock! });
    } catch (err) {
      this.switchUnknown = err instanceof SwitchOutcomeUnknownError;
      throw err;
    }
    this.switched = true;
    this.log(say.switched(app.etcd_prefix, Object.values(add), this.upstreams.length, undefined, this.request.job));
    try {
      const applied = await this.prepared.commit();
      this.log(say.applied(applied));
    } catch (err) {
      this.log(say.applyFailed(err));
      // Only once etcd names the previous set again may the new service go (undo); else it is what etcd routes to.
      if (await revertAfterFailedApply(store, this.receipt, this.log)) this.switched = false;
      throw err;
    }
    this.result.containers = this.tasks.map((t) => ({ id: t.id, address: t.address! }));
    phase('switch');
    await this.retire(plan, phase);
  }

  /** After the switch: what served before it drained, then its services removed (one that will not go is left to the next rollout). */
  private async retire(plan: SwarmPlan, phase: (name: keyof RolloutResult['timings']) => void): Promise<void> {
    const { app } = this.request;
    const { swarm } = this.seams;
    this.onStep('drain');
    if (plan.drain.length > 0) {
      this.result.drain = await drainConnections(plan.drain, app.drain_s * 1000, { listen: this.seams.proxy.listen(app) });
      this.log(say.drained(this.result.drain, app.drain_s * 1000));
    }
    phase('drain');

    for (const old of plan.serving) {
      try {
        await swarm.removeService(old.id);
        this.result.stopped.push(old.id);
        this.log(`removed service ${old.name}: Swarm stops its tasks (SIGTERM, ${app.stop_timeout_s} s grace)`);
      } catch (err) {
        this.result.leftovers.push(old.id);
        this.log(`could not remove service ${old.name}: ${(err as Error).message}; the next rollout removes it`);
      }
    }
    phase('stop');
  }

  /**
   * The tasks to be switched to that are no longer running at their address
   * (asked of the manager now), each with the state it ended in, when known.
   */
  private async tasksGone(): Promise<Array<AppTask & { ended: string | null }>> {
    const { app } = this.request;
    const now = await this.seams.swarm.appTasks(app.name, app.port, this.service!.id);
    const running = new Map(liveEndpoints(now).map((t) => [t.id, t.address]));
    return this.tasks.filter((t) => running.get(t.id) !== t.address).map((t) => ({ ...t, ended: now.find((n) => n.id === t.id)?.state ?? null }));
  }

  /**
   * Until every replica has a running task with a published port. A slot
   * whose tasks failed MAX_TASK_FAILURES times (exited, rejected, unhealthy
   * to Docker's check) fails the release at once, quoting the task's error
   * and log; so does the time running out.
   */
  private async waitForTasks(): Promise<AppTask[]> {
    const { app } = this.request;
    const deadline = Date.now() + app.health.timeout_s * 1000 + PULL_ALLOWANCE_MS;
    const seen = new Map<string, string>();
    const startedAt = new Map<string, number>();
    const created = Date.now();
    for (;;) {
      this.checkCancelled('the start');
      const tasks = await this.seams.swarm.appTasks(app.name, app.port, this.service!.id);
      for (const t of tasks) {
        const said = `${t.state}${t.node ? ` on ${t.node}` : ''}${t.address ? ` at ${t.address}` : ''}`;
        if (seen.get(t.id) !== said) {
          this.log(`task ${t.id.slice(0, 12)} (slot ${t.slot}): ${said}${t.error ? `: ${t.error}` : ''}`);
          seen.set(t.id, said);
        }
      }
      // The app's own time starts when its container does: placement and the pull are not its fault.
      for (const t of tasks) if ((t.state === 'starting' || t.state === 'running') && !startedAt.has(t.id)) startedAt.set(t.id, Date.now());
      const live = liveEndpoints(tasks);
      if (live.length >= app.replicas) {
        // Placement and the image pull end when a task starts; the slowest task's is the release's.
        const starts = live.map((t) => startedAt.get(t.id)).filter((at): at is number => at !== undefined);
        if (starts.length > 0) this.timings.pull = Math.max(...starts) - created;
        return live.slice(0, app.replicas);
      }
      const verdict = tasksVerdict(tasks, startedAt, { now: Date.now(), deadline, startTimeoutMs: app.health.timeout_s * 1000 });
      if (verdict) {
        const service = this.service!.name;
        const logTail = async (task: AppTask | undefined) => (task ? this.scrub(await this.seams.swarm.taskLogTail(task.id, LOG_TAIL_LINES).catch(() => '')) : '');
        const waiting = tasks.filter((t) => t.desiredState === 'running' && !t.address);
        const states = `${live.length} of ${app.replicas} running; ${waiting.map((t) => `${t.id.slice(0, 12)} ${t.state}${t.message ? ` (${t.message})` : ''}`).join(', ') || 'no task'}`;
        switch (verdict.kind) {
          case 'failed': {
            const { task } = verdict;
            throw new HealthCheckError(task.id, `(a task of ${service}) failed ${verdict.times} times before answering 2xx on ${app.health.path}: ${task.error}${task.exitCode !== null ? ` (exit code ${task.exitCode})` : ''}`, await logTail(task));
          }
          case 'rejected':
            // No container of the release ran: the registry, a node's pull or its engine, not the commit.
            throw new UnavailableError('swarm', `the swarm's nodes rejected a task of ${service} ${verdict.times} times before running it: ${verdict.task.error}`);
          case 'slow':
            throw new HealthCheckError(verdict.task.id, `(a task of ${service}) was still starting (Docker's health check of ${app.health.path} not passing) after ${app.health.timeout_s} s (${states})`, await logTail(verdict.task));
          case 'unplaced':
            throw new SlipwayError('docker_error', `no task of ${service} started within ${app.health.timeout_s + PULL_ALLOWANCE_MS / 1000} s, so none of the app's code ran: no node took it or could pull its image (${states}); see the app's placement and resources, and the nodes' access to the registry`);
          case 'late':
            throw new HealthCheckError(verdict.task?.id ?? this.service!.id, `(a task of ${service}) was not running with a published port within ${app.health.timeout_s + PULL_ALLOWANCE_MS / 1000} s (${states})`, await logTail(verdict.task));
        }
      }
      await sleep(TASK_POLL_MS);
    }
  }

  /** What the shared probe asks between attempts, answered from the task: gone or replaced counts as exited. */
  private healthRuntime() {
    const { swarm } = this.seams;
    const { app } = this.request;
    return {
      healthState: async (taskId: string): Promise<ContainerHealthState> => {
        const read = async () => (await swarm.appTasks(app.name, app.port, this.service!.id)).find((t) => t.id === taskId);
        let task = await read();
        // Being stopped: wait for how it ends, a failure of its own (`failed`, Docker's health check included) or Swarm's doing.
        for (const until = Date.now() + SETTLE_MS; task && task.desiredState !== 'running' && !ENDED.has(task.state) && Date.now() < until;) {
          await sleep(TASK_POLL_MS);
          task = await read();
        }
        if (!task) return { running: false, restarted: false, exitCode: null };
        // Swarm, not the task, ended it: its node drained (the task `shutdown`) or lost (it cannot say: still `running`
        // for Swarm). No failure of the app's (`failed`, with its error; `complete`, it exited), so not the commit's either.
        if (task.desiredState !== 'running' && task.state !== 'failed' && task.state !== 'complete' && !task.error) {
          throw new UnavailableError('swarm', `Swarm stopped task ${taskId.slice(0, 12)} of ${this.service!.name} before it answered on ${app.health.path} (${task.message || 'shutdown'}; its node drained or lost): the rollout is tried again`);
        }
        return { running: task.state === 'running' && task.desiredState === 'running', restarted: false, exitCode: task.exitCode };
      },
      logTail: (taskId: string, lines: number) => swarm.taskLogTail(taskId, lines),
    };
  }

  async finish(engine: SwarmEngine): Promise<RolloutResult> {
    const { app, job } = this.request;
    const pruned = await this.seams.store.pruneReleases(app.name, RELEASES_KEPT).catch(() => 0);
    if (pruned > 0) this.log(say.pruned(pruned, RELEASES_KEPT));
    const images = await this.pruneImages(engine).catch(() => []);
    if (images.length > 0) this.log(say.imagesPruned(images));
    this.timings.total = Date.now() - this.t0;
    this.log(say.done(app.name, job, this.result.containers.map((c) => c.address), this.timings.total));
    this.onStep('done');
    return this.result;
  }

  /**
   * Images of releases no longer kept (a rollback can only reach kept
   * ones), on the builder's engine and the manager's, or every deploy
   * leaves one on each. A kept release's registry reference keeps the tag
   * the build gave it too. The nodes' own pulled copies stay (only a
   * node's engine can remove them), as does the registry's (its garbage
   * collection is its operator's).
   */
  private async pruneImages({ engine, source, manager }: SwarmEngine): Promise<string[]> {
    const app = this.request.app.name;
    const registry = engine.registry!;
    const stillToRun = await imagesToKeep(this.request.keepImages);
    if (stillToRun === null) return [];
    const releases = await this.seams.store.listReleases(app);
    const kept = new Set([this.record.image, this.request.image, ...stillToRun, ...releases.map((r) => r.image)]);
    // A release's image is pinned (`<ref>@sha256:…`): its tag is what the engines list.
    for (const image of [...kept]) kept.add(image.replace(/@sha256:[0-9a-f]{64}$/, ''));
    for (const image of [...kept]) if (inRegistry(image, registry)) kept.add(image.slice(registry.length + 1));
    const local = `slipway/${app}`;
    const onSource = await new DockerRuntime(source).pruneImages(app, kept);
    const onManager = await pruneBuiltImages(manager, [local, `${registry}/${local}`], kept, (doing, call) => askManager(`${doing} on the swarm manager`, call));
    return [...onSource, ...onManager.map((tag) => `${tag} (on the manager)`)];
  }

  /** A failure before the switch: the candidate dropped, the new service removed (its tasks with it). */
  async undo(): Promise<void> {
    if (this.switched) return;
    await this.prepared?.discard().catch(() => {});
    if (!this.created && this.creating) {
      // A create with no answer, and none found after it: the manager may still make it. Asked once more now; a
      // service found then runs no traffic (nothing switched), and goes.
      const name = this.creating;
      // Its own only: never a service of that name running something else (the live release of an earlier job of that id).
      const made = await this.seams.swarm.listAppServices(this.request.app.name).then((services) => services.find((s) => isOwnService(s, name, this.record)), () => undefined);
      if (made) this.created = { id: made.id, name };
    }
    if (!this.created) return;
    if (this.switchUnknown) {
      this.log(`left the new service ${this.created.name} running: etcd may name its tasks`);
      return;
    }
    // A receipt and no switch: the switch was made and put back.
    if (this.receipt) await drainReverted(this.tasks.flatMap((t) => (t.address ? [t.address] : [])), this.request.app.drain_s, this.log, { listen: this.seams.proxy.listen(this.request.app) });
    try {
      await this.seams.swarm.removeService(this.created.id);
      this.log(`removed new service ${this.created.name}`);
    } catch (err) {
      this.log(`could not remove new service ${this.created.name} (${(err as Error).message}); the next rollout removes it as a stray`);
    }
  }
}
