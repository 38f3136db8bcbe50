import { posix } from 'node:path';
import type { ImageBuildOptions } from 'dockerode';
import type { AppConfig } from '@slipway/config/types';
import { InvalidInputError } from '@slipway/core/slipway-error';
import { assertSha, quote } from '@slipway/core/validate';
import { imageName, LABELS } from '@slipway/core/docker';

export interface PlannedBuild {
  /** `slipway/<app>:<sha12>`. */
  image: string;
  /** The Dockerfile's path inside the context, normalised (`docker/web.Dockerfile`). */
  dockerfile: string;
  /** What `docker.buildImage` is given (the caller adds its AbortSignal). */
  options: ImageBuildOptions;
}

const BUILD_ARG = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The Docker build request for a commit of an app. Pure.
 *
 * - tag `slipway/<app>:<sha12>`, labels `slipway.app` and `slipway.sha` (full sha);
 * - `dockerfile` and `build_args` from the app's config, the path kept inside the context;
 * - intermediate containers removed even when a step fails (`forcerm`);
 * - no forced `pull`: a missing FROM image is pulled as usual, a present one reused;
 * - the classic builder (`version: '1'`), whose stream format the log parser reads.
 */
export function buildOptions(input: { app: Pick<AppConfig, 'name' | 'dockerfile' | 'build_args'>; sha: string }): PlannedBuild {
  const sha = assertSha(input.sha);
  const image = imageName(input.app.name, sha);
  const dockerfile = contextPath(input.app.dockerfile);
  const buildargs: Record<string, string> = {};
  for (const [key, value] of Object.entries(input.app.build_args ?? {})) {
    if (!BUILD_ARG.test(key)) throw new InvalidInputError(`build argument name ${quote(key)} must match ${BUILD_ARG.source}`);
    if (typeof value !== 'string') throw new InvalidInputError(`build argument ${key} must be a string`);
    buildargs[key] = value;
  }
  return {
    image,
    dockerfile,
    options: {
      t: image,
      dockerfile,
      buildargs,
      labels: { [LABELS.app]: input.app.name, [LABELS.sha]: sha },
      rm: true,
      forcerm: true,
      version: '1',
    },
  };
}

/** A relative path that stays inside the build context, in the form Docker expects. */
function contextPath(value: unknown): string {
  if (typeof value !== 'string' || value.trim() === '') throw new InvalidInputError('dockerfile must be a relative path, got nothing');
  if (/[\u0000-\u001f\\]/.test(value)) throw new InvalidInputError(`dockerfile ${quote(value)} contains a backslash or a control character`);
  const normal = posix.normalize(value);
  if (posix.isAbsolute(normal) || normal === '..' || normal.startsWith('../') || normal === '.' || normal.endsWith('/')) {
    throw new InvalidInputError(`dockerfile ${quote(value)} must be a file path inside the repository`);
  }
  return normal;
}
