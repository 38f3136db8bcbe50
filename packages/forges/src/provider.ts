/** The forges with a receiver endpoint (`POST /hooks/<provider>`). Forgejo and Gogs use `gitea`. */
export type Provider = 'github' | 'gitea' | 'gitlab';

export const PROVIDERS: readonly Provider[] = ['github', 'gitea', 'gitlab'];

export function isProvider(value: unknown): value is Provider {
  return typeof value === 'string' && (PROVIDERS as readonly string[]).includes(value);
}
