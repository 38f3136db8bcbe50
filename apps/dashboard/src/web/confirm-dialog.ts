import { h } from './dom.js';

export interface ConfirmDialogOptions {
  title: string;
  /** What will happen, and any fields the action needs. */
  content: Array<Node | string>;
  confirmLabel: string;
  /** Runs on confirm; a thrown error's message is shown and the dialog stays open. */
  onConfirm(form: HTMLFormElement): Promise<void>;
}

let counter = 0;

/**
 * A modal confirmation (`<dialog>`): focus moves into it (first field, or
 * the confirm button), Escape or Cancel closes it, focus returns to what
 * opened it. Resolves true once `onConfirm` succeeded, false when cancelled.
 */
export function confirmDialog(options: ConfirmDialogOptions): Promise<boolean> {
  const opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
  const id = `dialog-${++counter}`;
  const error = h('p', { class: 'form-error', role: 'alert', id: `${id}-error` });
  error.hidden = true;
  const cancel = h('button', { type: 'button', class: 'button' }, 'Cancel');
  const confirm = h('button', { type: 'submit', class: 'button primary' }, options.confirmLabel);
  const form = h('form', { method: 'dialog', class: 'dialog-form' },
    h('h2', { id: `${id}-title` }, options.title),
    ...options.content,
    error,
    h('div', { class: 'dialog-actions' }, cancel, confirm));
  const dialog = h('dialog', { class: 'dialog', 'aria-labelledby': `${id}-title` }, form);
  document.body.appendChild(dialog);

  return new Promise<boolean>((resolve) => {
    let confirmed = false;
    const close = () => dialog.close();
    cancel.addEventListener('click', close);
    dialog.addEventListener('close', () => {
      dialog.remove();
      if (opener?.isConnected) opener.focus();
      resolve(confirmed);
    });
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      if (!form.reportValidity()) return;
      confirm.disabled = cancel.disabled = true;
      form.setAttribute('aria-busy', 'true');
      error.hidden = true;
      options.onConfirm(form).then(() => {
        confirmed = true;
        close();
      }, (err: unknown) => {
        error.textContent = err instanceof Error ? err.message : String(err);
        error.hidden = false;
        confirm.disabled = cancel.disabled = false;
        form.removeAttribute('aria-busy');
        confirm.focus();
      });
    });
    dialog.showModal();
    const field = form.querySelector<HTMLElement>('input:not([type=hidden]), select, textarea');
    (field ?? confirm).focus();
  });
}
