import { defineConfig } from 'vitest/config';

// Pure tests: no services, so no shared stack.
export default defineConfig({ test: { include: ['src/**/*.test.ts'] } });
