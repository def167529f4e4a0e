/**
 * The sidecar's effect modules against a fake runtime API (`test/support/fake-runtime.ts`) and
 * a FileSecretStore: what a start writes, which runtime calls a verification, a certificate, a
 * trust bundle and a fleet change make while HAProxy is live or not, how the reducer's gateway
 * flags drive reloads, and that a fleet change whose snapshot is inconsistent changes nothing.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { type CertificateAuthorityMaterial, createCertificateAuthority } from '../../lib/pki/index.ts';
import { applyObject, runEffects } from '../../proxy/sidecar/apply-object.ts';
import { parseSidecarConfig } from '../../proxy/sidecar/config.ts';
import type { SidecarContext } from '../../proxy/sidecar/context.ts';
import { ApplyFailed } from '../../proxy/sidecar/errors.ts';
import { verifyHaproxy } from '../../proxy/sidecar/haproxy-sync.ts';
import { startSidecar } from '../../proxy/sidecar/main.ts';
import { tryStart } from '../../proxy/sidecar/start.ts';
import { FakeRuntime } from '../support/fake-runtime.ts';
import {
  certificateDocument,
  issueCredential,
  putSecret,
  terminateFleetDocument,
  testSidecarConfig,
  testSidecarContext,
} from '../support/sidecar.ts';

// Client certificates verified against the trust bundle: HAProxy loads it (`ca-file`).
const A = 'a.effects.test';
const B = 'b.effects.test';
let ca: CertificateAuthorityMaterial;
let otherCa: CertificateAuthorityMaterial;
let dir: string;
let store: FileSecretStore;
let fake: FakeRuntime;
let ctx: SidecarContext;
let lines: string[];

function fleet(names: string[], options: { allowlist?: boolean; trust?: string } = {}): string {
  return terminateFleetDocument('effects-test', names, options);
}

const leaf = async (name: string, from = ca) =>
  certificateDocument(await issueCredential(from, { commonName: name, dns: [name] }));
const serialOf = (doc: string) => (JSON.parse(doc) as { serial: string }).serial;

function context(): SidecarContext {
  return testSidecarContext({ dir, store, runtime: fake, lines });
}

/** Starts from the store (files only) and verifies the fake HAProxy: phase ready. */
async function ready(): Promise<void> {
  await tryStart(ctx, 0);
  expect(ctx.state.phase).toBe('rendered');
  // What the watch does when `show info` answers.
  await runEffects(ctx, ctx.dispatch({ type: 'haproxyUp', pid: fake.pid }));
  expect(ctx.state.phase).toBe('ready');
  fake.calls.length = 0;
}

beforeAll(async () => {
  ca = await createCertificateAuthority({ commonName: 'Effects CA' });
  otherCa = await createCertificateAuthority({ commonName: 'Effects Other CA' });
});

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-sce-'));
  store = await FileSecretStore.open(join(dir, 'store'));
  await putSecret(store, 'fleet', fleet([A]));
  await putSecret(store, 'nudge-key', JSON.stringify({ key: randomBytes(32).toString('base64') }));
  await putSecret(store, 'trust', JSON.stringify({ caBundlePem: ca.certificatePem }));
  await putSecret(store, `cert/${A}`, await leaf(A));
  await putSecret(store, 'allowlist', JSON.stringify({ cidrs: ['10.0.0.0/8'] }));
  fake = new FakeRuntime();
  lines = [];
  ctx = context();
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('start and verification', () => {
  it('renders the files without a runtime call, then reconciles and sets the ready flag', async () => {
    await tryStart(ctx, 0);
    expect(ctx.state.phase).toBe('rendered');
    expect(fake.calls).toEqual([]);
    expect(await readFile(ctx.layout.config, 'utf8')).toContain(A);
    expect(ctx.state.gateway).toMatchObject({ reloadPending: false, renderedCrl: false });

    expect(ctx.dispatch({ type: 'haproxyUp', pid: fake.pid })).toEqual([{ type: 'verifyHaproxy', pid: 100 }]);
    expect(ctx.state.gateway.haproxySeen).toBe(true);
    await verifyHaproxy(ctx, fake.pid);
    expect(fake.names()).toEqual(['showSslCert', 'showAclEntries', 'replaceAcl', 'execute', 'setMap']);
    expect(fake.maps.get(ctx.layout.stateMap)?.get('ready')).toBe('1');
    expect(fake.acls.get(ctx.layout.allowlist)).toEqual(['10.0.0.0/8']);
    expect(ctx.state).toMatchObject({ phase: 'ready', haproxyPid: 100 });
  });

  it('reloads first when it wrote files a HAProxy seen before may not have loaded', async () => {
    ctx.dispatch({ type: 'started', previouslyRendered: true });
    await tryStart(ctx, 0);
    expect(ctx.state.gateway.reloadPending).toBe(true);
    await verifyHaproxy(ctx, fake.pid);
    expect(fake.names().slice(0, 4)).toEqual(['showProc', 'reload', 'waitForReload', 'showInfo']);
    expect(ctx.state).toMatchObject({ phase: 'ready', haproxyPid: 101, gateway: { reloadPending: false } });
  });

  it('stays rendered, reports nothing ready, when the runtime does not answer', async () => {
    await tryStart(ctx, 0);
    fake.down = new Error('connect ENOENT');
    await verifyHaproxy(ctx, fake.pid);
    expect(ctx.state.phase).toBe('rendered');
    expect(lines.some((l) => l.includes('haproxy reconciliation failed'))).toBe(true);
  });
});

describe('certificates', () => {
  it('replaces a certificate through the runtime API while HAProxy is live', async () => {
    await ready();
    const next = await leaf(A);
    const versionId = await putSecret(store, `cert/${A}`, next);
    expect(await applyObject(ctx, 'certificate:a', versionId, 'current', versionId)).toBeUndefined();
    expect(fake.names()).toEqual(['updateCertificate']);
    expect(fake.calls[0]?.args).toEqual([join(dir, 'gw', 'certs', 'a.pem')]);
    expect(ctx.state.objects['certificate:a']?.applied).toMatchObject({
      versionId,
      facts: { serial: serialOf(next) },
    });
  });

  it('puts the previous file back and records a failure when HAProxy serves another serial', async () => {
    await ready();
    const path = join(dir, 'gw', 'certs', 'a.pem');
    const before = await readFile(path, 'utf8');
    const versionId = await putSecret(store, `cert/${A}`, await leaf(A));
    fake.servedSerialOverride = 'ABCDEF';
    const error = await applyObject(ctx, 'certificate:a', versionId, 'current', versionId);
    expect(error).toBeInstanceOf(ApplyFailed);
    expect(await readFile(path, 'utf8')).toBe(before);
    expect(ctx.state.lastApply).toMatchObject({ ok: false, code: 'apply-failed', key: 'certificate:a' });
    expect(ctx.state.objects['certificate:a']?.applied?.versionId).not.toBe(versionId);
  });

  it('writes the file only while HAProxy is not confirmed serving', async () => {
    await tryStart(ctx, 0);
    const next = await leaf(A);
    const versionId = await putSecret(store, `cert/${A}`, next);
    expect(await applyObject(ctx, 'certificate:a', versionId, 'current', versionId)).toBeUndefined();
    expect(fake.calls).toEqual([]);
    expect(await readFile(join(dir, 'gw', 'certs', 'a.pem'), 'utf8')).toContain(
      (JSON.parse(next) as { certificatePem: string }).certificatePem.trim().split('\n')[1],
    );
  });

  it('refuses a leaf from another CA without touching HAProxy', async () => {
    await ready();
    const versionId = await putSecret(store, `cert/${A}`, await leaf(A, otherCa));
    const error = await applyObject(ctx, 'certificate:a', versionId, 'current', versionId);
    expect(error?.name).toBe('ContentRejected');
    expect(fake.calls).toEqual([]);
    expect(ctx.state.objects['certificate:a']?.rejected).toMatchObject({
      versionId,
      code: 'untrusted-chain',
    });
  });
});

describe('trust bundle', () => {
  it('writes the bundle and reloads seamlessly while live, then verifies the new worker', async () => {
    await ready();
    const versionId = await putSecret(
      store,
      'trust',
      JSON.stringify({ caBundlePem: ca.certificatePem + otherCa.certificatePem }),
    );
    fake.caCount = 2;
    expect(await applyObject(ctx, 'trust', versionId, 'current', versionId)).toBeUndefined();
    expect(fake.names().slice(0, 3)).toEqual(['showProc', 'reload', 'waitForReload']);
    expect(fake.names()).toContain('setMap');
    expect(await readFile(join(dir, 'gw', 'certs', 'trust.pem'), 'utf8')).toContain(
      otherCa.certificatePem.trim(),
    );
    expect(ctx.state).toMatchObject({ phase: 'ready', haproxyPid: 101 });
  });

  it('notes a pending reload instead when HAProxy does not answer', async () => {
    await ready();
    ctx.dispatch({ type: 'haproxyDown' });
    const versionId = await putSecret(
      store,
      'trust',
      JSON.stringify({ caBundlePem: ca.certificatePem + otherCa.certificatePem }),
    );
    expect(await applyObject(ctx, 'trust', versionId, 'current', versionId)).toBeUndefined();
    expect(fake.calls).toEqual([]);
    expect(ctx.state.gateway.reloadPending).toBe(true);
  });
});

describe('fleet config changes', () => {
  it('changes nothing when a secret the new config references is missing', async () => {
    await ready();
    const before = await readFile(ctx.layout.config, 'utf8');
    const objects = Object.keys(ctx.state.objects);
    const served = ctx.state.objects.fleet?.applied?.versionId;
    const versionId = await putSecret(store, 'fleet', fleet([A, B]));
    const error = await applyObject(ctx, 'fleet', versionId, 'current', versionId);
    expect(error?.name).toBe('ContentRejected');
    expect(error?.message).toContain(`certificate:b: cert/${B} does not exist`);
    expect(ctx.state.objects.fleet).toMatchObject({
      applied: { versionId: served },
      rejected: { versionId, code: 'missing' },
    });
    expect(Object.keys(ctx.state.objects)).toEqual(objects);
    expect(await readFile(ctx.layout.config, 'utf8')).toBe(before);
    expect(fake.calls).toEqual([]);
  });

  it('installs none of the objects it adds when one of them does not validate', async () => {
    await ready();
    const trustFile = join(dir, 'gw', 'certs', 'trust.pem');
    const trustBefore = await readFile(trustFile, 'utf8');
    // A valid bundle from another secret, and a leaf that does not chain to it.
    await putSecret(
      store,
      'trust-2',
      JSON.stringify({ caBundlePem: ca.certificatePem + otherCa.certificatePem }),
    );
    const stranger = await createCertificateAuthority({ commonName: 'Effects Stranger CA' });
    await putSecret(store, `cert/${B}`, await leaf(B, stranger));
    const versionId = await putSecret(store, 'fleet', fleet([A, B], { trust: 'trust-2' }));
    const error = await applyObject(ctx, 'fleet', versionId, 'current', versionId);
    expect(error?.name).toBe('ContentRejected');
    expect(ctx.state.objects.fleet?.rejected).toMatchObject({ versionId, code: 'untrusted-chain' });
    expect(await readFile(trustFile, 'utf8')).toBe(trustBefore);
    expect(ctx.material.trust?.caCount).toBe(1);
    expect(ctx.state.objects.trust?.ref.secretId).toBe('trust');
    expect(fake.calls).toEqual([]);
  });

  it('keeps what it knows of objects the refused config would have dropped', async () => {
    await ready();
    const allowlist = ctx.state.objects.allowlist?.applied;
    const versionId = await putSecret(store, 'fleet', fleet([A, B], { allowlist: false }));
    expect((await applyObject(ctx, 'fleet', versionId, 'current', versionId))?.name).toBe('ContentRejected');
    expect(ctx.state.objects.allowlist?.applied).toEqual(allowlist);
    expect(allowlist).toBeDefined();
  });

  it('stages the objects a new config adds as files and loads them with one reload', async () => {
    await ready();
    const b = await leaf(B);
    const certVersion = await putSecret(store, `cert/${B}`, b);
    const versionId = await putSecret(store, 'fleet', fleet([A, B]));
    expect(await applyObject(ctx, 'fleet', versionId, 'current', versionId)).toBeUndefined();
    const names = fake.names();
    expect(names).not.toContain('updateCertificate');
    expect(names.filter((n) => n === 'reload')).toHaveLength(1);
    expect(await readFile(ctx.layout.config, 'utf8')).toContain(B);
    expect(ctx.state.gateway.filesOnly).toBe(false);
    expect(ctx.state.objects['certificate:b']?.applied).toMatchObject({
      versionId: certVersion,
      facts: { serial: serialOf(b) },
    });
    expect(ctx.state).toMatchObject({ phase: 'ready', haproxyPid: 101 });
  });
});

describe('startSidecar with an injected runtime', () => {
  it('becomes ready without HAProxy, and verifies again when the worker pid changes', async () => {
    const sidecar = await startSidecar(parseSidecarConfig(testSidecarConfig(dir, { watchIntervalMs: 20 })), {
      store,
      write: (line) => lines.push(line),
      runtime: fake.port(),
    });
    try {
      await sidecar.whenReady(5000);
      expect(sidecar.status()).toMatchObject({ ready: true, haproxyPid: 100 });
      fake.pid = 200;
      await expect.poll(() => sidecar.status().haproxyPid, { timeout: 5000 }).toBe(200);
      expect(fake.names()).toContain('setMap');
    } finally {
      await sidecar.close();
    }
  });
});
