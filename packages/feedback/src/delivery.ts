import { type Logger, scrubSecrets } from '@slipway/core/logger';
import { SlipwayError } from '@slipway/core/slipway-error';

/*
 * Delivery in the background of what Slipway tells the outside (commit
 * statuses, notifications): one POST per try, retried with backoff while
 * the failure may pass, never in the way of the deploy that caused it.
 */

export type DeliveryOutcome = 'delivered' | 'failed' | 'dropped';

/** How long close waits, past its grace, for tries to settle once aborted. */
const ABANDON_MS = 1000;

/** One thing to deliver: a commit status or a notification. */
export interface DeliveryTask {
  /**
   * Tasks with the same key go out one at a time, in the order given; a
   * newer one replaces an older one not yet delivered (the commit's newer
   * status makes the older one moot).
   */
  key: string;
  /** The kind of target: `github`, `gitea`, `gitlab`, `slack`, `webhook` (a metric label and a log field). */
  target: string;
  /** What it is, for the log: `commit status`, `notification`. */
  what: string;
  /** Fields of the one log line written if it cannot be delivered. Never a token, secret or secret URL. */
  context: Record<string, unknown>;
  /** One try. Throws DeliveryError (with `retryable`) when the target did not take it. */
  send(signal: AbortSignal): Promise<void>;
  /** Asked before each try; false drops the task (what it would say is no longer true). */
  stillWanted?(): Promise<boolean>;
  /** Called once it was delivered. */
  delivered?(): void;
  /** Called once with how it ended (delivered, given up, dropped). */
  settled?(outcome: DeliveryOutcome): void;
}

export interface BackgroundDeliveryOptions {
  logger: Logger;
  /** Default DEFAULT_RETRY_POLICY. */
  retry?: Partial<RetryPolicy>;
  /** Requests in flight at once. Default 8. */
  concurrency?: number;
  /** Keys held at once; past it, new tasks are dropped (and logged). Default 1000. */
  maxPending?: number;
  /** Each task's end, for metrics. */
  onSettled?: (target: string, outcome: DeliveryOutcome) => void;
}

interface Slot {
  next: DeliveryTask | null;
  /** Ends a backoff wait early: a newer task arrived, or we are closing. */
  wake: (() => void) | null;
}

/**
 * Delivers in the background, never in the caller's way: `deliver` returns
 * at once and never throws. Each task is tried up to `attempts` times with
 * exponential backoff while the failure is retryable; a task that cannot
 * be delivered is logged once, as a warning, and dropped. Bounded in
 * requests (`concurrency`) and memory (`maxPending`).
 */
export class BackgroundDelivery {
  private readonly logger: Logger;
  private readonly policy: RetryPolicy;
  private readonly concurrency: number;
  private readonly maxPending: number;
  private readonly slots = new Map<string, Slot>();
  private readonly queue: Array<() => void> = [];
  private readonly idleWaiters: Array<() => void> = [];
  /** Tries in flight, aborted together once close's grace runs out. */
  private readonly inFlight = new Set<AbortController>();
  private aborted = false;
  private active = 0;
  private closing = false;
  private overflowLogged = false;

  constructor(private readonly options: BackgroundDeliveryOptions) {
    this.logger = options.logger;
    this.policy = { ...DEFAULT_RETRY_POLICY, ...options.retry };
    this.concurrency = options.concurrency ?? 8;
    this.maxPending = options.maxPending ?? 1000;
  }

  deliver(task: DeliveryTask): void {
    if (this.closing) return this.settle(task, 'dropped');
    const slot = this.slots.get(task.key);
    if (slot) {
      if (slot.next) this.settle(slot.next, 'dropped');
      slot.next = task;
      slot.wake?.();
      return;
    }
    if (this.slots.size >= this.maxPending) {
      if (!this.overflowLogged) this.logger.warn({ pending: this.slots.size }, `too many undelivered ${task.what}s; dropping new ones until the backlog clears`);
      this.overflowLogged = true;
      return this.settle(task, 'dropped');
    }
    const fresh: Slot = { next: task, wake: null };
    this.slots.set(task.key, fresh);
    void this.run(task.key, fresh);
  }

  /** Tasks queued or in flight. */
  get pending(): number {
    return this.slots.size;
  }

  /** Resolves when nothing is left to deliver. */
  idle(): Promise<void> {
    if (this.slots.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Stops retrying and takes no new task; a try in flight gets up to
   * `graceMs` to finish, then is abandoned (and logged at info: shutting
   * down is not the target's fault), and no try waiting for its turn
   * starts. Resolves by `graceMs` + ABANDON_MS whatever a try does with
   * its abort (a send or a stillWanted that never settles is left behind).
   */
  async close(graceMs = 2000): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      for (const slot of this.slots.values()) slot.wake?.();
    }
    if (this.slots.size === 0) return;
    const timers: NodeJS.Timeout[] = [];
    const after = (ms: number, then: () => void) => timers.push(setTimeout(then, ms).unref());
    after(graceMs, () => {
      this.aborted = true;
      for (const controller of this.inFlight) controller.abort(new Error('shutting down'));
    });
    await Promise.race([this.idle(), new Promise<void>((resolve) => after(graceMs + ABANDON_MS, resolve))]);
    for (const timer of timers) clearTimeout(timer);
  }

  private async run(key: string, slot: Slot): Promise<void> {
    while (slot.next) {
      const task = slot.next;
      slot.next = null;
      await this.attemptAll(task, slot).catch(() => this.settle(task, 'failed'));
    }
    this.slots.delete(key);
    if (this.slots.size === 0) {
      this.overflowLogged = false;
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }

  private async attemptAll(task: DeliveryTask, slot: Slot): Promise<void> {
    // A try with no answer (timed out, cut, a 5xx) may have been applied all the same, late: the forge may show it over
    // what was posted since. What follows a delivery (`delivered`) then follows too, once the task is moot or given up.
    let mayHaveLanded = false;
    const landedMaybe = () => {
      if (mayHaveLanded && !this.aborted && !this.closing && slot.next === null) task.delivered?.();
    };
    for (let attempt = 1; ; attempt++) {
      if (slot.next || this.aborted || (this.closing && attempt > 1)) return this.settle(task, 'dropped');
      let failure: DeliveryError;
      const release = await this.acquire();
      // Asked with the slot in hand, right before the send: the wait for a slot has no bound while a forge answers slowly,
      // and a status true when it was queued (a job waiting) may be false by then and overwrite a later one.
      // And moot again after it: close may have given up on tries, or a newer task come, while it was asked.
      const moot = () => this.aborted || slot.next !== null;
      if (moot() || !(await wanted(task)) || moot()) {
        release();
        this.settle(task, 'dropped');
        return landedMaybe();
      }
      // A controller per try, not AbortSignal.any() over a long-lived signal: that one would keep every try's signal alive.
      const controller = new AbortController();
      const timeout = setTimeout(() => controller.abort(new Error('timed out')), this.policy.timeoutMs);
      this.inFlight.add(controller);
      try {
        await task.send(controller.signal);
        this.settle(task, 'delivered');
        return task.delivered?.();
      } catch (err) {
        failure = err instanceof DeliveryError ? err : new DeliveryError((err as Error)?.message ?? String(err), { retryable: false, cause: err });
      } finally {
        clearTimeout(timeout);
        this.inFlight.delete(controller);
        release();
      }
      if (failure.retryable) mayHaveLanded = true;
      const last = !failure.retryable || attempt >= this.policy.attempts || this.closing || (failure.retryAfterMs ?? 0) > MAX_RETRY_AFTER_MS;
      if (last) {
        const level = this.closing && failure.retryable ? 'info' : 'warn';
        this.logger[level]({ target: task.target, ...task.context, attempts: attempt, status: failure.httpStatus, err: failure.message }, `could not deliver the ${task.what}; giving up`);
        this.settle(task, 'failed');
        return landedMaybe();
      }
      this.logger.debug({ target: task.target, ...task.context, attempt, err: failure.message }, `${task.what} not delivered yet; retrying`);
      await this.sleep(backoffDelay(this.policy, attempt, failure.retryAfterMs), slot);
    }
  }

  private sleep(ms: number, slot: Slot): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        slot.wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      slot.wake = done;
    });
  }

  private acquire(): Promise<() => void> {
    const release = () => {
      this.active--;
      this.queue.shift()?.();
    };
    if (this.active < this.concurrency) {
      this.active++;
      return Promise.resolve(release);
    }
    return new Promise((resolve) => this.queue.push(() => {
      this.active++;
      resolve(release);
    }));
  }

  private settle(task: DeliveryTask, outcome: DeliveryOutcome): void {
    try {
      this.options.onSettled?.(task.target, outcome);
      task.settled?.(outcome);
    } catch {
      // A metric, or a caller's bookkeeping, must never break delivery.
    }
  }
}

async function wanted(task: DeliveryTask): Promise<boolean> {
  if (!task.stillWanted) return true;
  let timer: NodeJS.Timeout | undefined;
  try {
    // Bounded: it is asked holding a request slot, and a worker's Redis client waits for a Redis that went away.
    return await Promise.race([task.stillWanted(), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), STILL_WANTED_MS)))]);
  } catch {
    // Cannot tell (Redis away): saying it is better than saying nothing.
    return true;
  } finally {
    clearTimeout(timer);
  }
}

/** How long a task's stillWanted may take before it counts as "cannot tell". */
const STILL_WANTED_MS = 2_000;

/** How a commit status or notification is retried in the background. */
export interface RetryPolicy {
  /** Tries in all, the first included. Default 5. */
  attempts: number;
  /** Wait before the second try; doubled for each one after. Default 1000 ms. */
  baseDelayMs: number;
  /** No wait is longer than this (a Retry-After included). Default 30 s. */
  maxDelayMs: number;
  /** One try is abandoned after this long. Default 10 s. */
  timeoutMs: number;
}

/** About 15 s of waiting over five tries: a forge restarting is caught, one that is down costs five requests. */
export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = { attempts: 5, baseDelayMs: 1000, maxDelayMs: 30_000, timeoutMs: 10_000 };

/**
 * The longest wait a target may ask for (Retry-After, a rate limit's
 * reset) that is waited; one asking more is given up on, never asked again
 * sooner than it said (GitHub may block an integration that does).
 */
export const MAX_RETRY_AFTER_MS = 10 * 60_000;

/**
 * Milliseconds to wait after failed try number `attempt` (1-based):
 * exponential from `baseDelayMs`, never more than `maxDelayMs`, and at
 * least what the target asked for (Retry-After), however long.
 */
export function backoffDelay(policy: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs'>, attempt: number, retryAfterMs?: number): number {
  const exponential = policy.baseDelayMs * 2 ** Math.max(0, attempt - 1);
  return Math.max(Math.min(policy.maxDelayMs, exponential), retryAfterMs ?? 0);
}

/**
 * A commit status or notification the target did not take. `retryable`
 * says whether trying again later may help (no answer, a timeout, 408, 429,
 * 5xx); `httpStatus` is the target's answer, when there was one. Messages
 * never hold a token, a secret or a URL's credentials.
 */
export class DeliveryError extends SlipwayError {
  readonly httpStatus: number | undefined;
  /** Milliseconds the target asked us to wait (Retry-After), when it did. */
  readonly retryAfterMs: number | undefined;

  constructor(message: string, options: { retryable: boolean; httpStatus?: number; retryAfterMs?: number; cause?: unknown }) {
    super('delivery_failed', message, { cause: options.cause, retryable: options.retryable });
    this.name = 'DeliveryError';
    this.httpStatus = options.httpStatus;
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** HTTP answers worth retrying later: the target is overloaded, rate-limiting or broken for now. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 425 || status === 429 || status >= 500;
}

/** One POST to a forge or a notification target, built by a pure function and sent by `sendHttpRequest`. */
export interface HttpRequest {
  method: 'POST';
  url: string;
  headers: Record<string, string>;
  /** The exact bytes sent (a signature covers them). */
  body: string;
}

/** How much of a refusal's body is kept for the log. */
const BODY_EXCERPT = 200;

/**
 * Sends one request with `fetch`, once. Resolves on 2xx; otherwise throws a
 * DeliveryError saying whether a retry may help. Redirects are refused
 * (a POST carrying a token is never replayed to another address). The
 * error names the target by its origin only: a Slack webhook's path is
 * its secret.
 */
export async function sendHttpRequest(request: HttpRequest, signal: AbortSignal): Promise<void> {
  const where = describeUrl(request.url);
  let res: Response;
  try {
    res = await fetch(request.url, { method: request.method, headers: request.headers, body: request.body, redirect: 'manual', signal });
  } catch (err) {
    const said = signal.aborted ? 'no answer in time' : ((err as Error).cause as Error | undefined)?.message ?? (err as Error).message;
    // fetch's own errors quote the whole URL (a Slack webhook's path is its secret): only its origin is said. They quote
    // a header value it refuses too (a token with a line break): the credentials' values, and each word of them, go.
    const reason = scrubSecrets(said.split(request.url).join(where), credentialsOf(request.headers));
    throw new DeliveryError(`POST ${where}: ${reason}`, { retryable: true });
  }
  const text = await readExcerpt(res);
  if (res.status >= 200 && res.status < 300) return;
  // A server that echoes the request (a proxy's error page, a debug endpoint) would put the token in the log line.
  // Scrubbed whole, then cut: a token cut in two by the excerpt's end would no longer be found.
  const excerpt = scrubSecrets(text.replace(/\s+/g, ' ').trim(), credentialsOf(request.headers)).slice(0, BODY_EXCERPT);
  // GitHub answers its rate limits (primary and secondary) with 403 as well as 429, saying so in its headers.
  const limited = res.status === 403 && (res.headers.has('retry-after') || res.headers.get('x-ratelimit-remaining') === '0');
  const resetAt = Number(res.headers.get('x-ratelimit-reset'));
  const untilReset = res.headers.get('x-ratelimit-remaining') === '0' && resetAt > 0 ? Math.max(0, resetAt * 1000 - Date.now()) : undefined;
  throw new DeliveryError(`POST ${where} answered ${res.status}${limited ? ' (rate limited)' : ''}${excerpt ? `: ${excerpt}` : ''}`, {
    retryable: limited || isRetryableStatus(res.status),
    httpStatus: res.status,
    retryAfterMs: retryAfterMs(res.headers.get('retry-after')) ?? untilReset,
  });
}

/** Request headers that carry a credential: a token, a signature. */
const CREDENTIAL_HEADER = /authorization|token|secret|signature|key/i;

/** The values of a request's credential headers, and each word of them (a quoted value may be cut or escaped around its whitespace). */
function credentialsOf(headers: Readonly<Record<string, string>>): string[] {
  const values = Object.entries(headers).filter(([name]) => CREDENTIAL_HEADER.test(name)).map(([, value]) => value);
  return [...values, ...values.flatMap((value) => value.split(/[\s\u0000-\u001f\u007f]+/).filter((word) => word.length >= 8))];
}

/** How much of an answer is read: enough for its excerpt, whatever the target sends. */
const ANSWER_READ_BYTES = 4096;

/** The start of an answer's body, the rest left unread (the connection is let go). */
async function readExcerpt(res: Response): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < ANSWER_READ_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } catch {
    // An answer cut short says what it said so far.
  } finally {
    await reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks).subarray(0, ANSWER_READ_BYTES).toString('utf8');
}

/** `https://host:port`: enough to say where, nothing secret. */
function describeUrl(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid URL)';
  }
}

function retryAfterMs(header: string | null): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}
