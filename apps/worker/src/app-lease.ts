import type { Redis } from 'ioredis';

/** Default lease: short, so a killed worker's app is free again within seconds. */
export const DEFAULT_LEASE_MS = 10_000;

const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;

/**
 * "This app is deploying": a Redis key held by one job, renewed while it
 * runs, gone by itself within `ttlMs` when its worker dies. It covers the
 * whole deploy (checkout and build too), so later pushes wait rather than
 * build in parallel; the rollout's own etcd lock still guards the cutover.
 *
 * Held is known, not assumed: a worker cut off from Redis (a partition, a
 * Redis that hangs) sees its renewals neither succeed nor fail, while the
 * key expires and another worker takes the app. So the lease counts as
 * lost a quarter of `ttlMs` before the key could expire, reckoned from when
 * the last renewal that succeeded was sent, and `onLost` is called then:
 * before anyone else can hold it.
 */
export class AppLease {
  private timer: NodeJS.Timeout | undefined;
  private deadline: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    private readonly holder: string,
    private readonly ttlMs = DEFAULT_LEASE_MS,
    private readonly onLost: () => void = () => {},
  ) {}

  /** True when this holder now has the lease (taking it, or already holding it). */
  async acquire(): Promise<boolean> {
    const sent = Date.now();
    const taken = await this.redis.set(this.key, this.holder, 'PX', this.ttlMs, 'NX');
    const ours = taken === 'OK' || (await this.redis.eval(RENEW, 1, this.key, this.holder, this.ttlMs)) === 1;
    if (ours) {
      this.heldUntil(sent);
      this.timer = setInterval(() => void this.renew(), Math.max(100, Math.floor(this.ttlMs / 3)));
      this.timer.unref();
    }
    return ours;
  }

  async holderOf(): Promise<string | null> {
    return this.redis.get(this.key);
  }

  private async renew(): Promise<void> {
    const sent = Date.now();
    try {
      if ((await this.redis.eval(RENEW, 1, this.key, this.holder, this.ttlMs)) !== 1) this.lose();
      else if (this.timer) this.heldUntil(sent);
    } catch {
      // Redis away for a moment: the next tick tries again; the deadline says when that is too late.
    }
  }

  /** A renewal sent at `sent` succeeded: the key lives until at least `sent + ttlMs`. */
  private heldUntil(sent: number): void {
    clearTimeout(this.deadline);
    this.deadline = setTimeout(() => this.lose(), Math.max(0, sent + this.ttlMs - Math.ceil(this.ttlMs / 4) - Date.now()));
    this.deadline.unref();
  }

  private lose(): void {
    if (!this.timer) return;
    this.stop();
    this.onLost();
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    clearTimeout(this.deadline);
    this.timer = undefined;
    this.deadline = undefined;
  }

  async release(): Promise<void> {
    this.stop();
    await this.redis.eval(RELEASE, 1, this.key, this.holder).catch(() => {});
  }
}
