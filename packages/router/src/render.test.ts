import { describe, expect, it } from 'vitest';
import { parseDnsHosts, renderDnsHosts, renderDnsNginxConf, renderedUpstreams, renderFrontConf, renderNginxConf, RESOLVER_VALID_S, type RouteSnapshot } from './render.js';
import { InvalidInputError } from '@slipway/core/slipway-error';
import { EmptyUpstreamError, TemplateError } from './router-errors.js';

const app = (over: Partial<RouteSnapshot['app']> = {}): RouteSnapshot['app'] => ({
  name: 'hello', listen: '80', server_name: ['hello.example.com'], etcd_prefix: '/slipway/apps/hello/upstream', ...over,
});

describe('renderNginxConf', () => {
  it.each([
    ['upstream named after the app', app(), ['127.0.0.1:32768'], ['upstream slipway_hello {', 'proxy_pass http://slipway_hello;']],
    ['one server line per address, numerically sorted', app(), ['127.0.0.1:32770', '127.0.0.1:9', '127.0.0.1:32768'], ['server 127.0.0.1:9;\n    server 127.0.0.1:32768;\n    server 127.0.0.1:32770;']],
    ['duplicates collapse', app(), ['127.0.0.1:1', '127.0.0.1:1'], ['    server 127.0.0.1:1;\n    keepalive']],
    ['listen as configured', app({ listen: '127.0.0.1:8080' }), ['127.0.0.1:1'], ['listen 127.0.0.1:8080;']],
    ['several server names', app({ server_name: ['a.example', 'b.example'] }), ['127.0.0.1:1'], ['server_name a.example b.example;']],
    ['no server name means any', app({ server_name: [] }), ['127.0.0.1:1'], ['server_name _;']],
    ['the usual proxy headers', app(), ['127.0.0.1:1'], ['proxy_set_header Host $host;', 'proxy_set_header X-Real-IP $remote_addr;', 'proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;', 'proxy_set_header X-Forwarded-Proto $scheme;']],
    ['retries idempotent requests only', app(), ['127.0.0.1:1'], ['proxy_next_upstream error timeout http_502 http_503;']],
    ['HTTP/1.1 upstream keep-alive, Connection: upgrade only for an Upgrade', app({ name: 'my-app' }), ['127.0.0.1:1'], ['proxy_http_version 1.1;', 'keepalive 16;', 'set $slipway_connection "";\n    if ($http_upgrade) {\n        set $slipway_connection upgrade;\n    }', 'proxy_set_header Connection $slipway_connection;']],
  ])('%s', (_what, a, upstreams, expected) => {
    const text = renderNginxConf({ app: a, upstreams });
    for (const fragment of expected) expect(text).toContain(fragment);
  });

  it('never sets non_idempotent nor reuseport', () => {
    const text = renderNginxConf({ app: app(), upstreams: ['127.0.0.1:1'] });
    expect(text).not.toMatch(/^\s*proxy_next_upstream[^;]*non_idempotent/m);
    expect(text).not.toMatch(/^\s*listen[^;]*reuseport/m);
  });

  it('renders equal sets to equal bytes, whatever their order', () => {
    expect(renderNginxConf({ app: app(), upstreams: ['127.0.0.1:2', '127.0.0.1:1'] }))
      .toBe(renderNginxConf({ app: app(), upstreams: ['127.0.0.1:1', '127.0.0.1:2'] }));
  });

  it('refuses an empty upstream', () => {
    expect(() => renderNginxConf({ app: app(), upstreams: [] })).toThrow(EmptyUpstreamError);
    expect(() => renderNginxConf({ app: app(), upstreams: [] })).toThrow(/refusing to render an empty upstream for hello/);
  });

  it.each([
    ['127.0.0.1:1; include /etc/passwd'], ['127.0.0.1:1}\nserver {'], ['127.0.0.1'], ['127.0.0.1:0'], ['127.0.0.1:70000'], ['999.0.0.1:80'], ['host name:80'],
  ])('rejects a hostile or malformed address %j', (address) => {
    expect(() => renderNginxConf({ app: app(), upstreams: [address] })).toThrow(/not an upstream address/);
  });

  it('renders an app\'s own template', () => {
    const template = [
      'upstream {{ upstream }} {',
      '  {{servers}}',
      '}',
      'server { listen {{listen}}; server_name {{ server_name }}; location / { proxy_pass http://{{upstream}}; } } # {{app}}',
    ].join('\n');
    expect(renderNginxConf({ app: app(), upstreams: ['127.0.0.1:2', '127.0.0.1:1'], template })).toBe([
      'upstream slipway_hello {',
      '  server 127.0.0.1:1;',
      '  server 127.0.0.1:2;',
      '}',
      'server { listen 80; server_name hello.example.com; location / { proxy_pass http://slipway_hello; } } # hello',
    ].join('\n'));
  });

  it.each([
    ['an unknown placeholder', 'upstream x { {{servers}} }\n{{ upstreams }}', /line 2: unknown placeholder \{\{ upstreams \}\}/],
    ['no {{ servers }}', 'server { listen {{listen}}; }', /never uses \{\{ servers \}\}/],
  ])('rejects a template with %s', (_what, template, message) => {
    expect(() => renderNginxConf({ app: app(), upstreams: ['127.0.0.1:1'], template })).toThrow(TemplateError);
    expect(() => renderNginxConf({ app: app(), upstreams: ['127.0.0.1:1'], template })).toThrow(message);
  });
});

describe('renderedUpstreams', () => {
  it('reads back the addresses a rendered file routes to', () => {
    const text = renderNginxConf({ app: app(), upstreams: ['127.0.0.1:2', '127.0.0.1:1'] });
    expect(renderedUpstreams(text)).toEqual(['127.0.0.1:1', '127.0.0.1:2']);
  });
});

const dnsApp = (over: Record<string, unknown> = {}) => ({ name: 'my-app', listen: '127.0.0.1:8081', server_name: ['a.example'], port: 8080, ...over });
const dns = { server: '127.0.0.1:5353', domain: 'slipway.internal', address_pool: '127.0.10.0/24' };

describe('renderDnsNginxConf', () => {
  it.each([
    ['asks dns.server with a short valid=, IPv4 only', [`resolver 127.0.0.1:5353 valid=${RESOLVER_VALID_S}s ipv6=off;`, 'resolver_timeout 2s;']],
    ['a variable proxy_pass, so nginx resolves at request time', ['set $slipway_backend my-app.slipway.internal;', 'proxy_pass http://$slipway_backend:8080;']],
    ['listen and server_name as configured', ['listen 127.0.0.1:8081;', 'server_name a.example;']],
    ['the usual proxy headers and idempotent retries', ['proxy_set_header Host $host;', 'proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;', 'proxy_next_upstream error timeout http_502 http_503;']],
    ['WebSockets pass: Connection: upgrade only for an Upgrade', ['if ($http_upgrade) {\n        set $slipway_connection upgrade;', 'proxy_set_header Connection $slipway_connection;']],
  ])('%s', (_what, fragments) => {
    const text = renderDnsNginxConf({ app: dnsApp(), dns });
    for (const f of fragments) expect(text).toContain(f);
  });

  it('has no upstream block and no address: equal config renders equal bytes, whatever runs', () => {
    const text = renderDnsNginxConf({ app: dnsApp(), dns });
    expect(text).not.toMatch(/^\s*upstream\s/m);
    expect(text).not.toMatch(/^\s*server\s+\d/m);
    expect(renderDnsNginxConf({ app: dnsApp(), dns })).toBe(text);
    expect(renderDnsNginxConf({ app: dnsApp({ port: 9090 }), dns })).not.toBe(text);
  });

  it('never sets non_idempotent nor reuseport', () => {
    const text = renderDnsNginxConf({ app: dnsApp(), dns });
    expect(text).not.toMatch(/^\s*proxy_next_upstream[^;]*non_idempotent/m);
    expect(text).not.toMatch(/^\s*listen[^;]*reuseport/m);
  });

  it('refuses an own template (not supported for dns yet) rather than ignore it', () => {
    expect(() => renderDnsNginxConf({ app: dnsApp({ template: '/x.tmpl' }), dns })).toThrow(TemplateError);
  });
});

const hostsApp = { name: 'hello', port: 8080 };

describe('renderDnsHosts', () => {
  it('one line per address, numerically sorted, duplicates collapsed', () => {
    const hosts = renderDnsHosts(hostsApp, 'slipway.internal', ['127.0.10.10:8080', '127.0.10.9:8080', '127.0.10.9:8080']);
    expect(hosts.text).toBe('127.0.10.9 hello.slipway.internal\n127.0.10.10 hello.slipway.internal\n');
    expect(hosts.ips).toEqual(['127.0.10.9', '127.0.10.10']);
    expect(parseDnsHosts(hosts.text)).toEqual(hosts.ips);
  });

  it.each([
    ['another port (an A record carries none)', '127.0.0.1:32768', /not at the app's port 8080/],
    ['a host name', 'db.internal:8080', /not an IPv4 address/],
    ['an impossible address', '300.0.0.1:8080', /not an IPv4 address/],
  ])('skips %s and says why', (_what, address, reason) => {
    const hosts = renderDnsHosts(hostsApp, 'slipway.internal', [address]);
    expect(hosts.text).toBe('');
    expect(hosts.skipped[0]!.reason).toMatch(reason);
  });
});

describe('two tiers (nginx.front)', () => {
  const back = 'unix:/run/slipway-back/slipway-hello.sock';

  it('the back listens on the app\'s socket and passes on the client the front names', () => {
    const text = renderNginxConf({ app: app({ listen: '127.0.0.1:8080' }), upstreams: ['127.0.0.1:1'], back });
    expect(text).toContain(`listen ${back};`);
    expect(text).not.toContain('127.0.0.1:8080');
    for (const header of ['X-Real-IP $http_x_real_ip;', 'X-Forwarded-For $http_x_forwarded_for;', 'X-Forwarded-Proto $http_x_forwarded_proto;']) {
      expect(text).toContain(`proxy_set_header ${header}`);
    }
    const dns = renderDnsNginxConf({ app: { name: 'hello', listen: '80', server_name: [], port: 8080 }, dns: { server: '127.0.0.1:5353', domain: 'slipway.internal', address_pool: '127.0.10.0/24' }, back });
    expect(dns).toContain(`listen ${back};`);
    expect(dns).toContain('proxy_set_header X-Real-IP $http_x_real_ip;');
  });

  it('the front listens as configured and forwards to the back with keep-alive, whatever the live set', () => {
    const text = renderFrontConf(app({ listen: '127.0.0.1:8080' }), back);
    expect(text).toContain('listen 127.0.0.1:8080;');
    expect(text).toContain('server_name hello.example.com;');
    expect(text).toContain(`upstream slipway_hello {\n    server ${back};\n    keepalive 16;`);
    expect(text).toContain('proxy_set_header X-Real-IP $remote_addr;');
    // A request, POSTs included, is resent only when its connection to the back failed (a back reload closed it
    // unread): never on a timeout or a 502 from the back, which may come after the app acted on it.
    expect(text).toMatch(/^\s*proxy_next_upstream error non_idempotent;$/m);
    expect(text).not.toMatch(/^\s*listen[^;]*reuseport/m);
  });

  it('refuses a back that is not a unix socket path nginx can read', () => {
    for (const bad of ['127.0.0.1:80', 'unix:relative.sock', 'unix:/a b.sock', 'unix:/a;b.sock']) {
      expect(() => renderFrontConf(app(), bad)).toThrow(InvalidInputError);
    }
  });
});
