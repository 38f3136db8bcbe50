import type { Request } from 'express';

/**
 * Whether a browser says this request comes from our own pages. Modern
 * browsers send `Sec-Fetch-Site`, which page scripts cannot forge: it must
 * be `same-origin`. Without it (older browsers) the `Origin` header, when
 * present, must be ours. A client sending neither (curl, a script with a
 * Bearer token) is not a browser a forged page could drive, so it passes.
 */
export function isSameOrigin(req: Request): boolean {
  const site = req.get('sec-fetch-site');
  if (site !== undefined) return site === 'same-origin';
  const origin = req.get('origin');
  if (origin === undefined) return true;
  const host = req.get('host');
  return origin !== 'null' && host !== undefined && origin.toLowerCase() === `${req.protocol}://${host}`.toLowerCase();
}
