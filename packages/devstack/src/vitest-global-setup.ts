import type { TestProject } from 'vitest/node';
import { ensureBaseImage } from './base-image.js';
import { readStack, stackEnv, startStack, stopStack, type ServiceName, type StackState } from './stack.js';

declare module 'vitest' {
  export interface ProvidedContext {
    stack: StackState;
  }
}

/**
 * Joins the stack named by `$SLIPWAY_STACK_DIR` (what `npm test` starts
 * once for every package) or, when run alone, starts a temporary one and
 * stops it afterwards. `SLIPWAY_TEST_SERVICES` narrows what is started.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = process.env.SLIPWAY_STACK_DIR;
  const joined = dir ? readStack(dir) : null;
  const services = (process.env.SLIPWAY_TEST_SERVICES?.split(',') as ServiceName[] | undefined) ?? undefined;
  const stack = joined ?? (await startStack({ services, log: (line) => console.error(`[devstack] ${line}`) }));
  if (stack.docker) await ensureBaseImage();
  project.provide('stack', stack);
  Object.assign(process.env, stackEnv(stack));
  return async () => {
    if (!joined) await stopStack(stack, (line) => console.error(`[devstack] ${line}`));
  };
}
