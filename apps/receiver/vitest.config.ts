import { slipwayTestConfig } from '@slipway/devstack/vitest-config';

// The receiver needs Redis and nothing else; a stack joined through
// $SLIPWAY_STACK_DIR (npm test) is used as it is.
process.env.SLIPWAY_TEST_SERVICES ??= 'redis';

export default slipwayTestConfig();
