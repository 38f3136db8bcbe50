import type Docker from 'dockerode';
import type { Etcd3 } from 'etcd3';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '@slipway/core/logger';
import type { SlipwayConfig } from '@slipway/config/types';
import type { DeployFeedback } from '@slipway/feedback/deploy-feedback';
import type { JobStore } from '@slipway/queue/job-store';

/** Everything a deploy needs from outside, handed in explicitly (no globals, no env). */
export interface DeployContext {
  config: SlipwayConfig;
  store: JobStore;
  /** To promote an app's delayed jobs when its deploy ends. */
  queue: Queue;
  redis: Redis;
  /** The engine images are built on; with engine.type: docker also where they run. */
  docker: Docker;
  /** engine.type: swarm: the manager's client (engine.manager); releases run there as services. */
  manager?: Docker;
  etcd: Etcd3;
  logger: Logger;
  /** Every secret of the config (see configSecrets): scrubbed from job logs and errors. */
  secrets: readonly string[];
  /** Running jobs of this worker by id, for `slipway cancel`. */
  running: Map<string, AbortController>;
  /** How long an app's deploy lease lives without renewal. */
  leaseMs?: number;
  /** Commit statuses, notifications and metrics; told of each job's start and end, never waited for. */
  feedback?: DeployFeedback;
}
