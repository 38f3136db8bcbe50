import { slipwayTestConfig } from '@slipway/devstack/vitest-config';

export default slipwayTestConfig({ include: ['**/*.test.ts'], maxWorkers: 1 });
