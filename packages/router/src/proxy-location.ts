/**
 * The `location /` block both routing modes render: the usual proxy
 * headers, HTTP/1.1 with keep-alive to the app (WebSocket upgrades still
 * pass), and a retry on another container for idempotent requests only
 * (`non_idempotent` is deliberately absent: a POST is never sent twice).
 */
export function proxyLocation(target: string, connectionVariable: string): string {
  return `    location / {
        proxy_pass http://${target};
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection ${connectionVariable};
        proxy_next_upstream error timeout http_502 http_503;
        proxy_connect_timeout 5s;
    }`;
}
