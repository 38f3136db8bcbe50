export interface EventLoopReport {
  /** Longest time between two ticks of a 10 ms timer, beyond its 10 ms. */
  maxGapMs: number;
  /**
   * Longest the process was busy within one such gap (CPU time, capped by
   * the gap): how long the event loop was held. On two cores shared with
   * Docker and other test runs, the OS alone leaves gaps of 100-200 ms in
   * which this process barely ran; a loop held by our own code shows its
   * whole gap as CPU.
   */
  maxBlockedMs: number;
}

/** Watches the event loop until `stop()`. */
export function watchEventLoop(): { stop(): EventLoopReport } {
  let last = performance.now();
  let lastCpu = process.cpuUsage();
  let maxGapMs = 0;
  let maxBlockedMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    const cpu = process.cpuUsage(lastCpu);
    const gap = now - last - 10;
    maxGapMs = Math.max(maxGapMs, gap);
    maxBlockedMs = Math.max(maxBlockedMs, Math.min(gap, (cpu.user + cpu.system) / 1000));
    last = now;
    lastCpu = process.cpuUsage();
  }, 10);
  return {
    stop() {
      clearInterval(timer);
      return { maxGapMs: Math.round(maxGapMs), maxBlockedMs: Math.round(maxBlockedMs) };
    },
  };
}
