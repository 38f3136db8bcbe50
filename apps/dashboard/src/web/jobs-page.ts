import { api, liveJobEvents } from './api-client.js';
import { announce, h, replaceChildren } from './dom.js';
import { formatAge, formatDuration, formatTime, shortSha } from './format.js';
import { JOB_STATES, stateBadge, stateWord } from './job-status.js';
import type { JobView } from './job-view.js';

const PAGE = 50;
/** Every trigger, in the queue's order (its TRIGGERS). */
const TRIGGERS = ['webhook', 'cli', 'git-push', 'retry', 'rollback'] as const;

interface Filters {
  app: string;
  state: string;
  trigger: string;
  /** A commit prefix or words of its message. */
  q: string;
  /** Jobs older than this id: a page deep in the history (empty: the newest). */
  before: string;
  limit: number;
}

function readFilters(): Filters {
  const params = new URLSearchParams(window.location.search);
  const limit = Number(params.get('limit'));
  return {
    app: params.get('app') ?? '', state: params.get('state') ?? '', trigger: params.get('trigger') ?? '', q: params.get('q') ?? '',
    before: /^\d{1,15}$/.test(params.get('before') ?? '') ? params.get('before')! : '',
    limit: Number.isInteger(limit) && limit > 0 ? Math.min(limit, 500) : PAGE,
  };
}

/** The query string of these filters, for the page's URL and for `GET /api/jobs` (which takes the same names). */
function filtersQuery(f: Filters, forApi = false): string {
  const params = new URLSearchParams();
  for (const name of ['app', 'state', 'trigger', 'q', 'before'] as const) if (f[name]) params.set(name, f[name]);
  if (forApi || f.limit !== PAGE) params.set('limit', String(f.limit));
  const text = params.toString();
  return text ? `?${text}` : '';
}

/**
 * `/jobs`: the jobs, newest first, filtered by app, state and trigger and
 * searched by commit or message, all on the server, with the filters in
 * the URL (shareable, back/forward work). Older pages go by cursor
 * (`before`), so a page deep in the history costs what the first does; the
 * newest page is kept current by the events stream without reloading.
 */
export async function jobsPage(main: HTMLElement): Promise<void> {
  let filters = readFilters();
  const { apps } = await api<{ apps: Array<{ name: string }> }>('/api/app-names');
  const appSelect = h('select', { id: 'filter-app', name: 'app' },
    h('option', { value: '' }, 'All apps'), ...apps.map((a) => h('option', { value: a.name }, a.name)));
  const stateSelect = h('select', { id: 'filter-state', name: 'state' },
    h('option', { value: '' }, 'Any state'), ...JOB_STATES.map((s) => h('option', { value: s }, stateWord(s))));
  const triggerSelect = h('select', { id: 'filter-trigger', name: 'trigger' },
    h('option', { value: '' }, 'Any trigger'), ...TRIGGERS.map((t) => h('option', { value: t }, t)));
  const search = h('input', { id: 'filter-q', name: 'q', type: 'search', maxlength: 200, placeholder: 'commit or message', 'aria-describedby': 'filter-q-help' });
  const form = h('form', { class: 'filters', method: 'get', action: '/jobs', role: 'search', 'aria-label': 'Filter jobs' },
    h('div', { class: 'field' }, h('label', { for: 'filter-app' }, 'App'), appSelect),
    h('div', { class: 'field' }, h('label', { for: 'filter-state' }, 'State'), stateSelect),
    h('div', { class: 'field' }, h('label', { for: 'filter-trigger' }, 'Trigger'), triggerSelect),
    h('div', { class: 'field' }, h('label', { for: 'filter-q' }, 'Search'), search,
      h('span', { id: 'filter-q-help', class: 'hint' }, '7+ hex digits find a commit anywhere in the history; words search the messages of 2,000 jobs at a time.')),
    h('button', { type: 'submit', class: 'button' }, 'Filter'));
  const live = h('p', { class: 'live-status', role: 'status' }, 'Connecting…');
  const table = new JobsTable();
  const empty = h('p', { class: 'empty' }, 'No jobs match these filters.');
  const newest = h('button', { type: 'button', class: 'button quiet', onclick: () => apply({ ...filters, before: '' }, true) }, 'Newest jobs');
  let next: string | null = null;
  const older = h('button', { type: 'button', class: 'button', onclick: () => next && apply({ ...filters, before: next }, true) }, 'Older jobs');
  const error = h('p', { class: 'form-error', role: 'alert' });
  replaceChildren(main, h('div', { class: 'page-head' }, h('h1', {}, 'Jobs'), live), form, error, h('div', { class: 'table-wrap' }, table.element), empty,
    h('div', { class: 'pager' }, newest, older));

  const syncForm = () => {
    appSelect.value = filters.app;
    stateSelect.value = filters.state;
    triggerSelect.value = filters.trigger;
    search.value = filters.q;
    newest.hidden = !filters.before;
  };
  const apply = (next: Filters, push: boolean) => {
    filters = next;
    if (push) history.pushState(null, '', `/jobs${filtersQuery(filters)}`);
    syncForm();
    void refresh();
  };
  const fromForm = (): Filters => ({ app: appSelect.value, state: stateSelect.value, trigger: triggerSelect.value, q: search.value.trim(), before: '', limit: PAGE });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    apply(fromForm(), true);
  });
  for (const select of [appSelect, stateSelect, triggerSelect]) select.addEventListener('change', () => apply(fromForm(), true));
  window.addEventListener('popstate', () => apply(readFilters(), false));
  syncForm();

  let generation = 0;
  async function refresh() {
    const mine = ++generation;
    try {
      const page = await api<{ jobs: JobView[]; next: string | null }>(`/api/jobs${filtersQuery(filters, true)}`);
      if (mine !== generation) return;
      error.textContent = '';
      const fresh = table.show(page.jobs);
      next = page.next;
      empty.textContent = page.next ? 'No match among the jobs searched so far: search older jobs.' : 'No jobs match these filters.';
      empty.hidden = page.jobs.length > 0;
      older.hidden = page.next === null;
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
  // All apps' events: the app filter can change without a new stream. A page deep in the history does not change.
  liveJobEvents({
    onJob: (event) => {
      if (filters.before || (filters.app && event.app !== filters.app)) return;
      soon();
    },
    onResync: () => {
      if (!filters.before) soon();
    },
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
