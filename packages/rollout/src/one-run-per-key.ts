/**
 * Runs `run(key)` one at a time per key. Asked while a run for the key is
 * going on, the call waits for it and one more run follows (what the
 * running one read may already be old); any number of asks meanwhile make
 * that one more run. `stopped()` ends the chain. `run` must not throw.
 */
export function oneRunPerKey(run: (key: string) => Promise<void>, stopped: () => boolean): {
  ask(key: string): Promise<void>;
  /** Every run going on now. */
  running(): Promise<void>[];
} {
  const running = new Map<string, Promise<void>>();
  const pending = new Set<string>();
  return {
    ask(key) {
      const current = running.get(key);
      if (current) {
        pending.add(key);
        return current;
      }
      const chain = (async () => {
        do {
          pending.delete(key);
          await run(key);
        } while (pending.has(key) && !stopped());
      })().finally(() => running.delete(key));
      running.set(key, chain);
      return chain;
    },
    running: () => [...running.values()],
  };
}
