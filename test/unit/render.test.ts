import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type FleetConfig,
  type FleetConfigInput,
  loadFleetConfig,
  parseFleetConfig,
} from '../../lib/config/index.ts';
import { ValidationError } from '../../lib/errors.ts';
import { createCertificateAuthority, generateKey, issueCertificate } from '../../lib/pki/index.ts';
import {
  containerLayout,
  FRONTEND,
  gatewayLayout,
  keptResolutions,
  parseSessionKey,
  REFUSAL,
  RESOLUTION_KEEPALIVE_BACKEND,
  renderGateway,
  writeGateway,
} from '../../proxy/haproxy/index.ts';
import { terminatePaths } from '../../proxy/haproxy/render-terminate.ts';
import { expectValidConfig } from '../support/haproxy.ts';

const golden = (name: string) => new URL(`../golden/${name}.haproxy.cfg`, import.meta.url).pathname;

const minimal: FleetConfigInput = {
  fleet: 'minimal',
  listeners: { http: null, metrics: null },
  resolvers: { nameservers: ['10.0.0.2:53'] },
  routes: [{ serverName: 'api.example.test' }],
  accessLog: { enabled: false },
};

const loopback: FleetConfigInput = {
  fleet: 'local-demo',
  listeners: { bind: ['127.0.0.1', '::1'], tls: 18443, http: 18080, health: 18081, metrics: 19101 },
  proxyProtocol: { enabled: true, version: 'v1', trustedPeers: ['127.0.0.1'] },
  resolvers: { nameservers: ['127.0.0.1:5353', '[::1]:5353'], holdValidMs: 0 },
  allowLoopbackDestinations: true,
  routes: [
    {
      serverName: 'app.example.test',
      upstream: { port: 9443, httpPort: 9080 },
      allowedDestinations: ['127.0.0.2'],
    },
    {
      serverName: '*.example.test',
      upstream: { host: 'pool.example.test', port: 9443 },
      addressFamily: 'ipv6',
    },
  ],
  limits: { maxconn: 50, inspectDelayMs: 500 },
};

/** Terminate beside passthrough behind an NLB, with the control plane's verification listener. */
const terminate: FleetConfigInput = {
  fleet: 'terminate',
  listeners: { http: null, metrics: null, verify: 8444 },
  proxyProtocol: { enabled: true, trustedPeers: ['10.0.0.0/24'] },
  verify: { trustedPeers: ['10.0.100.0/24', '10.0.101.0/24'] },
  resolvers: { nameservers: ['10.0.0.2:53'] },
  limits: { threads: 1 },
  certificates: [
    {
      name: 'api',
      secretId: 'c/api',
      commonName: 'api.example.test',
      dns: ['api.example.test'],
      usage: 'server',
    },
    {
      name: 'open',
      secretId: 'c/open',
      commonName: 'open.example.test',
      dns: ['open.example.test'],
      usage: 'server',
    },
  ],
  trust: { secretId: 't' },
  routes: [
    {
      mode: 'terminate',
      serverName: 'api.example.test',
      certificate: 'api',
      clientAuth: 'strict',
      upstream: { kind: 'local', port: 9000 },
    },
    {
      mode: 'terminate',
      serverName: 'open.example.test',
      certificate: 'open',
      clientAuth: 'none',
      upstream: { kind: 'local', port: 9001 },
    },
    { serverName: 'pass.example.test' },
  ],
};

async function cases() {
  return {
    lattice: await loadFleetConfig(new URL('../../examples/lattice-fleet.yaml', import.meta.url).pathname),
    minimal: parseFleetConfig(minimal),
    loopback: parseFleetConfig(loopback),
    terminate: parseFleetConfig(terminate),
  };
}

/** HAProxy checks that the certificates a crt-list names exist: the sidecar writes them before it starts. */
async function writeTerminateMaterial(config: FleetConfig, root: string): Promise<void> {
  const names = config.certificates.map((c) => c.name);
  if (names.length === 0) return;
  const ca = await createCertificateAuthority({ commonName: 'Render CA' });
  const key = await generateKey();
  const leaf = await issueCertificate(ca, {
    publicKeyPem: key.publicKeyPem,
    commonName: 'render.example.test',
    dns: ['render.example.test'],
    usage: 'server',
  });
  const paths = terminatePaths(gatewayLayout(root));
  for (const name of names) {
    await writeFile(paths.certificate(name), leaf.certificatePem + key.privateKeyPem, { mode: 0o600 });
  }
  await writeFile(paths.trust, ca.certificatePem);
}

describe('renderGateway', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-render-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('tracks and limits each source only while a per-source limit is set', () => {
    const cfg = (perSource: object) =>
      renderGateway(parseFleetConfig({ fleet: 'p', limits: { maxconn: 50, perSource } }), {
        layout: gatewayLayout('/gw'),
      }).files['haproxy.cfg']!.content;
    const limited = cfg({ maxConnectionRate: 7 });
    expect(limited).toContain('tcp-request session track-sc1 src table st_sources');
    expect(limited).toContain('{ sc1_conn_cur gt 5 }');
    expect(limited).toContain('{ sc1_conn_rate gt 7 }');
    expect(limited).toContain(
      'stick-table type ipv6 size 1000 expire 10000ms store conn_cur,conn_rate(10000ms)',
    );
    const open = cfg({ maxConnections: null, maxConnectionRate: null });
    expect(open).not.toContain('st_sources');
    expect(open).not.toContain('sc1_');
  });

  it('logs into the ring the sidecar drains, never to stdout, and with JSON for connection errors', () => {
    const text = renderGateway(parseFleetConfig({ fleet: 'l', accessLog: { bufferBytes: 65536 } }), {
      layout: gatewayLayout('/gw'),
    }).files['haproxy.cfg']!.content;
    expect(text).not.toContain('log stdout');
    expect(text).toContain('log ring@access_log len 8192 local0 info');
    expect(text).toContain('  size 65536');
    expect(text).toContain('server sidecar unix@/gw/run/log.sock log-proto octet-count');
    expect(text).toContain('%[fc_err,map_int(/gw/maps/connection-errors.map,connection-error)]');
    // No number of a line may print as a bare '-' (a variable without a default would).
    expect(text).not.toMatch(/":%\[var\([a-z.]+\)\]/);
  });

  it('renders each representative config exactly as its golden file', async () => {
    for (const [name, config] of Object.entries(await cases())) {
      const rendered = renderGateway(config, { layout: containerLayout(), ownAddresses: ['10.0.0.10'] });
      const text = rendered.files['haproxy.cfg']?.content ?? '';
      if (process.env.UPDATE_GOLDEN === '1') await writeFile(golden(name), text);
      expect(text, name).toBe(await readFile(golden(name), 'utf8'));
    }
  });

  it('produces configurations HAProxy accepts (haproxy -c)', async () => {
    for (const [name, config] of Object.entries(await cases())) {
      const root = join(dir, name);
      const written = await writeGateway(
        root,
        renderGateway(config, {
          layout: gatewayLayout(root),
          allowlistCidrs: ['192.0.2.0/24', '2001:db8::/32'],
        }),
      );
      expect(written).toContain(join(root, 'haproxy.cfg'));
      await writeTerminateMaterial(config, root);
      await expectValidConfig(join(root, 'haproxy.cfg'), name);
    }
  });

  it('writes the allowlist, denied destinations, trusted peers, routes and state files', async () => {
    const config = parseFleetConfig(loopback);
    const { files } = renderGateway(config, {
      layout: gatewayLayout('/gw'),
      ownAddresses: ['127.0.0.9', 'fd00::9'],
      allowlistCidrs: ['2001:db8::1/32', '10.1.2.3/8', '10.0.0.0/8'],
    });
    expect(Object.keys(files).sort()).toEqual([
      'acl/allowlist.acl',
      'acl/denied-destinations.acl',
      'acl/route-0-destinations.acl',
      'acl/route-1-destinations.acl',
      'acl/trusted-proxies.acl',
      'acl/verify-peers.acl',
      'haproxy.cfg',
      'lua/client-hello.lua',
      'maps/connection-errors.map',
      'maps/routes-exact.map',
      'maps/routes-wildcard.map',
      'maps/state.map',
    ]);
    expect(files['acl/allowlist.acl']?.content).toBe('10.0.0.0/8\n2001:db8::/32\n');
    expect(files['acl/trusted-proxies.acl']?.content).toBe('127.0.0.1/32\n');
    expect(files['acl/verify-peers.acl']?.content).toBe('');
    expect(files['maps/state.map']?.content).toBe('ready 0\n');
    expect(files['maps/routes-exact.map']?.content).toBe('app.example.test app.example.test\n');
    expect(files['maps/routes-wildcard.map']?.content).toBe('example.test *.example.test\n');
    expect(files['acl/route-0-destinations.acl']?.content).toBe('127.0.0.2/32\n');
    expect(files['acl/route-1-destinations.acl']?.content).toBe('169.254.171.0/24\nfd00:ec2:80::/64\n');
    const denied = files['acl/denied-destinations.acl']?.content.trim().split('\n');
    expect(denied).toEqual(
      expect.arrayContaining([
        '169.254.169.254/32',
        'fd00:ec2::254/128',
        '169.254.169.253/32',
        'fd00:ec2::253/128',
        '64:ff9b::a9fe:a9fd/128',
        '64:ff9b:1::/48',
        '::ffff:0:0:0/96',
        '127.0.0.9/32',
        'fd00::9/128',
      ]),
    );
    expect(files['maps/connection-errors.map']?.content).toMatch(
      /^0 bad-http-request\n(?:.*\n)*15 proxy-header-missing\n/,
    );
    // allowLoopbackDestinations drops only the loopback built-ins.
    expect(denied).not.toContain('127.0.0.0/8');
  });

  it('denies loopback destinations unless the fleet allows them', () => {
    const { files } = renderGateway(parseFleetConfig(minimal), { layout: gatewayLayout('/gw') });
    expect(files['acl/denied-destinations.acl']?.content.split('\n')).toEqual(
      expect.arrayContaining(['127.0.0.0/8', '::1/128', '0.0.0.0/8', '::/128']),
    );
    expect(files['acl/allowlist.acl']?.content).toBe('');
  });

  it('decides every refusal before the accept rule and connects only to the checked address', () => {
    const cfg = renderGateway(parseFleetConfig(loopback), { layout: gatewayLayout('/gw') }).files[
      'haproxy.cfg'
    ]!.content;
    const tls = cfg.slice(cfg.indexOf(`frontend ${FRONTEND.tls}`), cfg.indexOf('backend be_tls_passthrough'));
    const rules = tls.split('\n').filter((l) => l.startsWith('  tcp-request content'));
    const accept = rules.findIndex((l) => l.includes('content accept'));
    expect(accept).toBe(rules.length - 2);
    for (const reason of Object.values(REFUSAL)) {
      const index = rules.findIndex((l) => l.includes(`str(${reason})`));
      expect(index, reason).toBeGreaterThanOrEqual(0);
      expect(index, reason).toBeLessThan(accept);
    }
    const setDst = rules.findIndex((l) => l.includes('set-dst var(txn.dst)'));
    const lastReject = rules.findLastIndex((l, i) => i < accept && l.includes('reject if refused'));
    expect(lastReject).toBeLessThan(setDst);
    expect(setDst).toBeLessThan(accept);
    expect(rules.filter((l) => l.includes('do-resolve'))).toHaveLength(2);
    expect(tls).not.toContain('accept-proxy');
    expect(tls).toContain(
      'tcp-request connection expect-proxy layer4 if { src -f /gw/acl/trusted-proxies.acl }',
    );
    expect(cfg).toContain('stats socket /gw/run/admin.sock mode 600 level admin expose-fd listeners');
    expect(cfg).not.toMatch(/^\s*(user|group)\s/m);
  });

  it('refuses an invalid allowlist with the reason of each entry', () => {
    expect(() =>
      renderGateway(parseFleetConfig(minimal), {
        layout: gatewayLayout('/gw'),
        allowlistCidrs: ['0.0.0.0/0', 'x'],
      }),
    ).toThrow(ValidationError);
  });

  it('writes files atomically with their modes', async () => {
    const root = join(dir, 'modes');
    const paths = await writeGateway(root, {
      files: { 'a/secret.pem': { content: 'k', mode: 0o600 }, 'b.txt': { content: 'x', mode: 0o644 } },
    });
    expect(paths).toEqual([join(root, 'a/secret.pem'), join(root, 'b.txt')]);
    expect((await stat(join(root, 'a/secret.pem'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(root, 'b.txt'))).mode & 0o777).toBe(0o644);
  });
});

describe('resolution keep-alive', () => {
  const routes: FleetConfigInput['routes'] = [
    { serverName: 'api.example.test' },
    { serverName: 'v6.example.test', addressFamily: 'ipv6', upstream: { port: 8443 } },
    { serverName: '*.pool.example.test' },
    { serverName: '*.fixed.example.test', upstream: { host: 'api.example.test' } },
    { serverName: 'other.example.test', upstream: { host: 'api.example.test' }, addressFamily: 'ipv6' },
    {
      mode: 'terminate',
      serverName: 'local.example.test',
      certificate: 'api',
      clientAuth: 'none',
      upstream: { kind: 'local', port: 9000 },
    },
  ];
  const fleet = (resolvers: FleetConfigInput['resolvers'] = {}): FleetConfig =>
    parseFleetConfig({
      fleet: 'keep',
      resolvers: { nameservers: ['10.0.0.2:53'], ...resolvers },
      certificates: [
        {
          name: 'api',
          secretId: 'c/api',
          commonName: 'local.example.test',
          dns: ['local.example.test'],
          usage: 'server',
        },
      ],
      trust: { secretId: 't' },
      routes,
    });
  const configOf = (config: FleetConfig) =>
    renderGateway(config, { layout: gatewayLayout('/gw') }).files['haproxy.cfg']!.content;

  it('keeps the names known in advance resolved, once per name and preferred family', () => {
    expect(keptResolutions(fleet())).toEqual([
      { server: 'route0', name: 'api.example.test', family: 'ipv4', port: 443 },
      { server: 'route1', name: 'v6.example.test', family: 'ipv6', port: 8443 },
      { server: 'route4', name: 'api.example.test', family: 'ipv6', port: 443 },
    ]);
  });

  it('keeps nothing when an answer may not outlive one refresh period', () => {
    for (const resolvers of [{ holdValidMs: 0 }, { holdValidMs: 1000, timeoutMs: 1000 }]) {
      expect(keptResolutions(fleet(resolvers)), JSON.stringify(resolvers)).toEqual([]);
      expect(configOf(fleet(resolvers))).not.toContain(RESOLUTION_KEEPALIVE_BACKEND);
    }
    expect(keptResolutions(fleet({ holdValidMs: 1001, timeoutMs: 1000 }))).toHaveLength(3);
  });

  it('renders servers nothing routes to, that never connect, check or log', () => {
    const cfg = configOf(fleet());
    const sections = cfg.split('\n\n');
    const own = sections.filter((s) => s.includes(RESOLUTION_KEEPALIVE_BACKEND));
    // Named only by its own section: no use_backend, default_backend, nbsrv() or be_* fetch.
    expect(own).toHaveLength(1);
    const section = own[0]!.split('\n');
    expect(section[0]).toBe(`backend ${RESOLUTION_KEEPALIVE_BACKEND}`);
    expect(section).toContain('  no log');
    expect(section).toContain('  tcp-request content reject');
    const servers = section.filter((l) => l.startsWith('  server '));
    expect(servers).toEqual([
      '  server route0 api.example.test:443 resolvers dns resolve-prefer ipv4 init-addr none',
      '  server route1 v6.example.test:8443 resolvers dns resolve-prefer ipv6 init-addr none',
      '  server route4 api.example.test:443 resolvers dns resolve-prefer ipv6 init-addr none',
    ]);
    for (const server of servers) expect(server).not.toMatch(/\b(check|track|agent-\w+|backup)\b/);
    expect(cfg).not.toMatch(/^\s*default-server\b/m);
    // The same resolution do-resolve asks for: the same name, resolvers and preferred family.
    expect(cfg).toContain('do-resolve(txn.dst,dns,ipv4) var(txn.name) if !refused route_0');
    expect(cfg).toContain('do-resolve(txn.dst,dns,ipv6) str(api.example.test) if !refused route_4');
  });
});

describe('limits.threads', () => {
  it('renders nbthread only when the fleet sets it', () => {
    const base = { fleet: 'threads', resolvers: { nameservers: ['10.0.0.2:53'] } };
    const global = (input: FleetConfigInput) => {
      const cfg = renderGateway(parseFleetConfig(input), { layout: gatewayLayout('/gw') }).files[
        'haproxy.cfg'
      ]!.content;
      return cfg.slice(cfg.indexOf('global\n'), cfg.indexOf('\n\n'));
    };
    expect(global(base)).not.toContain('nbthread');
    expect(global({ ...base, limits: { threads: 1 } })).toContain('\n  nbthread 1\n');
    expect(global({ ...base, limits: { threads: 4 } })).toContain('\n  nbthread 4\n');
  });
});

describe('parseSessionKey', () => {
  it('splits the session table key into client and direct peer', () => {
    expect(parseSessionKey('203.0.113.7@10.0.1.5:40312')).toEqual({
      client: '203.0.113.7',
      peer: '10.0.1.5',
      peerPort: 40312,
    });
    expect(parseSessionKey('2001:db8::7@fd00::5:443')).toEqual({
      client: '2001:db8::7',
      peer: 'fd00::5',
      peerPort: 443,
    });
    expect(parseSessionKey('no-separator')).toBeUndefined();
  });
});
