import { fileURLToPath } from 'node:url';
import { configDefaults, defineConfig, type ViteUserConfig } from 'vitest/config';

const conditions = ['slipway-source', 'module', 'node', 'development|production'];

/**
 * Tests on simulated hosts (network namespaces, an engine per host, a
 * swarm, an etcd cluster): minutes each, so they are their own turbo task,
 * `npm run test:cluster` (`SLIPWAY_TESTS=cluster`), which CI runs after
 * `npm test`; `npm test` leaves them out.
 */
export const CLUSTER_TESTS = ['test/cluster/**/*.test.ts', 'test/swarm/**/*.test.ts', 'test/swarm-*.test.ts'];

/**
 * The one vitest configuration every package uses: sources of workspace
 * packages resolved directly (no rebuild between edit and test), one shared
 * stack per run, generous timeouts for tests that build and start
 * containers, and modest parallelism for a two-core machine.
 */
export function slipwayTestConfig(overrides: { services?: boolean; include?: string[]; maxWorkers?: number; execArgv?: string[] } = {}): ViteUserConfig {
  return defineConfig({
    resolve: { conditions },
    ssr: { resolve: { conditions, externalConditions: ['slipway-source'] } },
    test: {
      include: overrides.include ?? (process.env.SLIPWAY_TESTS === 'cluster' ? CLUSTER_TESTS : ['src/**/*.test.ts', 'test/**/*.test.ts']),
      exclude: process.env.SLIPWAY_TESTS === 'cluster' || overrides.include ? configDefaults.exclude : [...configDefaults.exclude, ...CLUSTER_TESTS],
      globalSetup: overrides.services === false ? [] : [fileURLToPath(new URL('./vitest-global-setup.js', import.meta.url))],
      testTimeout: 120_000,
      // What is polled for goes through Redis, etcd, nginx or a browser: a second (vitest's default) is short on a loaded machine.
      expect: { poll: { timeout: 5000 } },
      hookTimeout: 180_000,
      pool: 'forks',
      poolOptions: { forks: { maxForks: overrides.maxWorkers ?? 2, minForks: 1, execArgv: overrides.execArgv ?? [] } },
      reporters: ['default'],
    },
  });
}
