import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { Writable } from 'node:stream';
import type Docker from 'dockerode';
import type { AppConfig, StepConfig } from '@slipway/config/types';
import { parseRepositoryFile, REPOSITORY_FILE } from '@slipway/config/load-config';
import { dockerCallWithin, dockerError, dockerStatus, ENGINE_TIMEOUT_MS, LABELS } from '@slipway/core/docker';
import { markCut, SCRUB_WINDOW_BYTES, scrubLine, secretEnvValues } from '@slipway/core/logger';
import { SlipwayError } from '@slipway/core/slipway-error';
import { readCommitFile } from './build-context.js';

/*
 * Test steps: what runs between the build and the rollout, each in a
 * throwaway container on the worker's own Docker engine (where the image
 * was just built). In reading order: where a job's steps come from (the
 * config, or the pushed commit's .slipway.yml), the container a step runs
 * in (a pure function), a step's output on its way to the job log, one
 * step run, and a job's steps in order.
 */

/** `timeout_s` of a step made outside the schema. */
export const DEFAULT_STEP_TIMEOUT_S = 600;
/** Largest `.slipway.yml` read: a pipeline, not a data file. */
export const MAX_REPOSITORY_FILE_BYTES = 64 * 1024;
/** How long output still arriving after a step's exit is waited for. */
const OUTPUT_GRACE_MS = 2000;

// --- Where a job's steps come from

/** The spelling of REPOSITORY_FILE that is not read, and is said to be when it is there alone. */
const MISSPELT_REPOSITORY_FILE = '.slipway.yaml';

/**
 * The steps a commit's `.slipway.yml` holds, or null when it has none. Only
 * a regular file is read (a symlink could point at the worker's own files,
 * whose text an error would then show), and at most
 * {@link MAX_REPOSITORY_FILE_BYTES}. Anything wrong with it is the commit's
 * fault (`repository_file_invalid`, naming the key path and the commit).
 */
export async function readRepositorySteps(dir: string, sha: string): Promise<StepConfig[] | null> {
  const refuse = (why: string) => new SlipwayError('repository_file_invalid', `${REPOSITORY_FILE} of commit ${sha.slice(0, 12)}: ${why}`, { fault: 'commit' });
  const text = await readCommitFile(dir, REPOSITORY_FILE, MAX_REPOSITORY_FILE_BYTES, refuse);
  return text === null ? null : parseRepositoryFile(text, sha).steps;
}

/**
 * The seconds a job's steps may take together (RunStepsOptions.totalTimeoutS):
 * a repository file's steps, which a pusher chose, get the app's
 * `build_timeout_s` for all of them (32 steps of a day each would hold the
 * app's deploys for a month); the configuration's are the operator's, each
 * bounded by its own timeout.
 */
export function repositoryStepsBudget(app: Pick<AppConfig, 'steps'> & Partial<Pick<AppConfig, 'build_timeout_s'>>): number | undefined {
  return app.steps === undefined ? app.build_timeout_s : undefined;
}

/**
 * Why a step of a commit's file may not run `image`, or null. Slipway's
 * builds of every app are on the worker's engine (`slipway/<app>:<sha12>`,
 * pushed as `<registry>/slipway/<app>:…`): a pusher of one app must not run
 * another's and print what it holds. Nor an image named by its id (`3fa9c1`,
 * `sha256:…`): Docker finds any local image by a prefix of its id.
 */
function foreignImage(image: string, app: string): string | null {
  const lower = image.toLowerCase();
  if (/^(sha256:)?[0-9a-f]+$/.test(lower)) return 'names an image by its id; name it by repository and tag';
  const name = /(?:^|\/)slipway\/([a-z0-9-]+)(?:[:@]|$)/.exec(lower)?.[1];
  return name !== undefined && name !== app ? `is a slipway/ image, another app's build (${name}); a commit's steps run this app's images or others' from a registry` : null;
}

/**
 * The steps a job runs: `apps.<app>.steps` when the config sets it (then
 * the commit's file is not even parsed, and the log says it was ignored),
 * else the commit's `.slipway.yml` (`dir` is the checked-out tree; no step
 * of it runs longer than the app's `build_timeout_s`, nor all of them
 * together: {@link repositoryStepsBudget}), else none.
 */
export async function stepsForCommit(app: Pick<AppConfig, 'name' | 'steps'> & Partial<Pick<AppConfig, 'build_timeout_s'>>, dir: string, sha: string, log: (line: string) => void = () => {}): Promise<StepConfig[]> {
  if (app.steps !== undefined) {
    if (await lstat(join(dir, REPOSITORY_FILE)).then(() => true, () => false)) {
      log(`${REPOSITORY_FILE} of commit ${sha.slice(0, 12)} is ignored: apps.${app.name}.steps in the configuration wins`);
    }
    return app.steps;
  }
  const read = await readRepositorySteps(dir, sha);
  // Another app's images are on this engine (slipway/<app>:<sha12>): a pusher of this app must not run them, and print what they hold.
  for (const [i, step] of (read ?? []).entries()) {
    const why = step.image === undefined ? null : foreignImage(step.image, app.name);
    if (why) throw new SlipwayError('repository_file_invalid', `${REPOSITORY_FILE} of commit ${sha.slice(0, 12)}: steps[${i}].image: ${step.image} ${why}`, { fault: 'commit' });
  }
  // The pusher's file gives no step longer than the operator gives a build: a step held for a day would hold the app.
  const limit = app.build_timeout_s;
  const steps = read && limit !== undefined ? read.map((step) => {
    if ((step.timeout_s ?? DEFAULT_STEP_TIMEOUT_S) <= limit) return step;
    log(`step ${step.name} of ${REPOSITORY_FILE}: timeout_s ${step.timeout_s} is more than apps.${app.name}.build_timeout_s allows; ${limit} s`);
    return { ...step, timeout_s: limit };
  }) : read;
  if (steps) log(`steps from ${REPOSITORY_FILE} of commit ${sha.slice(0, 12)}: ${steps.map((s) => s.name).join(', ') || 'none'}`);
  // The other spelling is read by no one: said, or a repository that meant its steps deploys untested without a word.
  else if (await lstat(join(dir, MISSPELT_REPOSITORY_FILE)).then(() => true, () => false)) {
    log(`${MISSPELT_REPOSITORY_FILE} of commit ${sha.slice(0, 12)} is not read: steps are read from ${REPOSITORY_FILE}; no steps run`);
  }
  return steps ?? [];
}

// --- The container a step runs in

/** `apps.<app>.resources`: limits of the app's containers, which its steps get too. */
export interface StepResources {
  cpus?: number;
  memory_mb?: number;
}

export interface StepContainerInput {
  app: string;
  step: StepConfig;
  /** The image to run: the step's own, or the image just built. */
  image: string;
  /** The job running the step (label `slipway.release`). */
  job: string;
  sha: string | null;
  resources?: StepResources;
}

/**
 * Docker's create request for a step: exactly the step's argv (the image's
 * entrypoint is replaced, so `[npm, test]` runs npm), its env, an init as
 * PID 1 (signals reach the command, zombies are reaped), Slipway's labels
 * (so a container left by a crash is found and removed), and nothing else:
 * no published port, no mount (no Docker socket), no privilege, no restart,
 * no log kept by Docker (the output is read as it is printed).
 */
export function stepContainerOptions(input: StepContainerInput): Docker.ContainerCreateOptions {
  const { step, resources } = input;
  return {
    Image: input.image,
    Entrypoint: [step.command[0]!],
    Cmd: step.command.slice(1),
    Env: Object.entries(step.env).map(([name, value]) => `${name}=${value}`),
    Labels: {
      [LABELS.app]: input.app,
      [LABELS.release]: input.job,
      [LABELS.step]: step.name,
      ...(input.sha ? { [LABELS.sha]: input.sha } : {}),
    },
    AttachStdout: true,
    AttachStderr: true,
    Tty: false,
    OpenStdin: false,
    HostConfig: {
      Init: true,
      AutoRemove: false,
      Privileged: false,
      PublishAllPorts: false,
      PortBindings: {},
      Binds: [],
      RestartPolicy: { Name: 'no' },
      LogConfig: { Type: 'none', Config: {} },
      ...(resources?.cpus ? { NanoCpus: Math.round(resources.cpus * 1e9) } : {}),
      ...(resources?.memory_mb ? { Memory: Math.round(resources.memory_mb * 1024 * 1024) } : {}),
    },
  };
}

// --- A step's output on its way to the job log

/**
 * One output stream of a step (stdout or stderr) as lines for the job log:
 * split on newlines (characters split across chunks decoded whole),
 * prefixed `<name> | `, scrubbed of the step's secret-like env values. A
 * line is held to {@link SCRUB_WINDOW_BYTES} while it is read, the rest
 * counted and named by a cut marker: no output makes this hold more.
 */
class StepLines extends Writable {
  private readonly decoder = new StringDecoder('utf8');
  private line = '';
  /** Bytes of the current line left out past the window. */
  private dropped = 0;

  constructor(private readonly prefix: string, private readonly secrets: readonly string[], private readonly onLine: (line: string) => void) {
    super({ decodeStrings: true });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.add(this.decoder.write(chunk));
    done();
  }

  /** Emits what is left of an unterminated last line. */
  finish(): void {
    this.add(this.decoder.end());
    if (this.line || this.dropped) this.take();
  }

  private add(text: string): void {
    let from = 0;
    for (;;) {
      const nl = text.indexOf('\n', from);
      this.keep(text.slice(from, nl < 0 ? text.length : nl));
      if (nl < 0) return;
      this.take();
      from = nl + 1;
    }
  }

  private keep(piece: string): void {
    if (this.dropped === 0 && this.line.length + piece.length <= SCRUB_WINDOW_BYTES) {
      this.line += piece;
      return;
    }
    const room = Math.max(0, SCRUB_WINDOW_BYTES - this.line.length);
    this.dropped += Buffer.byteLength(piece.slice(room));
    this.line += piece.slice(0, room);
  }

  private take(): void {
    const line = this.line.replace(/\r$/, '');
    const whole = this.dropped > 0 ? markCut(line, Buffer.byteLength(line) + this.dropped) : line;
    this.line = '';
    this.dropped = 0;
    this.onLine(`${this.prefix}${scrubLine(whole, this.secrets)}`);
  }
}

// --- One step

export type StepOutcome = 'running' | 'passed' | 'failed' | 'timeout' | 'cancelled';

/** A step as the job's timeline records it. */
export interface StepRun {
  name: string;
  image: string;
  /** ISO 8601. */
  startedAt: string;
  /** Null while it runs. */
  durationMs: number | null;
  /** The command's exit status; null while it runs, or when it never ran to an exit (stopped, or it could not start). */
  exitCode: number | null;
  outcome: StepOutcome;
}

export interface RunStepOptions {
  docker: Docker;
  app: string;
  step: StepConfig;
  /** The image just built: what the step runs in unless it names its own. */
  builtImage: string;
  job: string;
  sha: string | null;
  resources?: StepResources;
  /** Each output line, prefixed with the step's name, and Slipway's lines about the step. */
  log?: (line: string) => void;
  /** Aborting (a cancelled job) removes the step's container at once. */
  signal?: AbortSignal;
}

/**
 * Runs one step in its own container and removes the container whatever
 * happens. Resolves with the run when the command exits 0. Otherwise
 * throws, with the run attached as `run` on the error: `step_failed` (a
 * non-zero exit), `step_timeout` (still running after `timeout_s`, its
 * image pull included: the container is killed), `image_not_found` (the
 * step's image is not on the host and could not be pulled), all the
 * commit's fault; `cancelled` when `signal` aborts; Docker's own failures
 * as `dockerError` translates them.
 */
export async function runStep(options: RunStepOptions): Promise<StepRun> {
  const { docker, step } = options;
  const log = options.log ?? (() => {});
  const image = step.image ?? options.builtImage;
  const limitS = step.timeout_s ?? DEFAULT_STEP_TIMEOUT_S;
  const started = Date.now();
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), limitS * 1000);
  const stop = options.signal ? AbortSignal.any([options.signal, timeout.signal]) : timeout.signal;
  let container: Docker.Container | undefined;
  let creating: Promise<Docker.Container> | undefined;
  let exitCode: number | null = null;
  const run = (outcome: StepOutcome): StepRun => ({ name: step.name, image, startedAt: new Date(started).toISOString(), durationMs: Date.now() - started, exitCode, outcome });
  const stopped = (): SlipwayError => {
    if (options.signal?.aborted) return withRun(new SlipwayError('cancelled', `step ${step.name} cancelled`), run('cancelled'));
    log(`step ${step.name} ran past its timeout_s (${limitS} s) and was stopped`);
    return withRun(new SlipwayError('step_timeout', `step_timeout: ${step.name} ran past its timeout_s (${limitS} s) and was stopped`, { fault: 'commit' }), run('timeout'));
  };

  const secrets = secretEnvValues(step.env);
  const out = new StepLines(`${step.name} | `, secrets, log);
  const err = new StepLines(`${step.name} | `, secrets, log);
  try {
    // The command as configured: `${VAR}` was filled in when the config was read, so a secret of the step's env may be in it.
    log(scrubLine(`step ${step.name}: ${step.command.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ')} (in ${image}, timeout ${limitS} s)`, secrets));
    if (step.image) await untilStopped(stop, stopped, ensureImage(docker, image, step.name, stop, log));
    if (stop.aborted) throw stopped();
    // Each call has the engine's deadline and ends at once when the step is stopped (a wedged engine holds no app's lock).
    const ask = <T>(doing: string, call: (abortSignal: AbortSignal) => Promise<T>) => untilStopped(stop, stopped, dockerCallWithin(doing, call, { timeoutMs: ENGINE_TIMEOUT_MS }) as Promise<T>);
    creating = dockerCallWithin(`creating the container of step ${step.name}`, (abortSignal) =>
      docker.createContainer({ ...stepContainerOptions({ app: options.app, step, image, job: options.job, sha: options.sha, resources: options.resources }), abortSignal } as Docker.ContainerCreateOptions), { timeoutMs: ENGINE_TIMEOUT_MS }) as Promise<Docker.Container>;
    container = await untilStopped(stop, stopped, creating);
    const created = container;
    // Attached before the start: not a line is missed, and Docker keeps none of it.
    const stream = await ask(`attaching to step ${step.name}`, (abortSignal) =>
      created.attach({ stream: true, stdout: true, stderr: true, abortSignal } as Docker.ContainerAttachOptions));
    const outputEnded = new Promise<void>((resolve) => {
      stream.once('end', resolve);
      stream.once('close', resolve);
      stream.once('error', () => resolve());
    });
    docker.modem.demuxStream(stream, out as unknown as NodeJS.WritableStream, err as unknown as NodeJS.WritableStream);
    // Stopping is removing: a cancelled job's step is gone at once, not after a grace period.
    const kill = () => void created.remove({ force: true, v: true }).catch(() => {});
    stop.addEventListener('abort', kill, { once: true });
    try {
      if (stop.aborted) throw stopped();
      await ask(`starting step ${step.name}`, (abortSignal) => created.start({ abortSignal }));
      // As long as the step runs: bounded by its timeout_s (the stop signal), not the engine's deadline.
      const waited = await untilStopped(stop, stopped, created.wait().catch((e: unknown) => {
        throw stop.aborted ? stopped() : dockerError(e, `waiting for step ${step.name}`);
      })) as { StatusCode?: number };
      if (stop.aborted) throw stopped();
      exitCode = waited.StatusCode ?? null;
      await Promise.race([outputEnded, new Promise((resolve) => setTimeout(resolve, OUTPUT_GRACE_MS).unref())]);
    } finally {
      stop.removeEventListener('abort', kill);
      (stream as { destroy?: () => void }).destroy?.();
      out.finish();
      err.finish();
    }
    if (exitCode !== 0) {
      log(`step ${step.name} failed: exit ${exitCode ?? '?'} after ${seconds(Date.now() - started)}`);
      throw withRun(new SlipwayError('step_failed', `step_failed: ${step.name} exited ${exitCode ?? '?'}`, { fault: 'commit' }), run('failed'));
    }
    log(`step ${step.name} passed (exit 0) in ${seconds(Date.now() - started)}`);
    return run('passed');
  } catch (e) {
    if (e instanceof SlipwayError && (e as { run?: StepRun }).run) throw e;
    if (stop.aborted) throw stopped();
    throw withRun(e instanceof SlipwayError ? e : dockerError(e, `running step ${step.name}`), run('failed'));
  } finally {
    clearTimeout(timer);
    // Stopped while Docker was still making the container: it may be made all the same, and is removed once it is
    // (not waited for: an engine that never answers the create holds no app's lock; the create has its deadline).
    if (!container && creating) void creating.then((late) => removeContainer(docker, late.id, { withinMs: STOPPED_REMOVE_TIMEOUT_MS })).catch(() => {});
    // A stopped step (cancelled, past timeout_s, the engine maybe wedged) gets a few seconds in all: what stays is
    // a leftover the app's next steps remove by label, not minutes more of this job holding its app.
    if (container) await removeContainer(docker, container.id, stop.aborted ? { withinMs: STOPPED_REMOVE_TIMEOUT_MS } : {});
  }
}

/** How long a stopped step's container removal may take before it is left to the next steps' cleanup. */
const STOPPED_REMOVE_TIMEOUT_MS = 5_000;

/** `work`, or `stopped()` as soon as `stop` aborts, whichever comes first (what `work` does after is left to its own end). */
function untilStopped<T>(stop: AbortSignal, stopped: () => Error, work: Promise<T>): Promise<T> {
  if (stop.aborted) {
    work.catch(() => {});
    return Promise.reject(stopped());
  }
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(stopped());
    stop.addEventListener('abort', onAbort, { once: true });
  });
  work.catch(() => {});
  return Promise.race([work, aborted]).finally(() => stop.removeEventListener('abort', onAbort));
}

/** Attaches the step's run to its error, for the job's timeline. */
function withRun<E extends Error>(error: E, run: StepRun): E & { run: StepRun } {
  return Object.assign(error, { run });
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/**
 * Removes a step's container, a few tries if Docker is briefly busy (a
 * removal racing the kill answers 409 until the kill's is done), within
 * `withinMs` in all when given; a container that stays is found by its
 * labels and removed before the app's next steps.
 */
async function removeContainer(docker: Docker, id: string, options: { withinMs?: number } = {}): Promise<void> {
  const deadline = options.withinMs === undefined ? Infinity : Date.now() + options.withinMs;
  for (let attempt = 0; attempt < 5 && Date.now() < deadline; attempt++) {
    try {
      const timeoutMs = Math.min(ENGINE_TIMEOUT_MS, deadline - Date.now());
      await dockerCallWithin(`removing the container of a step`, (abortSignal) => docker.getContainer(id).remove({ force: true, v: true, abortSignal }), { timeoutMs });
      return;
    } catch (e) {
      if (dockerStatus(e) === 404) return;
      await new Promise((resolve) => setTimeout(resolve, Math.min(200 * (attempt + 1), Math.max(0, deadline - Date.now()))));
    }
  }
}

/**
 * Makes sure a step's own image is on the host: pulled when it is not. A
 * pull the engine refuses or fails (no such image, no registry, no access)
 * is the commit's fault (`image_not_found`); an engine that cannot be
 * reached is Slipway's.
 */
async function ensureImage(docker: Docker, image: string, step: string, signal: AbortSignal, log: (line: string) => void): Promise<void> {
  const present = (await dockerCallWithin(`looking for image ${image} of step ${step}`, () => docker.getImage(image).inspect(), { timeoutMs: ENGINE_TIMEOUT_MS, ignore: [404] })) !== undefined;
  if (present) return;
  log(`step ${step}: pulling ${image}`);
  const notPulled = (detail: string) =>
    new SlipwayError('image_not_found', `step ${step}: image ${image} is not on the Docker host and could not be pulled: ${detail}`, { fault: 'commit' });
  let stream: NodeJS.ReadableStream;
  try {
    stream = await docker.pull(image, { abortSignal: signal });
  } catch (e) {
    if (signal.aborted) return;
    // The engine answered (the registry is what failed): the image named is wrong or unreachable.
    if (dockerStatus(e) !== undefined) throw notPulled(String((e as { json?: { message?: string } }).json?.message ?? (e as Error).message).split('\n', 1)[0]!);
    throw dockerError(e, `pulling ${image} for step ${step}`);
  }
  const failure = await new Promise<string | null>((resolve) => {
    const onAbort = () => (stream as { destroy?: () => void }).destroy?.();
    signal.addEventListener('abort', onAbort, { once: true });
    docker.modem.followProgress(stream, (e: Error | null, events: Array<{ error?: string }>) => {
      signal.removeEventListener('abort', onAbort);
      resolve(e ? e.message : events.find((event) => event.error)?.error ?? null);
    });
  });
  if (signal.aborted) return;
  if (failure) throw notPulled(failure);
}

// --- A job's steps

export interface RunStepsOptions extends Omit<RunStepOptions, 'step'> {
  steps: readonly StepConfig[];
  /** Each step as it starts (`running`) and as it ends: the job's timeline. */
  onRun?: (run: StepRun) => void;
  /**
   * Seconds all the steps together may take (a repository file's: the app's
   * `build_timeout_s`); a step starting with less left than its `timeout_s`
   * gets what is left. Default: each step its own timeout only.
   */
  totalTimeoutS?: number;
}

/**
 * Runs a job's steps in order, stopping at the first that does not pass
 * (its error is thrown). First removes step containers of the app that a
 * crashed worker left: the caller holds the app's deploy lease, so no other
 * step of the app can be running.
 */
export async function runSteps(options: RunStepsOptions): Promise<StepRun[]> {
  const runs: StepRun[] = [];
  const log = options.log ?? (() => {});
  await removeLeftoverSteps(options.docker, options.app, log);
  const total = options.totalTimeoutS;
  const deadline = total !== undefined ? Date.now() + total * 1000 : Infinity;
  for (const listed of options.steps) {
    const own = listed.timeout_s ?? DEFAULT_STEP_TIMEOUT_S;
    const leftMs = deadline - Date.now();
    if (leftMs < 1000) {
      throw new SlipwayError('step_timeout', `step_timeout: the steps ran past the ${total} s they may take together (build_timeout_s) before step ${listed.name}`, { fault: 'commit' });
    }
    const left = Math.floor(leftMs / 1000);
    if (left < own) log(`step ${listed.name}: ${left} s left of the ${total} s the steps may take together (build_timeout_s); its timeout_s is ${left}`);
    const step = left < own ? { ...listed, timeout_s: left } : listed;
    options.onRun?.({ name: step.name, image: step.image ?? options.builtImage, startedAt: new Date().toISOString(), durationMs: null, exitCode: null, outcome: 'running' });
    try {
      const run = await runStep({ ...options, step });
      runs.push(run);
      options.onRun?.(run);
    } catch (e) {
      const run = (e as { run?: StepRun }).run;
      if (run) options.onRun?.(run);
      throw e;
    }
  }
  return runs;
}

/** Step containers of the app still on the host: left by a worker that stopped during a step. */
export async function removeLeftoverSteps(docker: Docker, app: string, log: (line: string) => void = () => {}): Promise<string[]> {
  const left = (await dockerCallWithin(`listing the step containers of ${app}`, (abortSignal) =>
    docker.listContainers({ all: true, filters: { label: [`${LABELS.app}=${app}`, LABELS.step] }, abortSignal }), { timeoutMs: ENGINE_TIMEOUT_MS }))!;
  for (const info of left) {
    await removeContainer(docker, info.Id);
    log(`removed the container of step ${info.Labels[LABELS.step] ?? '?'} left by job ${info.Labels[LABELS.release] ?? '?'} (its worker stopped during the step)`);
  }
  return left.map((info) => info.Id);
}
