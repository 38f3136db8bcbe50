import type Docker from 'dockerode';

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
 * The runtime seam: everything a rollout asks of Docker. `dockerRuntime`
 * is the one implementation; a DNS-mode or remote runtime would be another.
 * Every method throws UnavailableError when the engine cannot be reached.
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
  imageExists(image: string): Promise<boolean>;
  /** routing: dns: the `slipway.address` of every container that has one, whatever its app or state. */
  addressesInUse(): Promise<string[]>;
}
