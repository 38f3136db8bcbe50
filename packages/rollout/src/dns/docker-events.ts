import type Docker from 'dockerode';
import { firstLine } from '@slipway/core/slipway-error';

/** Pause before the event stream is opened again after Docker went away. */
export const EVENTS_RECONNECT_MS = 1_000;

export interface ContainerEvent {
  /** `start`, `die`, `destroy`, `pause`, `unpause`… */
  action: string;
  id: string;
  labels: Record<string, string>;
  /** Docker's time of the event, ms. */
  at: number;
}

export interface DockerEventsOptions {
  docker: Docker;
  /** Only containers carrying this label (`key` or `key=value`). */
  label: string;
  actions: readonly string[];
  onEvent: (event: ContainerEvent) => void;
  /** Called each time the stream is (re)opened: events may have been missed before it, so reconcile everything. */
  onConnected: () => void;
  log: (line: string) => void;
}

/**
 * Docker's own event stream (`GET /events`), filtered by the engine to the
 * given label and actions, as skydock and registrator read it. Reopened
 * after EVENTS_RECONNECT_MS whenever it ends (Docker restarted, socket
 * cut); `onConnected` tells the caller to look at the full state again.
 */
export function watchDockerEvents(options: DockerEventsOptions): { close(): void } {
  const events = new DockerEventStream(options);
  void events.open();
  return { close: () => events.close() };
}

type EventStream = NodeJS.ReadableStream & { destroy?: () => void };

class DockerEventStream {
  private closed = false;
  private current: EventStream | undefined;
  /** Docker went away: said once, and said again when it is back. */
  private lost = false;

  constructor(private readonly options: DockerEventsOptions) {}

  async open(): Promise<void> {
    if (this.closed) return;
    const { options } = this;
    let stream: EventStream;
    try {
      stream = await options.docker.getEvents({
        filters: { type: ['container'], label: [options.label], event: [...options.actions] },
      } as Docker.GetEventsOptions);
    } catch (err) {
      if (!this.lost) options.log(`Docker events unavailable (${firstLine(err)}); retrying every ${EVENTS_RECONNECT_MS} ms`);
      this.reopenLater();
      return;
    }
    if (this.closed) {
      stream.destroy?.();
      return;
    }
    this.current = stream;
    if (this.lost) options.log('Docker events re-established');
    this.lost = false;
    options.onConnected();
    let buffer = '';
    stream.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      const lines = buffer.split('\n');
      buffer = lines.pop() ?? '';
      for (const line of lines) this.event(line);
    });
    const ended = () => {
      if (this.current !== stream || this.closed) return;
      this.current = undefined;
      if (!this.lost) options.log(`Docker event stream ended; reopening in ${EVENTS_RECONNECT_MS} ms`);
      this.reopenLater();
    };
    stream.on('end', ended);
    stream.on('close', ended);
    stream.on('error', ended);
  }

  close(): void {
    this.closed = true;
    this.current?.destroy?.();
  }

  private reopenLater(): void {
    this.lost = true;
    setTimeout(() => void this.open(), EVENTS_RECONNECT_MS).unref();
  }

  /** One line of the stream: a JSON event. */
  private event(line: string): void {
    if (!line.trim()) return;
    try {
      const e = JSON.parse(line) as { Action?: string; status?: string; id?: string; Actor?: { ID?: string; Attributes?: Record<string, string> }; timeNano?: number; time?: number };
      this.options.onEvent({
        action: e.Action ?? e.status ?? '',
        id: e.Actor?.ID ?? e.id ?? '',
        labels: e.Actor?.Attributes ?? {},
        at: e.timeNano ? Math.round(e.timeNano / 1e6) : (e.time ?? 0) * 1000,
      });
    } catch {
      // A torn line cannot happen with the split above; anything else unparseable is not an event.
    }
  }
}
