/**
 * The sidecar on its own (no HAProxy: it renders files and stays `rendered`) across fleet config
 * changes: what a route removal leaves behind must not block later trust changes.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetConfigInput } from '../../lib/config/index.ts';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { type CertificateAuthorityMaterial, createCertificateAuthority } from '../../lib/pki/index.ts';
import { parseSidecarConfig } from '../../proxy/sidecar/config.ts';
import { type RunningSidecar, startSidecar } from '../../proxy/sidecar/main.ts';
import {
  certificateDocument,
  issueCredential,
  putSecret,
  terminateFleetDocument,
  testSidecarConfig,
} from '../support/sidecar.ts';

const A = 'a.fleet-change.test';
const B = 'b.fleet-change.test';

let dir: string;
let store: FileSecretStore;
let oldCa: CertificateAuthorityMaterial;
let newCa: CertificateAuthorityMaterial;
let sidecar: RunningSidecar | undefined;

// Rendered only: no HAProxy starts in this file, so nothing binds the listeners' ports.
function fleet(names: string[]): string {
  return terminateFleetDocument('fleet-change-test', names, { clientAuth: 'none' });
}

/** One certificate `a` from `secretId` serving a terminate route for each of `names`. */
function sharedCertificateFleet(secretId: string, names: string[]): string {
  const config = JSON.parse(fleet([A])) as FleetConfigInput & { routes: unknown[] };
  config.certificates = [{ name: 'a', secretId, commonName: A, dns: names, usage: 'server' }];
  config.routes = names.map((name) => ({
    mode: 'terminate',
    serverName: name,
    certificate: 'a',
    clientAuth: 'none',
    upstream: { kind: 'local', port: 18081 },
  }));
  return JSON.stringify(config);
}

const leafFrom = async (ca: CertificateAuthorityMaterial, name: string) =>
  certificateDocument(await issueCredential(ca, { commonName: name, dns: [name] }));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-scf-'));
  store = await FileSecretStore.open(join(dir, 'store'));
  oldCa = await createCertificateAuthority({ commonName: 'Fleet Change Old CA' });
  newCa = await createCertificateAuthority({ commonName: 'Fleet Change New CA' });
  await putSecret(store, 'fleet', fleet([A, B]));
  await putSecret(store, 'nudge-key', JSON.stringify({ key: randomBytes(32).toString('base64') }));
  await putSecret(
    store,
    'trust',
    JSON.stringify({ caBundlePem: oldCa.certificatePem + newCa.certificatePem }),
  );
  await putSecret(store, `cert/${A}`, await leafFrom(oldCa, A));
  await putSecret(store, `cert/${B}`, await leafFrom(oldCa, B));
  await putSecret(store, 'allowlist', JSON.stringify({ cidrs: ['127.0.0.1/32'] }));
  sidecar = await startSidecar(parseSidecarConfig(testSidecarConfig(dir)), { store, write: () => {} });
  await sidecar.whenRendered();
});

afterAll(async () => {
  await sidecar?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('sidecar fleet config change', () => {
  it('accepts a trust bundle without the old CA once the route and certificate that needed it are gone', async () => {
    // Route B goes, certificate A is rotated onto the new CA: nothing in service needs the old CA.
    await putSecret(store, 'fleet', fleet([A]));
    await putSecret(store, `cert/${A}`, await leafFrom(newCa, A));
    await sidecar!.pollNow();
    expect(Object.keys(sidecar!.status().certificates)).toEqual(['a']);

    const trust = await putSecret(store, 'trust', JSON.stringify({ caBundlePem: newCa.certificatePem }));
    await sidecar!.pollNow();
    const status = sidecar!.status();
    expect(status.lastApply).toMatchObject({ ok: true, object: 'trust' });
    expect(status.trust).toEqual({ versionId: trust });
  });

  it('accepts a route change that moves a certificate to a new secret covering the new names', async () => {
    // The new secret's certificate covers A and C; the one served from the old secret covers A only.
    const C = 'c.fleet-change.test';
    const names = [A, C];
    const key = await issueCredential(newCa, { commonName: A, dns: names });
    await putSecret(store, 'cert/a-v2', certificateDocument(key));
    const version = await putSecret(store, 'fleet', sharedCertificateFleet('cert/a-v2', names));
    await sidecar!.pollNow();
    const status = sidecar!.status();
    expect(status.lastApply).toMatchObject({ ok: true });
    expect(status.fleetConfig).toEqual({ versionId: version });
    expect(status.certificates.a).toMatchObject({ secretId: 'cert/a-v2', serial: key.serial });
  });
});
