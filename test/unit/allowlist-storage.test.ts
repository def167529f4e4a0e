import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseFleetConfig } from '../../lib/config/load.ts';
import { FileObjectStore, localAllowlistObjects, objectsRoot } from '../../lib/local/file-object-store.ts';
import { encodePathSegment, FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { Stage } from '../../lib/ports.ts';
import {
  AllowlistLimits,
  AllowlistManifest,
  chooseStorage,
  encodeEntries,
  sha256Hex,
  uploadChange,
  verifyEntries,
} from '../../lib/secrets/allowlist-storage.ts';
import { makeStageAllowlist, makeValidateAllowlist, schemas } from '../../lib/workflows/index.ts';
import type { ControlPlanePorts } from '../../lib/workflows/ports.ts';
import { loadAllowlist } from '../../proxy/sidecar/allowlist-source.ts';

/** `n` distinct IPv4 host entries. */
const hosts = (n: number, first = 0) =>
  Array.from({ length: n }, (_, i) => {
    const k = first + i;
    return `10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}/32`;
  });

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-allowlist-storage-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('AllowlistLimits', () => {
  it('fit the longest canonical CIDR maxEntries times into one object, and a secret value into Secrets Manager', () => {
    const longest = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120';
    expect(encodeEntries(Array(AllowlistLimits.maxEntries).fill(longest)).length).toBeLessThanOrEqual(
      AllowlistLimits.objectMaxBytes,
    );
    expect(AllowlistLimits.secretValueMaxBytes).toBe(65_536);
  });

  it('bound allowlist.maxEntries in the fleet config: a fleet cannot promise more than the store holds', () => {
    const base = {
      fleet: 'edge',
      routes: [{ serverName: 'a.example', allowedDestinations: ['169.254.171.0/24'] }],
    };
    expect(
      parseFleetConfig({ ...base, allowlist: { maxEntries: AllowlistLimits.maxEntries } }).allowlist
        .maxEntries,
    ).toBe(AllowlistLimits.maxEntries);
    expect(() =>
      parseFleetConfig({ ...base, allowlist: { maxEntries: AllowlistLimits.maxEntries + 1 } }),
    ).toThrow(/allowlist\.maxEntries/);
  });
});

describe('chooseStorage', () => {
  it('keeps a list inline while its document fits the secret value (3 500 IPv4 hosts do)', () => {
    expect(chooseStorage({ cidrs: hosts(3500), reason: 'r' }, { objectStore: false }).kind).toBe('inline');
  });

  it('puts a list over 64 KiB into an object, and refuses it naming the secret limit without an object store', () => {
    expect(chooseStorage({ cidrs: hosts(4500), reason: 'r' }, { objectStore: true })).toMatchObject({
      kind: 'object',
      entries: 4500,
    });
    expect(() => chooseStorage({ cidrs: hosts(4500), reason: 'r' }, { objectStore: false })).toThrow(
      expect.objectContaining({
        name: 'AllowlistTooLarge',
        limit: 'Secrets Manager secret value 65536 bytes',
      }),
    );
  });

  it('refuses more entries than the store holds, naming AllowlistLimits.maxEntries', () => {
    expect(() =>
      chooseStorage({ cidrs: hosts(AllowlistLimits.maxEntries + 1), reason: 'r' }, { objectStore: true }),
    ).toThrow(expect.objectContaining({ name: 'AllowlistTooLarge', limit: 'AllowlistLimits.maxEntries' }));
  });
});

describe('verifyEntries', () => {
  const object = { bucket: 'b', key: 'k', versionId: 'v' };
  const body = encodeEntries(['10.0.0.0/8', '2001:db8::/32']);
  it('returns the entries of bytes matching the size, digest and count', () => {
    expect(verifyEntries({ bytes: body.length, sha256: sha256Hex(body), entries: 2, object }, body)).toEqual([
      '10.0.0.0/8',
      '2001:db8::/32',
    ]);
  });
  it.each([
    ['size', { bytes: body.length + 1, sha256: sha256Hex(body), entries: 2 }, /holds \d+ bytes/],
    ['digest', { bytes: body.length, sha256: sha256Hex(Buffer.from('x')), entries: 2 }, /SHA-256/],
    ['count', { sha256: sha256Hex(body), entries: 3 }, /holds 2 entries, the manifest promises 3/],
  ])('refuses bytes whose %s differs with AllowlistDigestMismatch', (_, expected, message) => {
    expect(() => verifyEntries({ ...expected, object }, body)).toThrow(
      expect.objectContaining({ name: 'AllowlistDigestMismatch', message: expect.stringMatching(message) }),
    );
  });
});

describe('FileObjectStore', () => {
  it('keeps every version of a key apart, each readable by its id, in 0600 files', async () => {
    const store = new FileObjectStore(objectsRoot(dir), 'bucket');
    const one = encodeEntries(['10.0.0.0/8']);
    const two = encodeEntries(['192.0.2.0/24']);
    const a = await store.put('allowlists/edge/x', one, { sha256: sha256Hex(one) });
    const b = await store.put('allowlists/edge/x', two, { sha256: sha256Hex(two) });
    expect(a.versionId).not.toBe(b.versionId);
    expect((await store.get(a)).equals(one)).toBe(true);
    expect((await store.get(b)).equals(two)).toBe(true);
    const files = await readdir(join(objectsRoot(dir), 'bucket', 'allowlists%2Fedge%2Fx'));
    expect(files.sort()).toEqual([`${a.versionId}.object`, `${b.versionId}.object`].sort());
    expect(
      (await stat(join(objectsRoot(dir), 'bucket', 'allowlists%2Fedge%2Fx', files[0]!))).mode & 0o777,
    ).toBe(0o600);
  });

  it('refuses a body whose digest differs, an unknown version, and a version over maxBytes', async () => {
    const store = new FileObjectStore(objectsRoot(dir), 'bucket');
    const body = encodeEntries(['10.0.0.0/8']);
    await expect(store.put('k', body, { sha256: sha256Hex(Buffer.from('other')) })).rejects.toMatchObject({
      name: 'AllowlistDigestMismatch',
    });
    await expect(store.get({ key: 'k', versionId: '0'.repeat(32) })).rejects.toMatchObject({
      name: 'NotFoundError',
    });
    await expect(store.get({ key: 'k', versionId: '../../etc/passwd' })).rejects.toMatchObject({
      name: 'NotFoundError',
    });
    const where = await store.put('k', body, { sha256: sha256Hex(body) });
    await expect(store.get(where, { maxBytes: 3 })).rejects.toMatchObject({ name: 'NotFoundError' });
  });
});

describe('ValidateAllowlist and StageAllowlist with an object store', () => {
  const secretId = 'edge/allowlist';
  async function ports(options: {
    objects: boolean;
  }): Promise<ControlPlanePorts & { store: FileSecretStore }> {
    const store = await FileSecretStore.open(join(dir, 'store'));
    const config = {
      fleet: 'edge',
      routes: [{ serverName: 'a.example', allowedDestinations: ['169.254.171.0/24'] }],
      allowlist: { source: { secretId }, maxEntries: 150_000 },
    };
    await store.create('edge/fleet', JSON.stringify(config), { clientRequestToken: randomUUID() });
    await store.create(secretId, JSON.stringify({ cidrs: ['192.0.2.0/24'], reason: 'first' }), {
      clientRequestToken: randomUUID(),
    });
    const unused = new Proxy({}, { get: () => () => Promise.reject(new Error('not used')) });
    return {
      fleetName: 'edge',
      fleetConfigSecretId: 'edge/fleet',
      store,
      authority: unused as never,
      fleet: unused as never,
      taskClient: unused as never,
      notifier: unused as never,
      ...(options.objects ? { allowlistObjects: localAllowlistObjects(join(dir, 'store'), 'edge') } : {}),
    };
  }
  const validate = (p: ControlPlanePorts, input: unknown) =>
    makeValidateAllowlist(p)(schemas.ValidateAllowlistInput.parse({ input, executionName: 'exec-1' }));

  it('refuses a list over the secret value limit before staging when there is no bucket, naming the limit', async () => {
    const p = await ports({ objects: false });
    await expect(validate(p, { set: hosts(4500), reason: 'big' })).rejects.toMatchObject({
      name: 'AllowlistTooLarge',
      limit: 'Secrets Manager secret value 65536 bytes',
    });
    expect((await p.store.describe(secretId)).versions).toHaveLength(1);
  });

  it('stages 100 000 entries as a manifest over a pinned object, once even when the step runs again', async () => {
    const p = await ports({ objects: true });
    const request = { set: hosts(100_000), reason: 'partners', updatedBy: 'test' };
    const state = await validate(p, request);
    expect(state).toMatchObject({ mode: 'stage', size: 100_000, addedCount: 100_000, removedCount: 1 });
    expect(state.added).toHaveLength(20);
    // A state payload stays far below Step Functions' 256 KiB.
    expect(JSON.stringify(state).length).toBeLessThan(4096);
    const input = schemas.StageAllowlistInput.parse({ executionName: 'exec-1', allowlist: state, request });
    const staged = await makeStageAllowlist(p)(input);
    const again = await makeStageAllowlist(p)(input);
    expect(again.versionId).toBe(staged.versionId);
    const pending = await p.store.get(secretId, { stage: Stage.Pending });
    expect(pending.versionId).toBe(staged.versionId);
    expect(Buffer.byteLength(pending.value)).toBeLessThan(1024);
    const manifest = AllowlistManifest.parse(JSON.parse(pending.value));
    expect(manifest).toMatchObject({ manifest: 1, entries: 100_000, reason: 'partners', updatedBy: 'test' });
    expect(manifest.object.key).toBe(`allowlists/edge/lists/${staged.versionId}.cidrs`);
    // The re-run wrote no second object version.
    const keyDir = join(
      objectsRoot(join(dir, 'store')),
      'portcullis-local',
      encodePathSegment(manifest.object.key),
    );
    expect(await readdir(keyDir)).toHaveLength(1);
  });

  it('reads a change too large for an execution input from its uploaded object, digest checked', async () => {
    const p = await ports({ objects: true });
    const change = await uploadChange(
      p.allowlistObjects!.store,
      p.allowlistObjects!.prefix,
      'add',
      hosts(5000),
    );
    expect(await validate(p, { change, reason: 'upload' })).toMatchObject({
      mode: 'stage',
      addedCount: 5000,
      size: 5001,
    });
    await expect(
      validate(p, { change: { ...change, entries: 4999 }, reason: 'upload' }),
    ).rejects.toMatchObject({
      name: 'AllowlistDigestMismatch',
    });
  });
});

describe('the sidecar allowlist fetch (loadAllowlist)', () => {
  const policy = { allowAll0: false, maxEntries: 100 };
  it('applies an inline list as before', async () => {
    expect(await loadAllowlist(JSON.stringify({ cidrs: ['10.1.2.3/8'] }), policy, undefined)).toEqual({
      kind: 'ok',
      value: { cidrs: ['10.0.0.0/8'] },
    });
  });

  it('refuses an object whose count differs from the manifest (digest-mismatch)', async () => {
    const store = new FileObjectStore(objectsRoot(dir), 'b');
    const body = encodeEntries(['10.0.0.0/8']);
    const object = await store.put('k', body, { sha256: sha256Hex(body) });
    const manifest = {
      manifest: 1,
      entries: 2,
      bytes: body.length,
      sha256: sha256Hex(body),
      object,
      reason: '',
    };
    const checked = await loadAllowlist(JSON.stringify(manifest), policy, () => store);
    expect(checked).toMatchObject({ kind: 'invalid', code: 'digest-mismatch' });
    expect(checked.kind === 'invalid' && checked.reason).toMatch(/^AllowlistDigestMismatch: /);
    // A tampered file is refused the same way.
    await writeFile(join(objectsRoot(dir), 'b', 'k', `${object.versionId}.object`), '10.0.0.0/9\n');
    const tampered = await loadAllowlist(JSON.stringify({ ...manifest, entries: 1 }), policy, () => store);
    expect(tampered).toMatchObject({ kind: 'invalid', code: 'digest-mismatch' });
  });

  it('refuses a manifest promising more than allowlist.maxEntries without fetching anything', async () => {
    const manifest = {
      manifest: 1,
      entries: 101,
      bytes: 10,
      sha256: '0'.repeat(64),
      object: { bucket: 'b', key: 'k', versionId: 'v' },
    };
    expect(await loadAllowlist(JSON.stringify(manifest), policy, undefined)).toMatchObject({
      kind: 'invalid',
      code: 'too-many-entries',
    });
  });
});
