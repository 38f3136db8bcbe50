/** One POST to a forge or a notification target, built by a pure function and sent by `sendHttpRequest`. */
export interface HttpRequest {
  method: 'POST';
  url: string;
  headers: Record<string, string>;
  /** The exact bytes sent (a signature covers them). */
  body: string;
}
