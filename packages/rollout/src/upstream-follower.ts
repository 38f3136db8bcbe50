import type { Etcd3 } from 'etcd3';
import type { AppConfig } from '@slipway/config/types';
import { firstLine } from '@slipway/core/slipway-error';
import { etcdCall } from '@slipway/etcd/client';
import { etcdKeys, type UpstreamKey } from '@slipway/etcd/keys';
import { REGISTRAR_SESSION_TTL_S } from './dns/plan-registration.js';
import { oneRunPerKey } from './one-run-per-key.js';
import { RegistrarClaims } from './dns/registrar-claims.js';
import { EtcdReleaseStore } from './release-store.js';

/*
 * What runs between rollouts in `slipway router` so that an app's upstream
 * keys follow its live release when the engine moves it: Swarm moving a
 * task (task-watcher.ts), Docker restarting a container on a new host port
 * (port-follower.ts). Each kind says what the keys should be; this part
 * holds the claim on each app (one follower per app across router
 * processes), runs one reconcile per app at a time, and writes only while
 * no rollout holds the app's lock and the release is the one read: a
 * rollout owns the keys from its lock to its end.
 */

/** A change of an app's keys: put these, delete those. */
export interface UpstreamRewrite {
  put: Record<string, string>;
  remove: string[];
}

export interface UpstreamFollowerOptions {
  /** The apps to follow. */
  apps: readonly AppConfig[];
  etcd: Etcd3;
  /** Names the follower in log lines and in its claims: `task watcher`, `port follower`. */
  role: string;
  /** Each app is reconciled this often, besides whatever `reconcile` is asked. */
  intervalMs: number;
  /**
   * What the keys of `app` should change by, with `release` the live
   * release's job; null for nothing. `say` tells a problem once.
   */
  plan(app: AppConfig, release: string, current: readonly UpstreamKey[], say: (line: string) => void): Promise<UpstreamRewrite | null>;
  log?: (line: string) => void;
  /** TTL of the claim on the apps. Default REGISTRAR_SESSION_TTL_S (3 s). */
  sessionTtlS?: number;
  /** Told of every rewrite (tests, the dashboard). */
  onChange?: (change: UpstreamRewrite & { app: string; at: number }) => void;
}

export interface UpstreamFollowerHandle {
  /** The apps this follower holds now. */
  serving(): string[];
  /** Reconciles one app (or all) now. */
  reconcile(app?: string): Promise<void>;
  /** Stops; its claims are given up at once so a standby follower takes over. The keys stay as they are. */
  close(): Promise<void>;
}

/** Starts following; throws UnavailableError when etcd cannot be reached at start. */
export async function startUpstreamFollower(options: UpstreamFollowerOptions): Promise<UpstreamFollowerHandle> {
  const follower = new UpstreamFollower(options);
  await follower.start();
  return follower;
}

class UpstreamFollower implements UpstreamFollowerHandle {
  private readonly log: (line: string) => void;
  private readonly apps: Map<string, AppConfig>;
  private readonly claims: RegistrarClaims;
  private readonly store: EtcdReleaseStore;
  private readonly runs = oneRunPerKey((app) => this.reconcileApp(app)
    .catch((err: unknown) => this.say(app, `${this.options.role}: ${app}: ${firstLine(err)}; keys left as they are`)), () => this.closed);
  /** The last problem said per app, so one that stays is said once. */
  private readonly said = new Map<string, string>();
  private tick?: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly options: UpstreamFollowerOptions) {
    this.log = options.log ?? (() => {});
    this.apps = new Map(options.apps.map((a) => [a.name, a]));
    this.store = new EtcdReleaseStore(options.etcd);
    this.claims = new RegistrarClaims({
      etcd: options.etcd, apps: [...this.apps.keys()], sessionTtlS: options.sessionTtlS ?? REGISTRAR_SESSION_TTL_S, log: this.log, role: options.role, key: etcdKeys.follower,
      onGained: (app) => void this.reconcile(app),
      onLost: () => {},
    });
  }

  async start(): Promise<void> {
    await this.claims.start();
    this.claims.watch();
    await this.claims.claimAll();
    this.tick = setInterval(() => void this.round(), this.options.intervalMs);
    this.tick.unref();
    this.log(`${this.options.role}: ${this.apps.size} app${this.apps.size === 1 ? '' : 's'}, serving ${this.serving().join(', ') || 'none yet'}`);
  }

  serving(): string[] {
    return [...this.claims.held];
  }

  async reconcile(app?: string): Promise<void> {
    if (app === undefined) {
      await Promise.all([...this.claims.held].map((name) => this.reconcile(name)));
      return;
    }
    if (this.closed || !this.apps.has(app)) return;
    return this.runs.ask(app);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.tick);
    await this.claims.stop();
    await Promise.all(this.runs.running());
    await this.claims.giveUp();
  }

  private async round(): Promise<void> {
    if (this.closed) return;
    if (this.claims.held.size < this.apps.size) await this.claims.claimAll();
    await this.reconcile();
  }

  /**
   * Reads the lock, the live release and the keys; writes what the kind
   * plans in one transaction that only succeeds while no rollout holds the
   * app's lock and the release is still the one read.
   */
  private async reconcileApp(name: string): Promise<void> {
    const app = this.apps.get(name)!;
    if (!this.claims.holds(name) || this.closed) return;
    const { etcd, role } = this.options;
    const releaseKey = etcdKeys.release(name);
    const [lockHeld, release] = await Promise.all([
      etcdCall(`reading ${etcdKeys.lock(name)}`, () => etcd.get(etcdKeys.lock(name)).exists()),
      etcdCall(`reading ${releaseKey}`, () => etcd.get(releaseKey).exec()),
    ]);
    const kv = release.kvs[0];
    if (lockHeld || !kv) return;
    const job = (JSON.parse(kv.value.toString()) as { job?: string }).job ?? '';
    const current = await this.store.upstreams(app.etcd_prefix);
    const rewrite = await this.options.plan(app, job, current, (line) => this.say(name, `${role}: ${name}: ${line}`));
    if (!rewrite) return;
    const txn = etcd.if(etcdKeys.lock(name), 'Create', '==', 0).and(releaseKey, 'Mod', '==', kv.mod_revision).then(
      ...rewrite.remove.map((key) => etcd.delete().key(key)),
      ...Object.entries(rewrite.put).map(([key, address]) => etcd.put(key).value(address)),
    );
    const result = await etcdCall(`rewriting the keys of ${name}`, () => txn.commit());
    if (!result.succeeded) return;
    this.said.delete(name);
    const was = new Map(current.map((u) => [u.key, u.address]));
    const changes = [
      ...Object.entries(rewrite.put).map(([key, address]) => `${key.slice(app.etcd_prefix.length + 1)} on ${address} (${was.has(key) ? `was ${was.get(key)}` : 'new'})`),
      ...rewrite.remove.map((key) => `${key.slice(app.etcd_prefix.length + 1)} removed`),
    ];
    this.log(`${role}: ${name}: ${changes.join(', ')}`);
    this.options.onChange?.({ app: name, ...rewrite, at: Date.now() });
  }

  private say(app: string, line: string): void {
    if (this.said.get(app) === line) return;
    this.said.set(app, line);
    this.log(line);
  }
}
