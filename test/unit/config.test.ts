import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  isIpLiteral,
  LATTICE_DESTINATIONS,
  loadFleetConfig,
  parseFleetConfig,
  parseServerName,
  serverNameMatches,
} from '../../lib/config/index.ts';
import { ValidationError } from '../../lib/errors.ts';

function issuesOf(input: unknown): string[] {
  try {
    parseFleetConfig(input);
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return (error as Error).message
      .split('\n')
      .slice(1)
      .map((l) => l.trim());
  }
  throw new Error('expected a ValidationError');
}

describe('parseFleetConfig', () => {
  it('derives the per-source connection limit from maxconn unless set, and takes null as no limit', () => {
    const limits = (input: object) => parseFleetConfig({ fleet: 'f', limits: input }).limits.perSource;
    expect(limits({ maxconn: 50 }).maxConnections).toBe(5);
    expect(limits({ maxconn: 5 }).maxConnections).toBe(1);
    expect(limits({ maxconn: 50, perSource: { maxConnections: 20 } }).maxConnections).toBe(20);
    expect(limits({ perSource: { maxConnections: null, maxConnectionRate: null } })).toMatchObject({
      maxConnections: null,
      maxConnectionRate: null,
    });
    expect(() => limits({ perSource: { maxConnections: 0 } })).toThrow();
    expect(() => limits({ perSource: { burst: 1 } })).toThrow();
  });

  it('applies every default to a minimal document', () => {
    const config = parseFleetConfig({ fleet: 'edge', routes: [{ serverName: 'api.example.test' }] });
    expect(config.listeners).toEqual({
      bind: ['0.0.0.0', '::'],
      tls: 8443,
      http: 8080,
      health: 8081,
      metrics: 9101,
      verify: 8444,
    });
    expect(config.proxyProtocol).toEqual({ enabled: false, version: 'v2', trustedPeers: [] });
    // Nobody may verify until the control plane's subnets are listed.
    expect(config.verify).toEqual({ trustedPeers: [] });
    // No PROXY protocol, so the health listener reads no header either.
    expect(config.healthCheck).toEqual({ proxyProtocol: false, headerlessPeers: ['127.0.0.0/8', '::1/128'] });
    expect(config.routes[0]).toEqual({
      mode: 'passthrough',
      allowAnyDestination: false,
      serverName: 'api.example.test',
      upstream: { port: 443, httpPort: 80 },
      allowedDestinations: [...LATTICE_DESTINATIONS],
      addressFamily: 'ipv4',
    });
    expect(config.allowlist).toEqual({ allowAll0: false, maxEntries: 100_000, cutRemovedSessions: true });
    expect(config.limits.inspectDelayMs).toBe(5000);
    // HAProxy picks its thread count itself unless the fleet sizes it.
    expect(config.limits.threads).toBeUndefined();
    expect(config.accessLog).toEqual({ enabled: true, format: 'json', bufferBytes: 16 * 1024 * 1024 });
    // A source may hold a tenth of the listener's slots and open 5000 connections per 10 s.
    expect(config.limits.perSource).toEqual({
      maxConnections: 1000,
      maxConnectionRate: 5000,
      ratePeriodMs: 10_000,
    });
    expect(config.allowLoopbackDestinations).toBe(false);
  });

  it('lower-cases names, drops the trailing dot and normalises CIDRs', () => {
    const config = parseFleetConfig({
      fleet: 'edge',
      proxyProtocol: { enabled: true, trustedPeers: ['10.0.1.7/24'] },
      routes: [{ serverName: '*.Svc.Example.TEST.', upstream: { host: 'Backend.Example.Test.' } }],
      deniedDestinations: ['FD00::1/16'],
    });
    expect(config.routes[0]?.serverName).toBe('*.svc.example.test');
    expect(config.routes[0]?.upstream.host).toBe('backend.example.test');
    expect(config.proxyProtocol.trustedPeers).toEqual(['10.0.1.0/24']);
    expect(config.deniedDestinations).toEqual(['fd00::/16']);
  });

  it('lists every issue as path: reason', () => {
    expect(
      issuesOf({
        fleet: 'edge',
        routes: [{ serverName: 'ok.example.test' }, { serverName: '10.0.0.1' }],
        deniedDestinations: ['nope'],
        proxyProtocol: { enabled: true },
      }),
    ).toEqual([
      'proxyProtocol.trustedPeers: must list at least one CIDR when PROXY protocol is enabled',
      'routes.1.serverName: must be a DNS name or *.suffix, got "10.0.0.1"',
      'deniedDestinations.0: must be a CIDR, got "nope" (not an IPv4 or IPv6 address: "nope")',
    ]);
  });

  it('refuses duplicate routes after normalisation', () => {
    expect(
      issuesOf({
        fleet: 'edge',
        routes: [{ serverName: 'a.example.test' }, { serverName: 'A.Example.Test.' }],
      }),
    ).toEqual(['routes.1.serverName: duplicate of routes.0.serverName (a.example.test)']);
  });

  it('refuses unknown modes, unknown keys and clashing ports', () => {
    const issues = issuesOf({
      fleet: 'edge',
      listeners: { tls: 8080 },
      routes: [{ serverName: 'a.example.test', mode: 'tunnel' }],
      extra: true,
    });
    expect(issues).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^routes\.0\.mode: /),
        expect.stringMatching(/^\(root\): .*extra/),
      ]),
    );
    expect(issuesOf({ fleet: 'edge', listeners: { tls: 8080 } })).toEqual([
      'listeners: listener ports must differ',
    ]);
  });

  it('normalises the verification peers and lets null disable the verification port', () => {
    const config = parseFleetConfig({
      fleet: 'edge',
      listeners: { verify: null },
      verify: { trustedPeers: ['10.0.100.9/24', 'FD00:100::1/56', '127.0.0.1'] },
    });
    expect(config.verify.trustedPeers).toEqual(['10.0.100.0/24', 'fd00:100::/56', '127.0.0.1/32']);
    expect(config.listeners.verify).toBeNull();
  });

  it('names the path of each verification setting it refuses', () => {
    expect(
      issuesOf({
        fleet: 'edge',
        listeners: { verify: 70000 },
        verify: { trustedPeers: ['10.0.0.0/8', 'not-a-cidr', '0.0.0.0/0', '::/0'], peers: [] },
      }),
    ).toEqual([
      expect.stringMatching(/^listeners\.verify: /),
      expect.stringMatching(/^verify\.trustedPeers\.1: must be a CIDR, got "not-a-cidr"/),
      "verify.trustedPeers.2: must not admit every address (/0): list the control plane's subnets",
      "verify.trustedPeers.3: must not admit every address (/0): list the control plane's subnets",
      expect.stringMatching(/^verify: .*peers/),
    ]);
    try {
      parseFleetConfig({ fleet: 'edge', verify: { trustedPeers: 'x' } });
      expect.unreachable();
    } catch (error) {
      expect((error as ValidationError).path).toBe('verify.trustedPeers');
    }
  });

  it('counts the verification port among the listener ports once peers may use it', () => {
    // 8444 stays free for other use while nobody may verify (the listener is not rendered).
    expect(parseFleetConfig({ fleet: 'edge', listeners: { tls: 8444 } }).listeners.tls).toBe(8444);
    expect(
      issuesOf({ fleet: 'edge', listeners: { tls: 8444 }, verify: { trustedPeers: ['10.0.100.0/24'] } }),
    ).toEqual(['listeners: listener ports must differ']);
    expect(
      issuesOf({
        fleet: 'edge',
        listeners: { metrics: 9200, verify: 9200 },
        verify: { trustedPeers: ['10.0.100.0/24'] },
      }),
    ).toEqual(['listeners: listener ports must differ']);
  });

  it('reads PROXY headers on the health listener as the fleet does, unless healthCheck says otherwise', () => {
    const proxied = { fleet: 'edge', proxyProtocol: { enabled: true, trustedPeers: ['10.0.0.0/24'] } };
    // An NLB with proxy_protocol_v2 sends its header on health checks too.
    expect(parseFleetConfig(proxied).healthCheck.proxyProtocol).toBe(true);
    expect(
      parseFleetConfig({ ...proxied, healthCheck: { proxyProtocol: false } }).healthCheck.proxyProtocol,
    ).toBe(false);
    expect(
      parseFleetConfig({ ...proxied, healthCheck: { headerlessPeers: ['10.0.5.7', '::1'] } }).healthCheck,
    ).toEqual({ proxyProtocol: true, headerlessPeers: ['10.0.5.7/32', '::1/128'] });
    expect(
      parseFleetConfig({ ...proxied, healthCheck: { headerlessPeers: [] } }).healthCheck.headerlessPeers,
    ).toEqual([]);
    // Whose header would it read? The trusted peers belong to proxyProtocol.
    expect(issuesOf({ fleet: 'edge', healthCheck: { proxyProtocol: true } })).toEqual([
      'healthCheck.proxyProtocol: needs proxyProtocol.enabled: its trustedPeers are the peers whose header is read',
    ]);
    expect(issuesOf({ ...proxied, healthCheck: { headerlessPeers: ['nope'] } })[0]).toMatch(
      /^healthCheck\.headerlessPeers\.0: must be a CIDR/,
    );
    expect(issuesOf({ ...proxied, healthCheck: { proxyprotocol: true } })[0]).toMatch(/^healthCheck/);
  });

  it('refuses IP-literal upstream hosts', () => {
    expect(
      issuesOf({ fleet: 'edge', routes: [{ serverName: 'a.example.test', upstream: { host: '127.1' } }] }),
    ).toEqual(['routes.0.upstream.host: must be a DNS name, got "127.1" (is an IP literal)']);
  });

  it('refuses allowed destinations that span a whole address family unless the route opts in', () => {
    const route = (allowedDestinations: string[], allowAnyDestination?: boolean) => ({
      fleet: 'edge',
      routes: [{ serverName: 'a.example.test', allowedDestinations, allowAnyDestination }],
    });
    const canonical = {
      '0.0.0.0/0': '0.0.0.0/0',
      '::/0': '::/0',
      '::ffff:0:0/96': '::ffff:0.0.0.0/96',
      '::/80': '::/80',
    };
    for (const [wide, text] of Object.entries(canonical)) {
      expect(issuesOf(route(['169.254.171.0/24', wide])), wide).toEqual([
        `routes.0.allowedDestinations.1: ${text} allows every address of a family: list the upstreams' ranges (or set allowAnyDestination)`,
      ]);
    }
    const destinations = (config: ReturnType<typeof parseFleetConfig>) =>
      config.routes.map((r) => (r.mode === 'passthrough' ? r.allowedDestinations : []));
    expect(destinations(parseFleetConfig(route(['10.0.0.0/8', 'fd00::/8'])))).toEqual([
      ['10.0.0.0/8', 'fd00::/8'],
    ]);
    expect(destinations(parseFleetConfig(route(['0.0.0.0/0', '::/0'], true)))).toEqual([
      ['0.0.0.0/0', '::/0'],
    ]);
  });

  it("takes a thread count between 1 and HAProxy 2.6's maximum of 64", () => {
    const threads = (value: number) =>
      parseFleetConfig({ fleet: 'edge', limits: { threads: value } }).limits.threads;
    expect(threads(1)).toBe(1);
    expect(threads(64)).toBe(64);
    for (const value of [0, 65, 1.5]) {
      expect(issuesOf({ fleet: 'edge', limits: { threads: value } })[0], String(value)).toMatch(
        /^limits\.threads: /,
      );
    }
  });

  it('carries the first issue path on the error', () => {
    try {
      parseFleetConfig({ fleet: 'Edge!' });
      expect.unreachable();
    } catch (error) {
      expect((error as ValidationError).path).toBe('fleet');
    }
  });
});

describe('parseServerName', () => {
  const cases: Array<[string, string | undefined]> = [
    ['app.example.test', 'app.example.test'],
    ['App.Example.Test.', 'app.example.test'],
    ['*.example.test', '*.example.test'],
    [
      'svc-0abc.7d67968.vpc-lattice-svcs.us-east-1.on.aws',
      'svc-0abc.7d67968.vpc-lattice-svcs.us-east-1.on.aws',
    ],
    ['*.test', undefined],
    ['a.*.example.test', undefined],
    ['*example.test', undefined],
    ['**.example.test', undefined],
    ['10.0.0.1', undefined],
    ['127.1', undefined],
    ['0x7f.1', undefined],
    ['2130706433', undefined],
    ['[::1]', undefined],
    ['::1', undefined],
    ['localhost', undefined],
    ['-bad.example.test', undefined],
    ['under_score.example.test', undefined],
    ['', undefined],
  ];
  it.each(cases)('parses %j as %j', (input, expected) => {
    const parsed = parseServerName(input);
    if (expected === undefined) expect(parsed.kind).toBe('invalid');
    else
      expect(
        parsed.kind === 'ok' &&
          (parsed.value.kind === 'exact' ? parsed.value.name : `*.${parsed.value.suffix}`),
      ).toBe(expected);
  });

  it('treats every dotted-number spelling as an IP literal', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.nat(4294967295).map(String),
            fc.nat(255).map((n) => `0x${n.toString(16)}`),
            fc.nat(255).map((n) => `0${n.toString(8)}`),
          ),
          { minLength: 1, maxLength: 4 },
        ),
        (parts) => {
          expect(isIpLiteral(parts.join('.'))).toBe(true);
        },
      ),
    );
  });
});

describe('serverNameMatches', () => {
  it('matches exactly one label under a wildcard', () => {
    expect(serverNameMatches('*.example.test', 'a.example.test')).toBe(true);
    expect(serverNameMatches('*.example.test', 'example.test')).toBe(false);
    expect(serverNameMatches('*.example.test', 'b.a.example.test')).toBe(false);
    expect(serverNameMatches('a.example.test', 'a.example.test')).toBe(true);
  });
});

describe('loadFleetConfig', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads YAML and JSON documents', async () => {
    await writeFile(join(dir, 'a.yaml'), 'fleet: edge\nroutes:\n  - serverName: a.example.test\n');
    await writeFile(
      join(dir, 'a.json'),
      JSON.stringify({ fleet: 'edge', routes: [{ serverName: 'a.example.test' }] }),
    );
    const fromYaml = await loadFleetConfig(join(dir, 'a.yaml'));
    const fromJson = await loadFleetConfig(join(dir, 'a.json'));
    expect(fromYaml).toEqual(fromJson);
  });

  it('reports syntax errors and missing files as ValidationError', async () => {
    await writeFile(join(dir, 'bad.yaml'), 'fleet: [unclosed\n');
    await expect(loadFleetConfig(join(dir, 'bad.yaml'))).rejects.toThrow(ValidationError);
    await expect(loadFleetConfig(join(dir, 'missing.yaml'))).rejects.toThrow(/cannot read fleet config/);
  });

  it('loads the shipped Lattice example', async () => {
    const config = await loadFleetConfig(
      new URL('../../examples/lattice-fleet.yaml', import.meta.url).pathname,
    );
    expect(config.proxyProtocol.enabled).toBe(true);
    expect(config.healthCheck.proxyProtocol).toBe(true);
    expect(config.routes.length).toBeGreaterThan(0);
  });
});
