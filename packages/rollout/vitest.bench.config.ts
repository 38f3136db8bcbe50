import { slipwayTestConfig } from '@slipway/devstack/vitest-config';

/** `npm run bench`: the same stack set-up as the tests, one file at a time, bench files only. */
export default slipwayTestConfig({ include: ['bench/**/*.bench.ts'], maxWorkers: 1 });
