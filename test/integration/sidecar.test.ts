/**
 * The sidecar against a real HAProxy 2.6 on loopback: start → rendered → HAProxy → ready,
 * certificate and allowlist hot applies by nudge and poll, validation refusals with the previous
 * state still served, HAProxy and sidecar restarts, and the secret-leak check on every log line.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetConfigInput } from '../../lib/config/index.ts';
import { ValidationError } from '../../lib/errors.ts';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { LocalAuthority } from '../../lib/local/local-authority.ts';
import {
  type CertificateAuthorityMaterial,
  createCertificateAuthority,
  createCsr,
  generateKey,
  issueCertificate,
  normaliseSerial,
} from '../../lib/pki/index.ts';
import { type FleetTask, Stage } from '../../lib/ports.ts';
import { HttpTaskClient } from '../../lib/task-client/index.ts';
import type { LocalTask } from '../../proxy/sidecar/local-task.ts';
import { freePort } from '../support/gateway.ts';
import {
  type Credential,
  certificateDocument,
  fleetTaskOf,
  issueCredential,
  putSecret,
  startTestTask,
  tlsExchange,
} from '../support/sidecar.ts';
import { startTcpUpstream, type Upstream } from '../support/tls.ts';

const SERVER_NAME = 'api.sidecar.test';

let dir: string;
let store: FileSecretStore;
let authority: LocalAuthority;
let rogueCa: CertificateAuthorityMaterial;
/** A second CA in the trust bundle, for certificates with unusual validity or keys. */
let trustedCa: CertificateAuthorityMaterial;
let task: LocalTask;
let app: Upstream;
let client: HttpTaskClient;
let fleetTask: FleetTask;
let nudgeKey: Buffer;
let clientCredential: Credential;
let tlsPort: number;
let healthPort: number;
const lines: string[] = [];
/** Every secret value written to the store (the leak test searches the logs for them). */
const payloads: string[] = [];

async function put(secretId: string, value: string, stages: string[] = [Stage.Current]): Promise<string> {
  payloads.push(value);
  return putSecret(store, secretId, value, stages);
}

/** A certificate from the fleet's CA through the LocalAuthority port (CSR, issue, get). */
async function issueFromAuthority(
  commonName: string,
  dns: string[],
  usage: 'server' | 'client',
): Promise<Credential> {
  const key = await generateKey();
  const csrPem = await createCsr(key, { commonName, dns });
  const { certificateId } = await authority.issue({
    csrPem,
    commonName,
    sans: { dns },
    validityDays: 2,
    idempotencyToken: randomUUID().slice(0, 36),
    usage,
  });
  const issued = await authority.get(certificateId);
  const serial =
    normaliseSerial(new (await import('node:crypto')).X509Certificate(issued.certificatePem).serialNumber) ??
    '';
  return { cert: issued.certificatePem, chain: issued.chainPem, key: key.privateKeyPem, serial };
}

const issueFrom = issueCredential;

/** One mTLS connection through the gateway: handshake, one round trip through the app, close. */
const handshake = (
  options: { cert?: string; key?: string; localAddress?: string; servername?: string } = {},
) =>
  tlsExchange({
    port: tlsPort,
    servername: options.servername ?? SERVER_NAME,
    ...(options.cert && options.key ? { credential: { cert: options.cert, key: options.key } } : {}),
    ...(options.localAddress ? { localAddress: options.localAddress } : {}),
  });

const withClient = () => handshake({ cert: clientCredential.cert, key: clientCredential.key });

async function servedSerial(): Promise<string> {
  const result = await withClient();
  if (result.kind !== 'ok') throw new Error(`handshake refused: ${result.error}`);
  return result.serial;
}

async function metrics(): Promise<string> {
  return (await fetch(`${task.sidecar.url}/metrics`)).text();
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-sc-'));
  store = await FileSecretStore.open(join(dir, 'store'));
  authority = await LocalAuthority.open(join(dir, 'ca'), { commonName: 'Sidecar Test CA' });
  rogueCa = await createCertificateAuthority({ commonName: 'Rogue CA' });
  trustedCa = await createCertificateAuthority({ commonName: 'Sidecar Test Second CA' });
  app = await startTcpUpstream({ mode: 'echo' });
  nudgeKey = randomBytes(32);
  tlsPort = await freePort();
  healthPort = await freePort();
  const fleet: FleetConfigInput = {
    fleet: 'sidecar-test',
    listeners: { bind: ['127.0.0.1'], tls: tlsPort, http: null, health: healthPort, metrics: null },
    certificates: [
      { name: 'api', secretId: 'cert/api', commonName: SERVER_NAME, dns: [SERVER_NAME], usage: 'server' },
    ],
    trust: { secretId: 'trust' },
    nudgeKey: { secretId: 'nudge-key' },
    allowlist: { source: { secretId: 'allowlist' }, maxEntries: 50 },
    routes: [
      {
        mode: 'terminate',
        serverName: SERVER_NAME,
        certificate: 'api',
        clientAuth: 'strict',
        upstream: { kind: 'local', port: app.port },
      },
    ],
  };
  await put('fleet', JSON.stringify(fleet));
  await put('nudge-key', JSON.stringify({ key: nudgeKey.toString('base64') }));
  await put(
    'trust',
    JSON.stringify({ caBundlePem: (await authority.caCertificates()) + trustedCa.certificatePem }),
  );
  await put('cert/api', certificateDocument(await issueFromAuthority(SERVER_NAME, [SERVER_NAME], 'server')));
  await put('allowlist', JSON.stringify({ cidrs: ['127.0.0.1/32', '127.0.0.2/32'], reason: 'test' }));
  clientCredential = await issueFromAuthority('sidecar-client', ['client.sidecar.test'], 'client');

  task = await startTestTask({ dir, store, watchIntervalMs: 100, write: (line) => lines.push(line) });
  task.haproxy.onLine((line) => lines.push(line));
  client = new HttpTaskClient({ nudgeKey, timeoutMs: 10_000 });
  fleetTask = fleetTaskOf('local-1', task, tlsPort);
});

afterAll(async () => {
  await task?.close();
  await app?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('sidecar start', () => {
  it('renders, waits for HAProxy, sets the ready flag and serves the certificate from the store', async () => {
    const status = await client.status(fleetTask);
    expect(status.ready).toBe(true);
    expect(status.allowlist?.size).toBe(2);
    const current = await store.get('cert/api');
    expect(status.certificates.api?.versionId).toBe(current.versionId);
    expect(await servedSerial()).toBe(status.certificates.api?.serial);
    const health = await fetch(`http://127.0.0.1:${healthPort}/healthz`);
    expect(health.status).toBe(200);
    expect((await fetch(`${task.sidecar.url}/healthz`)).status).toBe(200);
    const key = await stat(join(dir, 'gw', 'certs', 'api.pem'));
    expect(key.mode & 0o777).toBe(0o600);
  });
});

async function nudgeVersion(secretId: string, value: string, stages: string[] = [Stage.Pending]) {
  const versionId = await put(secretId, value, stages);
  return { versionId, status: await client.nudge(fleetTask, { secretId, versionId }) };
}

async function dropPending(secretId: string): Promise<void> {
  const pending = (await store.describe(secretId)).versions.find((v) => v.stages.includes(Stage.Pending));
  if (pending)
    await store.moveStage(secretId, Stage.Pending, undefined, { fromVersionId: pending.versionId });
}

describe('certificate rotation', () => {
  it('serves a nudged AWSPENDING version at once and keeps it across polls until promotion', async () => {
    const next = await issueFromAuthority(SERVER_NAME, [SERVER_NAME], 'server');
    const { versionId, status } = await nudgeVersion('cert/api', certificateDocument(next));
    expect(status.certificates.api).toMatchObject({ versionId, serial: next.serial });
    expect(await servedSerial()).toBe(next.serial);

    await task.sidecar.pollNow();
    expect(await servedSerial()).toBe(next.serial);

    await store.moveStage('cert/api', Stage.Current, versionId);
    await dropPending('cert/api');
    await task.sidecar.pollNow();
    expect(await servedSerial()).toBe(next.serial);
    expect((await client.status(fleetTask)).certificates.api?.versionId).toBe(versionId);
  });

  it('brings AWSCURRENT back once a rollback drops AWSPENDING from the nudged version', async () => {
    const current = (await client.status(fleetTask)).certificates.api?.serial;
    const next = await issueFromAuthority(SERVER_NAME, [SERVER_NAME], 'server');
    await nudgeVersion('cert/api', certificateDocument(next));
    expect(await servedSerial()).toBe(next.serial);

    await dropPending('cert/api');
    await task.sidecar.pollNow();
    expect(await servedSerial()).toBe(current);
  });

  const invalid: { name: string; code: string; make: () => Promise<string> }[] = [
    {
      name: 'a key that does not match the leaf',
      code: 'key-mismatch',
      make: async () => {
        const a = await issueFromAuthority(SERVER_NAME, [SERVER_NAME], 'server');
        const b = await issueFromAuthority(SERVER_NAME, [SERVER_NAME], 'server');
        return certificateDocument({ ...a, key: b.key });
      },
    },
    {
      name: 'an expired certificate',
      code: 'expired',
      make: async () =>
        certificateDocument(
          await issueFrom(trustedCa, {
            commonName: SERVER_NAME,
            dns: [SERVER_NAME],
            notBefore: new Date(Date.now() - 3 * 86_400_000),
            notAfter: new Date(Date.now() - 86_400_000),
          }),
        ),
    },
    {
      name: 'a certificate not valid yet',
      code: 'not-yet-valid',
      make: async () =>
        certificateDocument(
          await issueFrom(trustedCa, {
            commonName: SERVER_NAME,
            dns: [SERVER_NAME],
            notBefore: new Date(Date.now() + 86_400_000),
            notAfter: new Date(Date.now() + 3 * 86_400_000),
          }),
        ),
    },
    {
      name: 'a chain that does not lead to the trust bundle',
      code: 'untrusted-chain',
      make: async () =>
        certificateDocument(await issueFrom(rogueCa, { commonName: SERVER_NAME, dns: [SERVER_NAME] })),
    },
    {
      name: 'SANs that do not cover the route',
      code: 'san-mismatch',
      make: async () =>
        certificateDocument(await issueFrom(trustedCa, { commonName: 'other.test', dns: ['other.test'] })),
    },
    {
      name: 'a weak key (RSA 1024)',
      code: 'weak-key',
      make: async () => {
        const { generateKeyPairSync } = await import('node:crypto');
        const pair = generateKeyPairSync('rsa', { modulusLength: 1024 });
        const issued = await issueCertificate(trustedCa, {
          publicKeyPem: pair.publicKey.export({ type: 'spki', format: 'pem' }) as string,
          commonName: SERVER_NAME,
          dns: [SERVER_NAME],
          usage: 'server',
        });
        return certificateDocument({
          cert: issued.certificatePem,
          chain: issued.chainPem,
          key: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
          serial: issued.serial,
        });
      },
    },
    {
      name: 'a truncated PEM',
      code: 'pem-invalid',
      make: async () => {
        const good = await issueFromAuthority(SERVER_NAME, [SERVER_NAME], 'server');
        return certificateDocument({ ...good, cert: good.cert.slice(0, Math.floor(good.cert.length / 2)) });
      },
    },
    {
      name: 'garbage instead of JSON',
      code: 'json-invalid',
      make: async () => '{"certificatePem": "-----BEGIN',
    },
  ];

  it.each(invalid)(
    'refuses $name ($code) and keeps serving the previous certificate',
    async ({ code, make }) => {
      const before = await client.status(fleetTask);
      const served = await servedSerial();
      const versionId = await put('cert/api', await make(), [Stage.Pending]);
      await expect(client.nudge(fleetTask, { secretId: 'cert/api', versionId })).rejects.toThrow(
        ValidationError,
      );
      const after = await client.status(fleetTask);
      expect(after.certificates.api).toEqual(before.certificates.api);
      expect(after.lastApply).toMatchObject({ ok: false, code });
      expect(await servedSerial()).toBe(served);
      expect(await metrics()).toContain(
        `portcullis_sidecar_applies_total{kind="certificate",result="failed",reason="${code}"}`,
      );
      await dropPending('cert/api');
    },
  );
});

describe('allowlist', () => {
  const invalid: { name: string; code: string; cidrs: string[] }[] = [
    { name: 'an invalid CIDR', code: 'cidr-invalid', cidrs: ['127.0.0.1/32', '10.0.0.300/8'] },
    { name: 'an allow-everyone /0', code: 'cidr-too-broad', cidrs: ['0.0.0.0/0'] },
    {
      name: 'more entries than the fleet allows',
      code: 'too-many-entries',
      cidrs: Array.from({ length: 60 }, (_, i) => `10.0.${i}.0/24`),
    },
  ];

  it.each(invalid)('refuses $name ($code) and keeps enforcing the previous list', async ({ code, cidrs }) => {
    const before = (await client.status(fleetTask)).allowlist;
    const versionId = await put('allowlist', JSON.stringify({ cidrs }), [Stage.Pending]);
    await expect(client.nudge(fleetTask, { secretId: 'allowlist', versionId })).rejects.toThrow(
      ValidationError,
    );
    const after = await client.status(fleetTask);
    expect(after.allowlist).toEqual(before);
    expect(after.lastApply).toMatchObject({ ok: false, code });
    expect((await withClient()).kind).toBe('ok');
    await dropPending('allowlist');
  });

  it('cuts the long-lived session of a removed source, even in a worker a reload left behind, and keeps the others', async () => {
    const open = (localAddress: string) =>
      new Promise<tls.TLSSocket>((resolve, reject) => {
        // tls.connect hands localAddress to net.connect; its option type does not list it.
        const options: tls.ConnectionOptions & { localAddress: string } = {
          host: '127.0.0.1',
          port: tlsPort,
          localAddress,
          servername: SERVER_NAME,
          rejectUnauthorized: false,
          cert: clientCredential.cert,
          key: clientCredential.key,
        };
        const socket = tls.connect(options, () => {
          socket.write('hello\n');
          socket.once('data', () => resolve(socket));
        });
        socket.once('error', reject);
      });
    const kept = await open('127.0.0.1');
    const removed = await open('127.0.0.2');
    const removedClosed = new Promise<void>((resolve) => removed.once('close', () => resolve()));
    let keptClosed = false;
    kept.once('close', () => {
      keptClosed = true;
    });
    kept.on('error', () => {});
    removed.on('error', () => {});

    // A trust update reloads HAProxy: both sessions now live in the previous worker.
    const pidBefore = task.sidecar.status().haproxyPid;
    const trust = await put(
      'trust',
      JSON.stringify({ caBundlePem: (await authority.caCertificates()) + trustedCa.certificatePem }),
    );
    await client.nudge(fleetTask, { secretId: 'trust', versionId: trust });
    expect(task.sidecar.status().haproxyPid).not.toBe(pidBefore);

    const versionId = await put('allowlist', JSON.stringify({ cidrs: ['127.0.0.1/32'], reason: 'drop .2' }));
    const status = await client.nudge(fleetTask, { secretId: 'allowlist', versionId });
    expect(status.allowlist).toEqual({ versionId, size: 1 });
    await removedClosed;
    const echoed = await new Promise<string>((resolve) => {
      kept.once('data', (data: Buffer) => resolve(data.toString()));
      kept.write('still here\n');
    });
    expect(echoed).toBe('still here\n');
    expect(keptClosed).toBe(false);
    expect((await handshake({ ...clientCredential, localAddress: '127.0.0.2' })).kind).toBe('refused');
    kept.destroy();
    expect(await readFile(join(dir, 'gw', 'acl', 'allowlist.acl'), 'utf8')).toBe('127.0.0.1/32\n');
  });
});

describe('nudge authentication', () => {
  it('refuses a nudge signed with another key (401) and one for a secret it does not serve (404)', async () => {
    const stranger = new HttpTaskClient({ nudgeKey: randomBytes(32) });
    await expect(stranger.nudge(fleetTask, { secretId: 'cert/api' })).rejects.toMatchObject({
      name: 'NudgeUnauthorized',
    });
    await expect(client.nudge(fleetTask, { secretId: 'someone-else' })).rejects.toMatchObject({
      name: 'NotFoundError',
    });
    expect(lines.some((line) => line.includes('"nudge refused"') && line.includes('bad-signature'))).toBe(
      true,
    );
  });
});

describe('fleet config change', () => {
  const SECOND = 'second.sidecar.test';

  async function fleetWith(extra: { certificateSecret: string }) {
    const current = JSON.parse((await store.get('fleet')).value) as {
      certificates: unknown[];
      routes: Record<string, unknown>[];
    };
    return JSON.stringify({
      ...current,
      certificates: [
        ...current.certificates,
        {
          name: 'second',
          secretId: extra.certificateSecret,
          commonName: SECOND,
          dns: [SECOND],
          usage: 'server',
        },
      ],
      routes: [
        ...current.routes,
        { ...current.routes[0], serverName: SECOND, certificate: 'second', clientAuth: 'none' },
      ],
    });
  }

  it('refuses a fleet config whose new certificate has no secret, and keeps the routes it had', async () => {
    const versionId = await put('fleet', await fleetWith({ certificateSecret: 'cert/missing' }), [
      Stage.Pending,
    ]);
    await expect(client.nudge(fleetTask, { secretId: 'fleet', versionId })).rejects.toThrow(ValidationError);
    expect((await handshake({ servername: SECOND })).kind).toBe('refused');
    expect(await servedSerial()).toBe((await client.status(fleetTask)).certificates.api?.serial);
    await dropPending('fleet');
  });

  it('adds a terminate route with its certificate by re-rendering and reloading, keeping open connections', async () => {
    const second = await issueFromAuthority(SECOND, [SECOND], 'server');
    await put('cert/second', certificateDocument(second));
    const open = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const socket = tls.connect(
        {
          host: '127.0.0.1',
          port: tlsPort,
          servername: SERVER_NAME,
          rejectUnauthorized: false,
          ...clientCredential,
        },
        () => {
          socket.write('before\n');
          socket.once('data', () => resolve(socket));
        },
      );
      socket.once('error', reject);
    });
    open.on('error', () => {});
    const versionId = await put('fleet', await fleetWith({ certificateSecret: 'cert/second' }));
    const status = await client.nudge(fleetTask, { secretId: 'fleet', versionId });
    expect(status.certificates.second).toMatchObject({ serial: second.serial });
    expect(await handshake({ servername: SECOND })).toMatchObject({ kind: 'ok', serial: second.serial });
    expect(await readFile(join(dir, 'gw', 'certs', 'terminate.crtlist'), 'utf8')).toContain(SECOND);
    const echoed = await new Promise<string>((resolve) => {
      open.once('data', (data: Buffer) => resolve(data.toString()));
      open.write('after\n');
    });
    expect(echoed).toBe('after\n');
    open.destroy();
  });

  it('serves the new secret at once when a fleet config moves a certificate to another secret', async () => {
    const moved = await issueFromAuthority(SECOND, [SECOND], 'server');
    await put('cert/second-moved', certificateDocument(moved));
    const config = JSON.parse((await store.get('fleet')).value) as {
      certificates: { name: string; secretId: string }[];
    };
    for (const certificate of config.certificates)
      if (certificate.name === 'second') certificate.secretId = 'cert/second-moved';
    const versionId = await put('fleet', JSON.stringify(config));
    const status = await client.nudge(fleetTask, { secretId: 'fleet', versionId });
    expect(status.certificates.second).toMatchObject({ secretId: 'cert/second-moved', serial: moved.serial });
    expect(await handshake({ servername: SECOND })).toMatchObject({ kind: 'ok', serial: moved.serial });
  });
});

describe('restarts', () => {
  it('re-applies what HAProxy lost when it is killed and restarted', async () => {
    const applied = (await client.status(fleetTask)).certificates.api?.serial;
    // A stale file, as if a write had been lost: the restarted HAProxy loads it, the sidecar must notice.
    const stale = await issueFromAuthority(SERVER_NAME, [SERVER_NAME], 'server');
    const oldPid = task.sidecar.status().haproxyPid;
    await task.haproxy.stop(0).catch(() => undefined);
    await writeFile(join(dir, 'gw', 'certs', 'api.pem'), stale.cert + stale.key, { mode: 0o600 });
    await task.restartHaproxy();
    await expect.poll(() => task.sidecar.status().haproxyPid, { timeout: 10_000 }).not.toBe(oldPid);
    await task.sidecar.whenReady();
    expect(await servedSerial()).toBe(applied);
    expect((await fetch(`http://127.0.0.1:${healthPort}/healthz`)).status).toBe(200);
    expect(lines.some((line) => line.includes('"reapplied":["certificate:api"]'))).toBe(true);
  });

  it('restarts the sidecar without a gap in service and without re-rendering', async () => {
    const config = join(dir, 'gw', 'haproxy.cfg');
    const before = (await stat(config)).mtimeMs;
    let failures = 0;
    let handshakes = 0;
    let stop = false;
    const loop = (async () => {
      for (let i = 0; i < 500 && !stop; i++) {
        const result = await withClient();
        handshakes++;
        if (result.kind !== 'ok') failures++;
      }
    })();
    await task.restartSidecar();
    await task.sidecar.whenReady();
    stop = true;
    await loop;
    expect(handshakes).toBeGreaterThan(0);
    expect(failures).toBe(0);
    expect((await stat(config)).mtimeMs).toBe(before);
    expect((await client.status(fleetTask)).ready).toBe(true);
  });
});

describe('restart after a trust change', () => {
  it('reloads HAProxy onto a trust bundle that changed while the sidecar was down', async () => {
    const extraCa = await createCertificateAuthority({ commonName: 'Sidecar Test Third CA' });
    const extraClient = await issueFrom(extraCa, {
      commonName: 'third.sidecar.test',
      dns: ['third.sidecar.test'],
      usage: 'client',
    });
    expect((await handshake({ cert: extraClient.cert, key: extraClient.key })).kind).toBe('refused');
    // Made AWSCURRENT without a nudge (the sidecar was restarting): the new sidecar reads it at start.
    await put(
      'trust',
      JSON.stringify({
        caBundlePem: (await authority.caCertificates()) + trustedCa.certificatePem + extraCa.certificatePem,
      }),
    );
    await task.restartSidecar();
    await task.sidecar.whenReady(15_000);
    const result = await handshake({ cert: extraClient.cert, key: extraClient.key });
    expect(result.kind).toBe('ok');
    expect(await servedSerial()).toBe((await client.status(fleetTask)).certificates.api?.serial);
  });
});

describe('metrics', () => {
  it('exposes readiness, applies, certificate expiry, allowlist size and the TLS counters', async () => {
    await handshake(); // no client certificate: refused and counted
    const text = await metrics();
    expect(text).toContain('portcullis_sidecar_ready 1');
    expect(text).toMatch(/portcullis_sidecar_applies_total\{kind="certificate",result="ok",reason=""\} \d+/);
    expect(text).toMatch(/portcullis_certificate_not_after_timestamp_seconds\{certificate="api"\} \d+/);
    expect(text).toContain('portcullis_allowlist_entries 1');
    expect(text).toMatch(new RegExp(`portcullis_tls_handshakes_total\\{route="${SERVER_NAME}"\\} [1-9]`));
    expect(text).toMatch(
      new RegExp(`portcullis_tls_fail_verify_no_cert_total\\{route="${SERVER_NAME}"\\} [1-9]`),
    );
  });
});

describe('logs', () => {
  it('never print key material or secret payloads', async () => {
    expect(lines.length).toBeGreaterThan(10);
    const all = lines.join('\n');
    expect(all).not.toContain('PRIVATE KEY');
    expect(all).not.toContain(nudgeKey.toString('base64'));
    for (const payload of payloads) {
      expect(all).not.toContain(payload);
      for (const block of payload.match(/[A-Za-z0-9+/=]{64,}/g) ?? []) expect(all).not.toContain(block);
    }
    for (const line of lines.filter((l) => l.includes('"component":"sidecar"')))
      expect(() => JSON.parse(line)).not.toThrow();
  });
});
