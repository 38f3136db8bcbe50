/** Every Redis key Slipway uses besides BullMQ's own, under one prefix. */
export function keys(prefix: string) {
  return {
    seq: `${prefix}:jobs:seq`,
    all: `${prefix}:jobs:all`,
    byApp: (app: string) => `${prefix}:jobs:app:${app}`,
    /** Finished jobs of an app, scored by id: trimming reads only these. */
    finished: (app: string) => `${prefix}:jobs:finished:${app}`,
    /** The same jobs scored by their finish time (ms): retention's age test reads only these. */
    finishedAt: (app: string) => `${prefix}:jobs:finished-at:${app}`,
    /** Jobs of an app not yet started, scored by id: the supersede check reads it. */
    waiting: (app: string) => `${prefix}:jobs:waiting:${app}`,
    job: (id: string) => `${prefix}:job:${id}`,
    log: (id: string) => `${prefix}:job:${id}:log`,
    cancel: (id: string) => `${prefix}:job:${id}:cancel`,
    /** Claimed by the one worker that reports a job cancelled while waiting to its forge. */
    cancelReported: (id: string) => `${prefix}:job:${id}:feedback-cancelled`,
    delivery: (provider: string, id: string) => `${prefix}:delivery:${provider}:${id}`,
    /** A webhook queued this commit of this app (the job id), kept for the delivery retention: a replay is a duplicate. */
    pushed: (app: string, sha: string) => `${prefix}:app:${app}:pushed:${sha}`,
    /** The live release's commit and its recent ancestors: a push of one of them is stale. */
    liveAncestry: (app: string) => `${prefix}:app:${app}:live-ancestry`,
    /** `{"sha","job"}` of what is live, as the last completed deploy left it. */
    live: (app: string) => `${prefix}:app:${app}:live`,
    appLock: (app: string) => `${prefix}:lock:app:${app}`,
    events: `${prefix}:events`,
  };
}
export type Keys = ReturnType<typeof keys>;

export const QUEUE_NAME = 'deploys';
/** BullMQ job ids must not be bare integers; ours are, so they get a prefix. */
export const bullJobId = (id: string) => `deploy-${id}`;
