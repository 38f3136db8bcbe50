import type { Provider } from './provider.js';
import { WebhookError } from './webhook-error.js';

/** How a webhook body is encoded: raw JSON, or a form with the JSON in its `payload` field. */
export type MediaType = 'json' | 'form';

/**
 * Reads Content-Type. JSON from every forge; the form encoding only from
 * GitHub and Gitea/Forgejo/Gogs, which can be set to send it. Anything else
 * is 415 before the body is read.
 */
export function webhookMediaType(provider: Provider, header: string | readonly string[] | undefined): MediaType {
  if (header === undefined || (typeof header !== 'string' && header.length === 0)) {
    throw new WebhookError('unsupported_media_type', 'Content-Type is missing; expected application/json');
  }
  if (typeof header !== 'string' && header.length > 1) {
    throw new WebhookError('unsupported_media_type', 'Content-Type was sent more than once');
  }
  const value = (typeof header === 'string' ? header : header[0]!).toLowerCase();
  const [type = '', ...params] = value.split(';').map((part) => part.trim());
  for (const param of params) {
    const [name, raw = ''] = param.split('=', 2).map((s) => s.trim());
    // The body is decoded as UTF-8 (signatures are over its bytes); another charset cannot be honoured.
    if (name === 'charset' && raw.replace(/^"|"$/g, '') !== 'utf-8' && raw.replace(/^"|"$/g, '') !== 'utf8') {
      throw new WebhookError('unsupported_media_type', 'only the UTF-8 charset is accepted');
    }
  }
  if (type === 'application/json') return 'json';
  if (type === 'application/x-www-form-urlencoded' && provider !== 'gitlab') return 'form';
  const accepted = provider === 'gitlab' ? 'application/json' : 'application/json or application/x-www-form-urlencoded';
  throw new WebhookError('unsupported_media_type', `Content-Type must be ${accepted}`);
}
