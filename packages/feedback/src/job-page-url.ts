/** A job's page on the dashboard: `<dashboard>/jobs/<id>`. */
export function jobPageUrl(dashboard: string, id: string): string {
  return `${dashboard.replace(/\/+$/, '')}/jobs/${encodeURIComponent(id)}`;
}
