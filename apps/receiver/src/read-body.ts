import type { IncomingMessage, ServerResponse } from 'node:http';
import { SlipwayError } from '@slipway/core/slipway-error';
import { WebhookError } from '@slipway/forges/inspect-webhook';

/** Bodies up to this size are always read: an ordinary push is a few KB, one with hundreds of commits well under this. */
export const SMALL_BODY_BYTES = 1024 * 1024;
/** Chunks smaller than this are copied into a slab instead of being kept (see readBody): the first of FIRST_SLAB_BYTES, each next twice as large, up to SLAB_BYTES. */
const SMALL_CHUNK_BYTES = 4096;
const FIRST_SLAB_BYTES = 4096;
const SLAB_BYTES = 64 * 1024;
/** Default bytes of larger bodies read at once (raised to the body limit if that is higher, so one body at the limit always fits). */
export const LARGE_BODIES_BUDGET_BYTES = 64 * 1024 * 1024;
/**
 * Default bytes held for small bodies at once, as memory is allocated for
 * them: sixteen thousand 8 KB pushes in flight together, far past any
 * forge's rate, and far below what connections each stalling a byte short
 * of SMALL_BODY_BYTES would otherwise hold (4,000 of them: 4 GB).
 */
export const SMALL_BODIES_BUDGET_BYTES = 128 * 1024 * 1024;

/**
 * The bytes of large bodies being read and checked at once. A body is only
 * known to come from a forge once it is read and its signature checked;
 * twenty 25 MB bodies read at once would hold 500 MB before any of them
 * is. So a body larger than SMALL_BODY_BYTES first reserves its size here,
 * until its answer is sent; when the budget is spent it is answered 503
 * with Retry-After (the forge delivers it again later) without being read.
 * Small bodies have a budget of their own, taken as memory is allocated for
 * them (a chunk kept, a slab for small chunks): a slow sender declaring 1 MB
 * holds nothing it has not sent, and one sending a byte holds its first
 * slab (4 KB).
 */
export class BodyBudget {
  private used = 0;

  constructor(readonly bytes: number) {}

  /** Takes `n` bytes of the budget; false (and nothing taken) when they are not free. */
  take(n: number): boolean {
    if (this.used + n > this.bytes) return false;
    this.used += n;
    return true;
  }

  give(n: number): void {
    this.used -= n;
  }

  /**
   * A taker of this budget for one request: what it takes is given back
   * when `res` closes. False (nothing taken) when the bytes are not free,
   * or `res` closed already (its 'close' would never give them back).
   */
  holdUntilClosed(res: ServerResponse): (n: number) => boolean {
    let held = 0;
    return (n) => {
      if (res.closed || !this.take(n)) return false;
      if (held === 0) res.once('close', () => this.give(held));
      held += n;
      return true;
    };
  }
}

export interface ReadBodyOptions {
  /** Larger bodies are refused with 413: at once from Content-Length, else while streaming. */
  limitBytes: number;
  /** Where bodies over SMALL_BODY_BYTES reserve their size until `res` closes. None: no bound. */
  budget?: BodyBudget;
  /** Where the others hold the bytes that arrived until `res` closes. None: no bound. */
  smallBudget?: BodyBudget;
}

/**
 * Reads a request body, never holding more than the limit. What was not
 * read (a refusal) is left to the caller to discard.
 */
export function readBody(req: IncomingMessage, res: ServerResponse, options: ReadBodyOptions): Promise<Buffer> {
  const { limitBytes, budget, smallBudget } = options;
  const tooLarge = () => new WebhookError('payload_too_large', `the body is larger than ${formatBytes(limitBytes)}`);
  const busy = (large = true) => new SlipwayError('busy', `too many ${large ? 'large ' : ''}webhook bodies are being read at once; retry later`, { status: 503 });
  const header = req.headers['content-length'];
  const declared = header !== undefined && /^\d+$/.test(header) ? Number(header) : null;
  if (declared !== null && declared > limitBytes) return Promise.reject(tooLarge());

  const holdLarge = budget?.holdUntilClosed(res);
  const holdSmall = smallBudget?.holdUntilClosed(res) ?? (() => true);
  let reserved = 0;
  const reserve = (total: number): boolean => {
    if (holdLarge === undefined || total <= SMALL_BODY_BYTES || total <= reserved) return true;
    if (!holdLarge(total - reserved)) return false;
    reserved = total;
    return true;
  };
  if (declared !== null && !reserve(declared)) return Promise.reject(busy());

  return new Promise((resolve, reject) => {
    // A large body of known size (it holds its share of the budget) is copied into one
    // buffer as it comes instead of being concatenated at the end: half the peak. Not a
    // small one: a slow sender declaring 1 MB per connection would hold it for nothing.
    let whole = declared !== null && reserved > 0 ? Buffer.allocUnsafe(declared) : null;
    const chunks: Buffer[] = [];
    let size = 0;
    // Small chunks are copied into a slab rather than kept: a body sent in one-byte chunks would
    // otherwise hold a Buffer object (~100 bytes) per byte, a hundred times its size.
    let slab: Buffer | null = null;
    let slabUsed = 0;
    let slabBytes = FIRST_SLAB_BYTES;
    /** What the slab holds goes in order; with `keepRest`, its room left is the slab from now on (not thrown away). */
    const keepSlab = (keepRest = false) => {
      if (slab !== null && slabUsed > 0) chunks.push(slab.subarray(0, slabUsed));
      slab = keepRest && slab !== null && slabUsed < slab.length ? slab.subarray(slabUsed) : null;
      slabUsed = 0;
    };
    // What a small body holds is what it allocates: a chunk it keeps, or a whole slab for the small chunks it copies.
    const hold = (bytes: number) => reserved > 0 || holdSmall(bytes);
    const keep = (chunk: Buffer): boolean => {
      if (chunk.length >= SMALL_CHUNK_BYTES) {
        if (!hold(chunk.length)) return false;
        // The slab's room left stays in use: large and small chunks taking turns never allocate a slab per pair.
        keepSlab(true);
        chunks.push(chunk);
        return true;
      }
      if (slab === null || slabUsed + chunk.length > slab.length) {
        if (!hold(slabBytes)) return false;
        keepSlab();
        slab = Buffer.allocUnsafe(slabBytes);
        // A sender of many small chunks gets larger slabs: few of them, whatever the body's size.
        slabBytes = Math.min(SLAB_BYTES, slabBytes * 2);
      }
      chunk.copy(slab, slabUsed);
      slabUsed += chunk.length;
      return true;
    };
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
    };
    const refuse = (err: Error) => {
      cleanup();
      req.pause();
      chunks.length = 0;
      reject(err);
    };
    const onData = (chunk: Buffer) => {
      if (size + chunk.length > limitBytes) return refuse(tooLarge());
      if (!reserve(size + chunk.length)) return refuse(busy());
      if (whole !== null && size + chunk.length > whole.length) {
        // More than declared (the HTTP parser does not let that happen): collect it all the plain way.
        keep(whole.subarray(0, size));
        whole = null;
      }
      if (whole !== null) chunk.copy(whole, size);
      else if (!keep(chunk)) return refuse(busy(false));
      size += chunk.length;
    };
    const onEnd = () => {
      cleanup();
      keepSlab();
      if (whole !== null) resolve(whole.subarray(0, size));
      else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(new SlipwayError('request_aborted', `the request body could not be read: ${err.message}`, { status: 400 }));
    };
    const onAborted = () => onError(new Error('the client went away'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

function formatBytes(bytes: number): string {
  return bytes % (1024 * 1024) === 0 ? `${bytes / (1024 * 1024)} MB` : `${bytes} bytes`;
}
