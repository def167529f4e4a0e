import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConflictError, NotFoundError, PortcullisError, ValidationError } from '../../lib/errors.ts';
import {
  applyMoveStage,
  applyPut,
  encodePathSegment,
  FileSecretStore,
  pruneVersions,
  type SecretIndex,
} from '../../lib/local/file-secret-store.ts';

const CUR = 'AWSCURRENT';
const PEND = 'AWSPENDING';
const PREV = 'AWSPREVIOUS';
const SECRET = 'portcullis/demo/cert/api.example.test';

/** A 36-character token (UUID-shaped) whose last characters name it, for readable tests. */
function token(name: string): string {
  return `00000000-0000-4000-8000-${name.padStart(12, '0')}`;
}

function index(layout: Record<string, string[]>): SecretIndex {
  return {
    format: 1,
    secretId: 's',
    createdAt: '2026-01-01T00:00:00.000Z',
    changeCounter: 0,
    versions: Object.entries(layout).map(([versionId, stages]) => ({
      versionId,
      stages,
      createdAt: '2026-01-01T00:00:00.000Z',
      sha256: '0'.repeat(64),
    })),
  };
}

function layout(i: SecretIndex): Record<string, string[]> {
  return Object.fromEntries(i.versions.map((v) => [v.versionId, [...v.stages].sort()]));
}

function newVersion(versionId: string) {
  return { versionId, createdAt: '2026-01-02T00:00:00.000Z', sha256: '1'.repeat(64) };
}

function checkInvariants(versions: { versionId: string; stages: string[] }[]): void {
  const ids = versions.map((v) => v.versionId);
  expect(new Set(ids).size).toBe(ids.length);
  const seen = new Map<string, string>();
  for (const v of versions) {
    expect(new Set(v.stages).size).toBe(v.stages.length);
    for (const stage of v.stages) {
      expect(seen.get(stage), `stage ${stage} on two versions`).toBeUndefined();
      seen.set(stage, v.versionId);
    }
  }
  expect(seen.has(CUR)).toBe(true);
}

describe('staging rules', () => {
  it.each([
    [
      'a default put moves AWSCURRENT and labels the old current AWSPREVIOUS',
      { a: [CUR] },
      [CUR],
      { a: [PREV], n: [CUR] },
    ],
    [
      'a pending put takes AWSPENDING from its holder',
      { a: [CUR], b: [PEND] },
      [PEND],
      { a: [CUR], b: [], n: [PEND] },
    ],
    [
      'AWSPREVIOUS leaves the version that had it',
      { a: [CUR], b: [PREV] },
      [CUR],
      { a: [PREV], b: [], n: [CUR] },
    ],
    ['the first version always gets AWSCURRENT', {}, ['blue'], { n: ['blue', CUR].sort() }],
    ['an explicit AWSPREVIOUS is honoured', { a: [CUR] }, [CUR, PREV], { a: [], n: [CUR, PREV] }],
    [
      'custom stages move with the put',
      { a: [CUR, 'blue'] },
      [CUR, 'blue'],
      { a: [PREV], n: ['blue', CUR].sort() },
    ],
  ])('put: %s', (_name, before, stages, after) => {
    expect(layout(applyPut(index(before), newVersion('n'), stages))).toEqual(after);
  });

  it.each([
    [
      'promoting AWSPENDING’s version labels the old current AWSPREVIOUS',
      { a: [CUR], b: [PEND] },
      CUR,
      'b',
      undefined,
      { a: [PREV], b: [CUR, PEND] },
    ],
    [
      'a stage moves from wherever it is',
      { a: [CUR], b: [PEND] },
      PEND,
      'a',
      undefined,
      { a: [CUR, PEND], b: [] },
    ],
    [
      'a stage is removed when no target is given',
      { a: [CUR], b: [PEND] },
      PEND,
      undefined,
      undefined,
      { a: [CUR], b: [] },
    ],
    [
      'rolling back swaps AWSCURRENT and AWSPREVIOUS',
      { a: [PREV], b: [CUR] },
      CUR,
      'a',
      'b',
      { a: [CUR], b: [PREV] },
    ],
    [
      'a compare-and-swap on the right holder succeeds',
      { a: [CUR], b: [] },
      'blue',
      'b',
      undefined,
      { a: [CUR], b: ['blue'] },
    ],
  ])('moveStage: %s', (_name, before, stage, to, from, after) => {
    expect(layout(applyMoveStage(index(before), stage, to, from))).toEqual(after);
  });

  it('treats already-done moves and removals as no-ops returning the same index', () => {
    const before = index({ a: [CUR], b: [PEND] });

    expect(applyMoveStage(before, CUR, 'a')).toBe(before);
    expect(applyMoveStage(before, CUR, 'a', 'x')).toBe(before);
    expect(applyMoveStage(before, 'blue', undefined)).toBe(before);
    expect(applyMoveStage(before, 'blue', undefined, 'b')).toBe(before);
  });

  it('refuses to remove AWSCURRENT, to move onto an unknown version, and a stale fromVersionId', () => {
    const before = index({ a: [CUR], b: [PEND], c: [] });

    expect(() => applyMoveStage(before, CUR, undefined)).toThrow(ValidationError);
    expect(() => applyMoveStage(before, PEND, 'zzz')).toThrow(NotFoundError);
    expect(() => applyMoveStage(before, PEND, 'c', 'a')).toThrow(ConflictError);
    expect(() => applyMoveStage(before, PEND, undefined, 'a')).toThrow(ConflictError);
  });

  it('prunes only unlabelled versions, oldest first', () => {
    const before = index({ old1: [], a: [PREV], old2: [], b: [CUR], old3: [] });

    const { index: after, removed } = pruneVersions(before, 3);

    expect(removed).toEqual(['old1', 'old2']);
    expect(after.versions.map((v) => v.versionId)).toEqual(['a', 'b', 'old3']);
    expect(pruneVersions(index({ a: [CUR], b: [PREV] }), 1).removed).toEqual([]);
  });

  it('keeps every stage on at most one version and AWSCURRENT present, whatever the operations', () => {
    const stageArb = fc.constantFrom(CUR, PEND, PREV, 'blue', 'green');
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('put' as const),
        stages: fc.uniqueArray(stageArb, { minLength: 1, maxLength: 3 }),
      }),
      fc.record({
        kind: fc.constant('move' as const),
        stage: stageArb,
        to: fc.option(fc.nat(12), { nil: undefined }),
        from: fc.option(fc.nat(12), { nil: undefined }),
      }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        let state = applyPut(index({}), newVersion('v0'), [CUR]);
        let next = 1;
        for (const o of ops) {
          try {
            if (o.kind === 'put') {
              state = applyPut(state, newVersion(`v${next++}`), o.stages);
            } else {
              const id = (n: number | undefined) => (n === undefined ? undefined : `v${n}`);
              state = applyMoveStage(state, o.stage, id(o.to), id(o.from));
            }
          } catch (error) {
            expect(error).toBeInstanceOf(PortcullisError);
          }
          checkInvariants(state.versions);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('encodePathSegment', () => {
  it('gives distinct, safe names for names, ARNs, dots and lookalikes', () => {
    const ids = [
      'a/b',
      'a%2Fb',
      'a_2Fb',
      '..',
      '.hidden',
      'arn:aws:secretsmanager:eu-west-1:123456789012:secret:portcullis/x-AbCdEf',
    ];
    const names = ids.map(encodePathSegment);

    expect(new Set(names).size).toBe(ids.length);
    for (const name of names) {
      expect(name).toMatch(/^[A-Za-z0-9_%~-]+$/);
      expect(Buffer.byteLength(name)).toBeLessThanOrEqual(255);
    }
  });

  it('shortens long names with a digest so they fit a file name', () => {
    const a = encodePathSegment(`${'x/'.repeat(300)}a`);
    const b = encodePathSegment(`${'x/'.repeat(300)}b`);

    expect(a).not.toBe(b);
    expect(a.length).toBeLessThanOrEqual(255);
  });
});

describe('FileSecretStore', () => {
  const dirs: string[] = [];
  let store: FileSecretStore;

  async function freshStore(options?: Parameters<typeof FileSecretStore.open>[1]): Promise<FileSecretStore> {
    const dir = await mkdtemp(join(tmpdir(), 'portcullis-fss-'));
    dirs.push(dir);
    return FileSecretStore.open(dir, options);
  }

  function secretDir(s: FileSecretStore, secretId = SECRET): string {
    return join(s.root, 'secrets', encodePathSegment(secretId));
  }

  beforeEach(async () => {
    store = await freshStore();
  });
  afterEach(async () => {
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  });

  describe('create and get', () => {
    it('creates a secret whose first version is AWSCURRENT', async () => {
      const result = await store.create(SECRET, 'v1', { clientRequestToken: token('1'), description: 'api' });
      const got = await store.get(SECRET);

      expect(result).toEqual({ versionId: token('1'), created: true });
      expect(got).toMatchObject({ secretId: SECRET, versionId: token('1'), stages: [CUR], value: 'v1' });
      expect(got.createdAt).toBeInstanceOf(Date);
      expect(await store.listSecrets()).toEqual([
        expect.objectContaining({
          secretId: SECRET,
          description: 'api',
          currentVersionId: token('1'),
          versionCount: 1,
        }),
      ]);
    });

    it('treats a repeated create with the same token and value as a no-op, and anything else as a conflict', async () => {
      await store.create(SECRET, 'v1', { clientRequestToken: token('1') });

      expect(await store.create(SECRET, 'v1', { clientRequestToken: token('1') })).toEqual({
        versionId: token('1'),
        created: false,
      });
      await expect(store.create(SECRET, 'v2', { clientRequestToken: token('1') })).rejects.toBeInstanceOf(
        ConflictError,
      );
      await expect(store.create(SECRET, 'v1', { clientRequestToken: token('2') })).rejects.toBeInstanceOf(
        ConflictError,
      );
    });

    it('reads by stage, by version id, and by both, and reports what is missing as NotFoundError', async () => {
      await store.create(SECRET, 'v1', { clientRequestToken: token('1') });
      await store.put(SECRET, 'v2', { clientRequestToken: token('2'), stages: [PEND] });

      expect((await store.get(SECRET, { stage: PEND })).value).toBe('v2');
      expect((await store.get(SECRET, { versionId: token('1') })).value).toBe('v1');
      expect((await store.get(SECRET, { versionId: token('2'), stage: PEND })).value).toBe('v2');
      await expect(store.get(SECRET, { versionId: token('2'), stage: CUR })).rejects.toBeInstanceOf(
        NotFoundError,
      );
      await expect(store.get(SECRET, { stage: PREV })).rejects.toBeInstanceOf(NotFoundError);
      await expect(store.get('no/such/secret')).rejects.toBeInstanceOf(NotFoundError);
      await expect(store.describe('no/such/secret')).rejects.toBeInstanceOf(NotFoundError);
    });

    it('keeps names and ARNs with slashes and colons apart', async () => {
      const arn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:a/b-AbCdEf';
      await store.create('a/b', 'by-name', { clientRequestToken: token('1') });
      await store.create(arn, 'by-arn', { clientRequestToken: token('1') });

      expect((await store.get('a/b')).value).toBe('by-name');
      expect((await store.get(arn)).value).toBe('by-arn');
      expect((await store.listSecrets()).map((s) => s.secretId)).toEqual(['a/b', arn]);
    });
  });

  describe('put', () => {
    beforeEach(async () => {
      await store.create(SECRET, 'v1', { clientRequestToken: token('1') });
    });

    it('moves AWSCURRENT to the new version and AWSPREVIOUS to the old one', async () => {
      const result = await store.put(SECRET, 'v2', { clientRequestToken: token('2') });

      expect(result).toEqual({ versionId: token('2'), created: true });
      expect(layoutOf(await store.describe(SECRET))).toEqual({ [token('1')]: [PREV], [token('2')]: [CUR] });
      expect((await store.get(SECRET, { stage: PREV })).value).toBe('v1');
    });

    it('ignores a retry with the same token and value entirely, as Secrets Manager does', async () => {
      await store.put(SECRET, 'v2', { clientRequestToken: token('2'), stages: [PEND] });
      await store.moveStage(SECRET, PEND, undefined);
      const counter = await store.changeCounter(SECRET);

      const retry = await store.put(SECRET, 'v2', { clientRequestToken: token('2'), stages: [PEND] });

      expect(retry).toEqual({ versionId: token('2'), created: false });
      expect(await store.changeCounter(SECRET)).toBe(counter);
      expect(layoutOf(await store.describe(SECRET))).toEqual({ [token('1')]: [CUR] });
    });

    it('refuses the same token with another value, without echoing either value', async () => {
      await store.put(SECRET, 'first-secret-value', { clientRequestToken: token('2') });

      const error = await store
        .put(SECRET, 'second-secret-value', { clientRequestToken: token('2') })
        .catch((e: unknown) => e);

      expect(error).toBeInstanceOf(ConflictError);
      expect((error as Error).message).not.toMatch(/secret-value/);
    });

    it('refuses puts to a secret that does not exist', async () => {
      await expect(store.put('other/secret', 'x', { clientRequestToken: token('9') })).rejects.toBeInstanceOf(
        NotFoundError,
      );
    });

    it.each([
      ['a short token', { clientRequestToken: 'too-short' }],
      ['a token with spaces', { clientRequestToken: `${token('1').slice(0, 30)}  x` }],
      ['an empty stage list', { clientRequestToken: token('3'), stages: [] }],
      ['an empty stage name', { clientRequestToken: token('3'), stages: [''] }],
    ])('refuses %s with ValidationError', async (_name, options) => {
      await expect(store.put(SECRET, 'v', options)).rejects.toBeInstanceOf(ValidationError);
    });

    it('refuses values over 64 KiB and secret ids Secrets Manager would refuse', async () => {
      await expect(
        store.put(SECRET, 'x'.repeat(65_537), { clientRequestToken: token('3') }),
      ).rejects.toBeInstanceOf(ValidationError);
      await expect(store.create('has space', 'v', { clientRequestToken: token('3') })).rejects.toBeInstanceOf(
        ValidationError,
      );
    });

    it('keeps unlabelled versions until more than maxVersions exist, then prunes the oldest', async () => {
      const small = await freshStore({ maxVersions: 3 });
      await small.create(SECRET, 'v0', { clientRequestToken: token('0') });
      for (let i = 1; i <= 5; i++) await small.put(SECRET, `v${i}`, { clientRequestToken: token(String(i)) });

      const versions = await small.listVersions(SECRET);
      const files = await readdir(join(secretDir(small), 'versions'));

      expect(versions.map((v) => [v.versionId, v.stages])).toEqual([
        [token('3'), []],
        [token('4'), [PREV]],
        [token('5'), [CUR]],
      ]);
      expect(files).toHaveLength(3);
      await expect(small.get(SECRET, { versionId: token('1') })).rejects.toBeInstanceOf(NotFoundError);
    });
  });

  describe('moveStage', () => {
    beforeEach(async () => {
      await store.create(SECRET, 'v1', { clientRequestToken: token('1') });
      await store.put(SECRET, 'v2', { clientRequestToken: token('2'), stages: [PEND] });
    });

    it('promotes AWSPENDING’s version and rolls back again', async () => {
      await store.moveStage(SECRET, CUR, token('2'), { fromVersionId: token('1') });
      expect(layoutOf(await store.describe(SECRET))).toEqual({
        [token('1')]: [PREV],
        [token('2')]: [CUR, PEND],
      });

      await store.moveStage(SECRET, CUR, token('1'), { fromVersionId: token('2') });
      await store.moveStage(SECRET, PEND, undefined);
      expect(layoutOf(await store.describe(SECRET))).toEqual({ [token('1')]: [CUR], [token('2')]: [PREV] });
    });

    it('leaves versions without stages out of describe but keeps them readable', async () => {
      await store.moveStage(SECRET, PEND, undefined, { fromVersionId: token('2') });

      expect((await store.describe(SECRET)).versions.map((v) => v.versionId)).toEqual([token('1')]);
      expect((await store.get(SECRET, { versionId: token('2') })).value).toBe('v2');
    });

    it('reports a stale fromVersionId as ConflictError and a missing target as NotFoundError', async () => {
      await expect(
        store.moveStage(SECRET, CUR, token('2'), { fromVersionId: token('2') }),
      ).rejects.toBeInstanceOf(ConflictError);
      await expect(store.moveStage(SECRET, CUR, token('7'))).rejects.toBeInstanceOf(NotFoundError);
      await expect(store.moveStage(SECRET, CUR, undefined)).rejects.toBeInstanceOf(ValidationError);
    });
  });

  describe('on disk', () => {
    it('writes value files and the index with mode 0600 in 0700 directories', async () => {
      await store.create(SECRET, 'v1', { clientRequestToken: token('1') });
      await store.put(SECRET, 'v2', { clientRequestToken: token('2') });
      const dir = secretDir(store);

      const files = await readdir(join(dir, 'versions'));
      expect(files).toHaveLength(2);
      for (const name of files) expect((await stat(join(dir, 'versions', name))).mode & 0o777).toBe(0o600);
      expect((await stat(join(dir, 'stages.json'))).mode & 0o777).toBe(0o600);
      expect((await stat(dir)).mode & 0o777).toBe(0o700);
      expect((await stat(join(store.root, 'secrets'))).mode & 0o777).toBe(0o700);
    });

    it('keeps secret values out of the index', async () => {
      await store.create(SECRET, 'super-secret-material', { clientRequestToken: token('1') });

      expect(await readFile(join(secretDir(store), 'stages.json'), 'utf8')).not.toContain(
        'super-secret-material',
      );
    });

    it('survives a crash mid-write: torn temp files and a half-written value are ignored, then swept', async () => {
      await store.create(SECRET, 'v1', { clientRequestToken: token('1') });
      await store.put(SECRET, 'v2', { clientRequestToken: token('2') });
      const dir = secretDir(store);
      const halfValue = join(dir, 'versions', `${encodePathSegment(token('3'))}.value`);
      await writeFile(join(dir, 'stages.json.4242.deadbeef.tmp'), '{"format":1,"secretId":"por', {
        mode: 0o600,
      });
      await writeFile(`${halfValue}.4242.cafe.tmp`, 'v3-torn', { mode: 0o600 });
      await writeFile(halfValue, 'v3-ha', { mode: 0o600 });

      expect((await store.get(SECRET)).value).toBe('v2');
      expect(layoutOf(await store.describe(SECRET))).toEqual({ [token('1')]: [PREV], [token('2')]: [CUR] });

      await store.put(SECRET, 'v3-complete', { clientRequestToken: token('3') });

      expect((await store.get(SECRET)).value).toBe('v3-complete');
      const leftovers = [...(await readdir(dir)), ...(await readdir(join(dir, 'versions')))];
      expect(leftovers.filter((n) => n.endsWith('.tmp'))).toEqual([]);
    });

    it('refuses a value file that does not match its digest instead of serving it', async () => {
      await store.create(SECRET, 'v1', { clientRequestToken: token('1') });
      await writeFile(
        join(secretDir(store), 'versions', `${encodePathSegment(token('1'))}.value`),
        'tampered',
      );

      await expect(store.get(SECRET)).rejects.toThrow(/does not match its digest/);
    });

    it('sees what another store instance on the same directory wrote', async () => {
      await store.create(SECRET, 'v1', { clientRequestToken: token('1') });
      const other = await FileSecretStore.open(store.root);

      await other.put(SECRET, 'v2', { clientRequestToken: token('2') });

      expect((await store.get(SECRET)).value).toBe('v2');
    });
  });

  describe('against random operation sequences', () => {
    const scratch: string[] = [];
    afterAll(async () => {
      await Promise.all(scratch.map((d) => rm(d, { recursive: true, force: true })));
    });

    it('keeps every stage on at most one version and AWSCURRENT present', async () => {
      const stageArb = fc.constantFrom(CUR, PEND, PREV, 'blue');
      const op = fc.oneof(
        fc.record({
          kind: fc.constant('put' as const),
          token: fc.nat(5),
          value: fc.constantFrom('a', 'b'),
          stages: fc.option(fc.uniqueArray(stageArb, { minLength: 1, maxLength: 2 }), { nil: undefined }),
        }),
        fc.record({
          kind: fc.constant('move' as const),
          stage: stageArb,
          to: fc.option(fc.nat(5), { nil: undefined }),
        }),
      );
      await fc.assert(
        fc.asyncProperty(fc.array(op, { maxLength: 12 }), async (ops) => {
          const dir = await mkdtemp(join(tmpdir(), 'portcullis-fss-prop-'));
          scratch.push(dir);
          const s = await FileSecretStore.open(dir);
          await s.create(SECRET, 'a', { clientRequestToken: token('0') });
          const values = new Map([[token('0'), 'a']]);
          for (const o of ops) {
            try {
              if (o.kind === 'put') {
                const t = token(String(o.token));
                await s.put(SECRET, o.value, {
                  clientRequestToken: t,
                  ...(o.stages ? { stages: o.stages } : {}),
                });
                if (!values.has(t)) values.set(t, o.value);
              } else {
                await s.moveStage(SECRET, o.stage, o.to === undefined ? undefined : token(String(o.to)));
              }
            } catch (error) {
              expect(error).toBeInstanceOf(PortcullisError);
            }
            const versions = await s.listVersions(SECRET);
            checkInvariants(versions);
            for (const v of versions) {
              expect((await s.get(SECRET, { versionId: v.versionId })).value).toBe(values.get(v.versionId));
            }
          }
          await rm(dir, { recursive: true, force: true });
        }),
        { numRuns: 15 },
      );
    });
  });
});

function layoutOf(description: {
  versions: { versionId: string; stages: string[] }[];
}): Record<string, string[]> {
  return Object.fromEntries(description.versions.map((v) => [v.versionId, [...v.stages].sort()]));
}
