import type { AppConfig, SlipwayConfig } from '@slipway/config/types';
import type { DrainResult } from './drain-connections.js';
import type { ReleaseRecord } from './release-record.js';

/** Progress milestones, in order, for the worker's job state. */
export type RolloutStepName = 'start' | 'health' | 'switch' | 'drain' | 'done';

/** What a rollout needs besides its seams (see `rollout` for the public options). */
export interface RolloutRequest {
  app: AppConfig;
  image: string;
  /** Full 40-hex commit, or null for an image deploy. */
  sha: string | null;
  /** The job id: recorded as the release and as the `slipway.release` label. */
  job: string;
  /** Every line of progress, for the job log shown live. Default: discarded. */
  log?: (line: string) => void;
  onStep?: (step: RolloutStepName) => void;
  /**
   * Cancels the rollout before its switch: its containers are removed and
   * a CancelledError (`cancelled`) thrown. Ignored from the switch on: a
   * cutover is never abandoned half way.
   */
  signal?: AbortSignal;
  /** How long to wait for another rollout of the app. Default LOCK_WAIT_MS (15 min). */
  lockWaitMs?: number;
  /** TTL of the lock's lease. Default LOCK_TTL_S (5 s). */
  lockTtlS?: number;
  /** The configuration's `dns` settings: required for an app with routing: dns, unused otherwise. */
  dns?: SlipwayConfig['dns'];
}

export interface RolloutResult {
  app: string;
  release: ReleaseRecord;
  /** What was live before, or null for a first release. */
  previous: ReleaseRecord | null;
  /** The new containers, now live. */
  containers: Array<{ id: string; address: string }>;
  /** Old containers stopped and removed after the drain. */
  stopped: string[];
  /** Stray containers of unfinished rollouts removed before starting. */
  strays: string[];
  /** Old containers that could not be stopped (Docker went away after the switch); the next rollout removes them. */
  leftovers: string[];
  /** Null when nothing was serving before. */
  drain: DrainResult | null;
  /**
   * Milliseconds per phase: `lock` waiting for and taking the lock, `plan`
   * reading Docker, etcd and nginx and planning (and removing strays),
   * `switch` the candidate check + etcd transaction + nginx apply until the
   * old workers stopped accepting, `stop` stopping and removing the old
   * containers (for routing: dns, `switch` ends when the DNS server
   * answers the new set, and `drain` includes the wait for nginx's
   * resolver caches).
   */
  timings: { lock: number; plan: number; start: number; health: number; switch: number; drain: number; stop: number; total: number };
}
