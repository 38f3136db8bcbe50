import { TemplateError } from './router-errors.js';

/** The placeholders an app's template may use; see the package README. */
export interface TemplateValues {
  app: string;
  upstream: string;
  /** One `server host:port;` line per live address. */
  servers: readonly string[];
  listen: string;
  server_name: string;
}

const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;

/**
 * Substitutes `{{ name }}` placeholders. Deliberately tiny: no logic, no
 * escapes. `{{ servers }}` expands to one line per address, each indented
 * like the placeholder's own line. An unknown name is an error (a typo must
 * not render silently), and so is a template without `{{ servers }}` (it
 * would route nowhere).
 */
export function renderTemplate(template: string, values: TemplateValues): string {
  const names = new Set<string>();
  const out = template.split('\n').map((line, index) => line.replace(PLACEHOLDER, (_match, name: string) => {
    names.add(name);
    switch (name) {
      case 'app': return values.app;
      case 'upstream': return values.upstream;
      case 'listen': return values.listen;
      case 'server_name': return values.server_name;
      case 'servers': {
        const indent = /^\s*/.exec(line)?.[0] ?? '';
        return values.servers.join(`\n${indent}`);
      }
      default:
        throw new TemplateError(`line ${index + 1}: unknown placeholder {{ ${name} }} (known: app, upstream, servers, listen, server_name)`);
    }
  }));
  if (!names.has('servers')) throw new TemplateError('the template never uses {{ servers }}, so it would route to no container');
  return out.join('\n');
}
