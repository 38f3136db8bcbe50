import { api, ApiError } from './api-client.js';
import { confirmDialog } from './confirm-dialog.js';
import { announce, h, replaceChildren } from './dom.js';
import { formatAge, formatDuration, formatTime, shortSha } from './format.js';
import { isFinal, stateBadge, stateWord, timelineView } from './job-status.js';
import type { JobView } from './job-view.js';
import { LogView, type LogProbe } from './log-view.js';

/** Lines fetched per request when a page opens on a long log (then the live stream takes over). */
const BACKLOG_PAGE = 20_000;

/** What the live log has seen so far, for the page's {@link LogProbe}. */
interface StreamCounters {
  anomalies: number;
  connections: number;
  ended: boolean;
}

/**
 * `/jobs/:id`: the job's facts, its actions (re-run, cancel), its step
 * timeline and its log (see {@link followLog}).
 */
export async function jobPage(main: HTMLElement, id: string): Promise<void> {
  let job: JobView;
  try {
    job = (await api<{ job: JobView }>(`/api/jobs/${encodeURIComponent(id)}`)).job;
  } catch (err) {
    const missing = err instanceof ApiError && err.status === 404;
    replaceChildren(main, h('h1', {}, missing ? `No job ${id}` : `Job ${id}`),
      h('p', { role: 'alert' }, missing ? 'There is no such job: it may have been trimmed from the history.' : (err as Error).message),
      h('p', {}, h('a', { href: '/jobs' }, 'All jobs')));
    return;
  }

  const title = h('h1', {}, `Job ${id}`);
  const badge = h('span', { class: 'job-badge' });
  const streamStatus = h('p', { class: 'stream-status', role: 'status' });
  const actionStatus = h('p', { class: 'action-status', role: 'status' });
  const rerun = h('button', { type: 'button', class: 'button primary', onclick: () => void rerunJob(job) }, 'Re-run');
  const cancel = h('button', { type: 'button', class: 'button danger', onclick: () => void cancelJob(job, actionStatus, show) }, 'Cancel job');
  const facts = h('dl', { class: 'facts' });
  const error = h('p', { class: 'job-error' });
  const timeline = h('div', { class: 'timeline-box' });
  const log = new LogView({ downloadHref: `/api/jobs/${id}/log.txt`, downloadName: `job-${id}.log` });
  replaceChildren(main,
    h('div', { class: 'page-head' }, title, badge, h('div', { class: 'actions' }, rerun, cancel)),
    actionStatus, error, facts,
    h('section', { class: 'timeline-section', 'aria-labelledby': 'steps-heading' }, h('h2', { id: 'steps-heading' }, 'Steps'), timeline),
    streamStatus, log.element);

  const counters: StreamCounters = { anomalies: 0, connections: 0, ended: false };
  const probe: LogProbe = {
    get lineCount() { return log.lineCount; },
    get renderedRows() { return log.renderedRows; },
    get anomalies() { return counters.anomalies; },
    get connections() { return counters.connections; },
    get ended() { return counters.ended; },
    line: (n) => log.line(n),
  };
  (window as unknown as { slipwayLog: LogProbe }).slipwayLog = probe;

  const renderProgress = () => {
    replaceChildren(facts, ...jobFacts(job).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    replaceChildren(timeline, timelineView(job));
  };
  function show(next: JobView): void {
    const changed = next.state !== job.state;
    job = next;
    document.title = `Job ${job.id} · ${job.app} · ${job.state} · Slipway`;
    title.textContent = `Job ${job.id} · ${job.app}`;
    replaceChildren(badge, stateBadge(job.state));
    rerun.hidden = !(job.state === 'failed' || job.state === 'cancelled');
    cancel.hidden = !(job.state === 'waiting' || job.state === 'active');
    error.hidden = !job.error;
    error.textContent = job.error ? `Error: ${job.error}` : '';
    renderProgress();
    log.setLive(!isFinal(job.state));
    if (changed) announce(`Job ${job.id} is now ${stateWord(job.state)}`);
  }
  show(job);
  const ticker = window.setInterval(() => {
    if (!isFinal(job.state)) renderProgress();
  }, 1000);
  window.addEventListener('pagehide', () => window.clearInterval(ticker), { once: true });

  await followLog(id, log, counters, { onJob: show, isOver: () => isFinal(job.state), status: streamStatus });
}

/**
 * A job's log: the backlog in large JSON pages, then the live stream from
 * the next line. The browser resumes the stream from `Last-Event-ID` after
 * a drop; when it gives up, this starts it over from the last line held,
 * backing off, and at once when the tab or the network comes back.
 * Resolves once the backlog is in and the stream is opening.
 */
async function followLog(id: string, log: LogView, counters: StreamCounters, hooks: { onJob(job: JobView): void; isOver(): boolean; status: HTMLElement }): Promise<void> {
  try {
    for (;;) {
      const page = await api<{ from: number; lines: string[]; total: number; state: string }>(`/api/jobs/${id}/log?from=${log.lineCount + 1}&limit=${BACKLOG_PAGE}`);
      log.append(page.lines, page.from);
      // A page of long lines ends before `limit` (a byte bound): the next one goes on from where it stopped.
      if (page.lines.length === 0 || page.from + page.lines.length > page.total) break;
    }
  } catch {
    // The stream below starts from wherever the backlog stopped.
  }
  let delay = 1000;
  let current: EventSource | null = null;
  let retryTimer: number | undefined;
  const openStream = () => {
    window.clearTimeout(retryTimer);
    const source = new EventSource(`/api/jobs/${id}/log/stream?from=${log.lineCount + 1}`);
    current = source;
    const restart = () => {
      source.close();
      // Refused rather than dropped? A lost session sends the reader to sign in again.
      void api('/api/session').catch(() => {});
      retryTimer = window.setTimeout(openStream, delay);
      delay = Math.min(delay * 2, 15_000);
    };
    source.addEventListener('open', () => {
      counters.connections++;
      delay = 1000;
      hooks.status.textContent = hooks.isOver() ? '' : 'Live: new lines appear as they are written.';
    });
    source.addEventListener('message', (event) => {
      const n = Number(event.lastEventId);
      const line = JSON.parse(event.data as string) as string;
      if (n !== log.lineCount + 1) counters.anomalies++;
      // A gap (never expected) is repaired by starting over from the last line held.
      if (!log.append([line], n)) restart();
    });
    source.addEventListener('job', (event) => hooks.onJob(JSON.parse((event as MessageEvent<string>).data) as JobView));
    source.addEventListener('end', () => {
      source.close();
      counters.ended = true;
      log.complete();
      hooks.status.textContent = '';
      void api<{ job: JobView }>(`/api/jobs/${id}`).then((r) => hooks.onJob(r.job), () => {});
    });
    source.addEventListener('error', () => {
      if (counters.ended) return;
      hooks.status.textContent = 'Connection lost: reconnecting; the log resumes where it stopped.';
      if (source.readyState === EventSource.CLOSED) restart();
    });
  };
  openStream();
  // A tab coming back from the background (or a network coming back) resumes at once instead of waiting out a back-off.
  const resume = () => {
    if (!counters.ended && document.visibilityState === 'visible' && current?.readyState === EventSource.CLOSED) {
      delay = 1000;
      openStream();
    }
  };
  document.addEventListener('visibilitychange', resume);
  window.addEventListener('online', resume);
  window.addEventListener('pagehide', () => current?.close(), { once: true });
}

/** The job's facts, as term and description. */
function jobFacts(job: JobView): Array<[string, Node | string]> {
  const duration = job.startedAt ? formatDuration((job.finishedAt ? Date.parse(job.finishedAt) : Date.now()) - Date.parse(job.startedAt)) : '—';
  const rows: Array<[string, Node | string]> = [
    ['App', h('a', { href: `/jobs?app=${encodeURIComponent(job.app)}` }, job.app)],
    ['Commit', job.sha ? h('span', {}, h('code', { title: job.sha }, shortSha(job.sha)), job.commit?.message ? ` ${job.commit.message}` : '') : '—'],
    ['Ref', job.ref ?? '—'],
    ['Image', job.result?.image ?? job.image ?? '—'],
    ['Trigger', job.trigger + (job.commit?.pusher ? ` by ${job.commit.pusher}` : '')],
    ['Attempts', String(job.attempts)],
    ['Queued', timeEl(job.createdAt)],
    ['Duration', duration],
  ];
  if (job.finishedAt) rows.push(['Finished', timeEl(job.finishedAt)]);
  const drain = job.result?.drain;
  if (drain) {
    const open = drain.open;
    rows.push(['Drain', open === 0
      ? `the previous release's connections closed after ${formatDuration(drain.ms)}`
      : h('span', { class: 'warning' }, `drain_s ran out after ${formatDuration(drain.ms)} with ${open} connection${open === 1 ? '' : 's'} to the previous release still open: stopped with it, their requests may have been cut`)]);
  }
  if (job.retryOf) rows.push(['Re-run of', h('a', { href: `/jobs/${job.retryOf}` }, `job ${job.retryOf}`)]);
  if (job.retriedBy) rows.push(['Re-run as', h('a', { href: `/jobs/${job.retriedBy}` }, `job ${job.retriedBy}`)]);
  if (job.supersededBy) rows.push(['Superseded by', h('a', { href: `/jobs/${job.supersededBy}` }, `job ${job.supersededBy}`)]);
  return rows;
}

/** Asks, then queues a new job for the same commit or image and goes to its page. */
async function rerunJob(job: JobView): Promise<void> {
  let created: JobView | undefined;
  const ok = await confirmDialog({
    title: `Re-run job ${job.id}?`,
    content: [h('p', {}, `A new job deploys ${job.sha ? `commit ${shortSha(job.sha)}` : job.image ?? 'the same image'} of ${job.app} again. This job stays in the history.`)],
    confirmLabel: 'Re-run',
    onConfirm: async () => {
      created = (await api<{ job: JobView }>(`/api/jobs/${job.id}/retry`, { method: 'POST' })).job;
    },
  });
  if (ok && created) {
    announce(`Re-run queued as job ${created.id}`);
    window.location.assign(`/jobs/${created.id}`);
  }
}

/** Asks, then cancels: a waiting job at once (shown with `show`), a running one at its next safe point. */
async function cancelJob(job: JobView, actionStatus: HTMLElement, show: (job: JobView) => void): Promise<void> {
  const running = job.state === 'active';
  const ok = await confirmDialog({
    title: `Cancel job ${job.id}?`,
    content: [h('p', {}, running
      ? 'The deploy stops at its next safe point (never in the middle of the switch) and the containers it started are removed. What is live stays live.'
      : 'The job is taken out of the queue; nothing of it runs.')],
    confirmLabel: 'Cancel job',
    onConfirm: async () => {
      const answer = await api<{ job: JobView; cancelRequested: boolean }>(`/api/jobs/${job.id}/cancel`, { method: 'POST' });
      actionStatus.textContent = answer.cancelRequested ? 'Cancel requested: the job stops at its next safe point.' : 'Job cancelled.';
      if (!answer.cancelRequested) show(answer.job);
    },
  });
  if (ok) announce(actionStatus.textContent ?? '');
}

function timeEl(iso: string): HTMLTimeElement {
  return h('time', { datetime: iso, title: formatTime(iso) }, formatAge(iso));
}
