/** One line of at most `max` characters (code points): whitespace runs become one space, a longer text ends with `…`. */
export function shortText(text: string, max: number): string {
  const line = text.replace(/\s+/g, ' ').trim();
  const chars = Array.from(line);
  return chars.length <= max ? line : `${chars.slice(0, max - 1).join('').trimEnd()}…`;
}
