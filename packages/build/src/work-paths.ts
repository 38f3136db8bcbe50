import { join, resolve } from 'node:path';
import { assertAppName } from '@slipway/core/validate';

/** Where an app's clone cache, its lock and its build contexts live under `workdir`. */
export interface WorkPaths {
  /** `<workdir>/repos`: one bare clone per app. */
  repos: string;
  /** `<workdir>/repos/<app>`: the app's bare clone cache. */
  repo: string;
  /** `<workdir>/repos/<app>.lock`: serialises every git operation on `repo`. */
  lock: string;
  /** `<workdir>/builds`: checked-out trees, one per job, removed after the build. */
  builds: string;
}

export function workPaths(workdir: string, app: string): WorkPaths {
  assertAppName(app);
  // Absolute, always: git is given these paths from a different working directory.
  const root = resolve(workdir);
  const repos = join(root, 'repos');
  return { repos, repo: join(repos, app), lock: join(repos, `${app}.lock`), builds: join(root, 'builds') };
}
