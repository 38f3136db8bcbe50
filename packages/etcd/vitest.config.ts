import { slipwayTestConfig } from '@slipway/devstack/vitest-config';

// Pure functions only: no services, so no stack is started.
export default slipwayTestConfig({ services: false });
