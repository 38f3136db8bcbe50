import { api, liveJobEvents } from './api-client.js';
import { confirmDialog } from './confirm-dialog.js';
import { announce, h, replaceChildren } from './dom.js';
import { formatAge, formatTime, shortSha } from './format.js';
import { isFinal, stateBadge } from './job-status.js';
import type { JobView } from './job-view.js';

interface Release {
  sha: string | null;
  image: string;
  job: string;
  at: string;
}

interface AppOverview {
  name: string;
  branch: string;
  replicas: number;
  routing: string;
  listen: string;
  serverName: string[];
  status: {
    release: Release | null;
    /** `node` and `service`: on a swarm, where each task runs; null on one engine. */
    containers: Array<{ id: string; address: string | null; healthy: boolean; node?: string | null; service?: string | null }>;
    upstreams: string[];
    nginx: { file: string; inSync: boolean };
    drift: string[];
  } | null;
  statusError: string | null;
  lastJob: JobView | null;
  running: JobView | null;
  lastOutcome: JobView | null;
}

/** How often the overview re-reads every app even without job events (container health changes on its own). */
const REFRESH_MS = 30_000;

/**
 * `/`: one card per app — what is live and since when, its replicas and
 * their health, routing drift, the last deploy and its outcome — with
 * deploy and roll-back actions. Cards refresh when their app's jobs change.
 */
export async function overviewPage(main: HTMLElement): Promise<void> {
  const live = h('p', { class: 'live-status', role: 'status' }, 'Connecting…');
  const list = h('div', { class: 'cards' });
  const error = h('p', { class: 'form-error', role: 'alert' });
  replaceChildren(main, h('div', { class: 'page-head' }, h('h1', {}, 'Apps'), live), error, list);
  const cards = new Map<string, Card>();

  const loadAll = async () => {
    try {
      const { apps } = await api<{ apps: AppOverview[] }>('/api/apps');
      error.textContent = '';
      if (apps.length === 0) replaceChildren(list, h('p', { class: 'empty' }, 'No apps are configured: add one under apps: in slipway.yml.'));
      for (const app of apps) {
        let card = cards.get(app.name);
        if (!card) {
          card = new Card(app.name);
          cards.set(app.name, card);
          list.appendChild(card.element);
        }
        card.show(app);
      }
    } catch (err) {
      error.textContent = (err as Error).message;
    }
  };
  const timers = new Map<string, number>();
  const loadOne = (name: string) => {
    window.clearTimeout(timers.get(name));
    timers.set(name, window.setTimeout(() => {
      const card = cards.get(name);
      if (!card) return void loadAll();
      api<{ app: AppOverview }>(`/api/apps/${encodeURIComponent(name)}`).then((r) => card.show(r.app), () => {});
    }, 250));
  };
  await loadAll();
  liveJobEvents({
    onJob: (event) => loadOne(event.app),
    onResync: () => void loadAll(),
    onStatus: (on) => (live.textContent = on ? 'Live: cards update as deploys run.' : 'Reconnecting…'),
  });
  window.setInterval(() => void loadAll(), REFRESH_MS);
}

/** One app's card; its buttons live as long as the card, so focus survives refreshes. */
class Card {
  readonly element: HTMLElement;
  private readonly subtitle = h('p', { class: 'muted card-subtitle' });
  private readonly facts = h('dl', { class: 'facts' });
  private readonly status = h('p', { class: 'action-status', role: 'status' });
  private app: AppOverview | null = null;

  constructor(private readonly name: string) {
    const titleId = `app-${name}-title`;
    this.element = h('article', { class: 'card', 'aria-labelledby': titleId, 'data-app': name },
      h('h2', { id: titleId }, name),
      this.subtitle,
      this.facts,
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'button primary', 'aria-label': `Deploy ${name}…`, onclick: () => void this.deploy() }, 'Deploy…'),
        h('button', { type: 'button', class: 'button', 'aria-label': `Roll back ${name}…`, onclick: () => void this.rollback() }, 'Roll back…'),
        h('a', { class: 'button quiet', href: `/jobs?app=${encodeURIComponent(name)}`, 'aria-label': `Jobs of ${name}` }, 'Jobs')),
      this.status);
  }

  show(app: AppOverview): void {
    this.app = app;
    this.subtitle.textContent = `branch ${app.branch} · ${app.replicas} replica${app.replicas === 1 ? '' : 's'} · ${app.routing} routing · listens on ${app.listen}`;
    const rows: Array<[string, Node | string]> = [];
    const s = app.status;
    if (!s) {
      rows.push(['Live', h('span', { class: 'warning' }, `Unknown: ${app.statusError ?? 'status unavailable'}`)]);
    } else {
      const r = s.release;
      rows.push(['Live', r
        ? h('span', {}, h('code', { title: r.sha ?? r.image }, shortSha(r.sha ?? r.image)), ' since ',
          h('time', { datetime: r.at, title: formatTime(r.at) }, formatAge(r.at).replace(' ago', '')), ' (', h('a', { href: `/jobs/${r.job}` }, `job #${r.job}`), ')')
        : 'Nothing live yet']);
      const healthy = s.containers.filter((c) => c.healthy).length;
      if (!r && s.containers.length === 0 && s.upstreams.length === 0) {
        // Never deployed: nothing can be out of sync yet.
        rows.push(['Replicas', `none running (${app.replicas} wanted once deployed)`]);
      } else rows.push(['Replicas', h('div', {},
        nodesLine(s.containers),
        h('span', { class: healthy === app.replicas ? 'ok' : 'warning' }, `${healthy} of ${s.containers.length} healthy`, s.containers.length !== app.replicas ? ` (${app.replicas} wanted)` : ''),
        s.containers.length ? h('ul', { class: 'containers' }, ...s.containers.map((c) => h('li', {},
          h('code', {}, c.id.slice(0, 12)), c.node ? ` on node ${c.node}` : '', ` ${c.address ?? 'no address'} `,
          h('span', { class: `badge ${c.healthy ? 'state-completed' : 'state-failed'}` }, c.healthy ? 'healthy' : 'unhealthy')))) : null)]);
      if (r || s.containers.length > 0 || s.upstreams.length > 0) {
        rows.push(['Routing', h('div', {},
          s.nginx.inSync ? h('span', { class: 'ok' }, 'nginx in sync with etcd') : h('span', { class: 'warning' }, 'nginx out of sync with etcd'),
          s.drift.length ? h('ul', { class: 'drift' }, ...s.drift.map((d) => h('li', { class: 'warning' }, d))) : null)]);
      }
    }
    const outcome = app.lastOutcome;
    rows.push(['Last deploy', outcome
      ? h('span', {}, h('a', { href: `/jobs/${outcome.id}` }, `#${outcome.id}`), ' ', stateBadge(outcome.state), ' ',
        h('time', { datetime: outcome.finishedAt ?? outcome.createdAt, title: formatTime(outcome.finishedAt) }, formatAge(outcome.finishedAt ?? outcome.createdAt)),
        outcome.error ? h('span', { class: 'job-error-inline' }, ` — ${outcome.error}`) : '')
      : 'None yet']);
    // The deploy running now, and the newest job waiting behind it: a newer push waiting must not hide the one deploying.
    const now = [app.running, app.lastJob && !isFinal(app.lastJob.state) && app.lastJob.id !== app.running?.id ? app.lastJob : null]
      .filter((job): job is JobView => job !== null);
    if (now.length > 0) {
      rows.push(['Now', h('span', {}, ...now.flatMap((job, n) => [n > 0 ? h('br', {}) : '',
        h('a', { href: `/jobs/${job.id}` }, `#${job.id}`), ' ', stateBadge(job.state), job.state === 'active' ? ` ${job.step}` : '', ` · ${job.trigger}`]))]);
    }
    replaceChildren(this.facts, ...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  }

  private async deploy(): Promise<void> {
    const branch = this.app?.branch ?? 'master';
    let job: JobView | undefined;
    const input = h('input', { id: `deploy-ref-${this.name}`, name: 'ref', type: 'text', placeholder: branch, autocomplete: 'off', spellcheck: 'false', 'aria-describedby': `deploy-ref-${this.name}-help` });
    const ok = await confirmDialog({
      title: `Deploy ${this.name}`,
      content: [
        h('label', { for: input.id }, 'Branch or commit'), input,
        h('p', { class: 'hint', id: `deploy-ref-${this.name}-help` }, `Leave empty for the head of ${branch}. The ref is resolved against the repository, built, and rolled out with no downtime.`),
      ],
      confirmLabel: 'Deploy',
      onConfirm: async () => {
        const ref = input.value.trim();
        job = (await api<{ job: JobView }>('/api/deploy', { method: 'POST', body: { app: this.name, ...(ref ? { ref } : {}) } })).job;
      },
    });
    if (ok && job) this.queued(job, `Deploy of ${this.name} ${shortSha(job.sha)}`);
  }

  private async rollback(): Promise<void> {
    let releases: Release[];
    let current: Release | null;
    try {
      ({ releases, current } = await api<{ releases: Release[]; current: Release | null }>(`/api/apps/${encodeURIComponent(this.name)}/releases`));
    } catch (err) {
      this.status.textContent = (err as Error).message;
      return;
    }
    // A swarm release's image is pinned (`…@sha256:…`): a rebuild of the live commit is not an earlier release.
    const unpinned = (image: string) => image.replace(/@sha256:[0-9a-f]{64}$/, '');
    const choices = releases.filter((r) => current === null || unpinned(r.image) !== unpinned(current.image));
    if (choices.length === 0) {
      this.status.textContent = `${this.name} has no earlier release to roll back to.`;
      announce(this.status.textContent);
      return;
    }
    let job: JobView | undefined;
    const name = `rollback-${this.name}`;
    const options = choices.map((r, i) => {
      const id = `${name}-${i}`;
      const radio = h('input', { type: 'radio', name: 'release', id, value: r.sha ?? '', checked: i === 0, disabled: !r.sha && i !== 0 });
      return h('div', { class: 'choice' }, radio, h('label', { for: id },
        h('code', {}, shortSha(r.sha ?? r.image)), ` · went live ${formatAge(r.at)} by job #${r.job}`));
    });
    const ok = await confirmDialog({
      title: `Roll back ${this.name}`,
      content: [
        h('p', {}, 'Live now: ', current ? h('code', {}, shortSha(current.sha ?? current.image)) : 'nothing', '. The release you choose goes live again from its kept image: no rebuild, no downtime.'),
        h('fieldset', { class: 'choices' }, h('legend', {}, 'Release to go back to'), ...options),
      ],
      confirmLabel: 'Roll back',
      onConfirm: async (form) => {
        const picked = form.querySelector<HTMLInputElement>('input[name=release]:checked');
        const to = picked?.value || undefined;
        job = (await api<{ job: JobView }>('/api/rollback', { method: 'POST', body: { app: this.name, ...(to ? { to } : {}) } })).job;
      },
    });
    if (ok && job) this.queued(job, `Rollback of ${this.name} to ${shortSha(job.sha ?? job.image)}`);
  }

  private queued(job: JobView, what: string): void {
    replaceChildren(this.status, `${what} queued as `, h('a', { href: `/jobs/${job.id}` }, `job #${job.id}`), '.');
    announce(`${what} queued as job ${job.id}`);
  }
}

/** On a swarm: the nodes the app's tasks run on, and how many on each. Null on one engine. */
function nodesLine(containers: ReadonlyArray<{ node?: string | null }>): HTMLElement | null {
  const counts = new Map<string, number>();
  for (const c of containers) if (c.node) counts.set(c.node, (counts.get(c.node) ?? 0) + 1);
  if (counts.size === 0) return null;
  return h('div', { class: 'nodes' }, `Nodes: ${[...counts].map(([node, n]) => (n > 1 ? `${node} (${n})` : node)).join(', ')}`);
}
