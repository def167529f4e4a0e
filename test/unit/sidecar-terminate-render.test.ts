import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FleetConfigInput, parseFleetConfig } from '../../lib/config/index.ts';
import { createCertificateAuthority, generateKey, issueCertificate } from '../../lib/pki/index.ts';
import { gatewayLayout, renderGateway, writeGateway } from '../../proxy/haproxy/index.ts';
import {
  renderCrtList,
  sanDerPattern,
  terminatePaths,
  trustReferenced,
} from '../../proxy/haproxy/render-terminate.ts';
import { expectValidConfig } from '../support/haproxy.ts';

const base = (routes: unknown[]): FleetConfigInput =>
  ({
    fleet: 'render-test',
    listeners: { bind: ['127.0.0.1'], tls: 18443, http: 18080, health: 18081, metrics: null },
    certificates: [
      {
        name: 'api',
        secretId: 'c/api',
        commonName: 'api.test',
        dns: ['api.test', '*.wild.test'],
        usage: 'server',
      },
      { name: 'gw-client', secretId: 'c/client', commonName: 'gw', usage: 'client' },
    ],
    trust: { secretId: 'trust' },
    allowLoopbackDestinations: true,
    routes,
  }) as FleetConfigInput;

const strict = {
  mode: 'terminate',
  serverName: 'api.test',
  certificate: 'api',
  clientAuth: 'strict',
  trustedClients: {
    sans: ['client.test', 'spiffe://example/ns/a'],
    subjects: ['/CN=legacy client/O=Example'],
  },
  upstream: { kind: 'local', port: 8080 },
};
const open = {
  mode: 'terminate',
  serverName: '*.wild.test',
  certificate: 'api',
  clientAuth: 'none',
  upstream: {
    kind: 'originate',
    host: '127.0.0.1',
    port: 8443,
    serverName: 'up.test',
    clientCertificate: 'gw-client',
  },
};
const passthrough = { serverName: 'pass.test', allowedDestinations: ['127.0.0.0/8'] };

describe('sanDerPattern', () => {
  it('matches the DER encoding of DNS and URI SANs in a real certificate, short and long', async () => {
    const ca = await createCertificateAuthority({ commonName: 'SAN CA' });
    const key = await generateKey();
    const long = `${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(20)}.test`;
    const issued = await issueCertificate(ca, {
      publicKeyPem: key.publicKeyPem,
      commonName: 'san-client',
      dns: ['client.test', long],
      uri: ['spiffe://example/ns/a'],
      usage: 'client',
    });
    const der = new X509Certificate(issued.certificatePem).raw.toString('hex').toUpperCase();
    for (const san of ['client.test', long, 'spiffe://example/ns/a'])
      expect(der).toContain(sanDerPattern(san));
    expect(der).not.toContain(sanDerPattern('other.test'));
    expect(sanDerPattern('client.test')).toBe('820B636C69656E742E74657374');
    expect(sanDerPattern(long).slice(0, 6)).toBe(`8281${long.length.toString(16).toUpperCase()}`);
  });
});

describe('renderCrtList', () => {
  it('writes one line per terminate route with its verification and SNI filter', () => {
    const config = parseFleetConfig(base([strict, open, passthrough]));
    const layout = gatewayLayout('/gw');
    expect(renderCrtList(config, layout, { crl: true })).toBe(
      [
        '/gw/certs/api.pem [verify optional ca-file /gw/certs/trust.pem crl-file /gw/certs/crl.pem] api.test',
        '/gw/certs/api.pem [verify none] *.wild.test',
        '',
      ].join('\n'),
    );
    expect(trustReferenced(config)).toBe(true);
    expect(trustReferenced(parseFleetConfig(base([{ ...strict, clientAuth: 'none' }])))).toBe(false);
  });
});

describe('renderGateway with terminate routes', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-rt-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('renders a configuration HAProxy accepts, with passthrough and terminate on one TLS port', async () => {
    const config = parseFleetConfig(base([strict, open, passthrough]));
    const layout = gatewayLayout(dir);
    const rendered = renderGateway(config, {
      layout,
      allowlistCidrs: ['127.0.0.0/8'],
      terminate: { crl: false },
    });
    await writeGateway(dir, rendered);
    const cfg = rendered.files['haproxy.cfg']!.content;
    expect(cfg).toContain('use_backend be_terminate if terminate');
    expect(cfg).toContain(`bind unix@${terminatePaths(layout).socket} mode 600 accept-proxy ssl crt-list`);
    expect(cfg).toContain('server upstream 127.0.0.1:8443 ssl crt');
    expect(cfg).toMatch(
      /tcp-request content set-var\(txn\.refusal\) str\(client-certificate-untrusted\) if !refused t_route_0 cert_used !\{ ssl_c_der,hex -m sub -f \S+terminate-0-sans\.lst \} !\{ ssl_c_s_dn -m str -f \S+terminate-0-subjects\.lst \}/,
    );
    expect(rendered.files['acl/terminate-0-subjects.lst']?.content).toBe('/CN=legacy client/O=Example\n');
    // No destination guard file for a terminate route; the passthrough route keeps its own.
    expect(rendered.files['acl/route-0-destinations.acl']).toBeUndefined();
    expect(rendered.files['acl/route-2-destinations.acl']?.content).toBe('127.0.0.0/8\n');

    // HAProxy needs the certificate files to exist to check the configuration.
    const ca = await createCertificateAuthority({ commonName: 'Render CA' });
    const key = await generateKey();
    const leaf = await issueCertificate(ca, {
      publicKeyPem: key.publicKeyPem,
      commonName: 'api.test',
      dns: ['api.test', '*.wild.test'],
      usage: 'server',
    });
    const paths = terminatePaths(layout);
    await writeFile(paths.certificate('api'), leaf.certificatePem + key.privateKeyPem, { mode: 0o600 });
    await writeFile(paths.certificate('gw-client'), leaf.certificatePem + key.privateKeyPem, { mode: 0o600 });
    await writeFile(paths.trust, ca.certificatePem);
    await expectValidConfig(layout.config);
  });

  it('refuses terminate routes that name undeclared or wrong-usage certificates, or come without trust', () => {
    expect(() => parseFleetConfig(base([{ ...strict, certificate: 'nope' }]))).toThrow(
      /routes\.0\.certificate/,
    );
    expect(() => parseFleetConfig(base([{ ...strict, certificate: 'gw-client' }]))).toThrow(
      /usage client, needs server/,
    );
    const { trust: _none, ...withoutTrust } = base([strict]) as Record<string, unknown>;
    expect(() => parseFleetConfig(withoutTrust)).toThrow(/trust/);
  });
});
