import { readFileSync } from 'node:fs';
import { statFields } from '@slipway/core/run-command';

export interface EventLoopReport {
  /**
   * Longest time between two ticks of a 10 ms timer, beyond its 10 ms: how
   * long nothing else could run, whoever's fault. On two cores shared with
   * Docker and other test runs the OS alone makes gaps of 100-300 ms (an
   * ordinary deploy shows 125-160 ms here).
   */
  maxGapMs: number;
  /**
   * The main thread's CPU time within the worst such gap: how long our own
   * code (or a garbage collection pause) held the loop. GC helper and libuv
   * threads do not count: they do not hold it. Under contention it counts
   * only the share of the CPU the thread got, so it is read together with
   * the gap.
   */
  maxBlockedMs: number;
}

/** CPU ms of this process's main thread (Linux: /proc, 10 ms ticks); the whole process's elsewhere. */
function mainThreadCpuMs(): number {
  try {
    const fields = statFields(readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8'));
    // utime and stime, fields 14 and 15 of stat(5), in clock ticks of 10 ms.
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    const usage = process.cpuUsage();
    return (usage.user + usage.system) / 1000;
  }
}

/** Watches this process's event loop (an in-process worker's, a build's stream) until `stop()`. */
export function watchEventLoop(): { stop(): EventLoopReport } {
  let last = performance.now();
  let lastCpu = mainThreadCpuMs();
  let maxGapMs = 0;
  let maxBlockedMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    const cpu = mainThreadCpuMs();
    const gap = now - last - 10;
    maxGapMs = Math.max(maxGapMs, gap);
    maxBlockedMs = Math.max(maxBlockedMs, Math.min(gap, cpu - lastCpu));
    last = now;
    lastCpu = cpu;
  }, 10);
  return {
    stop() {
      clearInterval(timer);
      return { maxGapMs: Math.round(maxGapMs), maxBlockedMs: Math.round(maxBlockedMs) };
    },
  };
}
