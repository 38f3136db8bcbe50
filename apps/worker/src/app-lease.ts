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
 */
export class AppLease {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    private readonly holder: string,
    private readonly ttlMs = DEFAULT_LEASE_MS,
    private readonly onLost: () => void = () => {},
  ) {}

  /** True when this holder now has the lease (taking it, or already holding it). */
  async acquire(): Promise<boolean> {
    const taken = await this.redis.set(this.key, this.holder, 'PX', this.ttlMs, 'NX');
    const ours = taken === 'OK' || (await this.redis.eval(RENEW, 1, this.key, this.holder, this.ttlMs)) === 1;
    if (ours) {
      this.timer = setInterval(() => void this.renew(), Math.max(100, Math.floor(this.ttlMs / 3)));
      this.timer.unref();
    }
    return ours;
  }

  async holderOf(): Promise<string | null> {
    return this.redis.get(this.key);
  }

  private async renew(): Promise<void> {
    try {
      if ((await this.redis.eval(RENEW, 1, this.key, this.holder, this.ttlMs)) !== 1) {
        this.stop();
        this.onLost();
      }
    } catch {
      // Redis away for a moment: the next tick tries again; the TTL covers the gap.
    }
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  async release(): Promise<void> {
    this.stop();
    await this.redis.eval(RELEASE, 1, this.key, this.holder).catch(() => {});
  }
}
