import type Docker from 'dockerode';
import type { AppConfig } from '@slipway/config/types';
import { LABELS } from '@slipway/core/docker';

export interface ContainerSpecInput {
  app: Pick<AppConfig, 'name' | 'port' | 'host_ip' | 'env' | 'stop_timeout_s'>;
  image: string;
  /** Full 40-hex commit, or null for an image deploy (then no `slipway.sha` label). */
  sha: string | null;
  /** The job id, stored as `slipway.release`. */
  release: string;
}

/**
 * routing: dns: the same options published on `address` of the pool at the
 * app's own port (an A record carries no port), labelled with the address
 * so allocations can be derived from what runs. Pure.
 */
export function publishOn(spec: Docker.ContainerCreateOptions, port: number, address: string): Docker.ContainerCreateOptions {
  const key = `${port}/tcp`;
  return {
    ...spec,
    Labels: { ...spec.Labels, [LABELS.address]: address },
    HostConfig: { ...spec.HostConfig, PortBindings: { [key]: [{ HostIp: address, HostPort: String(port) }] } },
  };
}

/**
 * Docker create options for one replica. Pure: the port is published on
 * `host_ip` with an empty HostPort, so Docker picks a free one (read back
 * after start); `unless-stopped` keeps the app up across a Docker restart;
 * StopTimeout is the SIGTERM grace `docker stop` uses.
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
    },
  };
}
