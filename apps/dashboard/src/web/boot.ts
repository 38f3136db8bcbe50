/**
 * The page's entry point: loads the dashboard's modules and, if a transient
 * network error stops one from loading (a laptop changing networks, Docker
 * adding an interface on the same host: Chromium aborts requests in flight
 * with ERR_NETWORK_CHANGED), reloads the page a few times instead of
 * leaving it stuck at "Loading…".
 */
const RETRIES_KEY = 'slipway-boot-retries';
const MAX_RELOADS = 3;

import('./main.js').then(
  () => sessionStorage.removeItem(RETRIES_KEY),
  () => {
    const tries = Number(sessionStorage.getItem(RETRIES_KEY) ?? '0');
    if (tries < MAX_RELOADS) {
      sessionStorage.setItem(RETRIES_KEY, String(tries + 1));
      window.setTimeout(() => window.location.reload(), 300 * (tries + 1));
      return;
    }
    sessionStorage.removeItem(RETRIES_KEY);
    const message = document.createElement('p');
    message.setAttribute('role', 'alert');
    message.className = 'form-error';
    message.textContent = 'The dashboard’s scripts did not load. Check the connection and reload the page.';
    const loading = document.querySelector('[data-loading]');
    if (loading) loading.replaceWith(message);
    document.body.dataset.ready = 'true';
  },
);
