import { slipwaySchema } from './slipway-schema.js';

export const REFERENCE_START = '<!-- config-reference:start (generated from packages/config; a test keeps it in step) -->';
export const REFERENCE_END = '<!-- config-reference:end -->';

/** The README's configuration table, generated from the schema that validates. */
export function configReference(): string {
  const rows = slipwaySchema.docs('').map((row) => {
    const cells = [`\`${row.key}\``, row.type.replace(/^an? /, ''), row.default ? `\`${row.default}\`` : '', row.doc];
    return `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
  });
  return [REFERENCE_START, '| key | type | default | meaning |', '|---|---|---|---|', ...rows, REFERENCE_END].join('\n');
}
