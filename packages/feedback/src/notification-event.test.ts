import { describe, expect, it } from 'vitest';
import { notificationEvent } from './notification-event.js';

describe('notificationEvent', () => {
  it.each([
    ['failure', null, ['failure', 'recovery'], 'failure'],
    ['failure', 'failure', ['failure'], 'failure'],
    ['failure', 'success', ['recovery', 'success'], null],
    ['success', 'failure', ['failure', 'recovery'], 'recovery'],
    ['success', 'failure', ['success'], 'recovery'],
    ['success', 'failure', ['failure'], null],
    ['success', 'success', ['failure', 'recovery'], null],
    ['success', null, ['failure', 'recovery'], null],
    ['success', 'success', ['success'], 'success'],
    ['success', null, ['success'], 'success'],
  ] as const)('%s after %s, on %j → %s', (outcome, previous, on, expected) => {
    expect(notificationEvent(outcome, previous, [...on])).toBe(expected);
  });
});
