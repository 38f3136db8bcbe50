import { hostname } from 'node:os';
import type { Etcd3, Lease } from 'etcd3';
import { firstLine } from '@slipway/core/slipway-error';
import { etcdCall, lastingWatch } from '@slipway/etcd/client';
import { etcdKeys } from '@slipway/etcd/keys';

export interface RegistrarClaimsOptions {
  etcd: Etcd3;
  /** The dns apps this registrar would serve. */
  apps: readonly string[];
  /** TTL of the session lease the claims are on. */
  sessionTtlS: number;
  log: (line: string) => void;
  /** This registrar now serves `app`. */
  onGained: (app: string) => void;
  /** Another registrar serves `app` now. */
  onLost: (app: string) => void;
  /** How log lines name the holder. Default `registrar`. */
  role?: string;
  /**
   * The key claimed per app. Default the registrar's (etcdKeys.registrar),
   * which a dns rollout checks for before it switches; the upstream
   * followers claim their own (etcdKeys.follower), or a dns app's rollout
   * could take one of them for its registrar.
   */
  key?: (app: string) => string;
}

/**
 * The session and claim part of the registrar: one registrar serves an
 * app at a time. Each app's registrar key is claimed on this registrar's
 * session lease, created only if absent; a registrar that finds another's
 * claim waits, watching the key, and takes over when it goes (the holder
 * stopped, or its lease expired). A lost session (etcd away for longer
 * than its TTL) is granted again and every app claimed again.
 */
export class RegistrarClaims {
  private readonly claimed = new Set<string>();
  private readonly identity = { host: hostname(), pid: process.pid, since: new Date().toISOString() };
  private session!: { lease: Lease; id: string };
  private watchers: Array<{ cancel(): Promise<void> }> = [];
  private closed = false;

  private readonly role: string;

  constructor(private readonly options: RegistrarClaimsOptions) {
    this.role = options.role ?? 'registrar';
  }

  private keyOf(app: string): string {
    return (this.options.key ?? etcdKeys.registrar)(app);
  }

  /** The apps this registrar holds now (live: iterating it sees claims gained and lost meanwhile). */
  get held(): ReadonlySet<string> {
    return this.claimed;
  }

  holds(app: string): boolean {
    return this.claimed.has(app);
  }

  /** Grants the session lease; throws UnavailableError when etcd cannot be reached. */
  async start(): Promise<void> {
    await this.newSession();
  }

  /** Claims an app whenever its key goes (or the watch reconnects). */
  watch(): void {
    this.watchers = this.options.apps.map((app) => lastingWatch(
      () => this.options.etcd.watch().key(this.keyOf(app)).watcher(),
      (watcher) => watcher
        .on('delete', () => void this.claim(app).catch(() => {}))
        .on('connected', () => void this.claim(app).catch(() => {})),
    ));
  }

  async claimAll(): Promise<void> {
    for (const app of this.options.apps) await this.claim(app).catch((err: Error) => this.options.log(`${this.role}: cannot claim ${app}: ${firstLine(err)}`));
  }

  /** Stops claiming: no more watches, no new session. */
  async stop(): Promise<void> {
    this.closed = true;
    await Promise.all(this.watchers.map((w) => w.cancel().catch(() => {})));
  }

  /** Gives up every claim at once (a standby registrar takes over); never throws. */
  async giveUp(): Promise<void> {
    await etcdCall('giving up the registrar claims', () => this.session.lease.revoke(), 2_000).catch(() => this.session.lease.release());
  }

  private async claim(app: string): Promise<void> {
    const { etcd, log } = this.options;
    const key = this.keyOf(app);
    const value = JSON.stringify({ ...this.identity, session: this.session.id });
    const result = await etcdCall(`claiming ${key}`, () => etcd.if(key, 'Create', '==', 0)
      .then(etcd.put(key).value(value).lease(this.session.id))
      .else(etcd.get(key))
      .commit());
    const holder = result.responses[0]?.response_range?.kvs[0];
    const ours = result.succeeded || (holder !== undefined && String(holder.lease) === this.session.id);
    if (ours && !this.claimed.has(app)) {
      this.claimed.add(app);
      log(`${this.role}: serving ${app}`);
      this.options.onGained(app);
    } else if (!ours && this.claimed.delete(app)) {
      log(`${this.role}: ${app} is served by ${holder?.value.toString() ?? `another ${this.role}`} now`);
      this.options.onLost(app);
    }
  }

  private async newSession(): Promise<void> {
    const lease = this.options.etcd.lease(this.options.sessionTtlS);
    lease.on('lost', (err) => {
      if (this.closed || this.session.lease !== lease) return;
      this.options.log(`${this.role}: lost its etcd session (${firstLine(err)}); claiming its apps again once etcd answers`);
      // Registrations stay on their own leases, renewed only for apps claimed again (another registrar adopts the rest).
      this.claimed.clear();
      void this.regainSession();
    });
    const id = await etcdCall('granting the registrar session', () => lease.grant()).catch((err: unknown) => {
      lease.release();
      throw err;
    });
    this.session = { lease, id };
  }

  private async regainSession(): Promise<void> {
    while (!this.closed) {
      try {
        await this.newSession();
        await this.claimAll();
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    }
  }
}
