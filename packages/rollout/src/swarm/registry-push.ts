import { PassThrough } from 'node:stream';
import type Docker from 'dockerode';
import { dockerCallWithin, dockerError, dockerStatus, ENGINE_TIMEOUT_MS, hostFailure, reservedLabelsProblem } from '@slipway/core/docker';
import { CancelledError, ContainerStartError, ImageNotFoundError } from '../rollout-errors.js';
import { askManager } from './swarm-service.js';
import { SlipwayError, UnavailableError } from '@slipway/core/slipway-error';

/*
 * Getting a built image to where the swarm's nodes pull from, without
 * touching any engine's configuration. The worker's engine built it, but
 * it refuses to push to a plain-HTTP registry that is not on loopback,
 * and a registry with TLS needs its CA installed on that engine; the
 * manager's engine, like every node, already trusts the registry (that is
 * how the nodes pull). So the image goes engine to engine through Slipway
 * (`docker save` from the worker's engine streamed into `POST
 * /images/load` on the manager's), is tagged
 * `<registry>/slipway/<app>:<sha12>` there and pushed from there. When the
 * manager already has the image id (a retry, a rollback, the worker
 * running on the manager itself) the transfer is skipped.
 */

/** A progress line at most this often per phase: a job log reads one line per layer, not thousands. */
export const PROGRESS_EVERY_MS = 3_000;

export interface PublishImageOptions {
  /** The worker's engine, where the image was built. */
  source: Docker;
  manager: Docker;
  /** `host:port` (`engine.registry`). */
  registry: string;
  /** `engine.registry_auth`; none: an empty auth header, which the engine wants even then. */
  auth?: { username: string; password: string };
  app: string;
  /** The image on the worker's engine (`slipway/<app>:<sha12>`, or any reference for an image deploy). */
  image: string;
  sha: string | null;
  log: (line: string) => void;
  /** The rollout's: aborts the transfer and the push where they are (CancelledError). */
  signal?: AbortSignal;
  /** Default IMAGE_IDLE_MS. */
  idleMs?: number;
}

export interface PublishedImage {
  /** `<registry>/slipway/<app>:<tag>`: what the service runs and the release records. */
  image: string;
  /** False when the manager had the image already. */
  transferred: boolean;
  bytes: number;
  /** Milliseconds: the save/load from engine to engine, and the push. */
  transferMs: number;
  pushMs: number;
}

/** Tag of an image in the registry: the commit's first 12 digits, or for an image deploy its id's. */
export function registryReference(registry: string, app: string, sha: string | null, imageId: string): string {
  return `${registry}/slipway/${app}:${sha ? sha.slice(0, 12) : `id-${imageId.replace(/^sha256:/, '').slice(0, 12)}`}`;
}

/** Whether `image` already names the registry (a rollback's recorded image): nothing to publish. */
export function inRegistry(image: string, registry: string): boolean {
  return image.startsWith(`${registry}/`);
}

/**
 * An image that names the registry by tag (`slipway deploy --image
 * <registry>/…:tag`) pinned to the digest the tag names now, as a pushed
 * image is: a tag can move (the same commit built again, another push), and
 * a task Swarm starts later (a node lost, a rollback) must run what went
 * live. One already pinned is returned as it is.
 */
export async function pinInRegistry(manager: Docker, image: string, registry: string, auth: PublishImageOptions['auth']): Promise<string> {
  if (DIGEST.test(image.slice(image.lastIndexOf('@') + 1))) return image;
  const authconfig = auth ? { username: auth.username, password: auth.password, serveraddress: registry } : {};
  let refused = false;
  const found = await askManager(`looking ${image} up in the registry`, () => manager.getImage(image).distribution({ authconfig }) as Promise<{ Descriptor?: { digest?: string } }>, { ignore: [404] })
    .catch((err: unknown) => {
      // A registry answers 401 for credentials it refuses, and many for a repository that does not exist too: both said.
      if (dockerStatus(err) !== 401) throw err;
      refused = true;
      return undefined;
    });
  const digest = found?.Descriptor?.digest;
  if (refused) throw new ImageNotFoundError(image, `the registry ${registry} refused to show ${image}: it has no such image, or it refused ${auth ? 'the credentials of engine.registry_auth' : 'to answer without credentials (engine.registry_auth is not set)'}`);
  if (typeof digest !== 'string' || !DIGEST.test(digest)) throw new ImageNotFoundError(image, `the registry ${registry} has no ${image}`);
  return `${image}@${digest}`;
}

/**
 * Every call of it is bounded: the engines' answers by ENGINE_TIMEOUT_MS
 * (the manager's by its own timeout), the transfer and the push by
 * `idleMs` without progress; the rollout's signal stops it where it is.
 */
export async function publishImage(options: PublishImageOptions): Promise<PublishedImage> {
  const { source, manager, log, signal } = options;
  const checkCancelled = (during: string) => {
    if (signal?.aborted) throw new CancelledError(during);
  };
  checkCancelled('the image\'s publication');
  const local = await dockerCallWithin(`inspecting ${options.image}`, () => source.getImage(options.image).inspect(), { timeoutMs: ENGINE_TIMEOUT_MS, ignore: [404] });
  if (!local) throw new ImageNotFoundError(options.image);
  // An image Slipway did not build (`deploy --image`) was never checked for these; the one it built passes again.
  const reserved = reservedLabelsProblem(options.image, local.Config?.Labels ?? {});
  if (reserved) throw new ContainerStartError(`cannot run ${reserved}`);
  const reference = registryReference(options.registry, options.app, options.sha, local.Id);
  const there = (await askManager(`inspecting ${local.Id.slice(7, 19)} on the swarm manager`, () => manager.getImage(local.Id).inspect(), { ignore: [404] })) ?? null;
  const began = Date.now();
  let bytes = 0;
  if (there) {
    log(`registry: the manager has image ${local.Id.slice(7, 19)} already; no transfer`);
  } else {
    checkCancelled('the image\'s transfer to the swarm manager');
    bytes = await transfer(source, manager, options.image, log, { signal, idleMs: options.idleMs });
    log(`registry: moved ${options.image} to the manager's engine (${mb(bytes)} MB in ${seconds(Date.now() - began)} s)`);
  }
  const transferMs = Date.now() - began;
  const [repo, tag] = splitTag(reference);
  await askManager(`tagging ${reference} on the swarm manager`, (abortSignal) => manager.getImage(local.Id).tag({ repo, tag, abortSignal }));
  checkCancelled('the image\'s push');
  const pushed = Date.now();
  const digest = await push(manager, reference, options.auth, log, { signal, idleMs: options.idleMs });
  log(`registry: pushed ${reference} in ${seconds(Date.now() - pushed)} s${digest ? ` (${digest})` : ''}`);
  // Pinned to what was pushed: a tag is movable (the same commit built again with other build_args, or by hand),
  // and a service's tasks resolve it whenever they start, a rollback to this release included. A push that did not
  // say its digest: the registry is asked for the tag's, as for an image already there.
  const image = digest ? `${reference}@${digest}` : await pinInRegistry(manager, reference, options.registry, options.auth);
  return { image, transferred: !there, bytes, transferMs, pushMs: Date.now() - pushed };
}

type Bounds = { signal?: AbortSignal; idleMs?: number };

/**
 * `docker save` on one engine streamed into `docker load` on the other;
 * returns the bytes moved. The load answers only once the whole image is
 * in, so the bytes going in are its progress from the first one on.
 */
async function transfer(source: Docker, manager: Docker, image: string, log: (line: string) => void, bounds: Bounds): Promise<number> {
  const saved = (await dockerCallWithin(`saving ${image}`, () => source.getImage(image).get(), { timeoutMs: ENGINE_TIMEOUT_MS }))! as NodeJS.ReadableStream;
  let bytes = 0;
  let lastLog = Date.now();
  const counted = new PassThrough();
  counted.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    if (Date.now() - lastLog >= PROGRESS_EVERY_MS) {
      log(`registry: ${mb(bytes)} MB of ${image} moved to the manager so far`);
      lastLog = Date.now();
    }
  });
  saved.on('error', (err) => counted.destroy(err));
  saved.pipe(counted);
  const doing = `loading ${image} into the swarm manager`;
  const request = new AbortController();
  const output = await untilProgressStops(manager.loadImage(counted, { quiet: true, abortSignal: request.signal }).catch((err: unknown) => {
    throw dockerError(err, doing);
  }), doing, { ...bounds, activity: counted, stop: () => {
    request.abort();
    for (const stream of [saved, counted]) (stream as { destroy?: () => void }).destroy?.();
  } });
  await followProgress(manager, output, (event) => {
    const line = typeof event.stream === 'string' ? event.stream.trim() : '';
    if (line) log(`registry: manager: ${line}`);
  }, doing, { ...bounds, activity: counted });
  return bytes;
}

/**
 * Push from the manager's engine: a line per layer when it is pushed or
 * found there, and a throttled byte count. Returns the manifest's digest
 * the registry now holds under the tag (`sha256:…`), when the engine says.
 */
async function push(manager: Docker, reference: string, auth: PublishImageOptions['auth'], log: (line: string) => void, bounds: Bounds): Promise<string | null> {
  const authconfig = auth ? { username: auth.username, password: auth.password, serveraddress: reference.split('/')[0] } : {};
  // The engine answers at once and pushes as it streams; its answer is bounded as any call to the manager.
  const stream = (await askManager(`pushing ${reference}`, (abortSignal) => manager.getImage(reference).push({ authconfig, abortSignal } as Docker.ImagePushOptions)))! as NodeJS.ReadableStream;
  let lastLog = Date.now();
  let digest: string | null = null;
  await followProgress(manager, stream, (event) => {
    const aux = event.aux as { Digest?: unknown } | undefined;
    if (typeof aux?.Digest === 'string' && DIGEST.test(aux.Digest)) digest = aux.Digest;
    const status = typeof event.status === 'string' ? event.status : '';
    const id = typeof event.id === 'string' ? event.id : '';
    if (status === 'Pushing') {
      if (Date.now() - lastLog >= PROGRESS_EVERY_MS) {
        log(`registry: pushing ${id} ${typeof event.progress === 'string' ? event.progress.replace(/\[[=> ]*\]\s*/, '') : ''}`.trimEnd());
        lastLog = Date.now();
      }
    } else if (status === 'Pushed' || status === 'Layer already exists' || status.startsWith(reference.split(':').pop()!)) {
      log(`registry: ${id ? `${id}: ` : ''}${status}`);
    }
  }, `pushing ${reference}`, bounds);
  return digest;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** How long an image's load or push may go without progress (no event, no byte) before it is given up as unavailable. */
export const IMAGE_IDLE_MS = 5 * 60_000;

/**
 * A dockerode progress stream to its end; its first `error` event fails it
 * (code docker_error: Slipway's side; unavailable, retried, when it is the
 * host's, the network's or the registry's: see hostFailure). A stream with no progress for
 * `idleMs` (an event, or a `data` event of `activity`: the bytes of a load
 * go in, its output comes only at the end) is destroyed and fails
 * unavailable, to be retried: a registry or engine that stops answering
 * mid-transfer does not hold the rollout, and its app's lock, for ever.
 */
export function followProgress(docker: Docker, stream: NodeJS.ReadableStream, onEvent: (event: Record<string, unknown>) => void, doing: string, options: Bounds & { activity?: NodeJS.EventEmitter } = {}): Promise<void> {
  let progressed = () => {};
  const done = new Promise<void>((resolve, reject) => {
    let failure: string | undefined;
    docker.modem.followProgress(stream, (err: Error | null) => {
      if (err || failure) reject(err ? dockerError(err, doing) : hostFailure(`${doing}: ${failure}`) ?? new SlipwayError('docker_error', `${doing}: ${failure}`));
      else resolve();
    }, (event: Record<string, unknown>) => {
      progressed();
      if (typeof event.error === 'string') failure ??= event.error;
      else onEvent(event);
    });
  });
  return untilProgressStops(done, doing, {
    ...options,
    onProgress: (fn) => (progressed = fn),
    stop: () => {
      for (const stalled of [stream, options.activity]) (stalled as { destroy?: () => void } | undefined)?.destroy?.();
    },
  });
}

/**
 * `work`, unless `idleMs` pass with no progress (a `data` event of
 * `activity`, or a call of the function given to `onProgress`): then
 * UnavailableError. The signal: CancelledError. Either way `stop` lets go
 * of what `work` was doing.
 */
function untilProgressStops<T>(work: Promise<T>, doing: string, options: Bounds & { activity?: NodeJS.EventEmitter; onProgress?: (progressed: () => void) => void; stop: () => void }): Promise<T> {
  const idleMs = options.idleMs ?? IMAGE_IDLE_MS;
  const { signal, activity } = options;
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    const settle = (err: Error | null, value?: T) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      activity?.off('data', progressed);
      signal?.removeEventListener('abort', cancelled);
      if (err) {
        options.stop();
        reject(err);
      } else resolve(value as T);
    };
    const progressed = () => {
      clearTimeout(timer);
      timer = setTimeout(() => settle(new UnavailableError('docker', `no progress for ${idleMs / 1000} s while ${doing}`)), idleMs);
    };
    const cancelled = () => settle(new CancelledError(doing));
    activity?.on('data', progressed);
    options.onProgress?.(progressed);
    signal?.addEventListener('abort', cancelled, { once: true });
    progressed();
    if (signal?.aborted) cancelled();
    work.then((value) => settle(null, value), (err: Error) => settle(err));
  });
}

function splitTag(reference: string): [string, string] {
  const colon = reference.lastIndexOf(':');
  return [reference.slice(0, colon), reference.slice(colon + 1)];
}

const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
const seconds = (ms: number) => (ms / 1000).toFixed(1);
