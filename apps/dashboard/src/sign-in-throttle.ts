/** Failed sign-ins (form or Bearer) allowed per address within {@link SIGN_IN_WINDOW_S} before answering 429. */
export const MAX_FAILED_SIGN_INS = 10;
export const SIGN_IN_WINDOW_S = 300;
/** Addresses remembered at most, so a flood of addresses cannot grow memory without bound. */
const MAX_TRACKED = 10_000;

/**
 * Slows down token guessing: per client address, a fixed window of failed
 * attempts. One instance serves the sign-in form and `Authorization:
 * Bearer` alike, so the API is no faster a way to guess.
 */
export class SignInThrottle {
  private readonly failures = new Map<string, { count: number; until: number }>();

  constructor(private readonly now: () => number = () => Date.now()) {}

  /** Seconds to wait before trying again, or 0 when an attempt is allowed now. */
  retryAfter(address: string): number {
    const entry = this.failures.get(address);
    if (!entry || entry.until <= this.now()) return 0;
    return entry.count >= MAX_FAILED_SIGN_INS ? Math.ceil((entry.until - this.now()) / 1000) : 0;
  }

  failed(address: string): void {
    const now = this.now();
    const entry = this.failures.get(address);
    if (entry && entry.until > now) {
      entry.count += 1;
      return;
    }
    if (this.failures.size >= MAX_TRACKED) {
      for (const [key, value] of this.failures) if (value.until <= now) this.failures.delete(key);
      if (this.failures.size >= MAX_TRACKED) this.failures.delete(this.failures.keys().next().value!);
    }
    this.failures.set(address, { count: 1, until: now + SIGN_IN_WINDOW_S * 1000 });
  }

  succeeded(address: string): void {
    this.failures.delete(address);
  }
}
