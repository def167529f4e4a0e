/**
 * The sidecar's admin API without HAProxy: a blocked start (status, healthz, metric, retry with
 * backoff until the secret appears) and the nudge's authentication (signature, window, replay).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { createCertificateAuthority, generateKey, issueCertificate } from '../../lib/pki/index.ts';
import { NudgeHeaders, signNudge } from '../../lib/secrets/index.ts';
import { parseSidecarConfig } from '../../proxy/sidecar/config.ts';
import { type RunningSidecar, startSidecar } from '../../proxy/sidecar/main.ts';
import { testSidecarConfig } from '../support/sidecar.ts';

let dir: string;
let store: FileSecretStore;
let sidecar: RunningSidecar;
const key = randomBytes(32);
const token = () => `${randomUUID()}-${randomBytes(4).toString('hex')}`;

function post(body: string, options: { timestamp?: number; signature?: string; signWith?: Buffer } = {}) {
  const timestamp = options.timestamp ?? Date.now();
  return fetch(`${sidecar.url}/v1/nudge`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      [NudgeHeaders.timestamp]: String(timestamp),
      [NudgeHeaders.signature]: options.signature ?? signNudge(options.signWith ?? key, timestamp, body),
    },
    body,
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-scn-'));
  store = await FileSecretStore.open(join(dir, 'store'));
  await store.create('nudge-key', JSON.stringify({ key: key.toString('base64') }), {
    clientRequestToken: token(),
  });
  await writeFile(
    join(dir, 'fleet.yaml'),
    [
      'fleet: nudge-test',
      'listeners: { bind: [127.0.0.1], tls: 18443, http: null, health: 18081, metrics: null }',
      'certificates: [{ name: api, secretId: cert/api, commonName: api.nudge.test, dns: [api.nudge.test], usage: server }]',
      'trust: { secretId: trust }',
      'nudgeKey: { secretId: nudge-key }',
      'routes:',
      '  - { mode: terminate, serverName: api.nudge.test, certificate: api, upstream: { kind: local, port: 8080 } }',
      '',
    ].join('\n'),
  );
  sidecar = await startSidecar(
    parseSidecarConfig(
      testSidecarConfig(dir, {
        fleetConfig: { file: join(dir, 'fleet.yaml') },
        retry: { initialMs: 20, maxMs: 100 },
      }),
    ),
    { store, write: () => {} },
  );
});

afterAll(async () => {
  await sidecar?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('sidecar start', () => {
  it('stays unrendered while a secret is missing, says why, and starts once it appears', async () => {
    await expect
      .poll(() => (sidecar.status().startError as { code?: string } | undefined)?.code)
      .toBe('missing');
    expect((await fetch(`${sidecar.url}/healthz`)).status).toBe(503);
    expect(await (await fetch(`${sidecar.url}/metrics`)).text()).toContain(
      'portcullis_sidecar_start_error{code="missing"} 1',
    );
    await expect(stat(join(dir, 'gw', 'haproxy.cfg'))).rejects.toThrow();

    // A fleet's first certificate: the control plane's placeholder is AWSCURRENT.
    const ca = await createCertificateAuthority({ commonName: 'Nudge Test CA' });
    await store.create('trust', JSON.stringify({ caBundlePem: ca.certificatePem }), {
      clientRequestToken: token(),
    });
    await store.create('cert/api', JSON.stringify({ kind: 'portcullis/placeholder' }), {
      clientRequestToken: token(),
    });
    await expect
      .poll(() => (sidecar.status().startError as { message?: string } | undefined)?.message)
      .toContain('placeholder');
    expect((await fetch(`${sidecar.url}/healthz`)).status).toBe(503);

    // Its first issue is staged as AWSPENDING and nudged by name: that unblocks the start.
    const leafKey = await generateKey();
    const leaf = await issueCertificate(ca, {
      publicKeyPem: leafKey.publicKeyPem,
      commonName: 'api.nudge.test',
      dns: ['api.nudge.test'],
      usage: 'server',
    });
    const { versionId } = await store.put(
      'cert/api',
      JSON.stringify({
        certificatePem: leaf.certificatePem,
        chainPem: '',
        privateKeyPem: leafKey.privateKeyPem,
        serial: leaf.serial,
        notAfter: new Date(Date.now() + 86_400_000).toISOString(),
      }),
      { clientRequestToken: token(), stages: ['AWSPENDING'] },
    );
    const response = await post(JSON.stringify({ secretId: 'cert/api', versionId }));
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({
      phase: 'rendered',
      certificates: { api: { versionId, serial: leaf.serial } },
    });
    expect((await fetch(`${sidecar.url}/healthz`)).status).toBe(200);
    expect(await readFile(join(dir, 'gw', 'haproxy.cfg'), 'utf8')).toContain('fe_terminate');
    expect((await stat(join(dir, 'gw', 'certs', 'api.pem'))).mode & 0o777).toBe(0o600);
    expect(sidecar.status()).toMatchObject({ ready: false, phase: 'rendered' });
  });
});

describe('nudge authentication', () => {
  const body = JSON.stringify({ secretId: 'cert/api' });

  it('refuses a signature made with another key', async () => {
    const response = await post(body, { signWith: randomBytes(32) });
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({
      error: { name: 'NudgeUnauthorized', message: expect.stringContaining('bad-signature') },
    });
  });

  it('refuses a nudge outside the time window', async () => {
    const response = await post(body, { timestamp: Date.now() - 5 * 60_000 });
    expect(response.status).toBe(401);
    expect(((await response.json()) as { error: { message: string } }).error.message).toContain('stale');
  });

  it('refuses a replayed nudge', async () => {
    const timestamp = Date.now();
    const signature = signNudge(key, timestamp, body);
    expect((await post(body, { timestamp, signature })).status).not.toBe(401);
    const replay = await post(body, { timestamp, signature });
    expect(replay.status).toBe(401);
    expect(((await replay.json()) as { error: { message: string } }).error.message).toContain('replayed');
  });

  it('refuses a malformed signature header and an oversized body', async () => {
    expect((await post(body, { signature: 'zz' })).status).toBe(401);
    expect((await post(JSON.stringify({ secretId: 'x'.repeat(20_000) }))).status).toBe(413);
  });

  it('answers 404 for a secret it does not serve, and 422 when AWSCURRENT is refused, still serving the nudged version', async () => {
    expect((await post(JSON.stringify({ secretId: 'not-mine' }))).status).toBe(404);
    const served = sidecar.status().certificates.api;
    const response = await post(body);
    expect(response.status).toBe(422);
    expect(await response.json()).toMatchObject({
      error: { name: 'ContentRejected', message: expect.stringContaining('placeholder') },
    });
    expect(sidecar.status().certificates.api).toEqual(served);
  });
});

describe('sidecar restart with the store unavailable', () => {
  it('stays healthy on files it rendered before, while status says it is not ready and why', async () => {
    const restartDir = await mkdtemp(join(tmpdir(), 'portcullis-scr-'));
    try {
      const emptyStore = await FileSecretStore.open(join(restartDir, 'store'));
      await mkdir(join(restartDir, 'gw'), { recursive: true });
      await writeFile(join(restartDir, 'gw', 'haproxy.cfg'), '# rendered by an earlier sidecar\n');
      const restarted = await startSidecar(
        parseSidecarConfig(testSidecarConfig(restartDir, { retry: { initialMs: 20, maxMs: 100 } })),
        { store: emptyStore, write: () => {} },
      );
      try {
        await expect
          .poll(() => (restarted.status().startError as { code?: string } | undefined)?.code)
          .toBe('missing');
        expect((await fetch(`${restarted.url}/healthz`)).status).toBe(200);
        expect(restarted.status()).toMatchObject({ ready: false, phase: 'starting' });
        expect(await readFile(join(restartDir, 'gw', 'haproxy.cfg'), 'utf8')).toBe(
          '# rendered by an earlier sidecar\n',
        );
      } finally {
        await restarted.close();
      }
    } finally {
      await rm(restartDir, { recursive: true, force: true });
    }
  });
});
