import { api, liveJobEvents } from './api-client.js';
import { announce, h, replaceChildren } from './dom.js';
import { formatAge, formatDuration, formatTime, shortSha } from './format.js';
import { JOB_STATES, stateBadge, stateWord } from './job-status.js';
import type { JobView } from './job-view.js';

const PAGE = 50;

interface Filters {
  app: string;
  state: string;
  limit: number;
}

function readFilters(): Filters {
  const params = new URLSearchParams(window.location.search);
  const limit = Number(params.get('limit'));
  return { app: params.get('app') ?? '', state: params.get('state') ?? '', limit: Number.isInteger(limit) && limit > 0 ? Math.min(limit, 500) : PAGE };
}

function filtersQuery(f: Filters): string {
  const params = new URLSearchParams();
  if (f.app) params.set('app', f.app);
  if (f.state) params.set('state', f.state);
  if (f.limit !== PAGE) params.set('limit', String(f.limit));
  const text = params.toString();
  return text ? `?${text}` : '';
}

/**
 * `/jobs`: the jobs, newest first, filtered by app and state with the
 * filters in the URL (shareable, back/forward work), kept current by the
 * events stream without reloading.
 */
export async function jobsPage(main: HTMLElement): Promise<void> {
  let filters = readFilters();
  const { apps } = await api<{ apps: Array<{ name: string }> }>('/api/app-names');
  const appSelect = h('select', { id: 'filter-app', name: 'app' },
    h('option', { value: '' }, 'All apps'), ...apps.map((a) => h('option', { value: a.name }, a.name)));
  const stateSelect = h('select', { id: 'filter-state', name: 'state' },
    h('option', { value: '' }, 'Any state'), ...JOB_STATES.map((s) => h('option', { value: s }, stateWord(s))));
  const form = h('form', { class: 'filters', method: 'get', action: '/jobs', 'aria-label': 'Filter jobs' },
    h('div', { class: 'field' }, h('label', { for: 'filter-app' }, 'App'), appSelect),
    h('div', { class: 'field' }, h('label', { for: 'filter-state' }, 'State'), stateSelect),
    h('button', { type: 'submit', class: 'button' }, 'Filter'));
  const live = h('p', { class: 'live-status', role: 'status' }, 'Connecting…');
  const table = new JobsTable();
  const empty = h('p', { class: 'empty' }, 'No jobs match these filters.');
  const more = h('button', { type: 'button', class: 'button', onclick: () => apply({ ...filters, limit: filters.limit + PAGE }, true) }, 'Show more');
  const error = h('p', { class: 'form-error', role: 'alert' });
  replaceChildren(main, h('div', { class: 'page-head' }, h('h1', {}, 'Jobs'), live), form, error, h('div', { class: 'table-wrap' }, table.element), empty, more);

  const syncForm = () => {
    appSelect.value = filters.app;
    stateSelect.value = filters.state;
  };
  const apply = (next: Filters, push: boolean) => {
    filters = next;
    if (push) history.pushState(null, '', `/jobs${filtersQuery(filters)}`);
    syncForm();
    void refresh();
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    apply({ app: appSelect.value, state: stateSelect.value, limit: PAGE }, true);
  });
  appSelect.addEventListener('change', () => apply({ ...filters, app: appSelect.value, limit: PAGE }, true));
  stateSelect.addEventListener('change', () => apply({ ...filters, state: stateSelect.value, limit: PAGE }, true));
  window.addEventListener('popstate', () => apply(readFilters(), false));
  syncForm();

  let generation = 0;
  async function refresh() {
    const mine = ++generation;
    try {
      const query = new URLSearchParams({ limit: String(filters.limit) });
      if (filters.app) query.set('app', filters.app);
      if (filters.state) query.set('state', filters.state);
      const { jobs } = await api<{ jobs: JobView[] }>(`/api/jobs?${query}`);
      if (mine !== generation) return;
      error.textContent = '';
      const fresh = table.show(jobs);
      empty.hidden = jobs.length > 0;
      more.hidden = jobs.length < filters.limit;
      if (fresh.length === 1) announce(`New job ${fresh[0]!.id} for ${fresh[0]!.app}`);
      else if (fresh.length > 1) announce(`${fresh.length} new jobs`);
    } catch (err) {
      if (mine === generation) error.textContent = (err as Error).message;
    }
  }

  let timer: number | undefined;
  const soon = () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => void refresh(), 150);
  };
  // All apps' events: the app filter can change without a new stream.
  liveJobEvents({
    onJob: (event) => {
      if (filters.app && event.app !== filters.app) return;
      soon();
    },
    onResync: soon,
    onStatus: (on) => (live.textContent = on ? 'Live: updates appear without reloading.' : 'Reconnecting…'),
  });
  window.setInterval(() => table.tick(), 15_000);
  await refresh();
}

/**
 * The jobs, newest first, one row per job kept and updated in place: focus
 * inside a row and the scroll position survive updates.
 */
class JobsTable {
  readonly element: HTMLTableElement;
  private readonly tbody = h('tbody');
  private readonly rows = new Map<string, HTMLTableRowElement>();
  private known: Set<string> | null = null;
  private jobs: JobView[] = [];

  constructor() {
    this.element = h('table', { class: 'jobs' }, h('caption', { class: 'visually-hidden' }, 'Jobs, newest first'),
      h('thead', {}, h('tr', {}, ...['Job', 'App', 'Commit', 'Trigger', 'State', 'Duration', 'Queued'].map((c) => h('th', { scope: 'col' }, c)))),
      this.tbody);
  }

  /** Shows these jobs; returns those that are new since the last call (none the first time). */
  show(jobs: JobView[]): JobView[] {
    const known = this.known;
    const fresh = known === null ? [] : jobs.filter((j) => !known.has(j.id));
    this.jobs = jobs;
    this.known = new Set(jobs.map((j) => j.id));
    for (const [id, row] of this.rows) {
      if (!this.known.has(id)) {
        row.remove();
        this.rows.delete(id);
      }
    }
    // Existing rows keep their order (ids only grow), so only new rows are inserted: focus inside a row survives.
    let before: ChildNode | null = this.tbody.firstChild;
    for (const job of jobs) {
      let row = this.rows.get(job.id);
      if (!row) {
        row = h('tr', { 'data-job': job.id });
        this.rows.set(job.id, row);
        this.tbody.insertBefore(row, before);
      } else if (row !== before) {
        this.tbody.insertBefore(row, before);
      }
      fillRow(row, job, fresh.includes(job));
      before = row.nextSibling;
    }
    this.element.hidden = jobs.length === 0;
    return fresh;
  }

  /** Brings durations and ages up to date. */
  tick(): void {
    for (const job of this.jobs) {
      const row = this.rows.get(job.id);
      if (row) fillRow(row, job, false);
    }
  }
}

/** Fills a row cell by cell, rebuilding only cells whose content changed (a focused link stays focused). */
function fillRow(row: HTMLTableRowElement, job: JobView, fresh: boolean): void {
  const end = job.finishedAt ? Date.parse(job.finishedAt) : Date.now();
  const duration = job.startedAt ? formatDuration(end - Date.parse(job.startedAt)) : '—';
  if (fresh) {
    row.classList.add('fresh');
    window.setTimeout(() => row.classList.remove('fresh'), 3000);
  }
  row.dataset.state = job.state;
  const cells: Array<[string, () => HTMLTableCellElement]> = [
    [job.id, () => h('th', { scope: 'row' }, h('a', { href: `/jobs/${job.id}` }, `#${job.id}`))],
    [job.app, () => h('td', {}, job.app)],
    [`${job.sha} ${job.image} ${job.commit?.message}`, () => h('td', {},
      job.sha ? h('code', { title: job.sha }, shortSha(job.sha)) : h('span', { title: job.image ?? '' }, 'image'),
      job.commit?.message ? h('span', { class: 'muted commit-message' }, ` ${job.commit.message}`) : null)],
    [job.trigger, () => h('td', {}, job.trigger)],
    [`${job.state} ${job.step}`, () => h('td', {}, stateBadge(job.state), job.state === 'active' ? h('span', { class: 'muted' }, ` ${job.step}`) : null)],
    [duration, () => h('td', {}, duration)],
    [formatAge(job.createdAt), () => h('td', {}, h('time', { datetime: job.createdAt, title: formatTime(job.createdAt) }, formatAge(job.createdAt)))],
  ];
  cells.forEach(([key, build], i) => {
    const cell = row.children[i] as HTMLElement | undefined;
    if (cell?.dataset.key === key) return;
    const next = build();
    next.dataset.key = key;
    if (cell) cell.replaceWith(next);
    else row.appendChild(next);
  });
}
