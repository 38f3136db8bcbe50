import { DeliveryError } from './delivery-error.js';
import type { HttpRequest } from './http-request.js';
import { isRetryableStatus } from './retryable-status.js';

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
    const reason = signal.aborted ? 'no answer in time' : ((err as Error).cause as Error | undefined)?.message ?? (err as Error).message;
    throw new DeliveryError(`POST ${where}: ${reason}`, { retryable: true, cause: err });
  }
  const text = await res.text().catch(() => '');
  if (res.status >= 200 && res.status < 300) return;
  const excerpt = text.replace(/\s+/g, ' ').trim().slice(0, BODY_EXCERPT);
  throw new DeliveryError(`POST ${where} answered ${res.status}${excerpt ? `: ${excerpt}` : ''}`, {
    retryable: isRetryableStatus(res.status),
    httpStatus: res.status,
    retryAfterMs: retryAfterMs(res.headers.get('retry-after')),
  });
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
