/**
 * Terminate routes on a real HAProxy 2.6 rendered and fed by the sidecar: strict, permissive
 * and no client authentication, trusted SANs, origination to an upstream that requires a client
 * certificate, passthrough beside terminate on the same port, and the per-route TLS counters.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import {
  type CertificateAuthorityMaterial,
  createCertificateAuthority,
  createCrl,
} from '../../lib/pki/index.ts';
import type { FleetTask } from '../../lib/ports.ts';
import { HttpTaskClient } from '../../lib/task-client/index.ts';
import type { LocalTask } from '../../proxy/sidecar/local-task.ts';
import { buildClientHello } from '../support/client-hello.ts';
import { type DnsServer, startDnsServer } from '../support/dns.ts';
import { freePort } from '../support/gateway.ts';
import { sendRaw } from '../support/net.ts';
import {
  type Credential,
  certificateDocument,
  issueCredential,
  startTestTask,
  tlsExchange,
} from '../support/sidecar.ts';
import { startTcpUpstream, startTlsUpstream, type Upstream } from '../support/tls.ts';

let dir: string;
let ca: CertificateAuthorityMaterial;
let rogue: CertificateAuthorityMaterial;
let app: Upstream;
let origin: Upstream;
let passthrough: Upstream;
let dns: DnsServer;
let task: LocalTask;
let tlsPort: number;
let trustedClient: Credential;
let otherSanClient: Credential;
let rogueClient: Credential;
let gatewayServer: Credential;
let passthroughServer: Credential;
let revokedClient: Credential;
let store: FileSecretStore;
let nudgeKey: Buffer;
const logs: string[] = [];

const issue = (
  authority: CertificateAuthorityMaterial,
  commonName: string,
  dnsNames: string[],
  usage: 'server' | 'client',
  uri: string[] = [],
) => issueCredential(authority, { commonName, dns: dnsNames, uri, usage });

/** Connects with `servername`, sends one line and waits for `expect` in the answer. */
const exchange = (servername: string, credential?: Credential, expect = 'ping') =>
  tlsExchange({ port: tlsPort, servername, ...(credential ? { credential } : {}), expect });

async function counters(route: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${task.sidecar.url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const name of [
    'handshakes',
    'no_certificate',
    'fail_verify_no_cert',
    'fail_verify_error',
    'fail_verify_san',
  ]) {
    const m = new RegExp(
      `^portcullis_tls_${name}_total\\{route="${route.replace(/\./g, '\\.')}"\\} (\\d+)$`,
      'm',
    ).exec(text);
    out[name] = m ? Number(m[1]) : Number.NaN;
  }
  return out;
}

function delta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-term-'));
  store = await FileSecretStore.open(join(dir, 'store'));
  ca = await createCertificateAuthority({ commonName: 'Terminate Test CA' });
  rogue = await createCertificateAuthority({ commonName: 'Terminate Rogue CA' });
  const names = ['strict.term.test', 'permissive.term.test', 'open.term.test', 'origin.term.test'];
  gatewayServer = await issue(ca, names[0]!, names, 'server');
  const gatewayClient = await issue(ca, 'portcullis-gateway', [], 'client', ['spiffe://portcullis/gateway']);
  trustedClient = await issue(ca, 'trusted-client', ['client.term.test'], 'client');
  revokedClient = await issue(ca, 'revoked-client', ['client.term.test'], 'client');
  otherSanClient = await issue(ca, 'other-client', ['other.term.test'], 'client');
  rogueClient = await issue(rogue, 'rogue-client', ['client.term.test'], 'client');
  const upstreamServer = await issue(ca, 'upstream.term.test', ['upstream.term.test'], 'server');
  passthroughServer = await issue(rogue, 'pass.term.test', ['pass.term.test'], 'server');

  app = await startTcpUpstream({ mode: 'echo' });
  origin = await startTlsUpstream({
    cert: upstreamServer.cert + upstreamServer.chain,
    key: upstreamServer.key,
    ca: ca.certificatePem,
    requestCert: true,
    greeting: 'origin\n',
  });
  passthrough = await startTlsUpstream({ cert: passthroughServer.cert, key: passthroughServer.key });
  dns = await startDnsServer({ records: { 'pass.term.test': ['127.0.0.1'] } });
  tlsPort = await freePort();

  const token = () => `${randomUUID()}-${randomBytes(4).toString('hex')}`;
  const create = (id: string, value: string) => store.create(id, value, { clientRequestToken: token() });
  nudgeKey = randomBytes(32);
  await create(
    'fleet',
    JSON.stringify({
      fleet: 'terminate-test',
      listeners: { bind: ['127.0.0.1'], tls: tlsPort, http: null, health: await freePort(), metrics: null },
      resolvers: { nameservers: [dns.address], holdValidMs: 0, timeoutMs: 300, retries: 1 },
      allowLoopbackDestinations: true,
      certificates: [
        { name: 'gateway', secretId: 'cert/gateway', commonName: names[0], dns: names, usage: 'server' },
        {
          name: 'gateway-client',
          secretId: 'cert/gateway-client',
          commonName: 'portcullis-gateway',
          usage: 'client',
        },
      ],
      trust: { secretId: 'trust' },
      nudgeKey: { secretId: 'nudge-key' },
      allowlist: { source: { secretId: 'allowlist' } },
      routes: [
        {
          mode: 'terminate',
          serverName: 'strict.term.test',
          certificate: 'gateway',
          clientAuth: 'strict',
          trustedClients: { sans: ['client.term.test'] },
          upstream: { kind: 'local', port: app.port },
        },
        {
          mode: 'terminate',
          serverName: 'permissive.term.test',
          certificate: 'gateway',
          clientAuth: 'permissive',
          upstream: { kind: 'local', port: app.port },
        },
        {
          mode: 'terminate',
          serverName: 'open.term.test',
          certificate: 'gateway',
          clientAuth: 'none',
          upstream: { kind: 'local', port: app.port },
        },
        {
          mode: 'terminate',
          serverName: 'origin.term.test',
          certificate: 'gateway',
          clientAuth: 'strict',
          upstream: {
            kind: 'originate',
            host: '127.0.0.1',
            port: origin.port,
            serverName: 'upstream.term.test',
            clientCertificate: 'gateway-client',
          },
        },
        {
          mode: 'passthrough',
          serverName: 'pass.term.test',
          upstream: { port: passthrough.port },
          allowedDestinations: ['127.0.0.0/8'],
        },
      ],
    }),
  );
  await create('nudge-key', JSON.stringify({ key: nudgeKey.toString('base64') }));
  await create('trust', JSON.stringify({ caBundlePem: ca.certificatePem }));
  await create('cert/gateway', certificateDocument(gatewayServer));
  await create('cert/gateway-client', certificateDocument(gatewayClient));
  await create('allowlist', JSON.stringify({ cidrs: ['127.0.0.0/8'] }));
  // The access log reaches the sidecar's output through its log sink (HAProxy's ring).
  task = await startTestTask({
    dir,
    store,
    watchIntervalMs: 200,
    write: (line) => logs.push(line.trimEnd()),
  });
});

afterAll(async () => {
  await task?.close();
  await Promise.all([app?.close(), origin?.close(), passthrough?.close(), dns?.close()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('terminate route with strict client authentication', () => {
  const route = 'strict.term.test';

  it('serves the gateway certificate and forwards a trusted client to the local app', async () => {
    const outcome = await exchange(route, trustedClient);
    expect(outcome).toMatchObject({ kind: 'ok', serial: gatewayServer.serial });
  });

  it('refuses and counts a client without a certificate', async () => {
    const before = await counters(route);
    expect((await exchange(route)).kind).toBe('refused');
    const after = await counters(route);
    expect(delta(before, after)).toMatchObject({ handshakes: 1, no_certificate: 1, fail_verify_no_cert: 1 });
    const line = logs.find(
      (l) => l.includes('"frontend":"fe_terminate"') && l.includes('no-client-certificate'),
    );
    expect(line).toBeDefined();
    // The client address crossed the internal hop in the PROXY header.
    expect(JSON.parse(line!)).toMatchObject({ client: '127.0.0.1', route });
  });

  it('logs a handshake the client abandons as JSON with its reason (error-log-format)', async () => {
    const since = logs.length;
    // A complete ClientHello passes fe_tls; the client then leaves mid-handshake.
    await sendRaw({
      host: '127.0.0.1',
      port: tlsPort,
      bytes: buildClientHello({ serverName: route }),
      end: true,
    });
    const found = () =>
      logs
        .slice(since)
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.frontend === 'fe_terminate' && l.refusal === 'tls-handshake-failed');
    await expect.poll(found, { timeout: 5000 }).toBeDefined();
    expect(found()).toMatchObject({ client: '127.0.0.1' });
    // Written by HAProxy as JSON, not wrapped by the sink.
    expect(found()?.component).toBeUndefined();
    expect(typeof found()?.error).toBe('string');
  });

  it('refuses and counts a client certificate from another CA', async () => {
    const before = await counters(route);
    expect((await exchange(route, rogueClient)).kind).toBe('refused');
    expect(delta(before, await counters(route))).toMatchObject({ handshakes: 1, fail_verify_error: 1 });
  });

  it('refuses and counts a trusted certificate without a trusted SAN', async () => {
    const before = await counters(route);
    expect((await exchange(route, otherSanClient)).kind).toBe('refused');
    expect(delta(before, await counters(route))).toMatchObject({ handshakes: 1, fail_verify_san: 1 });
  });
});

describe('terminate route with permissive client authentication', () => {
  const route = 'permissive.term.test';

  it('accepts and counts a client without a certificate', async () => {
    const before = await counters(route);
    expect((await exchange(route)).kind).toBe('ok');
    expect(delta(before, await counters(route))).toMatchObject({
      handshakes: 1,
      no_certificate: 1,
      fail_verify_no_cert: 0,
    });
  });

  it('accepts a trusted client and still refuses a certificate that does not verify', async () => {
    expect((await exchange(route, trustedClient)).kind).toBe('ok');
    expect((await exchange(route, rogueClient)).kind).toBe('refused');
  });
});

describe('terminate route without client authentication', () => {
  it('accepts a client without a certificate', async () => {
    expect(await exchange('open.term.test')).toMatchObject({ kind: 'ok', serial: gatewayServer.serial });
  });
});

describe('origination', () => {
  it('re-encrypts to an upstream that requires a client certificate, presenting the gateway client certificate', async () => {
    const outcome = await exchange('origin.term.test', trustedClient, 'origin');
    expect(outcome.kind).toBe('ok');
    const [connection] = await origin.waitForConnections(1);
    expect(connection).toMatchObject({
      authorized: true,
      peerSubject: 'portcullis-gateway',
      servername: 'upstream.term.test',
    });
  });
});

describe('passthrough and terminate on one port', () => {
  it('passes a passthrough name through untouched while terminating the others', async () => {
    const through = await exchange('pass.term.test');
    expect(through).toMatchObject({ kind: 'ok', serial: passthroughServer.serial });
    const terminated = await exchange('strict.term.test', trustedClient);
    expect(terminated).toMatchObject({ kind: 'ok', serial: gatewayServer.serial });
  });
});

describe('certificate revocation', () => {
  it('refuses a revoked client once the trust secret carries a CRL, and keeps the others', async () => {
    const route = 'strict.term.test';
    expect((await exchange(route, revokedClient)).kind).toBe('ok');
    const crl = await createCrl(ca, [
      { serial: revokedClient.serial, revokedAt: new Date(), reason: 'KEY_COMPROMISE' },
    ]);
    const { versionId } = await store.put(
      'trust',
      JSON.stringify({ caBundlePem: ca.certificatePem, crlPem: crl }),
      {
        clientRequestToken: `${randomUUID()}-crl`,
      },
    );
    const gateway: FleetTask = {
      taskId: 'term-1',
      address: '127.0.0.1',
      adminPort: task.sidecar.port,
      tlsAddress: '127.0.0.1',
      tlsPort,
      lastStatus: 'RUNNING',
    };
    const status = await new HttpTaskClient({ nudgeKey }).nudge(gateway, { secretId: 'trust', versionId });
    expect(status.trust?.versionId).toBe(versionId);
    const before = await counters(route);
    expect((await exchange(route, revokedClient)).kind).toBe('refused');
    expect(delta(before, await counters(route))).toMatchObject({ handshakes: 1, fail_verify_error: 1 });
    expect((await exchange(route, trustedClient)).kind).toBe('ok');
    expect((await exchange('origin.term.test', trustedClient, 'origin')).kind).toBe('ok');
  });
});
