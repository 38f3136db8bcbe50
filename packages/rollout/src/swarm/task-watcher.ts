import type Docker from 'dockerode';
import type { Etcd3 } from 'etcd3';
import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import { firstLine } from '@slipway/core/slipway-error';
import { etcdCall } from '@slipway/etcd/client';
import { etcdKeys, type UpstreamKey } from '@slipway/etcd/keys';
import { REGISTRAR_SESSION_TTL_S } from '../dns/plan-registration.js';
import { RegistrarClaims } from '../dns/registrar-claims.js';
import { EtcdReleaseStore } from '../release-store.js';
import { liveEndpoints, SwarmRuntime, type AppTask, type ServiceRuntime } from './swarm-service.js';

/*
 * Tasks move; etcd follows. The swarm counterpart of the dns registrar,
 * run by `slipway router`: when Swarm reschedules a task of the live
 * release (a node drained or lost, a container crashed, a task unhealthy
 * to Docker), the app's upstream keys are rewritten from the running tasks
 * that have a published port, and the router re-renders nginx from them.
 *
 * It polls the manager's task list rather than following its events: in
 * Docker 20.10 the event stream has service and node events but no task
 * events, so a node event would still need polling until the replacement
 * task runs and has its port; one listTasks per app per second is cheap
 * and also catches what happened while the watcher was away.
 */

/** How often each app's tasks are read. */
export const TASK_WATCH_INTERVAL_MS = 1_000;

export interface TaskWatcherOptions {
  /** The configuration's apps: every app is on the swarm (engine.type: swarm). */
  apps: SlipwayConfig['apps'];
  /** A client of engine.manager (managerClient). */
  manager: Docker;
  etcd: Etcd3;
  log?: (line: string) => void;
  /** Default TASK_WATCH_INTERVAL_MS. */
  intervalMs?: number;
  /** TTL of the claim on the apps. Default REGISTRAR_SESSION_TTL_S (3 s). */
  sessionTtlS?: number;
  /** Told of every rewrite (tests, the dashboard). */
  onChange?: (change: UpstreamRewrite & { app: string; at: number }) => void;
}

export interface TaskWatcherHandle {
  /** The apps this watcher holds now. */
  serving(): string[];
  /** Reconciles one app (or all) now. */
  reconcile(app?: string): Promise<void>;
  /** Stops; its claims are given up at once so a standby watcher takes over. The keys stay as they are. */
  close(): Promise<void>;
}

/** A change of an app's keys: put these, delete those. */
export interface UpstreamRewrite {
  put: Record<string, string>;
  remove: string[];
}

/**
 * The keys an app should have: one per running task of the live release
 * with a published port. Pure. Null when nothing is to change, and also
 * when no such task exists: the set is never emptied (the router would
 * keep the last file anyway, and a rollout or Swarm brings tasks back).
 */
export function planUpstreamRewrite(prefix: string, current: readonly UpstreamKey[], live: readonly AppTask[]): UpstreamRewrite | null {
  if (live.length === 0) return null;
  const desired = new Map(live.map((t) => [etcdKeys.upstream(prefix, t.id), t.address!]));
  const put = Object.fromEntries([...desired].filter(([key, address]) => current.find((u) => u.key === key)?.address !== address));
  const remove = current.filter((u) => !desired.has(u.key)).map((u) => u.key);
  return Object.keys(put).length === 0 && remove.length === 0 ? null : { put, remove };
}

/** Starts watching every app's tasks; throws UnavailableError when etcd cannot be reached at start. */
export async function startTaskWatcher(options: TaskWatcherOptions): Promise<TaskWatcherHandle> {
  const watcher = new TaskWatcher(options);
  await watcher.start();
  return watcher;
}

class TaskWatcher implements TaskWatcherHandle {
  private readonly log: (line: string) => void;
  private readonly apps: Map<string, AppConfig>;
  private readonly claims: RegistrarClaims;
  private readonly swarm: ServiceRuntime;
  private readonly store: EtcdReleaseStore;
  private readonly running = new Map<string, Promise<void>>();
  /** The last problem said per app, so a manager that stays away is said once. */
  private readonly said = new Map<string, string>();
  private tick?: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly options: TaskWatcherOptions) {
    this.log = options.log ?? (() => {});
    this.apps = new Map(Object.values(options.apps).map((a) => [a.name, a]));
    this.swarm = new SwarmRuntime(options.manager);
    this.store = new EtcdReleaseStore(options.etcd);
    this.claims = new RegistrarClaims({
      etcd: options.etcd, apps: [...this.apps.keys()], sessionTtlS: options.sessionTtlS ?? REGISTRAR_SESSION_TTL_S, log: this.log, role: 'task watcher',
      onGained: (app) => void this.reconcile(app),
      onLost: () => {},
    });
  }

  async start(): Promise<void> {
    await this.claims.start();
    this.claims.watch();
    await this.claims.claimAll();
    this.tick = setInterval(() => void this.round(), this.options.intervalMs ?? TASK_WATCH_INTERVAL_MS);
    this.tick.unref();
    this.log(`task watcher: ${this.apps.size} app${this.apps.size === 1 ? '' : 's'} on the swarm, serving ${this.serving().join(', ') || 'none yet'}`);
  }

  serving(): string[] {
    return [...this.claims.held];
  }

  async reconcile(app?: string): Promise<void> {
    if (app === undefined) {
      await Promise.all([...this.claims.held].map((name) => this.reconcile(name)));
      return;
    }
    // One reconcile per app at a time; a tick while one runs is simply skipped.
    const current = this.running.get(app);
    if (current) return current;
    const run = this.reconcileApp(app).catch((err: unknown) => this.say(app, `task watcher: ${app}: ${firstLine(err)}; keys left as they are`))
      .finally(() => this.running.delete(app));
    this.running.set(app, run);
    return run;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.tick);
    await this.claims.stop();
    await Promise.all(this.running.values());
    await this.claims.giveUp();
  }

  private async round(): Promise<void> {
    if (this.closed) return;
    if (this.claims.held.size < this.apps.size) await this.claims.claimAll();
    await this.reconcile();
  }

  /**
   * Reads the live release, its running tasks and the keys; writes the
   * difference in one transaction that only succeeds while no rollout
   * holds the app's lock and the release is still the one read: a rollout
   * owns the keys from its lock to its end.
   */
  private async reconcileApp(name: string): Promise<void> {
    const app = this.apps.get(name)!;
    if (!this.claims.holds(name) || this.closed) return;
    const { etcd } = this.options;
    const releaseKey = etcdKeys.release(name);
    const [lockHeld, release] = await Promise.all([
      etcdCall(`reading ${etcdKeys.lock(name)}`, () => etcd.get(etcdKeys.lock(name)).exists()),
      etcdCall(`reading ${releaseKey}`, () => etcd.get(releaseKey).exec()),
    ]);
    const kv = release.kvs[0];
    if (lockHeld || !kv) return;
    const job = (JSON.parse(kv.value.toString()) as { job?: string }).job;
    const [tasks, current] = await Promise.all([this.swarm.appTasks(name, app.port), this.store.upstreams(app.etcd_prefix)]);
    const live = liveEndpoints(tasks.filter((t) => t.release === job));
    const rewrite = planUpstreamRewrite(app.etcd_prefix, current, live);
    if (live.length === 0 && current.length > 0) this.say(name, `task watcher: ${name}: no running task of release ${job}; its keys stay as they are`);
    if (!rewrite) return;
    const txn = etcd.if(etcdKeys.lock(name), 'Create', '==', 0).and(releaseKey, 'Mod', '==', kv.mod_revision).then(
      ...rewrite.remove.map((key) => etcd.delete().key(key)),
      ...Object.entries(rewrite.put).map(([key, address]) => etcd.put(key).value(address)),
    );
    const result = await etcdCall(`rewriting the keys of ${name}`, () => txn.commit());
    if (!result.succeeded) return;
    this.said.delete(name);
    this.log(`task watcher: ${name}: upstreams now ${live.map((t) => t.address).join(', ')} (${Object.keys(rewrite.put).length} put, ${rewrite.remove.length} removed)`);
    this.options.onChange?.({ app: name, ...rewrite, at: Date.now() });
  }

  private say(app: string, line: string): void {
    if (this.said.get(app) === line) return;
    this.said.set(app, line);
    this.log(line);
  }
}
