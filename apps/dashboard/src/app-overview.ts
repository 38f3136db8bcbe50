import type Docker from 'dockerode';
import type { Etcd3 } from 'etcd3';
import { firstLine } from '@slipway/core/slipway-error';
import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import type { JobStore } from '@slipway/queue/job-store';
import { FINAL_STATES } from '@slipway/queue/job-types';
import { appStatus, type AppStatus } from '@slipway/rollout/app-status';
import { jobView, type JobView } from './job-view.js';

/** How long one app's live status (etcd, Docker, health probes, nginx file) may take before the page says so. */
export const STATUS_TIMEOUT_MS = 8_000;

/** One app on the overview: its configuration, what is live (as `slipway status` sees it), and its recent jobs. */
export interface AppOverview {
  name: string;
  branch: string;
  replicas: number;
  routing: AppConfig['routing'];
  listen: string;
  serverName: string[];
  /** `slipway status --json` for this app, or null when it could not be read (see statusError). */
  status: AppStatus | null;
  statusError: string | null;
  /** The newest job, whatever its state. */
  lastJob: JobView | null;
  /** The newest job that ran to an outcome (completed, failed or cancelled). */
  lastOutcome: JobView | null;
}

export interface AppOverviewOptions {
  app: AppConfig;
  nginx: SlipwayConfig['nginx'];
  /** For `routing: dns` apps. */
  dns?: SlipwayConfig['dns'];
  docker: Docker;
  etcd: Etcd3;
  store: JobStore;
}

/** Gathers one app's overview; a dependency that is down becomes `statusError`, not a failed page. */
export async function appOverview(options: AppOverviewOptions): Promise<AppOverview> {
  const { app } = options;
  const [status, jobs] = await Promise.all([
    withTimeout(appStatus({ app, nginx: options.nginx, dns: options.dns, docker: options.docker, etcd: options.etcd }), STATUS_TIMEOUT_MS)
      .then((value) => ({ value, error: null }), (err: unknown) => ({ value: null, error: firstLine(err) })),
    options.store.list({ app: app.name, limit: 20 }),
  ]);
  const outcome = jobs.find((j) => FINAL_STATES.has(j.state) && j.state !== 'superseded');
  return {
    name: app.name, branch: app.branch, replicas: app.replicas, routing: app.routing, listen: app.listen, serverName: app.server_name,
    status: status.value, statusError: status.error,
    lastJob: jobs[0] ? jobView(jobs[0]) : null,
    lastOutcome: outcome ? jobView(outcome) : null,
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s (etcd, Docker or a health check is slow)`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
