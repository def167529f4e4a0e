/**
 * The verification listener as rendered: bound only with terminate routes and verification
 * peers, sharing the terminate crt-list, refusing other peers and closing every session after
 * its handshake. The behaviour on a real HAProxy is in test/integration/verify-listener.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { type FleetConfigInput, parseFleetConfig } from '../../lib/config/index.ts';
import { FRONTEND, gatewayLayout, renderGateway } from '../../proxy/haproxy/index.ts';
import { terminatePaths } from '../../proxy/haproxy/render-terminate.ts';
import { verifyListenerEnabled } from '../../proxy/haproxy/render-verify.ts';

const layout = gatewayLayout('/gw');

const terminateRoute = {
  mode: 'terminate',
  serverName: 'api.verify.test',
  certificate: 'api',
  clientAuth: 'strict',
  upstream: { kind: 'local', port: 9000 },
};

function fleet(
  overrides: Partial<FleetConfigInput> = {},
  routes: unknown[] = [terminateRoute],
): FleetConfigInput {
  return {
    fleet: 'verify-render',
    listeners: {
      bind: ['127.0.0.1', '::1'],
      tls: 18443,
      http: null,
      health: 18081,
      metrics: null,
      verify: 18444,
    },
    verify: { trustedPeers: ['10.0.100.7/24', 'fd00:100::/56'] },
    certificates: [
      {
        name: 'api',
        secretId: 'c/api',
        commonName: 'api.verify.test',
        dns: ['api.verify.test'],
        usage: 'server',
      },
    ],
    trust: { secretId: 'trust' },
    routes,
    ...overrides,
  } as FleetConfigInput;
}

function render(input: FleetConfigInput) {
  const { files } = renderGateway(parseFleetConfig(input), { layout });
  const cfg = files['haproxy.cfg']!.content;
  const start = cfg.indexOf(`frontend ${FRONTEND.verify}\n`);
  const section = start < 0 ? undefined : cfg.slice(start, cfg.indexOf('\n\n', start));
  return { files, cfg, section };
}

describe('renderGateway: the verification listener', () => {
  it('binds the verify port on every address with the crt-list the terminate frontend serves', () => {
    const { cfg, section } = render(fleet());
    const crtList = terminatePaths(layout).crtList;
    const ssl = `ssl crt-list ${crtList} ssl-min-ver TLSv1.2 ca-ignore-err all crt-ignore-err all`;
    expect(section?.split('\n').filter((l) => l.startsWith('  bind '))).toEqual([
      `  bind 127.0.0.1:18444 ${ssl}`,
      `  bind [::1]:18444 v6only ${ssl}`,
    ]);
    // The same file, with the same TLS options, as the bind clients reach through fe_tls.
    expect(cfg).toContain(`accept-proxy ${ssl}\n`);
  });

  it('refuses peers outside verify.trustedPeers at connection level and closes every session after the handshake', () => {
    const { section } = render(fleet());
    const rules = section!.split('\n').filter((l) => l.startsWith('  tcp-request'));
    expect(rules).toEqual([
      `  tcp-request connection reject if !{ src -f ${layout.verifyPeers} }`,
      '  tcp-request session reject',
    ]);
    // Nothing to forward to, no PROXY header expected, not an access-log source.
    expect(section).not.toMatch(/use_backend|default_backend|expect-proxy|accept-proxy|log-format/);
    expect(section).toContain('\n  no log');
  });

  it('writes the verification peers, normalised, and keeps them apart from the PROXY trusted peers', () => {
    const { files } = render(fleet({ proxyProtocol: { enabled: true, trustedPeers: ['10.0.0.0/24'] } }));
    expect(files['acl/verify-peers.acl']?.content).toBe('10.0.100.0/24\nfd00:100::/56\n');
    expect(files['acl/trusted-proxies.acl']?.content).toBe('10.0.0.0/24\n');
  });

  it.each([
    ['there are no terminate routes', fleet({}, [{ serverName: 'pass.verify.test' }])],
    ['nobody may verify (no trusted peers)', fleet({ verify: { trustedPeers: [] } })],
    ['the fleet config leaves verify out', fleet({ verify: undefined })],
    [
      'the verify port is disabled',
      fleet({
        listeners: {
          bind: ['127.0.0.1'],
          tls: 18443,
          http: null,
          health: 18081,
          metrics: null,
          verify: null,
        },
      }),
    ],
  ])('renders no verification listener when %s', (_why, input) => {
    const config = parseFleetConfig(input);
    expect(verifyListenerEnabled(config)).toBe(false);
    const { cfg, files } = render(input);
    expect(cfg).not.toContain(FRONTEND.verify);
    expect(cfg).not.toContain(':18444');
    // The peers file is always there (like trusted-proxies.acl), so a later config only adds the listener.
    expect(files['acl/verify-peers.acl']).toBeDefined();
  });
});
