/**
 * `/metrics` of a running local task (real sidecar, real HAProxy on loopback), read at every step
 * by the strict exposition reader and by parse-prometheus-text-format: in sync after start, a
 * task held on the old serial by a refused version and back, TLS counters that keep counting
 * across a HAProxy reload, and the EMF lines a task on AWS writes to stdout.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetConfigInput } from '../../lib/config/index.ts';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { type CertificateAuthorityMaterial, createCertificateAuthority } from '../../lib/pki/index.ts';
import { Stage } from '../../lib/ports.ts';
import type { LocalTask } from '../../proxy/sidecar/local-task.ts';
import { checkExposition, type ExpositionFamily, sampleValue } from '../support/exposition.ts';
import { freePort } from '../support/gateway.ts';
import {
  type Credential,
  certificateDocument,
  issueCredential,
  putSecret,
  startTestTask,
  tlsExchange,
} from '../support/sidecar.ts';
import { startTcpUpstream, type Upstream } from '../support/tls.ts';

const SERVER_NAME = 'api.metrics.test';

let dir: string;
let store: FileSecretStore;
let ca: CertificateAuthorityMaterial;
let rogue: CertificateAuthorityMaterial;
let task: LocalTask;
let app: Upstream;
let tlsPort: number;
let client: Credential;
const lines: string[] = [];
/** Every exposition read in this file (each one was parsed by both readers when read). */
const scrapes: string[] = [];

async function scrape(): Promise<Map<string, ExpositionFamily>> {
  const response = await fetch(`${task.sidecar.url}/metrics`);
  expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4');
  const text = await response.text();
  scrapes.push(text);
  return checkExposition(text);
}

const handshake = () =>
  tlsExchange({ port: tlsPort, servername: SERVER_NAME, credential: { cert: client.cert, key: client.key } });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-metrics-'));
  store = await FileSecretStore.open(join(dir, 'store'));
  ca = await createCertificateAuthority({ commonName: 'Metrics Test CA' });
  rogue = await createCertificateAuthority({ commonName: 'Metrics Rogue CA' });
  app = await startTcpUpstream({ mode: 'echo' });
  tlsPort = await freePort();
  const fleet: FleetConfigInput = {
    fleet: 'metrics-test',
    listeners: { bind: ['127.0.0.1'], tls: tlsPort, http: null, health: await freePort(), metrics: null },
    certificates: [
      {
        name: 'api',
        secretId: 'cert/api',
        commonName: SERVER_NAME,
        dns: [SERVER_NAME],
        usage: 'server',
        renewBeforeDays: 0.5,
      },
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
  await putSecret(store, 'fleet', JSON.stringify(fleet));
  await putSecret(store, 'nudge-key', JSON.stringify({ key: randomBytes(32).toString('base64') }));
  await putSecret(store, 'trust', JSON.stringify({ caBundlePem: ca.certificatePem }));
  await putSecret(
    store,
    'cert/api',
    certificateDocument(await issueCredential(ca, { commonName: SERVER_NAME, dns: [SERVER_NAME] })),
  );
  await putSecret(store, 'allowlist', JSON.stringify({ cidrs: ['127.0.0.1/32'], reason: 'test' }));
  client = await issueCredential(ca, {
    commonName: 'metrics-client',
    dns: ['client.metrics.test'],
    usage: 'client',
  });
  task = await startTestTask({
    dir,
    store,
    watchIntervalMs: 100,
    write: (line) => lines.push(line),
    extra: { emf: { namespace: 'Portcullis', dimensions: { Fleet: 'metrics-test' }, intervalMs: 1000 } },
  });
  await task.sidecar.whenReady(20_000);
});

afterAll(async () => {
  await task?.close();
  await app?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('a running task’s /metrics', () => {
  it('shows every object in sync after start, with expiry and renewal times', async () => {
    const families = await scrape();
    expect(sampleValue(families, 'portcullis_sidecar_ready')).toBe(1);
    for (const [object, kind] of [
      ['fleet', 'fleet'],
      ['trust', 'trust'],
      ['certificate:api', 'certificate'],
      ['allowlist', 'allowlist'],
      ['nudgeKey', 'nudgeKey'],
    ]) {
      expect(sampleValue(families, 'portcullis_object_in_sync', { object: object!, kind: kind! })).toBe(1);
    }
    expect(sampleValue(families, 'portcullis_certificate_in_sync', { certificate: 'api' })).toBe(1);
    const notAfter = sampleValue(families, 'portcullis_certificate_not_after_timestamp_seconds', {
      certificate: 'api',
    });
    const renewAt = sampleValue(families, 'portcullis_certificate_renew_at_timestamp_seconds', {
      certificate: 'api',
    });
    // renewBeforeDays 0.5: twelve hours before expiry.
    expect(notAfter! - renewAt!).toBeCloseTo(43_200, 0);
    expect(sampleValue(families, 'portcullis_allowlist_entries')).toBe(1);
  });

  it('shows a task held on the old serial by a refused version, and clears when a good one is current', async () => {
    const served = (await task.sidecar.status()).certificates.api!;
    const bad = await putSecret(
      store,
      'cert/api',
      certificateDocument(await issueCredential(rogue, { commonName: SERVER_NAME, dns: [SERVER_NAME] })),
    );
    await task.sidecar.pollNow();
    let families = await scrape();
    expect(sampleValue(families, 'portcullis_certificate_in_sync', { certificate: 'api' })).toBe(0);
    expect(
      sampleValue(families, 'portcullis_certificate_info', {
        certificate: 'api',
        serial: served.serial,
        served_version: served.versionId,
        desired_version: bad,
      }),
    ).toBe(1);
    expect(
      sampleValue(families, 'portcullis_sidecar_rejected', {
        object: 'certificate:api',
        code: 'untrusted-chain',
      }),
    ).toBe(1);
    expect(
      sampleValue(families, 'portcullis_object_last_apply_ok', {
        object: 'certificate:api',
        kind: 'certificate',
      }),
    ).toBe(0);
    // Still held after another poll: the refused version is not retried, the gauge stays 0.
    await task.sidecar.pollNow();
    expect(sampleValue(await scrape(), 'portcullis_certificate_in_sync', { certificate: 'api' })).toBe(0);

    const good = await issueCredential(ca, { commonName: SERVER_NAME, dns: [SERVER_NAME] });
    await putSecret(store, 'cert/api', certificateDocument(good), [Stage.Current]);
    await task.sidecar.pollNow();
    families = await scrape();
    expect(sampleValue(families, 'portcullis_certificate_in_sync', { certificate: 'api' })).toBe(1);
    expect(families.get('portcullis_sidecar_rejected')?.samples).toEqual([]);
    const result = await handshake();
    expect(result.kind === 'ok' ? result.serial : result).toBe(good.serial);
  });

  it('keeps TLS counters counting across a HAProxy reload', async () => {
    for (let i = 0; i < 3; i++) expect((await handshake()).kind).toBe('ok');
    const route = { route: SERVER_NAME };
    const before = sampleValue(await scrape(), 'portcullis_tls_handshakes_total', route)!;
    expect(before).toBeGreaterThanOrEqual(3);
    const pid = (await task.sidecar.status()).haproxyPid;
    // A new trust bundle is applied by a seamless reload: a new worker with empty stick tables.
    await putSecret(
      store,
      'trust',
      JSON.stringify({ caBundlePem: ca.certificatePem + rogue.certificatePem }),
    );
    await task.sidecar.pollNow();
    const deadline = Date.now() + 10_000;
    while ((await task.sidecar.status()).haproxyPid === pid && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    expect((await task.sidecar.status()).haproxyPid).not.toBe(pid);
    expect(sampleValue(await scrape(), 'portcullis_tls_handshakes_total', route)).toBeGreaterThanOrEqual(
      before,
    );
    expect((await handshake()).kind).toBe('ok');
    expect(sampleValue(await scrape(), 'portcullis_tls_handshakes_total', route)).toBeGreaterThanOrEqual(
      before + 1,
    );
  });

  it('writes CloudWatch EMF records to stdout', async () => {
    const deadline = Date.now() + 5000;
    const emf = () =>
      lines.filter((l) => l.includes('"_aws"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    while (emf().filter((d) => d.Certificate === 'api').length === 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    const records = emf();
    expect(records.find((d) => 'TaskReady' in d)).toMatchObject({
      Fleet: 'metrics-test',
      Host: hostname(),
      TaskReady: 1,
    });
    expect(records.find((d) => d.Certificate === 'api')?.CertificateDaysToExpiry).toBeGreaterThan(0);
    expect(scrapes.length).toBeGreaterThanOrEqual(7);
  });
});
