import { jobPage } from './job-page.js';
import { jobsPage } from './jobs-page.js';
import { overviewPage } from './overview-page.js';

/** Starts the script of the page the server rendered (`<body data-page>`). */
async function start(): Promise<void> {
  const main = document.getElementById('main');
  if (!main) return;
  const page = document.body.dataset.page;
  try {
    if (page === 'overview') await overviewPage(main);
    else if (page === 'jobs') await jobsPage(main);
    else if (page === 'job') await jobPage(main, document.body.dataset.jobId ?? '');
  } catch (err) {
    const loading = main.querySelector('[data-loading]');
    const message = document.createElement('p');
    message.setAttribute('role', 'alert');
    message.className = 'form-error';
    message.textContent = `This page could not load: ${(err as Error).message}`;
    if (loading) loading.replaceWith(message);
    else main.appendChild(message);
  }
  document.body.dataset.ready = 'true';
}

// Live streams are closed when a page is hidden in the back/forward cache; coming back reloads it.
window.addEventListener('pageshow', (event) => {
  if (event.persisted) window.location.reload();
});

void start();
