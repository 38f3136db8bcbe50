import { SlipwayError } from '@slipway/core/slipway-error';

/** Live connections (log streams and event streams) one dashboard serves at most. */
export const MAX_STREAMS = 200;

/**
 * Counts open streams so a flood of them is refused (503) instead of
 * exhausting memory, and ends them all at shutdown (they never go idle on
 * their own; browsers reconnect to the next instance and resume).
 */
export class StreamSlots {
  private readonly open = new Set<() => void>();

  constructor(private readonly max = MAX_STREAMS) {}

  get count(): number {
    return this.open.size;
  }

  /**
   * Takes a slot for a stream that `end` stops, or throws `too_many_streams`.
   * The returned function gives the slot back (idempotent).
   */
  take(end: () => void): () => void {
    if (this.open.size >= this.max) throw new SlipwayError('too_many_streams', `this dashboard already serves ${this.max} live streams; try again shortly`, { status: 503 });
    const entry = () => end();
    this.open.add(entry);
    return () => void this.open.delete(entry);
  }

  /** Ends every open stream. */
  endAll(): void {
    for (const end of [...this.open]) end();
    this.open.clear();
  }
}
