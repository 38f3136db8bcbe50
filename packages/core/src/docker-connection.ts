import { InvalidInputError } from './slipway-error.js';

/** dockerode constructor options for a `docker:` URL (`unix:///path`, `tcp://host:port`). */
export interface DockerConnectionOptions {
  socketPath?: string;
  host?: string;
  port?: number;
  protocol?: 'http' | 'https';
}

export function dockerConnection(url: string): DockerConnectionOptions {
  const parsed = new URL(url);
  switch (parsed.protocol) {
    case 'unix:':
      return { socketPath: decodeURIComponent(parsed.pathname) };
    case 'tcp:':
    case 'http:':
      return { host: parsed.hostname, port: Number(parsed.port || 2375), protocol: 'http' };
    case 'https:':
      return { host: parsed.hostname, port: Number(parsed.port || 2376), protocol: 'https' };
    default:
      throw new InvalidInputError(`unsupported docker URL ${url}`);
  }
}
