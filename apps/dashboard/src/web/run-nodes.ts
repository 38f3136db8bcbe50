import { h } from './dom.js';
import type { TermRun } from './terminal-line.js';

/**
 * A rendered line's runs as DOM nodes (text nodes, never parsed markup),
 * with every occurrence of `query` (lower case) wrapped in `<mark>`, even
 * where it spans runs of different colours.
 */
export function runNodes(runs: readonly TermRun[], query: string): Node[] {
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
