import { slipwayTestConfig } from '@slipway/devstack/vitest-config';
export default slipwayTestConfig();
