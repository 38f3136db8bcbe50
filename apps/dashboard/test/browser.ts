import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** Debian's chromium, headless (installed by the global setup), with any extra command-line `args`. */
export function launchBrowser(options: { args?: string[] } = {}): Promise<Browser> {
  return chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', ...(options.args ?? [])] });
}

/** A new browser context signed in through the sign-in form, as a user does. */
export async function signedIn(browser: Browser, url: string, token: string): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  trackRequests(page);
  await gotoPage(page, `${url}/`);
  await page.waitForURL(/\/sign-in\?next=/);
  await page.getByLabel('Dashboard token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${url}/`);
  await ready(page);
  return { context, page };
}

const pending = new WeakMap<Page, Map<object, string>>();

/** Remembers the page's unfinished requests, for a useful message when it never gets ready. */
export function trackRequests(page: Page): void {
  const open = new Map<object, string>();
  pending.set(page, open);
  page.on('request', (r) => open.set(r, `${r.method()} ${r.url()} (${new Date().toISOString().slice(11, 23)})`));
  page.on('requestfinished', (r) => open.delete(r));
  page.on('requestfailed', (r) => open.delete(r));
  const logs: string[] = [];
  consoleLogs.set(page, logs);
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => logs.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => { if (r.status() >= 300 && r.status() !== 304) logs.push(`response ${r.status()} ${r.url()}`); });
}

const consoleLogs = new WeakMap<Page, string[]>();

/**
 * `page.goto`, again when Chromium aborted it because the host's network
 * changed (Docker adds and removes interfaces as the tests' containers come
 * and go: ERR_NETWORK_CHANGED). The app itself copes with that too (retried
 * reads, resumed streams, a reload when its scripts failed to load); this
 * only covers the navigation the test itself starts.
 */
export async function gotoPage(page: Page, url: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await page.goto(url);
      return;
    } catch (err) {
      if (attempt >= 3 || !/ERR_NETWORK_CHANGED|ERR_NETWORK_IO_SUSPENDED/.test((err as Error).message)) throw err;
    }
  }
}

/** Waits until the page script has loaded its data. */
export async function ready(page: Page): Promise<void> {
  try {
    await page.waitForSelector('body[data-ready="true"]', { timeout: 20_000 });
  } catch (err) {
    const main = await page.locator('main').innerText({ timeout: 1000 }).catch(() => '(no main)');
    const requests = [...(pending.get(page)?.values() ?? [])].join('\n');
    const logs = (consoleLogs.get(page) ?? []).slice(-30).join('\n');
    const script = await page.evaluate(() => ({ ready: document.body.dataset.ready, state: document.readyState })).catch(() => null);
    throw new Error(`page ${page.url()} never got ready: ${(err as Error).message.split('\n')[0]}\n--- main ---\n${main.slice(0, 2000)}\n--- unfinished requests ---\n${requests}\n--- console ---\n${logs}\n--- document ---\n${JSON.stringify(script)}`);
  }
}

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: string[];
}

/** axe-core's serious and critical violations on the page as it is now. */
export async function seriousViolations(page: Page): Promise<AxeViolation[]> {
  // Evaluated through the DevTools protocol: our CSP (rightly) refuses injected script tags.
  await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run(context: Document, options: object): Promise<{ violations: Array<{ id: string; impact: string | null; help: string; nodes: Array<{ target: unknown[] }> }> }> } }).axe;
    const result = await axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => JSON.stringify(n.target)) }));
  });
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/** Presses Tab until the focused element's accessible name matches, as a keyboard user moves through the page. */
export async function tabTo(page: Page, name: RegExp, maxPresses = 80): Promise<void> {
  for (let i = 0; i < maxPresses; i++) {
    await page.keyboard.press('Tab');
    if (name.test(await focusedName(page))) return;
  }
  throw new Error(`no element named ${name} reached with ${maxPresses} Tab presses`);
}

/** What the focused element is called: its aria-label, its label (form fields), else its text. */
export function focusedName(page: Page): Promise<string> {
  return page.evaluate(() => {
    const el = document.activeElement as HTMLElement | null;
    if (!el || el === document.body) return '';
    const label = (el as HTMLInputElement).labels?.[0]?.textContent;
    return (el.getAttribute('aria-label') ?? label ?? el.textContent ?? '').trim();
  });
}
