import { api } from './api-client.js';

/** A job change as the events stream sends it. */
export interface JobEvent {
  id: string;
  app: string;
  state: string;
  step: string;
}

export interface LiveEventsOptions {
  /** Only this app's jobs. */
  app?: string;
  onJob(event: JobEvent): void;
  /** The stream (re)opened or Redis came back: events may have been missed, reload. */
  onResync(): void;
  /** Connection state, for a "live" indicator. */
  onStatus?(live: boolean): void;
}

/**
 * Follows `/api/events`. The browser reconnects by itself after a dropped
 * connection; when it gives up (an error answer, say) this starts over
 * with a growing delay. Returns the function that stops it.
 */
export function liveJobEvents(options: LiveEventsOptions): () => void {
  let source: EventSource | null = null;
  let timer: number | undefined;
  let delay = 1000;
  let stopped = false;
  const url = `/api/events${options.app ? `?app=${encodeURIComponent(options.app)}` : ''}`;
  const open = () => {
    if (stopped) return;
    source = new EventSource(url);
    source.addEventListener('ready', () => {
      delay = 1000;
      options.onStatus?.(true);
      options.onResync();
    });
    source.addEventListener('resync', () => options.onResync());
    source.addEventListener('job', (event) => {
      try {
        options.onJob(JSON.parse((event as MessageEvent<string>).data) as JobEvent);
      } catch {
        // A malformed event is dropped; the next resync repairs the view.
      }
    });
    source.addEventListener('error', () => {
      options.onStatus?.(false);
      if (source?.readyState === EventSource.CLOSED) {
        source = null;
        // Refused rather than dropped? A lost session sends the reader to sign in again.
        void api('/api/session').catch(() => {});
        timer = window.setTimeout(open, delay);
        delay = Math.min(delay * 2, 30_000);
      }
    });
  };
  open();
  const stop = () => {
    stopped = true;
    window.clearTimeout(timer);
    source?.close();
  };
  window.addEventListener('pagehide', stop, { once: true });
  return stop;
}
