// The one script every page loads (see the server's pages.ts): it loads
// the page's own module, named by `<body data-page>`, and runs it. If a
// transient network error stops that module from loading (a laptop
// changing networks, Docker adding an interface on the same host: Chromium
// aborts requests in flight with ERR_NETWORK_CHANGED), it reloads the page
// a few times instead of leaving it stuck at "Loading…".

const RETRIES_KEY = 'slipway-boot-retries';
const MAX_RELOADS = 3;

type PageScript = (main: HTMLElement) => Promise<void>;

const PAGES: Record<string, () => Promise<PageScript>> = {
  overview: async () => (await import('./overview-page.js')).overviewPage,
  jobs: async () => (await import('./jobs-page.js')).jobsPage,
  job: async () => {
    const { jobPage } = await import('./job-page.js');
    return (main) => jobPage(main, document.body.dataset.jobId ?? '');
  },
};

async function boot(): Promise<void> {
  const main = document.getElementById('main');
  if (!main) return;
  const load = PAGES[document.body.dataset.page ?? ''];
  let script: PageScript | undefined;
  try {
    script = await load?.();
    sessionStorage.removeItem(RETRIES_KEY);
  } catch {
    const tries = Number(sessionStorage.getItem(RETRIES_KEY) ?? '0');
    if (tries < MAX_RELOADS) {
      sessionStorage.setItem(RETRIES_KEY, String(tries + 1));
      window.setTimeout(() => window.location.reload(), 300 * (tries + 1));
      return;
    }
    sessionStorage.removeItem(RETRIES_KEY);
    showAlert(main, 'The dashboard’s scripts did not load. Check the connection and reload the page.');
  }
  try {
    await script?.(main);
  } catch (err) {
    showAlert(main, `This page could not load: ${(err as Error).message}`);
  }
  document.body.dataset.ready = 'true';
}

/** Puts `text` where "Loading…" was, as an alert. */
function showAlert(main: HTMLElement, text: string): void {
  const message = document.createElement('p');
  message.setAttribute('role', 'alert');
  message.className = 'form-error';
  message.textContent = text;
  const loading = main.querySelector('[data-loading]');
  if (loading) loading.replaceWith(message);
  else main.appendChild(message);
}

// Live streams are closed when a page is hidden in the back/forward cache; coming back reloads it.
window.addEventListener('pageshow', (event) => {
  if (event.persisted) window.location.reload();
});

void boot();
