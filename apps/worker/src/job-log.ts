import { scrubSecrets } from '@slipway/core/logger';
import type { JobStore } from '@slipway/queue/job-store';

/**
 * A job's log as it is written: lines are scrubbed of the app's secrets,
 * batched (one RPUSH per `flushMs`, so a chatty build costs a few Redis
 * round trips a second, not one per line) and reach Redis in order.
 */
export class JobLog {
  private buffer: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: JobStore,
    private readonly id: string,
    private readonly secrets: readonly (string | undefined)[] = [],
    private readonly flushMs = 100,
  ) {}

  /** Adds one or more lines (a multi-line text is split). */
  write = (text: string): void => {
    for (const line of text.replace(/\r\n/g, '\n').split('\n')) {
      this.buffer.push(scrubSecrets(line, this.secrets));
    }
    if (this.buffer.length >= 500) void this.flush();
    else if (!this.timer) this.timer = setTimeout(() => void this.flush(), this.flushMs);
  };

  /** A step header, so the log reads as a sequence of steps. */
  section(title: string): void {
    this.write(`==> ${title}`);
  }

  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const lines = this.buffer;
    this.buffer = [];
    if (lines.length > 0) {
      this.flushing = this.flushing.then(() => this.store.appendLog(this.id, lines).then(() => undefined, () => undefined));
    }
    return this.flushing;
  }
}
