import { describe, expect, it } from 'vitest';
import { renderDnsNginxConf, RESOLVER_VALID_S } from './render-dns-nginx-conf.js';
import { TemplateError } from './router-errors.js';

const app = (over: Record<string, unknown> = {}) => ({ name: 'my-app', listen: '127.0.0.1:8081', server_name: ['a.example'], port: 8080, ...over });
const dns = { server: '127.0.0.1:5353', domain: 'slipway.internal', address_pool: '127.0.10.0/24' };

describe('renderDnsNginxConf', () => {
  it.each([
    ['asks dns.server with a short valid=, IPv4 only', [`resolver 127.0.0.1:5353 valid=${RESOLVER_VALID_S}s ipv6=off;`, 'resolver_timeout 2s;']],
    ['a variable proxy_pass, so nginx resolves at request time', ['set $slipway_my_app_backend my-app.slipway.internal;', 'proxy_pass http://$slipway_my_app_backend:8080;']],
    ['listen and server_name as configured', ['listen 127.0.0.1:8081;', 'server_name a.example;']],
    ['the usual proxy headers and idempotent retries', ['proxy_set_header Host $host;', 'proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;', 'proxy_next_upstream error timeout http_502 http_503;']],
    ['WebSockets pass through the per-app map', ['map $http_upgrade $slipway_my_app_connection {', 'proxy_set_header Connection $slipway_my_app_connection;']],
  ])('%s', (_what, fragments) => {
    const text = renderDnsNginxConf({ app: app(), dns });
    for (const f of fragments) expect(text).toContain(f);
  });

  it('has no upstream block and no address: equal config renders equal bytes, whatever runs', () => {
    const text = renderDnsNginxConf({ app: app(), dns });
    expect(text).not.toMatch(/^\s*upstream\s/m);
    expect(text).not.toMatch(/^\s*server\s+\d/m);
    expect(renderDnsNginxConf({ app: app(), dns })).toBe(text);
    expect(renderDnsNginxConf({ app: app({ port: 9090 }), dns })).not.toBe(text);
  });

  it('never sets non_idempotent nor reuseport', () => {
    const text = renderDnsNginxConf({ app: app(), dns });
    expect(text).not.toMatch(/^\s*proxy_next_upstream[^;]*non_idempotent/m);
    expect(text).not.toMatch(/^\s*listen[^;]*reuseport/m);
  });

  it('refuses an own template (not supported for dns yet) rather than ignore it', () => {
    expect(() => renderDnsNginxConf({ app: app({ template: '/x.tmpl' }), dns })).toThrow(TemplateError);
  });
});
