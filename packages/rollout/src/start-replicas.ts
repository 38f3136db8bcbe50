import { randomBytes } from 'node:crypto';
import type Docker from 'dockerode';
import type { ContainerRuntime } from './container-runtime.js';

export interface StartedContainer {
  id: string;
  /** Null when the container was gone again before its port could be read. */
  address: string | null;
}

/**
 * Starts one container per spec, in parallel, each named
 * `slipway-<app>-<random>`. Every container that got created is pushed to
 * `started` as soon as it exists, so whoever cleans up after a failure sees
 * all of them; the first failure is thrown once every start has settled.
 */
export async function startReplicas(options: {
  runtime: ContainerRuntime;
  app: string;
  specs: readonly Docker.ContainerCreateOptions[];
  port: number;
  started: StartedContainer[];
  log: (line: string) => void;
}): Promise<void> {
  const { runtime, log } = options;
  const results = await Promise.allSettled(options.specs.map(async (spec) => {
    const name = `slipway-${options.app}-${randomBytes(4).toString('hex')}`;
    const container = await runtime.startContainer({ ...spec, name }, options.port);
    options.started.push(container);
    log(`started ${container.id.slice(0, 12)} (${name}) on ${container.address ?? 'no address: it stopped at once'}`);
  }));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
