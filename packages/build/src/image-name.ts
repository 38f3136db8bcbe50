import { assertAppName, assertSha } from '@slipway/core/validate';

/** `slipway/<app>:<sha12>`, the image a commit of an app is built into. */
export function imageName(app: string, sha: string): string {
  return `slipway/${assertAppName(app, 'app')}:${assertSha(sha).slice(0, 12)}`;
}
