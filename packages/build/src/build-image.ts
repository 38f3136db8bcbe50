import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type Docker from 'dockerode';
import type { AppConfig } from '@slipway/config/types';
import { scrubLine, secretEnvValues } from '@slipway/core/logger';
import { SlipwayError, UnavailableError } from '@slipway/core/slipway-error';
import { dockerCallWithin, ENGINE_TIMEOUT_MS, LABELS, reservedLabelsProblem } from '@slipway/core/docker';
import { BuildError, dockerFailure } from './build-error.js';
import { buildOptions } from './build-options.js';
import { BuildStream, type BuildEvent, type BuildStep, jsonLines } from './build-stream.js';
import { packContext } from './build-context.js';

export interface BuildImageOptions {
  /** Uses `name`, `dockerfile`, `build_args`, `build_timeout_s`, `build_context_max_mb` (and `credentials`, only to scrub them from the log). */
  app: AppConfig;
  /** The checked-out tree (see `checkout`). */
  dir: string;
  /** The full 40-hex commit the tree is. */
  sha: string;
  docker: Docker;
  /** Every line of Docker's output, as it arrives. */
  log?: (line: string) => void;
  /** Each Dockerfile step as it starts (for job progress). */
  onStep?: (step: Readonly<BuildStep>) => void;
  /** Aborting drops the build request, which stops the build in Docker; rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** `apps.<app>.build_timeout_s` when an AppConfig made outside the schema has none. */
export const DEFAULT_BUILD_TIMEOUT_S = 1800;
/** `apps.<app>.build_context_max_mb` when an AppConfig made outside the schema has none. */
export const DEFAULT_BUILD_CONTEXT_MAX_MB = 2048;

export interface BuiltImage {
  /** `slipway/<app>:<sha12>`. */
  image: string;
  /** Docker's image id (`sha256:…`). */
  id: string;
  /** Steps Docker took from its layer cache. */
  cachedSteps: number;
  totalSteps: number;
}

/**
 * `docker build` of a checked-out commit through dockerode: the context is
 * the tree minus `.dockerignore`d paths (and never `.git`), the request
 * comes from {@link buildOptions}, every output line goes to `log` as it
 * arrives. A step that fails inside Docker's stream becomes a
 * {@link BuildError} (`build_failed`, not retryable) naming the step; an
 * unreachable Docker an `UnavailableError`. A build still running after
 * `app.build_timeout_s` is stopped as a cancelled one is (the request is
 * dropped, so Docker stops it) and fails with a `SlipwayError` coded
 * `build_timeout`, not retryable either. Lines reach `log` scrubbed and cut
 * to 16 KB, whatever the build prints.
 */
export async function buildImage(options: BuildImageOptions): Promise<BuiltImage> {
  options.signal?.throwIfAborted();
  const limitS = options.app.build_timeout_s ?? DEFAULT_BUILD_TIMEOUT_S;
  const timeout = new AbortController();
  const timer = setTimeout(() => {
    // The job's error is its first line: it starts with the code, as step_failed and step_timeout do.
    const message = `build_timeout: the build took longer than ${limitS} s (apps.${options.app.name}.build_timeout_s) and was stopped`;
    options.log?.(message);
    timeout.abort(new SlipwayError('build_timeout', message, { fault: 'commit' }));
  }, limitS * 1000);
  try {
    return await build({ ...options, signal: options.signal ? AbortSignal.any([options.signal, timeout.signal]) : timeout.signal });
  } finally {
    clearTimeout(timer);
  }
}

/** {@link buildImage} under one signal: the caller's and the timeout's. */
async function build(options: BuildImageOptions & { signal: AbortSignal }): Promise<BuiltImage> {
  const plan = buildOptions({ app: options.app, sha: options.sha });
  const { signal, docker } = options;
  // A build argument named like a secret (NPM_TOKEN) is one: a failing RUN or a debug echo must not print it.
  const secrets = [options.app.credentials?.password, ...secretEnvValues(options.app.build_args ?? {})];
  // Once stopped, what Docker had already sent is not the build's story any more: the reason it stopped is.
  const log = (line: string) => {
    if (!signal.aborted) options.log?.(scrubLine(line, secrets));
  };

  const dockerfile = await stat(join(options.dir, plan.dockerfile)).catch(() => null);
  if (!dockerfile?.isFile()) {
    throw new BuildError(`docker build failed: the Dockerfile ${plan.dockerfile} is not in commit ${options.sha.slice(0, 12)}`);
  }
  const maxMb = options.app.build_context_max_mb ?? DEFAULT_BUILD_CONTEXT_MAX_MB;
  const context = await packContext(options.dir, plan.dockerfile, { maxBytes: maxMb * 1024 * 1024, setting: `apps.${options.app.name}.build_context_max_mb` });
  log(`building ${plan.image} from ${plan.dockerfile} (${context.paths.length} paths in the context, ${context.bytes.toLocaleString('en-US')} bytes)`);

  const cancelled = () => {
    const reason: unknown = signal.reason;
    return reason instanceof Error ? reason : new SlipwayError('cancelled', 'build cancelled');
  };
  let response: Readable;
  try {
    response = (await docker.buildImage(context.stream, { ...plan.options, abortSignal: signal })) as Readable;
  } catch (err) {
    context.stream.destroy();
    throw signal.aborted ? cancelled() : dockerFailure(err);
  }

  // BuildStream scrubs and cuts its lines itself.
  const onLine = (line: string) => {
    if (!signal.aborted) options.log?.(line);
  };
  const progress = new BuildStream({ onLine, onStep: options.onStep, secrets });
  try {
    for await (const event of jsonLines<BuildEvent>(response)) progress.push(event);
  } catch (err) {
    throw signal.aborted ? cancelled() : new UnavailableError('docker', `the connection to Docker broke during the build: ${(err as Error).message}`, { cause: err });
  } finally {
    response.destroy();
  }
  progress.end();
  if (signal.aborted) throw cancelled();
  const failure = progress.failure();
  if (failure) throw failure;
  if (!progress.finished) {
    throw new UnavailableError('docker', `Docker's build stream ended before the build finished (step ${progress.currentStep?.index ?? 0}/${progress.totalSteps})`);
  }

  const info = (await dockerCallWithin(`inspecting ${plan.image}, just built`, () => docker.getImage(plan.image).inspect(), { timeoutMs: ENGINE_TIMEOUT_MS }))!;
  // Past build_timeout_s (or cancelled) while Docker was asked: the log has said so, and the job ends as it said.
  if (signal.aborted) throw cancelled();
  const labels = info.Config?.Labels ?? {};
  if (labels[LABELS.sha] !== options.sha || labels[LABELS.app] !== options.app.name) {
    throw new BuildError(`docker build failed: ${plan.image} does not carry the labels of ${options.app.name} at ${options.sha}`);
  }
  const reserved = reservedLabelsProblem(plan.image, labels);
  if (reserved) throw new BuildError(`docker build failed: ${reserved}`);
  log(`built ${plan.image} (${progress.cachedSteps}/${progress.totalSteps} steps from cache)`);
  return { image: plan.image, id: info.Id, cachedSteps: progress.cachedSteps, totalSteps: progress.totalSteps };
}
