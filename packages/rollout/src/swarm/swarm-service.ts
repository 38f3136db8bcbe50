import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Docker from 'dockerode';
import { ConfigError, engineFileProblems } from '@slipway/config/load-config';
import type { AppConfig, EngineConfig } from '@slipway/config/types';
import { dockerCallWithin, dockerConnection, dockerError, ENGINE_TIMEOUT_MS, LABELS } from '@slipway/core/docker';
import { sshAgent, sshTarget } from '@slipway/core/docker-ssh';
import { lastLines } from '@slipway/core/run-command';
import { demux } from '../container-runtime.js';
import { ContainerStartError } from '../rollout-errors.js';

/*
 * Everything a swarm rollout (and the task watcher, and status) asks of a
 * Swarm manager: the service seam, its implementation over dockerode, and
 * the service spec of a release. A release is one service,
 * `slipway-<app>-<release>`; its tasks are what a container is on one
 * engine, and a task's endpoint is its node's `Status.Addr` and the port
 * Swarm published for it in host mode.
 */

/** Docker's limit on a service name (a DNS label). */
export const SERVICE_NAME_MAX = 63;
/**
 * Docker's own health check runs this often once the task is up. Swarm
 * keeps a task `starting` until its first check passes, and replaces a
 * task that turns unhealthy later; the gate before traffic stays
 * Slipway's own probe. Docker 20.10 has no faster start interval, so this
 * is also the least a new task spends `starting`.
 */
export const HEALTHCHECK_INTERVAL_MS = 1_000;
export const HEALTHCHECK_TIMEOUT_MS = 2_000;
export const HEALTHCHECK_RETRIES = 3;
/**
 * The health check, run by the image's /bin/sh with the URL in the
 * container's environment (never spliced into the script): wget (busybox,
 * alpine) or curl, whichever the image has; an image with neither, or with
 * no shell (see imageHasShell), is left to Slipway's probe alone rather
 * than killed as unhealthy.
 */
const HEALTHCHECK_SCRIPT = 'if command -v wget >/dev/null 2>&1; then exec wget -q -O /dev/null "$SLIPWAY_HEALTH_URL"; '
  + 'elif command -v curl >/dev/null 2>&1; then exec curl -fsS -o /dev/null "$SLIPWAY_HEALTH_URL"; fi; exit 0';

/**
 * A client of `engine.manager`: a unix socket, tcp:// (with `engine.tls`
 * the connection is TLS with those files, as `docker --tlsverify` does), or
 * ssh:// (the ssh client runs `docker system dial-stdio` there, as `docker
 * -H ssh://` does; with `engine.ssh`'s key and known hosts if given).
 */
export function managerClient(engine: EngineConfig): Docker {
  // A certificate or key that cannot be read: the configuration's error, naming its key (the CLI exits 2 on it).
  const unreadable = engineFileProblems({ engine });
  if (unreadable.length > 0) throw new ConfigError(null, unreadable);
  if (new URL(engine.manager!).protocol === 'ssh:') {
    // Any host and port: every connection is the agent's ssh pipe.
    const agent = sshAgent(sshTarget(engine.manager!), { key: engine.ssh?.key, knownHosts: engine.ssh?.known_hosts });
    return new Docker({ protocol: 'http', host: 'manager.ssh', port: 80, agent } as Docker.DockerOptions);
  }
  const connection = dockerConnection(engine.manager!);
  if (!engine.tls) return new Docker(connection);
  return new Docker({
    ...connection, protocol: 'https',
    ca: readFileSync(engine.tls.ca), cert: readFileSync(engine.tls.cert), key: readFileSync(engine.tls.key),
  } as Docker.DockerOptions);
}

/** A service labelled `slipway.app=<app>`, as the manager lists it. */
export interface AppService {
  id: string;
  name: string;
  labels: Record<string, string>;
  image: string;
  replicas: number;
}

/** A task of an app's service, with where it answers. */
export interface AppTask {
  id: string;
  serviceId: string;
  /** The release (job id) of its service. */
  release: string;
  /** Slot of a replicated service: a task replaced by Swarm keeps its slot. */
  slot: number;
  nodeId: string | null;
  /** The node's `Status.Addr`; null before the task is assigned. */
  node: string | null;
  /** Swarm's task state: `new`, `pending`, `assigned`, `preparing`, `starting`, `running`, `failed`, `shutdown`, `rejected`… */
  state: string;
  desiredState: string;
  /** Swarm's message, and its error when the task failed. */
  message: string;
  error: string | null;
  exitCode: number | null;
  /** `<node address>:<published port>` of the app's port; null until the task runs with a port. */
  address: string | null;
  createdAt: string;
}

/**
 * The service seam: everything a swarm rollout asks of the manager.
 * SwarmRuntime is the one implementation. Every method throws
 * UnavailableError when the manager cannot be reached.
 */
export interface ServiceRuntime {
  listAppServices(app: string): Promise<AppService[]>;
  /** Creates the service; ContainerStartError when the manager refuses its spec. */
  createService(spec: ServiceSpec): Promise<string>;
  /** Every task of the app's services (or of one service), running or not, newest first. */
  appTasks(app: string, port: number, serviceId?: string): Promise<AppTask[]>;
  /** Removes the service: Swarm stops its tasks with their stop grace period. Gone already is fine. */
  removeService(id: string): Promise<void>;
  /** The last `lines` lines of a task's log. */
  taskLogTail(taskId: string, lines: number): Promise<string>;
}

/** What dockerode's createService takes. */
export type ServiceSpec = Docker.CreateServiceOptions;

/**
 * How long one call to the manager may take. A manager that accepts the
 * connection and never answers (black-holed, wedged) is then unreachable,
 * as one refusing it is: the rollout fails `unavailable` (and is retried)
 * instead of holding the app's lock for ever.
 */
export const MANAGER_TIMEOUT_MS = 30_000;

/**
 * One call to the manager, as dockerCall makes it, abandoned (its request
 * aborted) after `timeoutMs`: UnavailableError.
 */
export function askManager<T>(doing: string, call: (abortSignal: AbortSignal) => Promise<T>, options: { timeoutMs?: number; ignore?: readonly number[] } = {}): Promise<T | undefined> {
  return dockerCallWithin(doing, call, { timeoutMs: options.timeoutMs ?? MANAGER_TIMEOUT_MS, ignore: options.ignore, engine: 'the swarm manager' });
}

export interface SwarmRuntimeOptions {
  /** Default MANAGER_TIMEOUT_MS. */
  timeoutMs?: number;
  /** `engine.registry_auth` and `engine.registry`: what the nodes pull a new service's image with. */
  registryAuth?: { username: string; password: string; serveraddress: string };
}

export class SwarmRuntime implements ServiceRuntime {
  private readonly timeoutMs: number;

  constructor(private readonly manager: Docker, private readonly options: SwarmRuntimeOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? MANAGER_TIMEOUT_MS;
  }

  private ask<T>(doing: string, call: (abortSignal: AbortSignal) => Promise<T>, ignore: readonly number[] = []): Promise<T | undefined> {
    return askManager(doing, call, { timeoutMs: this.timeoutMs, ignore });
  }

  async listAppServices(app: string): Promise<AppService[]> {
    const services = (await this.ask(`listing the services of ${app}`, (abortSignal) => this.manager.listServices({ filters: { label: [`${LABELS.app}=${app}`] }, abortSignal })))!;
    return services.map((s) => ({
      id: s.ID!,
      name: s.Spec?.Name ?? '',
      labels: s.Spec?.Labels ?? {},
      image: (s.Spec?.TaskTemplate as { ContainerSpec?: { Image?: string } } | undefined)?.ContainerSpec?.Image ?? '',
      replicas: s.Spec?.Mode?.Replicated?.Replicas ?? 0,
    }));
  }

  async createService(spec: ServiceSpec): Promise<string> {
    try {
      // Credentials first, always: given the spec alone, dockerode sends the spec (the app's env included) as X-Registry-Auth,
      // which the manager keeps as the service's pull credentials and hands to every node.
      const auth = (this.options.registryAuth ?? {}) as Docker.AuthConfig;
      const service = (await this.ask(`creating service ${spec.Name}`, (abortSignal) => this.manager.createService(auth, { ...spec, abortSignal } as ServiceSpec)))!;
      return service.id;
    } catch (err) {
      const failure = dockerError(err, `creating service ${spec.Name}`);
      if (failure.code !== 'unavailable') throw new ContainerStartError(failure.message, { cause: err });
      // No answer is not no service: the manager may have made it and its answer been lost (past the timeout). Made, it
      // is this rollout's, to take away on a failure; unknown to it, it would run on, holding its reservations.
      const made = await this.ask(`looking for service ${spec.Name}`, (abortSignal) => this.manager.listServices({ filters: { name: [spec.Name!] }, abortSignal })).catch(() => undefined);
      const service = made?.find((s) => s.Spec?.Name === spec.Name);
      if (service?.ID) return service.ID;
      throw failure;
    }
  }

  async appTasks(app: string, port: number, serviceId?: string): Promise<AppTask[]> {
    const [services, nodes] = await Promise.all([
      serviceId ? Promise.resolve(null) : this.listAppServices(app),
      this.ask('listing the swarm nodes', (abortSignal) => this.manager.listNodes({ abortSignal })),
    ]);
    const ids = serviceId ? [serviceId] : services!.map((s) => s.id);
    if (ids.length === 0) return [];
    const releaseOf = new Map((services ?? []).map((s) => [s.id, s.labels[LABELS.release] ?? '']));
    const addressOf = new Map(nodes!.map((n) => [n.ID!, nodeAddress(n)]));
    const tasks = (await this.ask(`listing the tasks of ${app}`, (abortSignal) => this.manager.listTasks({ filters: { service: ids }, abortSignal })))! as RawTask[];
    return tasks.map((t) => toAppTask(t, port, addressOf, releaseOf)).sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }

  async removeService(id: string): Promise<void> {
    await this.ask(`removing service ${id.slice(0, 12)}`, (abortSignal) => this.manager.getService(id).remove({ abortSignal }), [404]);
  }

  async taskLogTail(taskId: string, lines: number): Promise<string> {
    const raw = await this.ask(`reading the log of task ${taskId.slice(0, 12)}`, (abortSignal) =>
      (this.manager.getTask(taskId) as unknown as { logs(options: object): Promise<unknown> }).logs({ stdout: true, stderr: true, tail: lines, follow: false, abortSignal }) as unknown as Promise<Buffer | string>, [404, 503]);
    if (raw === undefined) return '';
    return lastLines(demux(typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw), lines);
  }
}

/**
 * The address a node's published ports are reached at: its `Status.Addr`,
 * unless that says nothing (`0.0.0.0`, or a loopback address: some
 * managers report those for themselves), then the host of its
 * `ManagerStatus.Addr`; IPv6 in brackets, as `host:port` needs. Null when
 * neither names the node (its tasks then get no address and never serve).
 */
export function nodeAddress(node: { Status?: { Addr?: string }; ManagerStatus?: { Addr?: string } }): string | null {
  const usable = (addr: string | undefined) => (addr && !/^(0\.0\.0\.0|::|127\.\d+\.\d+\.\d+|::1)$/.test(addr) ? addr : null);
  const managerHost = node.ManagerStatus?.Addr?.replace(/^\[(.*)\]:\d+$|^([^:]*):\d+$/, '$1$2');
  const addr = usable(node.Status?.Addr) ?? usable(managerHost);
  return addr === null ? null : addr.includes(':') ? `[${addr}]` : addr;
}

interface RawTask {
  ID: string;
  ServiceID: string;
  NodeID?: string;
  Slot?: number;
  CreatedAt?: string;
  DesiredState?: string;
  Spec?: { ContainerSpec?: { Labels?: Record<string, string> } };
  Status?: {
    State?: string;
    Message?: string;
    Err?: string;
    ContainerStatus?: { ExitCode?: number };
    PortStatus?: { Ports?: Array<{ TargetPort?: number; PublishedPort?: number; PublishMode?: string }> };
  };
}

/** A task as Slipway sees it. Pure. The same binding is listed once per address family: the first is taken. */
export function toAppTask(t: RawTask, port: number, addressOf: ReadonlyMap<string, string | null>, releaseOf: ReadonlyMap<string, string>): AppTask {
  const node = t.NodeID ? addressOf.get(t.NodeID) ?? null : null;
  const state = t.Status?.State ?? 'new';
  const binding = t.Status?.PortStatus?.Ports?.find((p) => p.PublishMode === 'host' && p.TargetPort === port && p.PublishedPort);
  return {
    id: t.ID,
    serviceId: t.ServiceID,
    release: releaseOf.get(t.ServiceID) ?? t.Spec?.ContainerSpec?.Labels?.[LABELS.release] ?? '',
    slot: t.Slot ?? 0,
    nodeId: t.NodeID ?? null,
    node,
    state,
    desiredState: t.DesiredState ?? '',
    message: t.Status?.Message ?? '',
    error: t.Status?.Err || null,
    exitCode: t.Status?.ContainerStatus?.ExitCode ?? null,
    address: state === 'running' && node && binding ? `${node}:${binding.PublishedPort}` : null,
    createdAt: t.CreatedAt ?? '',
  };
}

/** Tasks that serve: running, meant to run, with a published port. */
export function liveEndpoints(tasks: readonly AppTask[]): AppTask[] {
  return tasks.filter((t) => t.state === 'running' && t.desiredState === 'running' && t.address !== null);
}

/**
 * `slipway-<app>-<release>`, in the characters Docker allows; a name past
 * 63 characters keeps its start and ends in a hash of the whole, so two
 * releases never share one. Services are found by label, never by name.
 */
export function serviceName(app: string, release: string): string {
  const name = `slipway-${app}-${release.toLowerCase().replace(/[^a-z0-9-]+/g, '-')}`.replace(/-+$/, '');
  if (name.length <= SERVICE_NAME_MAX) return name;
  const hash = createHash('sha256').update(`${app}\0${release}`).digest('hex').slice(0, 10);
  return `${name.slice(0, SERVICE_NAME_MAX - hash.length - 1).replace(/-+$/, '')}-${hash}`;
}

/** The `slipway.step` label of imageHasShell's containers, and the age past which one was left behind. */
const SHELL_CHECK = 'shell check';
const SHELL_CHECK_LEFT_S = 600;

export interface ServiceSpecInput {
  app: Pick<AppConfig, 'name' | 'port' | 'env' | 'stop_timeout_s' | 'replicas' | 'health' | 'placement' | 'resources'>;
  image: string;
  /** Full 40-hex commit, or null for an image deploy. */
  sha: string | null;
  /** The job id: `slipway.release`, and the service's name. */
  release: string;
  /**
   * Whether the image has `/bin/sh`, which Docker's health check runs:
   * false (a distroless or `FROM scratch` image) leaves the task to
   * Slipway's probe alone, as an image without wget or curl is; undefined
   * (not known) keeps the check.
   */
  shell?: boolean;
}

/**
 * Whether `image` has a `/bin/sh` (its health check needs one), asked of
 * `docker` by a container created and never started, then removed;
 * undefined when that engine does not have the image. One such container
 * a worker that died meanwhile left (its labels say so, and its age) is
 * removed the next time.
 */
export async function imageHasShell(docker: Docker, image: string, app: string): Promise<boolean | undefined> {
  const labels = { [LABELS.app]: app, [LABELS.step]: SHELL_CHECK };
  const left = await dockerCallWithin('listing shell checks left behind', (abortSignal) => docker.listContainers({ all: true, filters: { label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) }, abortSignal }), { timeoutMs: ENGINE_TIMEOUT_MS });
  for (const old of left ?? []) {
    // Not one another rollout of the app is making now (they run before the app's lock): only an old one.
    if (Date.now() / 1000 - old.Created > SHELL_CHECK_LEFT_S) await removeWithin(docker.getContainer(old.Id));
  }
  const created = await dockerCallWithin(`creating a container of ${image} to look for /bin/sh`, (abortSignal) => docker.createContainer({
    Image: image, Entrypoint: ['/bin/sh'], Cmd: [], Labels: labels, HostConfig: { NetworkMode: 'none' }, abortSignal,
  }), { timeoutMs: ENGINE_TIMEOUT_MS, ignore: [404] });
  if (!created) return undefined;
  try {
    const found = await dockerCallWithin(`looking for /bin/sh in ${image}`, (abortSignal) => created.infoArchive({ path: '/bin/sh', abortSignal }), { timeoutMs: ENGINE_TIMEOUT_MS, ignore: [404] });
    return found !== undefined;
  } finally {
    await removeWithin(created);
  }
}

/** A shell check's container removed, within the engine's deadline like every call (a wedged engine must not hold the job); a failure is left to the next check. */
const removeWithin = (container: Docker.Container) =>
  dockerCallWithin(`removing the shell check ${container.id.slice(0, 12)}`, (abortSignal) => container.remove({ force: true, abortSignal }), { timeoutMs: ENGINE_TIMEOUT_MS }).catch(() => {});

/**
 * The service of one release. Pure. Ports are published in host mode
 * without a fixed published port: Swarm picks one per task (this kernel
 * and many others have no IPVS for the routing mesh, and a fixed port
 * with start-first deadlocks, moby#36934); `dnsrr` because VIPs need IPVS
 * too. `Init` forwards SIGTERM to apps that ignore it as PID 1. Tasks
 * spread over nodes; CPU and memory are both limit and reservation, so
 * Swarm places by them.
 */
export function serviceSpec(input: ServiceSpecInput): ServiceSpec {
  const { app } = input;
  const labels = {
    [LABELS.app]: app.name,
    ...(input.sha ? { [LABELS.sha]: input.sha } : {}),
    [LABELS.release]: input.release,
  };
  const ns = (ms: number) => ms * 1_000_000;
  const resources = app.resources && {
    ...(app.resources.cpus !== undefined ? { NanoCPUs: Math.round(app.resources.cpus * 1e9) } : {}),
    ...(app.resources.memory_mb !== undefined ? { MemoryBytes: app.resources.memory_mb * 1024 * 1024 } : {}),
  };
  return {
    Name: serviceName(app.name, input.release),
    Labels: labels,
    TaskTemplate: {
      ContainerSpec: {
        Image: input.image,
        Labels: labels,
        Env: [...Object.entries(app.env).map(([key, value]) => `${key}=${value}`), `SLIPWAY_HEALTH_URL=http://127.0.0.1:${app.port}${app.health.path}`],
        Init: true,
        StopGracePeriod: ns(app.stop_timeout_s * 1000),
        Healthcheck: input.shell === false ? { Test: ['NONE'] } : {
          Test: ['CMD-SHELL', HEALTHCHECK_SCRIPT],
          Interval: ns(HEALTHCHECK_INTERVAL_MS),
          Timeout: ns(HEALTHCHECK_TIMEOUT_MS),
          Retries: HEALTHCHECK_RETRIES,
          StartPeriod: ns(app.health.timeout_s * 1000),
        },
      },
      RestartPolicy: { Condition: 'any', Delay: ns(1000) },
      Placement: { Constraints: [...app.placement], Preferences: [{ Spread: { SpreadDescriptor: 'node.id' } }] },
      ...(resources ? { Resources: { Limits: resources, Reservations: resources } } : {}),
    },
    Mode: { Replicated: { Replicas: app.replicas } },
    EndpointSpec: { Mode: 'dnsrr', Ports: [{ Protocol: 'tcp', TargetPort: app.port, PublishMode: 'host' }] },
  } as ServiceSpec;
}
