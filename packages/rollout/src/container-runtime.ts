import type Docker from 'dockerode';
import type { AppConfig } from '@slipway/config/types';
import { dockerCallWithin, dockerError, dockerStatus, ENGINE_TIMEOUT_MS, LABELS, reservedLabelsProblem } from '@slipway/core/docker';

/** Re-exported where it was first defined. */
export { ENGINE_TIMEOUT_MS };
import { lastLines } from '@slipway/core/run-command';
import { UnavailableError } from '@slipway/core/slipway-error';
import { ContainerStartError, ImageNotFoundError } from './rollout-errors.js';

/*
 * Everything a rollout asks of Docker: the runtime seam, its one
 * implementation over dockerode (labels, error translation and the
 * connection are @slipway/core/docker's), and the container spec of a
 * replica.
 */

/** A container labelled `slipway.app=<app>`, as found on the Docker host. */
export interface AppContainer {
  id: string;
  name: string;
  image: string;
  /** Docker's state: `running`, `exited`, `restarting`, `created`… */
  state: string;
  labels: Record<string, string>;
  /** The published `host_ip:port` of the app's port, or null when it has none (not running). */
  address: string | null;
}

/** What the health probe needs to know about a new container between attempts. */
export interface ContainerHealthState {
  running: boolean;
  /** Restarted by its restart policy at least once: it crashed. */
  restarted: boolean;
  exitCode: number | null;
}

/**
 * The runtime seam: everything a rollout asks of Docker. DockerRuntime is
 * the one implementation. Every method throws UnavailableError when the
 * engine cannot be reached.
 */
export interface ContainerRuntime {
  /** Containers labelled for the app, running or not. */
  listAppContainers(app: string, port: number): Promise<AppContainer[]>;
  /** Creates and starts one container; returns its id and published address. */
  startContainer(spec: Docker.ContainerCreateOptions, port: number): Promise<{ id: string; address: string | null }>;
  healthState(id: string): Promise<ContainerHealthState>;
  /** The last `lines` lines of the container's stdout and stderr. */
  logTail(id: string, lines: number): Promise<string>;
  /** SIGTERM, SIGKILL after `timeoutS`, then remove. */
  stopAndRemove(id: string, timeoutS: number): Promise<void>;
  /** Removes at once (SIGKILL). */
  forceRemove(id: string): Promise<void>;
  /** routing: dns: the `slipway.address` of every container that has one, whatever its app or state. */
  addressesInUse(): Promise<string[]>;
  /**
   * Removes the app's built images (`slipway/<app>:<sha12>`) but those in
   * `keep` and those a container still uses; returns the tags removed.
   */
  pruneImages(app: string, keep: ReadonlySet<string>): Promise<string[]>;
}

/** One entry of Docker's container list as an app's container, addressed by the published binding of `port` (or its first). */
function appContainer(info: Docker.ContainerInfo, port: number): AppContainer {
  const bindings = info.Ports.filter((p) => p.Type === 'tcp' && p.PublicPort && p.IP && !p.IP.includes(':'));
  const binding = bindings.find((p) => p.PrivatePort === port) ?? bindings[0];
  return {
    id: info.Id,
    name: (info.Names[0] ?? '').replace(/^\//, ''),
    image: info.Image,
    state: info.State,
    labels: info.Labels,
    address: binding ? `${binding.IP}:${binding.PublicPort}` : null,
  };
}

/** What follows the repository in a tag Slipway gives: a built commit's first 12 hex digits, or (published to a registry) an image id's. */
const BUILT_TAG = /^:(?:id-)?[0-9a-f]{12}$/;

/** How pruneBuiltImages asks the engine: DockerRuntime's calls, or a swarm manager's, each with its deadline. */
export type EngineCall = <T>(doing: string, call: (abortSignal?: AbortSignal) => Promise<T>) => Promise<T | undefined>;

/**
 * Removes, on one engine, the tags Slipway gave under `repos` (BUILT_TAG)
 * but those in `keep` (tags, or image ids) and those a container still
 * uses; returns the tags removed. Another tag someone gave an image there
 * is never touched. Each failed removal is left for a later rollout.
 */
export async function pruneBuiltImages(docker: Docker, repos: readonly string[], keep: ReadonlySet<string>, call: EngineCall): Promise<string[]> {
  const removed: string[] = [];
  for (const repo of repos) {
    const images = (await call(`listing the images of ${repo}`, (abortSignal) => docker.listImages({ filters: { reference: [`${repo}:*`] }, abortSignal } as Docker.ListImagesOptions))) ?? [];
    for (const image of images) {
      if (keep.has(image.Id)) continue;
      for (const tag of image.RepoTags ?? []) {
        if (!tag.startsWith(`${repo}:`) || !BUILT_TAG.test(tag.slice(repo.length)) || keep.has(tag)) continue;
        try {
          await call(`removing ${tag}`, (abortSignal) => docker.getImage(tag).remove({ abortSignal }));
          removed.push(tag);
        } catch {
          // In use by a container (409), gone meanwhile, or the engine slow: left for a later rollout.
        }
      }
    }
  }
  return removed;
}

/**
 * The log bound given to an app's containers when the engine logs to
 * json-file by default: Docker's own default keeps every line on disk for
 * as long as the container lives, which for a long-running app is until
 * the disk is full. 3 files of 10 MB, as Kamal does.
 */
export const CONTAINER_LOG_OPTS = { 'max-size': '10m', 'max-file': '3' } as const;


/** The runtime seam over a dockerode client. */
export class DockerRuntime implements ContainerRuntime {
  /** The engine's default log driver, asked once (null: not known, asked again next time). */
  private logDriver: Promise<string | null> | null = null;
  private readonly timeoutMs: number;

  constructor(private readonly docker: Docker, options: { timeoutMs?: number } = {}) {
    this.timeoutMs = options.timeoutMs ?? ENGINE_TIMEOUT_MS;
  }

  /** One call to the engine, given timeoutMs (plus `graceMs`): see ENGINE_TIMEOUT_MS. */
  private ask<T>(doing: string, call: (abortSignal: AbortSignal) => Promise<T>, ignore: readonly number[] = [], graceMs = 0): Promise<T | undefined> {
    return dockerCallWithin(doing, call, { timeoutMs: this.timeoutMs + graceMs, ignore });
  }

  /**
   * The containers Slipway started for `app`: carrying its `slipway.app`
   * and a `slipway.release`. Docker copies an image's labels onto every
   * container made from it, and a built image carries `slipway.app`, so an
   * operator's one-off `docker run slipway/<app>:<sha12> …` (a migration, a
   * shell) has it too: without the release label it is not Slipway's, and
   * no rollout takes it for a stray to remove.
   */
  async listAppContainers(app: string, port: number): Promise<AppContainer[]> {
    const infos = (await this.ask(`listing the containers of ${app}`, (abortSignal) =>
      this.docker.listContainers({ all: true, filters: { label: [`${LABELS.app}=${app}`, LABELS.release] }, abortSignal })))!;
    return infos.map((info) => appContainer(info, port));
  }

  /**
   * The containers of every app in `ports` (app name → its port), in one
   * listing of Docker: what `slipway status` and the dashboard's overview
   * ask for all apps at once. Slipway's only, as in listAppContainers.
   */
  async listAppsContainers(ports: ReadonlyMap<string, number>): Promise<Map<string, AppContainer[]>> {
    const infos = (await this.ask('listing the containers of the apps', (abortSignal) =>
      this.docker.listContainers({ all: true, filters: { label: [LABELS.app, LABELS.release] }, abortSignal })))!;
    const byApp = new Map([...ports.keys()].map((app): [string, AppContainer[]] => [app, []]));
    for (const info of infos) {
      const app = info.Labels[LABELS.app] ?? '';
      byApp.get(app)?.push(appContainer(info, ports.get(app)!));
    }
    return byApp;
  }

  async startContainer(spec: Docker.ContainerCreateOptions, port: number): Promise<{ id: string; address: string | null }> {
    spec = await this.withLogBound(spec);
    let container: Docker.Container;
    try {
      // A create abandoned at its deadline may still be made: the container is then a stray, removed by label.
      container = (await this.ask(`creating a container from ${spec.Image}`, (abortSignal) => this.docker.createContainer({ ...spec, abortSignal } as Docker.ContainerCreateOptions)))!;
    } catch (err) {
      if (dockerStatus(err) === 404) throw new ImageNotFoundError(spec.Image ?? '?');
      throw err;
    }
    // With the engine's deadline too: a wedged engine (a failed start's likely cause) must not hold the rollout here.
    const discard = () => this.ask(`removing ${container.id.slice(0, 12)}`, (abortSignal) => container.remove({ force: true, v: true, abortSignal })).catch(() => {});
    try {
      await this.ask(`starting a container from ${spec.Image}`, (abortSignal) => container.start({ abortSignal }));
    } catch (err) {
      await discard();
      const failure = dockerError(err, `starting a container from ${spec.Image}`);
      // The host's address or port taken (another rollout's container on a pool address its lost lock let it pick):
      // not the commit's doing, and gone on a retry.
      if (/address already in use|port is already allocated/i.test(failure.message)) {
        throw new UnavailableError('docker', `${failure.message} (taken by another container meanwhile: tried again)`, { cause: err });
      }
      throw failure.code === 'unavailable' ? failure : new ContainerStartError(failure.message, { cause: err });
    }
    let info: Docker.ContainerInspectInfo;
    try {
      info = (await this.ask(`inspecting ${container.id.slice(0, 12)}`, (abortSignal) => container.inspect({ abortSignal })))!;
    } catch (err) {
      // Started, but its id would reach no one who removes it: it goes now, or stays a stray the next rollout removes.
      await discard();
      throw err;
    }
    // An image Slipway did not build (`deploy --image`, a rollback to one) was never checked for the labels it sets.
    const own = spec.Labels ?? {};
    const inherited = Object.fromEntries(Object.entries(info.Config.Labels ?? {}).filter(([key]) => !(key in own)));
    const reserved = reservedLabelsProblem(spec.Image ?? info.Image, inherited);
    if (reserved) {
      await discard();
      throw new ContainerStartError(`cannot run ${reserved}`);
    }
    const binding = info.NetworkSettings.Ports?.[`${port}/tcp`]?.find((b) => !b.HostIp.includes(':'));
    // No binding: the container is already gone again; the health step reports why.
    return { id: container.id, address: binding ? `${binding.HostIp}:${binding.HostPort}` : null };
  }

  /**
   * The spec with CONTAINER_LOG_OPTS when it names no log driver and the
   * engine's default is json-file. Docker merges its own default options
   * (compress, labels…) into these, as for a container that names none;
   * an engine logging elsewhere (journald, local, a shipper) is left to
   * its operator.
   */
  private async withLogBound(spec: Docker.ContainerCreateOptions): Promise<Docker.ContainerCreateOptions> {
    if (spec.HostConfig?.LogConfig) return spec;
    this.logDriver ??= this.ask('asking the engine\'s log driver', (abortSignal) => (this.docker.info as (opts: object) => Promise<{ LoggingDriver?: string }>).call(this.docker, { abortSignal })).then((info) => info?.LoggingDriver ?? null, () => {
      this.logDriver = null;
      return null;
    });
    if ((await this.logDriver) !== 'json-file') return spec;
    return { ...spec, HostConfig: { ...spec.HostConfig, LogConfig: { Type: 'json-file', Config: { ...CONTAINER_LOG_OPTS } } } };
  }

  async healthState(id: string): Promise<ContainerHealthState> {
    const info = await this.ask(`inspecting ${id.slice(0, 12)}`, (abortSignal) => this.docker.getContainer(id).inspect({ abortSignal }), [404]);
    if (!info) return { running: false, restarted: false, exitCode: null };
    return {
      running: info.State.Running && !info.State.Restarting,
      restarted: info.RestartCount > 0 || info.State.Restarting,
      exitCode: info.State.Running ? null : info.State.ExitCode,
    };
  }

  async logTail(id: string, lines: number): Promise<string> {
    const raw = await this.ask(`reading the log of ${id.slice(0, 12)}`, (abortSignal) =>
      this.docker.getContainer(id).logs({ stdout: true, stderr: true, tail: lines, follow: false, abortSignal }) as unknown as Promise<Buffer | string>, [404]);
    if (raw === undefined) return '';
    return lastLines(demux(typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw), lines);
  }

  async stopAndRemove(id: string, timeoutS: number): Promise<void> {
    const container = this.docker.getContainer(id);
    await this.ask(`stopping ${id.slice(0, 12)}`, (abortSignal) => container.stop({ t: timeoutS, abortSignal }), [304, 404], timeoutS * 1000);
    await this.ask(`removing ${id.slice(0, 12)}`, (abortSignal) => container.remove({ v: true, abortSignal }), [404, 409]);
  }

  async forceRemove(id: string): Promise<void> {
    await this.ask(`removing ${id.slice(0, 12)}`, (abortSignal) => this.docker.getContainer(id).remove({ force: true, v: true, abortSignal }), [404, 409]);
  }

  async pruneImages(app: string, keep: ReadonlySet<string>): Promise<string[]> {
    return pruneBuiltImages(this.docker, [`slipway/${app}`], keep, (doing, call) => this.ask(doing, call));
  }

  async addressesInUse(): Promise<string[]> {
    const infos = (await this.ask('listing the containers holding pool addresses', (abortSignal) =>
      this.docker.listContainers({ all: true, filters: { label: [LABELS.address] }, abortSignal })))!;
    return infos.map((info) => info.Labels[LABELS.address]).filter((a): a is string => typeof a === 'string');
  }
}

/**
 * Docker's log stream for a container without a TTY: frames of an 8-byte
 * header (stream, 0, 0, 0, big-endian length) and a payload. Anything else
 * (a TTY container) is returned as text.
 */
export function demux(buffer: Buffer): string {
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= buffer.length) {
    const stream = buffer[offset]!;
    const size = buffer.readUInt32BE(offset + 4);
    if (stream > 2 || buffer[offset + 1] !== 0 || offset + 8 + size > buffer.length) return buffer.toString('utf8');
    parts.push(buffer.subarray(offset + 8, offset + 8 + size));
    offset += 8 + size;
  }
  return offset === buffer.length ? Buffer.concat(parts).toString('utf8') : buffer.toString('utf8');
}

export interface ContainerSpecInput {
  app: Pick<AppConfig, 'name' | 'port' | 'host_ip' | 'env' | 'stop_timeout_s'> & Partial<Pick<AppConfig, 'resources'>>;
  image: string;
  /** Full 40-hex commit, or null for an image deploy (then no `slipway.sha` label). */
  sha: string | null;
  /** The job id, stored as `slipway.release`. */
  release: string;
}

/**
 * Docker create options for one replica. Pure: the port is published on
 * `host_ip` with an empty HostPort, so Docker picks a free one (read back
 * after start); `unless-stopped` keeps the app up across a Docker restart;
 * StopTimeout is the SIGTERM grace `docker stop` uses; `resources`
 * become the container's CPU and memory limits.
 */
export function containerSpec(input: ContainerSpecInput): Docker.ContainerCreateOptions {
  const { app } = input;
  const port = `${app.port}/tcp`;
  return {
    Image: input.image,
    Env: Object.entries(app.env).map(([key, value]) => `${key}=${value}`),
    Labels: {
      [LABELS.app]: app.name,
      ...(input.sha ? { [LABELS.sha]: input.sha } : {}),
      [LABELS.release]: input.release,
    },
    ExposedPorts: { [port]: {} },
    StopTimeout: app.stop_timeout_s,
    HostConfig: {
      PortBindings: { [port]: [{ HostIp: app.host_ip, HostPort: '' }] },
      RestartPolicy: { Name: 'unless-stopped' },
      ...(app.resources?.cpus ? { NanoCpus: Math.round(app.resources.cpus * 1e9) } : {}),
      ...(app.resources?.memory_mb ? { Memory: app.resources.memory_mb * 1024 * 1024 } : {}),
    },
  };
}
