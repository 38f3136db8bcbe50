import { isSha } from '@slipway/core/validate';

/** What is (or was) live: the value of `/slipway/apps/<app>/release` and of each history entry. */
export interface ReleaseRecord {
  /** Full 40-hex commit, or null for an image deploy. */
  sha: string | null;
  image: string;
  /** The job that rolled it out. */
  job: string;
  /** ISO 8601. */
  at: string;
}

/** Parses a stored record; null for anything that is not one (never trusted blindly: etcd is writable by hand). */
export function parseReleaseRecord(text: string | null): ReleaseRecord | null {
  if (text === null) return null;
  try {
    const v = JSON.parse(text) as Record<string, unknown>;
    if (typeof v.image !== 'string' || typeof v.job !== 'string' || typeof v.at !== 'string') return null;
    if (v.sha !== null && !isSha(v.sha)) return null;
    return { sha: v.sha as string | null, image: v.image, job: v.job, at: v.at };
  } catch {
    return null;
  }
}
