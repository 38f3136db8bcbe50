import type Docker from 'dockerode';
import { lastLines } from '@slipway/core/run-command';
import type { AppContainer, ContainerHealthState, ContainerRuntime } from './container-runtime.js';
import { dockerError, dockerStatus, LABELS } from '@slipway/core/docker';
import { ContainerStartError, ImageNotFoundError } from './rollout-errors.js';

/** The runtime seam over a dockerode client. */
export function dockerRuntime(docker: Docker): ContainerRuntime {
  const call = async <T>(doing: string, fn: () => Promise<T>, ignore: number[] = []): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (err) {
      const status = dockerStatus(err);
      if (status !== undefined && ignore.includes(status)) return undefined;
      throw dockerError(err, doing);
    }
  };

  return {
    async listAppContainers(app, port) {
      const infos = (await call(`listing the containers of ${app}`, () =>
        docker.listContainers({ all: true, filters: { label: [`${LABELS.app}=${app}`] } })))!;
      return infos.map((info): AppContainer => {
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
      });
    },

    async startContainer(spec, port) {
      let container: Docker.Container;
      try {
        container = await docker.createContainer(spec);
      } catch (err) {
        if (dockerStatus(err) === 404) throw new ImageNotFoundError(spec.Image ?? '?');
        throw dockerError(err, `creating a container from ${spec.Image}`);
      }
      try {
        await container.start();
      } catch (err) {
        await container.remove({ force: true, v: true }).catch(() => {});
        const failure = dockerError(err, `starting a container from ${spec.Image}`);
        throw failure.code === 'unavailable' ? failure : new ContainerStartError(failure.message, { cause: err });
      }
      const info = (await call(`inspecting ${container.id.slice(0, 12)}`, () => container.inspect()))!;
      const binding = info.NetworkSettings.Ports?.[`${port}/tcp`]?.find((b) => !b.HostIp.includes(':'));
      // No binding: the container is already gone again; the health step reports why.
      return { id: container.id, address: binding ? `${binding.HostIp}:${binding.HostPort}` : null };
    },

    async healthState(id): Promise<ContainerHealthState> {
      const info = await call(`inspecting ${id.slice(0, 12)}`, () => docker.getContainer(id).inspect(), [404]);
      if (!info) return { running: false, restarted: false, exitCode: null };
      return {
        running: info.State.Running && !info.State.Restarting,
        restarted: info.RestartCount > 0 || info.State.Restarting,
        exitCode: info.State.Running ? null : info.State.ExitCode,
      };
    },

    async logTail(id, lines) {
      const raw = await call(`reading the log of ${id.slice(0, 12)}`, () =>
        docker.getContainer(id).logs({ stdout: true, stderr: true, tail: lines, follow: false }) as unknown as Promise<Buffer | string>, [404]);
      if (raw === undefined) return '';
      return lastLines(demux(typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw), lines);
    },

    async stopAndRemove(id, timeoutS) {
      const container = docker.getContainer(id);
      await call(`stopping ${id.slice(0, 12)}`, () => container.stop({ t: timeoutS }), [304, 404]);
      await call(`removing ${id.slice(0, 12)}`, () => container.remove({ v: true }), [404, 409]);
    },

    async forceRemove(id) {
      await call(`removing ${id.slice(0, 12)}`, () => docker.getContainer(id).remove({ force: true, v: true }), [404, 409]);
    },

    async addressesInUse() {
      const infos = (await call('listing the containers holding pool addresses', () =>
        docker.listContainers({ all: true, filters: { label: [LABELS.address] } })))!;
      return infos.map((info) => info.Labels[LABELS.address]).filter((a): a is string => typeof a === 'string');
    },

    async imageExists(image) {
      return (await call(`inspecting image ${image}`, () => docker.getImage(image).inspect(), [404])) !== undefined;
    },
  };
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
