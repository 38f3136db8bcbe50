import { slipwayTestConfig } from '@slipway/devstack/vitest-config';

/** Benchmarks: one file at a time, run only by `npm run bench:*`. */
export default slipwayTestConfig({ include: ['bench/**/*.bench.ts'], maxWorkers: 1 });
