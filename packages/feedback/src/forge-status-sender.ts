import { Octokit } from '@octokit/rest';
import type { SlipwayConfig } from '@slipway/config/types';
import type { CommitStatus, StatusTarget } from './commit-status.js';
import { DeliveryError } from './delivery-error.js';
import { giteaStatusRequest } from './gitea-status-request.js';
import { githubStatusParams } from './github-status-params.js';
import { gitlabStatusRequest } from './gitlab-status-request.js';
import { isRetryableStatus } from './retryable-status.js';
import { sendHttpRequest } from './send-http-request.js';

const SILENT = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

/**
 * Posts one commit status to the forge a push came from: GitHub through
 * @octokit/rest, Gitea and GitLab through their REST APIs. Tokens come from
 * `forges.<provider>.token` and go only into the request's auth header.
 */
export class ForgeStatusSender {
  private readonly octokits = new Map<string, Octokit>();

  constructor(private readonly forges: SlipwayConfig['forges']) {}

  /** Whether statuses can go to this provider's forge: a token is configured. */
  canSend(provider: StatusTarget['provider']): boolean {
    return Boolean(this.forges[provider]?.token);
  }

  /** One try; throws DeliveryError. */
  async send(target: StatusTarget, status: CommitStatus, signal: AbortSignal): Promise<void> {
    const base = target.apiBase;
    const token = this.forges[target.provider]?.token;
    if (!token) throw new DeliveryError(`no ${target.provider} token`, { retryable: false });
    if (target.provider === 'gitea') return sendHttpRequest(giteaStatusRequest(base, token, target, status), signal);
    if (target.provider === 'gitlab') return sendHttpRequest(gitlabStatusRequest(base, token, target, status), signal);
    try {
      await this.octokit(base, token).rest.repos.createCommitStatus({ ...githubStatusParams(target, status), request: { signal } });
    } catch (err) {
      throw githubFailure(err, base, signal);
    }
  }

  private octokit(baseUrl: string, token: string): Octokit {
    let client = this.octokits.get(baseUrl);
    if (!client) {
      client = new Octokit({ auth: token, baseUrl, userAgent: 'Slipway', log: SILENT });
      this.octokits.set(baseUrl, client);
    }
    return client;
  }
}

/** Octokit's RequestError (status 500 for no answer at all) as a DeliveryError. */
function githubFailure(err: unknown, base: string, signal: AbortSignal): DeliveryError {
  const origin = new URL(base).origin;
  const e = err as { status?: unknown; message?: string; response?: { headers?: Record<string, string | undefined> } };
  const answered = typeof e.status === 'number' && e.response !== undefined;
  if (signal.aborted || !answered) {
    return new DeliveryError(`POST ${origin}: ${signal.aborted ? 'no answer in time' : e.message ?? String(err)}`, { retryable: true, cause: err });
  }
  const status = e.status as number;
  const retryAfter = Number(e.response?.headers?.['retry-after']);
  return new DeliveryError(`POST ${origin} answered ${status}: ${(e.message ?? '').split('\n', 1)[0]!.slice(0, 200)}`, {
    retryable: isRetryableStatus(status), httpStatus: status, retryAfterMs: Number.isFinite(retryAfter) ? retryAfter * 1000 : undefined, cause: err,
  });
}
