/** HTTP answers worth retrying later: the target is overloaded, rate-limiting or broken for now. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 425 || status === 429 || status >= 500;
}
