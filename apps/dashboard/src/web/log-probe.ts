/**
 * What the job page exposes as `window.slipwayLog`, for tests and curious
 * readers: the log as received, independent of what is rendered.
 */
export interface LogProbe {
  readonly lineCount: number;
  readonly renderedRows: number;
  /** Lines that arrived out of order (a duplicate or a gap); 0 when resuming works. */
  readonly anomalies: number;
  /** Times the live stream (re)connected. */
  readonly connections: number;
  /** The final event arrived. */
  readonly ended: boolean;
  /** Line `n` (1-based) as received. */
  line(n: number): string | undefined;
}
