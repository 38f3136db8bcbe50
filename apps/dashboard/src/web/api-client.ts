import type { JobEvent } from './job-view.js';

// How the pages talk to the server: the JSON API, and the stream of job
// changes that keeps lists live.

/** An error answer of the API: its stable code, status and message. */
export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
    this.name = 'ApiError';
  }
}

/** Tries of a read (GET) that fails on the network before giving up: about 2 s in all. */
const READ_ATTEMPTS = 4;

function csrfToken(): string {
  return document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')?.content ?? '';
}

/**
 * Calls the JSON API with the session cookie and, for changes, the CSRF
 * token. A lost session (401) goes to the sign-in page and back.
 */
export async function api<T>(path: string, options: { method?: string; body?: unknown; signal?: AbortSignal } = {}): Promise<T> {
  const method = options.method ?? 'GET';
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken();
  if (options.body !== undefined) headers['Content-Type'] = 'application/json';
  let res: Response | undefined;
  // Reads are retried through a brief network hiccup; a change is never sent twice.
  const attempts = method === 'GET' ? READ_ATTEMPTS : 1;
  for (let attempt = 1; res === undefined; attempt++) {
    try {
      res = await fetch(path, { method, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body), credentials: 'same-origin', signal: options.signal });
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err;
      if (attempt >= attempts) throw new ApiError(0, 'network', 'The dashboard cannot be reached. Check your connection and try again.');
      await new Promise((resolve) => window.setTimeout(resolve, 250 * 2 ** (attempt - 1)));
    }
  }
  if (res.status === 401) {
    window.location.assign(`/sign-in?next=${encodeURIComponent(window.location.pathname + window.location.search + window.location.hash)}`);
    throw new ApiError(401, 'unauthenticated', 'Your session has ended; sign in again.');
  }
  const body = (await res.json().catch(() => null)) as (T & { error?: string; message?: string }) | null;
  if (!res.ok) throw new ApiError(res.status, body?.error ?? 'error', body?.message ?? `The dashboard answered ${res.status}.`);
  return body as T;
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
