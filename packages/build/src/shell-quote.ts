/**
 * One word for `sh`: bare when plainly safe, else single-quoted. Only for
 * the one place git insists on a shell string (`GIT_SSH_COMMAND`).
 */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./=:@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
