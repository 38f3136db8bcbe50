import type { Redis } from 'ioredis';
import type { Logger } from '@slipway/core/logger';
import type { JobEvent } from '@slipway/queue/job-store';

/** What listeners get: a job changed, or (after Redis came back) "you may have missed some: reload". */
export type HubEvent = { kind: 'job'; job: JobEvent } | { kind: 'resync' };

/**
 * One Redis subscription to the job events channel, shared by every live
 * page: N browsers cost one connection, not N. Created on the first
 * listener. A reconnect re-subscribes on its own (ioredis) and tells every
 * listener to resync, since messages published meanwhile are lost.
 */
export class JobEventHub {
  private subscriber: Redis | undefined;
  private subscribed: Promise<void> | undefined;
  private readonly listeners = new Set<(event: HubEvent) => void>();

  constructor(private readonly redis: Redis, private readonly channel: string, private readonly logger: Logger) {}

  /** Adds a listener; returns the function that removes it. */
  listen(listener: (event: HubEvent) => void): () => void {
    this.listeners.add(listener);
    this.connect();
    return () => void this.listeners.delete(listener);
  }

  /** Resolves once the subscription is in place (so nothing published from now on is missed). */
  ready(): Promise<void> {
    this.connect();
    return this.subscribed!;
  }

  get listenerCount(): number {
    return this.listeners.size;
  }

  close(): void {
    this.listeners.clear();
    this.subscriber?.disconnect();
    this.subscriber = undefined;
    this.subscribed = undefined;
  }

  private connect(): void {
    if (this.subscriber) return;
    const subscriber = this.redis.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null, lazyConnect: false });
    this.subscriber = subscriber;
    let connections = 0;
    subscriber.on('error', () => {});
    subscriber.on('ready', () => {
      if (connections++ === 0) return;
      // Subscribing again is harmless and says when the subscription is back; only then is a reload complete.
      subscriber.subscribe(this.channel).then(() => {
        this.logger.info('job events: Redis is back; live pages resync');
        this.emit({ kind: 'resync' });
      }, () => {});
    });
    subscriber.on('message', (_channel: string, message: string) => {
      let event: Partial<JobEvent> & { cancel?: boolean };
      try {
        event = JSON.parse(message) as Partial<JobEvent>;
      } catch {
        return;
      }
      if (typeof event.id !== 'string' || typeof event.app !== 'string' || typeof event.state !== 'string') return;
      this.emit({ kind: 'job', job: { id: event.id, app: event.app, state: event.state, step: event.step ?? 'queued' } });
    });
    this.subscribed = subscriber.subscribe(this.channel).then(() => undefined);
    this.subscribed.catch((err: Error) => this.logger.warn({ err: err.message }, 'job events: cannot subscribe'));
  }

  private emit(event: HubEvent): void {
    for (const listener of this.listeners) listener(event);
  }
}
