import { announce, h } from './dom.js';
import { renderTerminalLine, terminalText, type TermRun } from './terminal-line.js';

/** Height of one log line in px; the stylesheet's `.log-line` uses the same. */
export const LINE_HEIGHT = 20;
/** Rows rendered above and below the visible ones, so fast scrolling shows no blank. */
const OVERSCAN = 20;
/** Browsers cap element heights (~33M px in Chromium); beyond this the scroll position is scaled. */
const MAX_SPACER_PX = 15_000_000;

interface Row {
  el: HTMLDivElement;
  number: HTMLAnchorElement;
  content: HTMLSpanElement;
  line: number;
  version: number;
}

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

/**
 * A job's log, virtualised: every line is kept as a string, but only the
 * rows in view (plus a margin) exist in the DOM, so a 200,000-line log
 * costs a few dozen elements and scrolls smoothly. Lines render as a
 * terminal shows them (colours, `\r` progress), `#L<n>` / `#L<a>-L<b>`
 * select and scroll to lines, search looks through every line, and the
 * view follows the end of a live log until the reader scrolls away.
 */
export class LogView {
  readonly element: HTMLElement;
  private readonly viewport: HTMLDivElement;
  private readonly spacer: HTMLDivElement;
  private readonly rowsBox: HTMLDivElement;
  private readonly empty: HTMLParagraphElement;
  private readonly count: HTMLSpanElement;
  private readonly followButton: HTMLButtonElement;
  private readonly searchInput: HTMLInputElement;
  private readonly searchStatus: HTMLSpanElement;
  private readonly gotoInput: HTMLInputElement;
  private readonly rows: Row[] = [];
  private readonly lines: string[] = [];
  private lowered: Array<string | undefined> = [];
  private following = false;
  private live = false;
  private queued = false;
  private version = 0;
  private selection: { from: number; to: number } | null = null;
  private pendingScroll: number | null = null;
  private query = '';
  private matches: number[] = [];
  private matchIndex = -1;
  private searchTimer: number | undefined;

  constructor(options: { downloadHref: string; downloadName: string }) {
    this.count = h('span', { class: 'log-count' }, '0 lines');
    this.searchInput = h('input', { type: 'search', id: 'log-search', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'log-search-status' });
    this.searchStatus = h('span', { class: 'search-status', id: 'log-search-status', role: 'status' });
    const prev = h('button', { type: 'button', class: 'button small', onclick: () => this.step(-1) }, 'Previous');
    const next = h('button', { type: 'button', class: 'button small', onclick: () => this.step(1) }, 'Next');
    const search = h('form', { class: 'log-search', role: 'search', 'aria-label': 'Search the log', onsubmit: (e) => { e.preventDefault(); this.step(1); } },
      h('label', { for: 'log-search' }, 'Search log'), this.searchInput, prev, next, this.searchStatus);
    this.searchInput.addEventListener('input', () => {
      window.clearTimeout(this.searchTimer);
      this.searchTimer = window.setTimeout(() => this.search(this.searchInput.value), 200);
    });
    this.searchInput.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && e.shiftKey) {
        e.preventDefault();
        this.step(-1);
      }
    });
    this.gotoInput = h('input', { type: 'number', id: 'log-goto', min: 1, inputmode: 'numeric', class: 'narrow' });
    const goto = h('form', { class: 'log-goto', onsubmit: (e) => { e.preventDefault(); this.goTo(Number(this.gotoInput.value)); } },
      h('label', { for: 'log-goto' }, 'Go to line'), this.gotoInput, h('button', { type: 'submit', class: 'button small' }, 'Go'));
    this.followButton = h('button', { type: 'button', class: 'button small', 'aria-pressed': 'false', onclick: () => this.setFollowing(!this.following) }, 'Follow the end');
    const download = h('a', { class: 'button small', href: options.downloadHref, download: options.downloadName }, 'Download log');

    this.spacer = h('div', { class: 'log-spacer' });
    this.rowsBox = h('div', { class: 'log-rows' });
    this.empty = h('p', { class: 'log-empty' }, 'No output yet.');
    this.viewport = h('div', { class: 'log-viewport', tabindex: 0, role: 'region', 'aria-label': 'Log lines' }, this.spacer, this.rowsBox, this.empty);
    this.element = h('section', { class: 'log-panel', 'aria-labelledby': 'log-heading' },
      h('div', { class: 'log-header' }, h('h2', { id: 'log-heading' }, 'Log'), this.count, this.followButton, download),
      h('div', { class: 'log-tools' }, search, goto),
      this.viewport);

    this.viewport.addEventListener('scroll', () => this.onScroll(), { passive: true });
    this.rowsBox.addEventListener('click', (e) => this.onLineNumberClick(e));
    window.addEventListener('hashchange', () => this.applyHash(true));
    new ResizeObserver(() => this.schedule()).observe(this.viewport);
    this.applyHash(true);
  }

  get lineCount(): number {
    return this.lines.length;
  }

  /** Line `n` (1-based) as received. */
  line(n: number): string | undefined {
    return this.lines[n - 1];
  }

  /** DOM rows in use (stays bounded whatever the log's length). */
  get renderedRows(): number {
    return this.rows.length;
  }

  /**
   * Adds lines numbered from `from`. Lines already held are skipped (a
   * resumed stream never duplicates); returns false, adding nothing, when
   * `from` leaves a gap, so the caller can fetch the missing part.
   */
  append(lines: readonly string[], from: number): boolean {
    const have = this.lines.length;
    if (from > have + 1) return false;
    const start = have + 1 - from;
    for (let i = start; i < lines.length; i++) {
      this.lines.push(lines[i]!);
      if (this.query && this.lowerLine(this.lines.length - 1).includes(this.query)) this.matches.push(this.lines.length);
    }
    if (lines.length > start) {
      if (this.query) this.showSearchStatus(false);
      this.schedule();
    }
    return true;
  }

  /** Whether the job is still writing (the view then follows the end unless the reader scrolled up or chose a line). */
  setLive(live: boolean): void {
    const wasLive = this.live;
    this.live = live;
    if (live && !wasLive && this.pendingScroll === null && !this.selection) this.setFollowing(true);
  }

  /** Every line is in: a link to a line the log never reached shows its end instead of waiting. */
  complete(): void {
    this.setLive(false);
    if (this.pendingScroll !== null && this.pendingScroll > this.lines.length) {
      this.pendingScroll = Math.max(1, this.lines.length);
      this.schedule();
    }
  }

  setFollowing(on: boolean): void {
    this.following = on;
    this.followButton.setAttribute('aria-pressed', String(on));
    if (on) this.schedule();
  }

  /** Scrolls so that line `n` is in view, a third down from the top. */
  scrollToLine(n: number): void {
    const vh = this.viewport.clientHeight;
    const total = this.lines.length * LINE_HEIGHT;
    const spacer = Math.min(total, MAX_SPACER_PX);
    const offset = Math.max(0, (n - 1) * LINE_HEIGHT - vh / 3);
    this.viewport.scrollTop = total <= MAX_SPACER_PX || total <= vh ? offset : (offset * (spacer - vh)) / (total - vh);
    this.schedule();
  }

  private goTo(n: number): void {
    if (!Number.isInteger(n) || n < 1) return;
    const line = Math.min(n, Math.max(1, this.lines.length));
    history.replaceState(null, '', `#L${line}`);
    this.applyHash(true);
    this.viewport.focus();
  }

  private applyHash(scroll: boolean): void {
    const match = /^#L(\d+)(?:-L(\d+))?$/.exec(window.location.hash);
    if (!match) {
      this.selection = null;
    } else {
      const a = Number(match[1]);
      const b = match[2] ? Number(match[2]) : a;
      this.selection = { from: Math.min(a, b), to: Math.max(a, b) };
      if (scroll) {
        this.setFollowing(false);
        this.pendingScroll = this.selection.from;
      }
    }
    this.version++;
    this.schedule();
  }

  private onLineNumberClick(event: MouseEvent): void {
    const link = (event.target as Element).closest<HTMLAnchorElement>('a.ln');
    if (!link) return;
    event.preventDefault();
    const n = Number(link.dataset.line);
    const hash = event.shiftKey && this.selection ? `#L${Math.min(this.selection.from, n)}-L${Math.max(this.selection.to, n)}` : `#L${n}`;
    history.replaceState(null, '', hash);
    this.applyHash(false);
    this.setFollowing(false);
  }

  private onScroll(): void {
    const atBottom = this.viewport.scrollTop + this.viewport.clientHeight >= this.viewport.scrollHeight - LINE_HEIGHT;
    if (this.following && !atBottom) this.setFollowing(false);
    else if (!this.following && atBottom && this.live && this.pendingScroll === null) this.setFollowing(true);
    this.schedule();
  }

  private search(text: string): void {
    this.query = text.trim().toLowerCase();
    this.matches = [];
    this.matchIndex = -1;
    if (this.query) {
      for (let i = 0; i < this.lines.length; i++) if (this.lowerLine(i).includes(this.query)) this.matches.push(i + 1);
      if (this.matches.length) {
        // Start at the first match in or below the view.
        const top = this.firstVisibleLine();
        const index = this.matches.findIndex((n) => n >= top);
        this.matchIndex = index === -1 ? 0 : index;
        this.setFollowing(false);
        this.scrollToLine(this.matches[this.matchIndex]!);
      }
    }
    this.showSearchStatus(true);
    this.version++;
    this.schedule();
  }

  private step(direction: 1 | -1): void {
    if (this.searchInput.value.trim().toLowerCase() !== this.query) return this.search(this.searchInput.value);
    if (!this.matches.length) return;
    this.matchIndex = (this.matchIndex + direction + this.matches.length) % this.matches.length;
    this.setFollowing(false);
    this.scrollToLine(this.matches[this.matchIndex]!);
    this.showSearchStatus(true);
    this.version++;
  }

  private showSearchStatus(say: boolean): void {
    const text = !this.query ? '' : this.matches.length === 0
      ? 'No matches'
      : `${this.matchIndex + 1} of ${this.matches.length} matching line${this.matches.length === 1 ? '' : 's'} (line ${this.matches[this.matchIndex]})`;
    this.searchStatus.textContent = text;
    if (say && text) announce(text);
  }

  private lowerLine(index: number): string {
    let text = this.lowered[index];
    if (text === undefined) {
      text = terminalText(this.lines[index]!).toLowerCase();
      this.lowered[index] = text;
    }
    return text;
  }

  private firstVisibleLine(): number {
    return Math.floor(this.offset() / LINE_HEIGHT) + 1;
  }

  /** The log's own pixel offset at the top of the viewport (scaled back when the spacer is capped). */
  private offset(): number {
    const vh = this.viewport.clientHeight;
    const total = this.lines.length * LINE_HEIGHT;
    const spacer = Math.min(total, MAX_SPACER_PX);
    const top = this.viewport.scrollTop;
    return total <= MAX_SPACER_PX || spacer <= vh ? top : (top * (total - vh)) / (spacer - vh);
  }

  private schedule(): void {
    if (this.queued) return;
    this.queued = true;
    requestAnimationFrame(() => {
      this.queued = false;
      this.render();
    });
  }

  private render(): void {
    const count = this.lines.length;
    this.count.textContent = `${count.toLocaleString()} line${count === 1 ? '' : 's'}`;
    this.empty.hidden = count > 0;
    this.spacer.style.height = `${Math.min(count * LINE_HEIGHT, MAX_SPACER_PX)}px`;
    if (this.pendingScroll !== null && count >= this.pendingScroll) {
      const target = this.pendingScroll;
      this.pendingScroll = null;
      this.scrollToLine(target);
    } else if (this.following && count > 0) {
      this.viewport.scrollTop = this.viewport.scrollHeight;
    }
    const vh = this.viewport.clientHeight || 600;
    const offset = this.offset();
    const first = Math.max(0, Math.floor(offset / LINE_HEIGHT) - OVERSCAN);
    const last = Math.min(count, Math.ceil((offset + vh) / LINE_HEIGHT) + OVERSCAN);
    const needed = Math.max(0, last - first);
    while (this.rows.length < needed) this.rows.push(this.createRow());
    while (this.rows.length > needed) this.rows.pop()!.el.remove();
    this.rowsBox.style.transform = `translateY(${this.viewport.scrollTop + (first * LINE_HEIGHT - offset)}px)`;
    const current = this.matchIndex >= 0 ? this.matches[this.matchIndex] : undefined;
    for (let i = 0; i < needed; i++) {
      const row = this.rows[i]!;
      const n = first + i + 1;
      if (row.line === n && row.version === this.version) continue;
      row.line = n;
      row.version = this.version;
      const selected = this.selection !== null && n >= this.selection.from && n <= this.selection.to;
      row.el.className = `log-line${selected ? ' selected' : ''}${n === current ? ' current-match' : ''}`;
      row.number.textContent = String(n);
      row.number.href = `#L${n}`;
      row.number.dataset.line = String(n);
      row.el.dataset.line = String(n);
      row.content.replaceChildren(...runNodes(renderTerminalLine(this.lines[n - 1]!), this.query));
    }
  }

  private createRow(): Row {
    const number = h('a', { class: 'ln', tabindex: -1 });
    const content = h('span', { class: 'lc' });
    const el = h('div', { class: 'log-line' }, number, content);
    this.rowsBox.appendChild(el);
    return { el, number, content, line: 0, version: -1 };
  }
}

/**
 * A rendered line's runs as DOM nodes (text nodes, never parsed markup),
 * with every occurrence of `query` (lower case) wrapped in `<mark>`, even
 * where it spans runs of different colours.
 */
function runNodes(runs: readonly TermRun[], query: string): Node[] {
  const hits: Array<[number, number]> = [];
  if (query) {
    const text = runs.map((r) => r.text).join('').toLowerCase();
    for (let at = text.indexOf(query); at !== -1; at = text.indexOf(query, at + query.length)) hits.push([at, at + query.length]);
  }
  const nodes: Node[] = [];
  let position = 0;
  for (const run of runs) {
    const start = position;
    const end = position + run.text.length;
    position = end;
    const pieces: Array<[string, boolean]> = [];
    let cursor = start;
    for (const [a, b] of hits) {
      if (b <= cursor || a >= end) continue;
      if (a > cursor) pieces.push([run.text.slice(cursor - start, a - start), false]);
      const stop = Math.min(b, end);
      pieces.push([run.text.slice(Math.max(a, cursor) - start, stop - start), true]);
      cursor = stop;
    }
    if (cursor < end) pieces.push([run.text.slice(cursor - start), false]);
    const plain = !run.classes && !run.color && !run.background;
    const holder: Node[] = pieces.map(([text, marked]) => (marked ? h('mark', {}, text) : document.createTextNode(text)));
    if (plain) nodes.push(...holder);
    else {
      const span = h('span', { class: run.classes || null });
      if (run.color) span.style.color = run.color;
      if (run.background) span.style.backgroundColor = run.background;
      span.append(...holder);
      nodes.push(span);
    }
  }
  return nodes;
}
