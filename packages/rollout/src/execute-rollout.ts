import { randomBytes } from 'node:crypto';
import type Docker from 'dockerode';
import { LABELS } from '@slipway/core/docker';
import { scrubSecrets, secretEnvValues } from '@slipway/core/logger';
import { UnavailableError } from '@slipway/core/slipway-error';
import { etcdKeys, type UpstreamKey } from '@slipway/etcd/keys';
import type { AppLock } from './app-lock.js';
import type { ContainerRuntime } from './container-runtime.js';
import { allocateAddresses, publishOn } from './dns/address-pool.js';
import { drainBusyStrays, drainConnections, drainReverted } from './drain-connections.js';
import { waitAllHealthy } from './health.js';
import { DNS_SETTLE_MS, planRollout, type RolloutPlan, type RolloutStep } from './plan-rollout.js';
import { RELEASES_KEPT, revertAfterFailedApply, type ReleaseRecord, type ReleaseStore, type RouteLease, type SwitchReceipt } from './release-store.js';
import type { PreparedRoute, RouteProxy } from './route-proxy.js';
import { blameLockLoss, CancelledError, RegistrarUnavailableError, SwitchOutcomeUnknownError } from './rollout-errors.js';
import { rolloutLog as say } from './rollout-log.js';
import { imagesToKeep, type RolloutRequest, type RolloutResult } from './rollout.js';

/** The three seams a rollout works through: a store (etcd), a runtime (Docker), a proxy (nginx or DNS). */
export interface RolloutSeams {
  runtime: ContainerRuntime;
  store: ReleaseStore;
  proxy: RouteProxy;
}

/**
 * The deploy story: take the app's lock, read what runs and plan, then
 * apply each step of the plan with its handler (RolloutRun). Until the etcd
 * switch, any failure (or the signal) removes the new containers and
 * leaves everything as it was; an nginx apply that fails after the switch
 * reverts the switch. After that nothing aborts: drain and stop problems
 * are logged, not thrown.
 */
export async function executeRollout(seams: RolloutSeams, request: RolloutRequest): Promise<RolloutResult> {
  const run = new RolloutRun(seams, request);
  run.log(say.begin(request.app, request.image, request.sha, request.job));
  run.checkCancelled('the start');
  await run.takeLock();
  try {
    const plan = await run.readAndPlan();
    for (const step of plan.steps) await run.apply(step);
    return await run.finish(plan);
  } catch (err) {
    await run.undo();
    throw run.blame(err);
  } finally {
    await run.release();
  }
}

/**
 * What an attempt that switched and then died left behind (the previous
 * release's containers, which it would have drained and stopped): under
 * the app's lock, nginx caught up with etcd, then every container neither
 * etcd nor nginx names, and not of the live release, drained first if it
 * carries connections, and removed, as the app's next rollout would.
 * Returns their ids.
 */
export async function executeStrayRemoval(seams: RolloutSeams, request: RolloutRequest): Promise<string[]> {
  const run = new RolloutRun(seams, request);
  await run.takeLock();
  try {
    let plan = await run.readAndPlan();
    // The switch stood but its nginx file was never put in place (the attempt died between the two, or its undo threw
    // the candidate away when etcd's answer was lost): nginx is brought to what etcd names first, and what it routed
    // to until then becomes the strays, drained before they go.
    if (await run.routeAsEtcdSays()) plan = await run.readAndPlan({ unroutedNow: true });
    const strays = plan.steps.find((step) => step.kind === 'remove-strays');
    if (strays) await run.apply(strays);
    return plan.strays.map((c) => c.id);
  } finally {
    await run.release();
  }
}

type Timings = RolloutResult['timings'];
type StepOf<K extends RolloutStep['kind']> = Extract<RolloutStep, { kind: K }>;

/** A new container: pushed as soon as it exists, so an undo sees every one. */
interface StartedContainer {
  id: string;
  /** Null when the container was gone again before its port could be read. */
  address: string | null;
}

/**
 * One rollout in progress: what its steps share (the containers started,
 * the prepared route, the switch receipt) and one handler per kind of
 * step. Each handler's time is added to the phase named in PHASES.
 */
class RolloutRun {
  readonly log: (line: string) => void;
  private readonly onStep: NonNullable<RolloutRequest['onStep']>;
  private readonly scrub: (text: string) => string;
  private readonly t0 = Date.now();
  private mark = Date.now();
  private readonly timings: Timings = { lock: 0, plan: 0, start: 0, health: 0, switch: 0, drain: 0, stop: 0, total: 0 };
  private readonly started: StartedContainer[] = [];
  private lock?: AppLock;
  private upstreams: UpstreamKey[] = [];
  /** The addresses the proxy routes to, as read when planning. */
  private routed: string[] = [];
  /** Docker, etcd and the proxy were read (readAndPlan): what etcd names and the proxy routes is known. */
  private planned = false;
  private record!: ReleaseRecord;
  private result!: RolloutResult;
  private prepared?: PreparedRoute;
  private receipt?: SwitchReceipt;
  private switched = false;
  /** nginx was reloaded before planning (catchUp): the strays were routed to until then. */
  private caughtUp = false;
  /** etcd neither confirmed nor refused the switch: the new containers may be what it names, so they stay. */
  private switchUnknown = false;
  private routeLease?: RouteLease;

  /** Which phase of `timings` each step's time counts towards (null: the next phase that is counted). */
  private static readonly PHASES: Record<RolloutStep['kind'], keyof Timings | null> = {
    'remove-strays': 'plan', 'check-registrar': 'plan', start: 'start', health: 'health',
    'check-proxy': null, switch: null, 'apply-proxy': 'switch', drain: 'drain', stop: 'stop', 'hand-over': null,
  };

  constructor(private readonly seams: RolloutSeams, private readonly request: RolloutRequest) {
    this.log = request.log ?? (() => {});
    this.onStep = request.onStep ?? (() => {});
    const secrets = secretEnvValues(request.app.env);
    this.scrub = (text) => scrubSecrets(text, secrets);
  }

  checkCancelled(during: string): void {
    if (this.request.signal?.aborted) throw new CancelledError(during);
  }

  blame(err: unknown): unknown {
    return blameLockLoss(this.request.app.name, err, { switched: this.switched, lockLost: this.lock?.lost ?? false });
  }

  async takeLock(): Promise<void> {
    const { app, job, signal, lockWaitMs, lockTtlS } = this.request;
    this.lock = await this.seams.store.lock(app.name, { job, signal, log: this.log, waitMs: lockWaitMs, ttlS: lockTtlS });
    this.timings.lock = Date.now() - this.t0;
  }

  /**
   * Reads Docker, etcd and the proxy under the lock, and plans. `unroutedNow`:
   * the caller has just taken containers out of nginx's routing, and the
   * strays are drained in full (as after a catchUp reload).
   */
  async readAndPlan(options: { unroutedNow?: boolean } = {}): Promise<RolloutPlan> {
    const { runtime, store, proxy } = this.seams;
    const { app, image, sha, job } = this.request;
    const caughtUp = await proxy.catchUp(app);
    if (caughtUp) this.log(caughtUp);
    this.caughtUp = caughtUp !== null || options.unroutedNow === true;
    const [containers, upstreams, routed, previous] = await Promise.all([
      runtime.listAppContainers(app.name, app.port), store.upstreams(app.etcd_prefix), proxy.routed(app), store.currentRelease(app.name),
    ]);
    this.upstreams = upstreams;
    this.routed = routed;
    this.planned = true;
    const plan = planRollout({ containers, upstreams, routed, releaseJob: previous?.job ?? null }, { app, image, sha, release: job, addressPool: this.request.dns?.address_pool });
    this.log(say.serving(plan.serving, previous));
    plan.notes.forEach((note) => this.log(note));
    // `at` is when it goes live: set at the switch.
    this.record = { sha, image, job, at: '' };
    this.result = {
      app: app.name, release: this.record, previous, containers: [], stopped: [], strays: plan.strays.map((c) => c.id), leftovers: [], drain: null, timings: this.timings,
    };
    this.timings.plan = Date.now() - this.t0 - this.timings.lock;
    this.mark = Date.now();
    return plan;
  }

  /**
   * routing: upstream: when nginx's file routes other addresses than etcd's
   * keys name (and etcd names some), the file is rendered from the keys,
   * checked and reloaded, as a switch's apply does. True when it was.
   */
  async routeAsEtcdSays(): Promise<boolean> {
    const { app } = this.request;
    const keyed = this.upstreams.map((u) => u.address);
    if (app.routing !== 'upstream' || keyed.length === 0) return false;
    const routed = new Set(this.routed);
    if (keyed.length === routed.size && keyed.every((address) => routed.has(address))) return false;
    this.log(say.routingAsEtcd(this.routed, keyed));
    const prepared = await this.seams.proxy.prepare(app, keyed);
    if (!prepared.changed) {
      await prepared.discard();
      return false;
    }
    this.log(say.applied(await prepared.commit()));
    return true;
  }

  async apply(step: RolloutStep): Promise<void> {
    await this.handle(step);
    const phase = RolloutRun.PHASES[step.kind];
    if (phase !== null) {
      this.timings[phase] += Date.now() - this.mark;
      this.mark = Date.now();
    }
  }

  private handle(step: RolloutStep): Promise<void> {
    switch (step.kind) {
      case 'remove-strays': return this.removeStrays(step);
      case 'check-registrar': return this.checkRegistrar();
      case 'start': return this.start(step);
      case 'health': return this.health(step);
      case 'check-proxy': return this.checkProxy();
      case 'switch': return this.switch(step);
      case 'apply-proxy': return this.applyProxy();
      case 'drain': return this.drain(step);
      case 'stop': return this.stop(step);
      case 'hand-over': return this.handOver(step);
    }
  }

  private async removeStrays(step: StepOf<'remove-strays'>): Promise<void> {
    await drainBusyStrays(step.addresses, this.request.app.drain_s, this.log, this.caughtUp ? { listen: this.seams.proxy.listen(this.request.app) } : undefined);
    for (const id of step.ids) {
      await this.seams.runtime.forceRemove(id);
      this.log(say.removedStray(id));
    }
  }

  private async checkRegistrar(): Promise<void> {
    const { app } = this.request;
    const holder = await this.seams.store.registrar(app.name);
    if (holder === null) throw new RegistrarUnavailableError(app.name);
    this.log(say.registrar(app.name, holder));
  }

  private async start(step: StepOf<'start'>): Promise<void> {
    this.checkCancelled('the start');
    this.onStep('start');
    if (step.addressPool === undefined) {
      await this.startReplicas(Array.from({ length: step.replicas }, () => step.spec), step.port);
      return;
    }
    // Allocate and create under one lock: the next allocation (any app, any worker) sees these containers' labels.
    const { job, signal, lockTtlS } = this.request;
    const poolLock = await this.seams.store.addressLock({ job, signal, log: this.log, ttlS: lockTtlS });
    try {
      const addresses = allocateAddresses(step.addressPool, await this.seams.runtime.addressesInUse(), step.replicas);
      this.log(say.addresses(step.addressPool, addresses, step.port));
      await this.startReplicas(addresses.map((address) => publishOn(step.spec, step.port, address)), step.port);
    } finally {
      await poolLock.release();
    }
  }

  /**
   * One container per spec, in parallel, each named `slipway-<app>-<random>`;
   * the first failure is thrown once every start has settled.
   */
  private async startReplicas(specs: readonly Docker.ContainerCreateOptions[], port: number): Promise<void> {
    const results = await Promise.allSettled(specs.map(async (spec) => {
      const name = `slipway-${this.request.app.name}-${randomBytes(4).toString('hex')}`;
      const container = await this.seams.runtime.startContainer({ ...spec, name }, port);
      this.started.push(container);
      this.log(say.started(container.id, name, container.address));
    }));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private async health(step: StepOf<'health'>): Promise<void> {
    this.checkCancelled('the start');
    this.onStep('health');
    await waitAllHealthy(this.started, {
      runtime: this.seams.runtime, path: step.path, timeoutMs: step.timeoutMs, intervalMs: step.intervalMs, signal: this.request.signal, log: this.log, scrub: this.scrub,
    });
  }

  private async checkProxy(): Promise<void> {
    this.checkCancelled('the health check');
    this.onStep('switch');
    this.prepared = await this.seams.proxy.prepare(this.request.app, this.started.map((c) => c.address!));
    this.log(say.prepared(this.prepared, this.started.length));
  }

  private async switch(step: StepOf<'switch'>): Promise<void> {
    const { app, job } = this.request;
    this.checkCancelled('the switch');
    if (this.lock!.lost) throw new UnavailableError('etcd', `lost the rollout lock of ${app.name} (etcd unreachable for longer than its lease); nothing was switched`);
    const add = Object.fromEntries(this.started.map((c) => [etcdKeys.upstream(step.prefix, c.id), c.address!]));
    if (step.leaseTtlS !== undefined) this.routeLease = await this.seams.store.routeLease(step.leaseTtlS);
    this.record.at = new Date().toISOString();
    this.request.onSwitching?.();
    try {
      this.receipt = await this.seams.store.switchRelease({ app: app.name, remove: this.upstreams, add, release: this.record, lock: this.lock!, leaseId: this.routeLease?.id });
    } catch (err) {
      this.switchUnknown = err instanceof SwitchOutcomeUnknownError;
      throw err;
    }
    this.switched = true;
    const lease = this.routeLease && step.leaseTtlS !== undefined ? { id: this.routeLease.id, ttlS: step.leaseTtlS } : undefined;
    this.log(say.switched(step.prefix, Object.values(add), this.upstreams.length, lease, job));
  }

  private async applyProxy(): Promise<void> {
    let applied;
    try {
      applied = await this.prepared!.commit();
    } catch (err) {
      this.log(say.applyFailed(err));
      // Only once etcd names the previous set again may the new containers go (undo); else they are what it routes to.
      if (await revertAfterFailedApply(this.seams.store, this.receipt!, this.log)) this.switched = false;
      throw err;
    }
    this.log(say.applied(applied));
    this.result.containers = this.started.map((c) => ({ id: c.id, address: c.address! }));
  }

  private async drain(step: StepOf<'drain'>): Promise<void> {
    this.onStep('drain');
    this.result.drain = await drainConnections(step.addresses, step.timeoutMs, { settleMs: step.settleMs, listen: this.seams.proxy.listen(this.request.app) });
    this.log(say.drained(this.result.drain, step.timeoutMs));
  }

  private async stop(step: StepOf<'stop'>): Promise<void> {
    await Promise.all(step.ids.map(async (id) => {
      const began = Date.now();
      try {
        await this.seams.runtime.stopAndRemove(id, step.timeoutS);
        this.result.stopped.push(id);
        this.log(say.stopped(id, Date.now() - began));
      } catch (err) {
        this.result.leftovers.push(id);
        this.log(say.notStopped(id, err));
      }
    }));
  }

  /** Waits until no key under `prefix/` is on the switch's lease any more: the registrar renews them on its own leases. */
  private async handOver(step: StepOf<'hand-over'>): Promise<void> {
    const began = Date.now();
    let left: number;
    for (;;) {
      left = await this.routeLease!.keysOnLease(step.prefix).catch(() => -1);
      if (left === 0 || Date.now() - began >= step.timeoutMs) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    this.log(say.handedOver({ left, ms: Date.now() - began }, step.timeoutMs));
  }

  /** After the last step: history pruned, totals, the result. */
  async finish(plan: RolloutPlan): Promise<RolloutResult> {
    const { app, job } = this.request;
    if (!plan.steps.some((s) => s.kind === 'drain')) this.onStep('drain');
    const pruned = await this.seams.store.pruneReleases(app.name, RELEASES_KEPT).catch(() => 0);
    if (pruned > 0) this.log(say.pruned(pruned, RELEASES_KEPT));
    // Images of releases no longer kept go too (a rollback can only reach kept ones), or every deploy leaves one on disk.
    const stillToRun = await imagesToKeep(this.request.keepImages);
    const kept = stillToRun && await this.seams.store.listReleases(app.name).then((releases) => new Set([this.request.image, ...stillToRun, ...releases.map((r) => r.image)]), () => null);
    const images = kept ? await this.seams.runtime.pruneImages(app.name, kept).catch(() => []) : [];
    if (images.length > 0) this.log(say.imagesPruned(images));
    this.timings.total = Date.now() - this.t0;
    this.log(say.done(app.name, job, this.result.containers.map((c) => c.address), this.timings.total));
    this.onStep('done');
    return this.result;
  }

  /** A failure before the switch: the candidate dropped, every new container removed. */
  async undo(): Promise<void> {
    if (this.switched) return;
    await this.prepared?.discard().catch(() => {});
    if (this.switchUnknown) {
      this.log(`left the new containers running (${this.started.map((c) => c.id.slice(0, 12)).join(', ')}): etcd may name them`);
      return;
    }
    // A receipt and no switch: the switch was made and put back.
    if (this.receipt) {
      const settle = this.request.app.routing === 'dns' ? { settleMs: DNS_SETTLE_MS } : {};
      await drainReverted(this.started.flatMap((c) => (c.address ? [c.address] : [])), this.request.app.drain_s, this.log, { ...settle, listen: this.seams.proxy.listen(this.request.app) });
    }
    const ids = [...this.started.map((c) => c.id), ...(await this.untracked())];
    await Promise.all(ids.map(async (id) => {
      try {
        await this.seams.runtime.forceRemove(id);
        this.log(say.removedNew(id));
      } catch (err) {
        this.log(say.notRemovedNew(id, err));
      }
    }));
  }

  /**
   * This job's containers the run never learnt of: a create that passed
   * the engine's deadline and was made all the same, a start or inspect
   * whose removal failed. Found by their release label, less any etcd
   * keys or the proxy routes (an earlier attempt of the same job that went
   * live); none when Docker cannot be asked now.
   */
  private async untracked(): Promise<string[]> {
    const { app, job } = this.request;
    // Unplanned, what is live is not known; with the lock lost, another rollout may be past its own plan.
    if (!this.planned || this.lock?.lost) return [];
    const known = new Set(this.started.map((c) => c.id));
    const keyed = new Set(this.upstreams.map((u) => u.id));
    const routed = new Set(this.routed);
    const containers = await this.seams.runtime.listAppContainers(app.name, app.port).catch(() => []);
    return containers
      .filter((c) => c.labels[LABELS.release] === job && !known.has(c.id) && !keyed.has(c.id.slice(0, 12)) && !(c.address !== null && routed.has(c.address)))
      .map((c) => c.id);
  }

  async release(): Promise<void> {
    // Never revoked: keys the registrar has not taken over yet (or restored by a revert) must outlive the rollout.
    this.routeLease?.release();
    await this.lock?.release();
  }
}
