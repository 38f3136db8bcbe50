import { h } from './dom.js';

const SYMBOLS: Record<string, string> = {
  completed: '✓', failed: '✕', active: '●', waiting: '◷', superseded: '↷', cancelled: '⊘',
};
const WORDS: Record<string, string> = {
  completed: 'completed', failed: 'failed', active: 'running', waiting: 'waiting', superseded: 'superseded', cancelled: 'cancelled',
};

/** A job state as a badge: a symbol and a word, never colour alone. */
export function stateBadge(state: string): HTMLSpanElement {
  return h('span', { class: `badge state-${state}` },
    h('span', { 'aria-hidden': 'true', class: 'badge-symbol' }, SYMBOLS[state] ?? '•'),
    ` ${WORDS[state] ?? state}`);
}
