/**
 * The staging-label contract every `SecretStore` keeps (`lib/ports.ts`), as one suite run
 * against each implementation: the file store of the embedded mode, the Secrets Manager adapter
 * over the in-memory service, and any fake a test uses instead of them. What the workflows rely
 * on: tokens are version ids and make writes idempotent, `AWSCURRENT` moving labels the old
 * current `AWSPREVIOUS`, a stage sits on at most one version, compare-and-swap moves, and the
 * same named errors for the same refusals.
 */
import { describe, expect, it } from 'vitest';
import type { SecretStore } from '../../lib/ports.ts';

const T = (n: number) => `contract-token-${String(n).padStart(4, '0')}-4000-8000-000000000000`;

async function stagesOf(store: SecretStore, secretId: string): Promise<Record<string, string[]>> {
  const { versions } = await store.describe(secretId);
  return Object.fromEntries(versions.map((v) => [v.versionId, [...v.stages].sort()]));
}

/**
 * Registers the contract's tests for one store. `open` gives a fresh, empty store per test.
 * @example secretStoreContract('FileSecretStore', async () => FileSecretStore.open(await mkdtemp(…)));
 */
export function secretStoreContract(name: string, open: () => Promise<SecretStore>): void {
  describe(`SecretStore contract: ${name}`, () => {
    it('creates a secret whose first version is its token, labelled AWSCURRENT; the same create again is a no-op', async () => {
      const store = await open();
      expect(await store.create('c/a', 'one', { clientRequestToken: T(1) })).toEqual({
        versionId: T(1),
        created: true,
      });
      expect(await store.create('c/a', 'one', { clientRequestToken: T(1) })).toEqual({
        versionId: T(1),
        created: false,
      });
      const got = await store.get('c/a');
      expect(got).toMatchObject({ secretId: 'c/a', versionId: T(1), value: 'one', stages: ['AWSCURRENT'] });
      expect(got.createdAt).toBeInstanceOf(Date);
    });

    it('refuses to create an existing secret with another token or value (ConflictError)', async () => {
      const store = await open();
      await store.create('c/a', 'one', { clientRequestToken: T(1) });
      await expect(store.create('c/a', 'two', { clientRequestToken: T(1) })).rejects.toMatchObject({
        name: 'ConflictError',
      });
      await expect(store.create('c/a', 'one', { clientRequestToken: T(2) })).rejects.toMatchObject({
        name: 'ConflictError',
      });
    });

    it('puts AWSCURRENT by default and labels the version it left AWSPREVIOUS, only one of each', async () => {
      const store = await open();
      await store.create('c/a', 'one', { clientRequestToken: T(1) });
      await store.put('c/a', 'two', { clientRequestToken: T(2) });
      expect(await stagesOf(store, 'c/a')).toEqual({ [T(1)]: ['AWSPREVIOUS'], [T(2)]: ['AWSCURRENT'] });
      await store.put('c/a', 'three', { clientRequestToken: T(3) });
      expect(await stagesOf(store, 'c/a')).toEqual({ [T(2)]: ['AWSPREVIOUS'], [T(3)]: ['AWSCURRENT'] });
      expect((await store.get('c/a', { stage: 'AWSPREVIOUS' })).value).toBe('two');
    });

    it('stages AWSPENDING beside AWSCURRENT and replaces an older pending version', async () => {
      const store = await open();
      await store.create('c/a', 'one', { clientRequestToken: T(1) });
      expect(await store.put('c/a', 'two', { clientRequestToken: T(2), stages: ['AWSPENDING'] })).toEqual({
        versionId: T(2),
        created: true,
      });
      await store.put('c/a', 'three', { clientRequestToken: T(3), stages: ['AWSPENDING'] });
      expect(await stagesOf(store, 'c/a')).toEqual({ [T(1)]: ['AWSCURRENT'], [T(3)]: ['AWSPENDING'] });
      expect((await store.get('c/a')).value).toBe('one');
      expect((await store.get('c/a', { stage: 'AWSPENDING' })).value).toBe('three');
    });

    it('treats a put repeated with its token as done and the token with another value as a ConflictError', async () => {
      const store = await open();
      await store.create('c/a', 'one', { clientRequestToken: T(1) });
      await store.put('c/a', 'two', { clientRequestToken: T(2), stages: ['AWSPENDING'] });
      expect(await store.put('c/a', 'two', { clientRequestToken: T(2), stages: ['AWSPENDING'] })).toEqual({
        versionId: T(2),
        created: false,
      });
      await expect(
        store.put('c/a', 'other', { clientRequestToken: T(2), stages: ['AWSPENDING'] }),
      ).rejects.toMatchObject({ name: 'ConflictError' });
      expect((await store.get('c/a', { versionId: T(2) })).value).toBe('two');
    });

    it('promotes by moving AWSCURRENT onto the pending version, which keeps AWSPENDING until removed', async () => {
      const store = await open();
      await store.create('c/a', 'one', { clientRequestToken: T(1) });
      await store.put('c/a', 'two', { clientRequestToken: T(2), stages: ['AWSPENDING'] });
      await store.moveStage('c/a', 'AWSCURRENT', T(2));
      expect(await stagesOf(store, 'c/a')).toEqual({
        [T(1)]: ['AWSPREVIOUS'],
        [T(2)]: ['AWSCURRENT', 'AWSPENDING'],
      });
      await store.moveStage('c/a', 'AWSPENDING', undefined, { fromVersionId: T(2) });
      expect(await stagesOf(store, 'c/a')).toEqual({ [T(1)]: ['AWSPREVIOUS'], [T(2)]: ['AWSCURRENT'] });
      // Both again: the retry of a step that succeeded.
      await store.moveStage('c/a', 'AWSCURRENT', T(2));
      await store.moveStage('c/a', 'AWSPENDING', undefined, { fromVersionId: T(2) });
      expect(await stagesOf(store, 'c/a')).toEqual({ [T(1)]: ['AWSPREVIOUS'], [T(2)]: ['AWSCURRENT'] });
    });

    it('moves a stage only from the version named in fromVersionId (ConflictError when it moved)', async () => {
      const store = await open();
      await store.create('c/a', 'one', { clientRequestToken: T(1) });
      await store.put('c/a', 'two', { clientRequestToken: T(2), stages: ['AWSPENDING'] });
      await store.put('c/a', 'three', { clientRequestToken: T(3), stages: ['AWSPENDING'] });
      await expect(
        store.moveStage('c/a', 'AWSPENDING', undefined, { fromVersionId: T(2) }),
      ).rejects.toMatchObject({ name: 'ConflictError' });
      expect((await store.get('c/a', { stage: 'AWSPENDING' })).versionId).toBe(T(3));
    });

    it('never removes AWSCURRENT (ValidationError)', async () => {
      const store = await open();
      await store.create('c/a', 'one', { clientRequestToken: T(1) });
      await expect(store.moveStage('c/a', 'AWSCURRENT', undefined)).rejects.toMatchObject({
        name: 'ValidationError',
      });
      expect((await store.get('c/a')).versionId).toBe(T(1));
    });

    it('names a missing secret or stage NotFoundError', async () => {
      const store = await open();
      await expect(store.get('c/none')).rejects.toMatchObject({ name: 'NotFoundError' });
      await expect(store.describe('c/none')).rejects.toMatchObject({ name: 'NotFoundError' });
      await expect(store.put('c/none', 'x', { clientRequestToken: T(1) })).rejects.toMatchObject({
        name: 'NotFoundError',
      });
      await store.create('c/a', 'one', { clientRequestToken: T(1) });
      await expect(store.get('c/a', { stage: 'AWSPENDING' })).rejects.toMatchObject({
        name: 'NotFoundError',
      });
      await expect(store.get('c/a', { versionId: T(9) })).rejects.toMatchObject({ name: 'NotFoundError' });
    });

    it('holds a value of 65 536 bytes and refuses one byte more (ValidationError), leaving the secret as it was', async () => {
      const store = await open();
      const limit = 'x'.repeat(65_536);
      await store.create('c/a', limit, { clientRequestToken: T(1) });
      expect((await store.get('c/a')).value).toHaveLength(65_536);
      await expect(
        store.put('c/a', `${limit}y`, { clientRequestToken: T(2), stages: ['AWSPENDING'] }),
      ).rejects.toMatchObject({ name: 'ValidationError' });
      // Bytes, not characters: 21 846 three-byte characters are 65 538 bytes.
      await expect(
        store.put('c/a', '€'.repeat(21_846), { clientRequestToken: T(3), stages: ['AWSPENDING'] }),
      ).rejects.toMatchObject({ name: 'ValidationError' });
      expect(await stagesOf(store, 'c/a')).toEqual({ [T(1)]: ['AWSCURRENT'] });
    });
  });
}
