/** Says something to screen-reader users through the page's polite live region. */
export function announce(text: string): void {
  const region = document.getElementById('announcer');
  if (!region) return;
  // Clearing first makes a repeated message be read again.
  region.textContent = '';
  window.setTimeout(() => (region.textContent = text), 50);
}
