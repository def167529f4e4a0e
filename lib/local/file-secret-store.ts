/**
 * The embedded mode's `SecretStore`: a directory with Secrets Manager's version and
 * staging-label semantics, safe for several processes (control plane, sidecars, CLI) at once.
 *
 * Layout under the root given to {@link FileSecretStore.open}:
 *
 * ```
 * secrets/<encoded secret id>/stages.json          index: versions, stages, value digests (no values)
 * secrets/<encoded secret id>/versions/<id>.value  one file per version value, mode 0600, never rewritten
 * secrets/<encoded secret id>/.lock                held around every read-modify-write of the index
 * ```
 *
 * Crash safety: a value file is written to a temporary name, fsynced and renamed before the
 * index names it; the index is replaced the same way, then the directory is fsynced. A crash
 * leaves at worst a `*.tmp` file or an unreferenced value file, which readers ignore and the
 * next writer sweeps away. Readers take no lock: they see one index or the next, never half.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { ConflictError, NotFoundError, PortcullisError, ValidationError } from '../errors.ts';
import {
  type SecretDescription,
  type SecretSelector,
  type SecretStore,
  type SecretValue,
  Stage,
  type StageName,
} from '../ports.ts';
import { type FileLockOptions, isCode, withFileLock, writeFileAtomic } from './files.ts';

// --- Pure staging rules (unit-tested without I/O) -------------------------------------------

/** One version in a secret's index. `sha256` is the value's digest, used for idempotency checks and integrity. */
export interface VersionRecord {
  versionId: string;
  stages: string[];
  createdAt: string;
  sha256: string;
}

/** The `stages.json` document. `versions` is oldest first. */
export interface SecretIndex {
  format: 1;
  secretId: string;
  description?: string;
  createdAt: string;
  /** Incremented by every change; cheap to poll for "did anything move". */
  changeCounter: number;
  versions: VersionRecord[];
}

/** Secrets Manager's limits, kept so that what works locally also works on AWS. */
export const SecretLimits = {
  tokenMin: 32,
  tokenMax: 64,
  valueMaxBytes: 65_536,
  stageMaxLength: 256,
  stagesPerVersion: 20,
  secretIdMaxLength: 2048,
  /** Unlabelled versions beyond this many are pruned, oldest first (Secrets Manager keeps about 100). */
  maxVersions: 100,
} as const;

const SECRET_ID = /^[A-Za-z0-9/_+=.@:-]+$/;
const TOKEN = /^[\x21-\x7e]+$/;

/** Throws `ValidationError` unless `secretId` is a Secrets Manager name or ARN. */
export function validateSecretId(secretId: string): void {
  if (
    secretId.length === 0 ||
    secretId.length > SecretLimits.secretIdMaxLength ||
    !SECRET_ID.test(secretId)
  ) {
    throw new ValidationError(
      'secret id must be 1–2048 characters of letters, digits and /_+=.@:- (a Secrets Manager name or ARN)',
      { path: 'secretId' },
    );
  }
}

/** Throws `ValidationError` unless `token` is a valid `ClientRequestToken` (32–64 printable ASCII characters). */
export function validateToken(token: string): void {
  if (token.length < SecretLimits.tokenMin || token.length > SecretLimits.tokenMax || !TOKEN.test(token)) {
    throw new ValidationError(
      `client request token must be ${SecretLimits.tokenMin}–${SecretLimits.tokenMax} printable ASCII characters`,
      { path: 'clientRequestToken' },
    );
  }
}

function validateStage(stage: string): void {
  if (stage.length === 0 || stage.length > SecretLimits.stageMaxLength || !TOKEN.test(stage)) {
    throw new ValidationError(`stage must be 1–${SecretLimits.stageMaxLength} printable ASCII characters`, {
      path: 'stages',
    });
  }
}

function validateStages(stages: readonly string[]): string[] {
  const unique = [...new Set(stages)];
  if (unique.length === 0 || unique.length > SecretLimits.stagesPerVersion) {
    throw new ValidationError(`a version takes 1–${SecretLimits.stagesPerVersion} stages`, {
      path: 'stages',
    });
  }
  for (const stage of unique) validateStage(stage);
  return unique;
}

function validateValue(value: string): void {
  if (typeof value !== 'string' || Buffer.byteLength(value, 'utf8') > SecretLimits.valueMaxBytes) {
    throw new ValidationError(
      `secret value must be a string of at most ${SecretLimits.valueMaxBytes} bytes`,
      {
        path: 'value',
      },
    );
  }
}

/** The version carrying `stage`, if any. */
export function stageHolder(index: SecretIndex, stage: string): VersionRecord | undefined {
  return index.versions.find((v) => v.stages.includes(stage));
}

function withoutStage(versions: VersionRecord[], stage: string): VersionRecord[] {
  return versions.map((v) =>
    v.stages.includes(stage) ? { ...v, stages: v.stages.filter((s) => s !== stage) } : v,
  );
}

function addStage(versions: VersionRecord[], versionId: string, stage: string): VersionRecord[] {
  return versions.map((v) =>
    v.versionId === versionId && !v.stages.includes(stage) ? { ...v, stages: [...v.stages, stage] } : v,
  );
}

/**
 * Adds a new version carrying `stages`, taking each stage from wherever it was. The first
 * version of a secret always gets `AWSCURRENT`; when `AWSCURRENT` moves, the version it left
 * gets `AWSPREVIOUS` (unless the caller placed `AWSPREVIOUS` explicitly). The caller has
 * checked that `record.versionId` is new.
 */
export function applyPut(
  index: SecretIndex,
  record: Omit<VersionRecord, 'stages'>,
  stages: readonly string[],
): SecretIndex {
  const wanted = [...new Set(stages)];
  if (index.versions.length === 0 && !wanted.includes(Stage.Current)) wanted.push(Stage.Current);
  const oldCurrent = stageHolder(index, Stage.Current)?.versionId;
  let versions = index.versions;
  for (const stage of wanted) versions = withoutStage(versions, stage);
  versions = [...versions, { ...record, stages: wanted }];
  if (wanted.includes(Stage.Current) && oldCurrent !== undefined && !wanted.includes(Stage.Previous)) {
    versions = addStage(withoutStage(versions, Stage.Previous), oldCurrent, Stage.Previous);
  }
  return { ...index, versions, changeCounter: index.changeCounter + 1 };
}

/**
 * Moves `stage` onto `toVersionId`, or removes it when `toVersionId` is undefined. With
 * `fromVersionId` it is a compare-and-swap: the stage must be there (`ConflictError` otherwise).
 * Already-done requests (stage already on the target, or already gone) succeed unchanged, so
 * retries are harmless. Moving `AWSCURRENT` labels the version it left `AWSPREVIOUS`;
 * `AWSCURRENT` can never be removed, only moved.
 */
export function applyMoveStage(
  index: SecretIndex,
  stage: string,
  toVersionId: string | undefined,
  fromVersionId?: string,
): SecretIndex {
  validateStage(stage);
  const holder = stageHolder(index, stage)?.versionId;
  if (toVersionId === undefined) {
    if (stage === Stage.Current) {
      throw new ValidationError(`AWSCURRENT cannot be removed from secret '${index.secretId}', only moved`);
    }
    if (holder === undefined) return index;
    if (fromVersionId !== undefined && holder !== fromVersionId) {
      throw new ConflictError(
        `stage ${stage} of secret '${index.secretId}' is on version ${holder}, not ${fromVersionId}`,
      );
    }
    return {
      ...index,
      versions: withoutStage(index.versions, stage),
      changeCounter: index.changeCounter + 1,
    };
  }
  if (!index.versions.some((v) => v.versionId === toVersionId)) {
    throw new NotFoundError(`secret '${index.secretId}' has no version ${toVersionId}`);
  }
  if (holder === toVersionId) return index;
  if (fromVersionId !== undefined && holder !== fromVersionId) {
    throw new ConflictError(
      `stage ${stage} of secret '${index.secretId}' is on version ${holder ?? 'no version'}, not ${fromVersionId}`,
    );
  }
  let versions = addStage(withoutStage(index.versions, stage), toVersionId, stage);
  if (stage === Stage.Current && holder !== undefined) {
    versions = addStage(withoutStage(versions, Stage.Previous), holder, Stage.Previous);
  }
  return { ...index, versions, changeCounter: index.changeCounter + 1 };
}

/** Drops the oldest unlabelled versions beyond `max`; labelled versions are always kept. */
export function pruneVersions(index: SecretIndex, max: number): { index: SecretIndex; removed: string[] } {
  let excess = index.versions.length - max;
  if (excess <= 0) return { index, removed: [] };
  const removed: string[] = [];
  const versions = index.versions.filter((v) => {
    if (excess > 0 && v.stages.length === 0) {
      excess--;
      removed.push(v.versionId);
      return false;
    }
    return true;
  });
  return { index: { ...index, versions }, removed };
}

// --- Files ----------------------------------------------------------------------------------

const indexSchema = z.object({
  format: z.literal(1),
  secretId: z.string(),
  description: z.string().optional(),
  createdAt: z.string(),
  changeCounter: z.number().int().nonnegative(),
  versions: z.array(
    z.object({
      versionId: z.string(),
      stages: z.array(z.string()),
      createdAt: z.string(),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
    }),
  ),
});

const INDEX = 'stages.json';
const VERSIONS = 'versions';
const LOCK = '.lock';
const VALUE_SUFFIX = '.value';
// Names longer than this get a digest suffix so every directory name fits in 255 bytes.
const MAX_NAME = 180;

/**
 * A file-name-safe, collision-free encoding: letters, digits, `_` and `-` stay, everything else
 * (including `/`, `:` and a leading `.`) becomes `%XX`. Long names are shortened with a digest.
 */
export function encodePathSegment(name: string): string {
  let out = '';
  for (const byte of Buffer.from(name, 'utf8')) {
    const ch = String.fromCharCode(byte);
    out += /[A-Za-z0-9_-]/.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  if (out.length <= MAX_NAME) return out;
  return `${out.slice(0, 100)}~${createHash('sha256').update(name).digest('hex')}`;
}

function digest(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex');
}

// Every store file holds secret material or describes it, and each write is durable at once.
const STORE_FILE = { mode: 0o600, syncDirectory: true } as const;

/** One entry of {@link FileSecretStore.listSecrets}. */
export interface SecretSummary {
  secretId: string;
  description?: string;
  createdAt: Date;
  currentVersionId: string | undefined;
  versionCount: number;
}

export interface FileSecretStoreOptions {
  /** Unlabelled versions kept per secret (default 100, like Secrets Manager). */
  maxVersions?: number;
  /** Lock wait and stale-lock thresholds. */
  lock?: FileLockOptions;
}

/**
 * File-backed `SecretStore` for the embedded mode, with Secrets Manager's semantics: version ids
 * are the client request tokens (32–64 characters), at most one version per stage, the same
 * token with the same value is a no-op and with another value a `ConflictError`, moving
 * `AWSCURRENT` labels the old current `AWSPREVIOUS`, unlabelled versions stay until pruned.
 * Secret ids are opaque: a name and an ARN are two different secrets here.
 *
 * @example
 * const store = await FileSecretStore.open('/var/lib/portcullis/store');
 * await store.create('demo/allowlist', '{"cidrs":[]}', { clientRequestToken: randomUUID() });
 * const { value } = await store.get('demo/allowlist');
 */
export class FileSecretStore implements SecretStore {
  /** The store's root directory. */
  readonly root: string;
  readonly #secretsDir: string;
  readonly #maxVersions: number;
  readonly #lock: FileLockOptions;

  private constructor(root: string, options: FileSecretStoreOptions) {
    this.root = root;
    this.#secretsDir = join(root, 'secrets');
    this.#maxVersions = options.maxVersions ?? SecretLimits.maxVersions;
    this.#lock = options.lock ?? {};
  }

  /** Opens (creating if needed, mode 0700) the store rooted at `dir`. */
  static async open(dir: string, options: FileSecretStoreOptions = {}): Promise<FileSecretStore> {
    if (
      options.maxVersions !== undefined &&
      (!Number.isInteger(options.maxVersions) || options.maxVersions < 1)
    ) {
      throw new ValidationError('maxVersions must be a positive integer', { path: 'maxVersions' });
    }
    const store = new FileSecretStore(dir, options);
    await mkdir(store.#secretsDir, { recursive: true, mode: 0o700 });
    return store;
  }

  async create(
    secretId: string,
    value: string,
    options: { clientRequestToken: string; description?: string },
  ): Promise<{ versionId: string; created: boolean }> {
    validateSecretId(secretId);
    validateToken(options.clientRequestToken);
    validateValue(value);
    const dir = this.#secretDir(secretId);
    await mkdir(join(dir, VERSIONS), { recursive: true, mode: 0o700 });
    return withFileLock(
      join(dir, LOCK),
      async (lock) => {
        const index = await this.#readIndex(secretId, dir, { missingOk: true });
        const token = options.clientRequestToken;
        if (index !== undefined) {
          const existing = index.versions.find((v) => v.versionId === token);
          if (existing?.sha256 === digest(value)) return { versionId: token, created: false };
          throw new ConflictError(
            existing
              ? `secret '${secretId}' already exists and its version ${token} holds a different value`
              : `secret '${secretId}' already exists`,
          );
        }
        await this.#sweep(dir, undefined);
        await this.#writeValue(dir, token, value);
        const now = new Date().toISOString();
        const fresh: SecretIndex = {
          format: 1,
          secretId,
          ...(options.description === undefined ? {} : { description: options.description }),
          createdAt: now,
          changeCounter: 0,
          versions: [],
        };
        await lock.assertHeld();
        await writeFileAtomic(
          join(dir, INDEX),
          serialise(
            applyPut(fresh, { versionId: token, createdAt: now, sha256: digest(value) }, [Stage.Current]),
          ),
          STORE_FILE,
        );
        return { versionId: token, created: true };
      },
      this.#lock,
    );
  }

  async get(secretId: string, selector: SecretSelector = {}): Promise<SecretValue> {
    validateSecretId(secretId);
    const dir = this.#secretDir(secretId);
    // A version can be pruned between reading the index and reading its file; look again then.
    for (let attempt = 1; ; attempt++) {
      const index = (await this.#readIndex(secretId, dir))!;
      const version = pick(index, selector);
      let value: string;
      try {
        value = await readFile(this.#valuePath(dir, version.versionId), 'utf8');
      } catch (error) {
        if (isCode(error, 'ENOENT') && attempt < 3) continue;
        if (isCode(error, 'ENOENT')) {
          throw new NotFoundError(`secret '${secretId}' version ${version.versionId} has no value file`);
        }
        throw error;
      }
      if (digest(value) !== version.sha256) {
        throw new PortcullisError(
          `secret '${secretId}' version ${version.versionId}: value file does not match its digest (store damaged)`,
        );
      }
      return {
        secretId,
        versionId: version.versionId,
        stages: [...version.stages],
        value,
        createdAt: new Date(version.createdAt),
      };
    }
  }

  async put(
    secretId: string,
    value: string,
    options: { clientRequestToken: string; stages?: StageName[] },
  ): Promise<{ versionId: string; created: boolean }> {
    validateSecretId(secretId);
    validateToken(options.clientRequestToken);
    validateValue(value);
    const stages = validateStages(options.stages ?? [Stage.Current]);
    const dir = this.#secretDir(secretId);
    const token = options.clientRequestToken;
    await this.#readIndex(secretId, dir); // NotFoundError before touching the directory
    return withFileLock(
      join(dir, LOCK),
      async (lock) => {
        const index = (await this.#readIndex(secretId, dir))!;
        const existing = index.versions.find((v) => v.versionId === token);
        if (existing) {
          // Like Secrets Manager: a retry is ignored entirely (its stages are not re-applied).
          if (existing.sha256 === digest(value)) return { versionId: token, created: false };
          throw new ConflictError(
            `secret '${secretId}' already has a version ${token} with a different value`,
          );
        }
        await this.#sweep(dir, index);
        await this.#writeValue(dir, token, value);
        const next = applyPut(
          index,
          { versionId: token, createdAt: new Date().toISOString(), sha256: digest(value) },
          stages,
        );
        const { index: pruned, removed } = pruneVersions(next, this.#maxVersions);
        await lock.assertHeld();
        await writeFileAtomic(join(dir, INDEX), serialise(pruned), STORE_FILE);
        for (const versionId of removed) {
          await unlink(this.#valuePath(dir, versionId)).catch(() => undefined);
        }
        return { versionId: token, created: true };
      },
      this.#lock,
    );
  }

  async moveStage(
    secretId: string,
    stage: StageName,
    toVersionId: string | undefined,
    options: { fromVersionId?: string } = {},
  ): Promise<void> {
    validateSecretId(secretId);
    validateStage(stage);
    const dir = this.#secretDir(secretId);
    await this.#readIndex(secretId, dir); // NotFoundError before touching the directory
    await withFileLock(
      join(dir, LOCK),
      async (lock) => {
        const index = (await this.#readIndex(secretId, dir))!;
        const next = applyMoveStage(index, stage, toVersionId, options.fromVersionId);
        if (next === index) return;
        await lock.assertHeld();
        await writeFileAtomic(join(dir, INDEX), serialise(next), STORE_FILE);
      },
      this.#lock,
    );
  }

  async describe(secretId: string): Promise<SecretDescription> {
    validateSecretId(secretId);
    const index = (await this.#readIndex(secretId, this.#secretDir(secretId)))!;
    return {
      secretId,
      versions: index.versions
        .filter((v) => v.stages.length > 0)
        .map((v) => ({ versionId: v.versionId, stages: [...v.stages], createdAt: new Date(v.createdAt) })),
    };
  }

  /** Every version, labelled or not, oldest first (Secrets Manager `ListSecretVersionIds` with deprecated ones). */
  async listVersions(secretId: string): Promise<{ versionId: string; stages: string[]; createdAt: Date }[]> {
    validateSecretId(secretId);
    const index = (await this.#readIndex(secretId, this.#secretDir(secretId)))!;
    return index.versions.map((v) => ({
      versionId: v.versionId,
      stages: [...v.stages],
      createdAt: new Date(v.createdAt),
    }));
  }

  /** A number that grows with every change to the secret; poll it to skip unchanged secrets. */
  async changeCounter(secretId: string): Promise<number> {
    validateSecretId(secretId);
    return (await this.#readIndex(secretId, this.#secretDir(secretId)))!.changeCounter;
  }

  /** All secrets in the store, sorted by id (for the CLI). */
  async listSecrets(): Promise<SecretSummary[]> {
    const entries = await readdir(this.#secretsDir, { withFileTypes: true });
    const out: SecretSummary[] = [];
    for (const entry of entries) {
      if (!entry.isDirectory()) continue;
      const index = await this.#readIndex(undefined, join(this.#secretsDir, entry.name), { missingOk: true });
      if (index === undefined) continue; // created by a writer that has not committed (or crashed)
      out.push({
        secretId: index.secretId,
        ...(index.description === undefined ? {} : { description: index.description }),
        createdAt: new Date(index.createdAt),
        currentVersionId: stageHolder(index, Stage.Current)?.versionId,
        versionCount: index.versions.length,
      });
    }
    return out.sort((a, b) => (a.secretId < b.secretId ? -1 : a.secretId > b.secretId ? 1 : 0));
  }

  #secretDir(secretId: string): string {
    return join(this.#secretsDir, encodePathSegment(secretId));
  }

  #valuePath(dir: string, versionId: string): string {
    return join(dir, VERSIONS, `${encodePathSegment(versionId)}${VALUE_SUFFIX}`);
  }

  async #readIndex(
    secretId: string | undefined,
    dir: string,
    options: { missingOk?: boolean } = {},
  ): Promise<SecretIndex | undefined> {
    let raw: string;
    try {
      raw = await readFile(join(dir, INDEX), 'utf8');
    } catch (error) {
      if (isCode(error, 'ENOENT') || isCode(error, 'ENOTDIR')) {
        if (options.missingOk) return undefined;
        throw new NotFoundError(`secret '${secretId}' not found`);
      }
      throw error;
    }
    let index: SecretIndex;
    try {
      index = indexSchema.parse(JSON.parse(raw)) as SecretIndex;
    } catch (error) {
      throw new PortcullisError(`index of secret '${secretId ?? dir}' is unreadable (store damaged)`, {
        cause: error,
      });
    }
    if (secretId !== undefined && index.secretId !== secretId) {
      throw new ConflictError(`secret '${secretId}' maps to the directory of '${index.secretId}'`);
    }
    return index;
  }

  async #writeValue(dir: string, versionId: string, value: string): Promise<void> {
    const versionsDir = join(dir, VERSIONS);
    await mkdir(versionsDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(
      join(versionsDir, `${encodePathSegment(versionId)}${VALUE_SUFFIX}`),
      value,
      STORE_FILE,
    );
  }

  /**
   * Removes what crashed writers left behind: temporary files and value files no index names.
   * Runs under the lock, so no writer of this secret is mid-write.
   */
  async #sweep(dir: string, index: SecretIndex | undefined): Promise<void> {
    const referenced = new Set(
      (index?.versions ?? []).map((v) => `${encodePathSegment(v.versionId)}${VALUE_SUFFIX}`),
    );
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (name.endsWith('.tmp')) await unlink(join(dir, name)).catch(() => undefined);
    }
    const versionsDir = join(dir, VERSIONS);
    for (const name of await readdir(versionsDir).catch(() => [] as string[])) {
      if (!referenced.has(name)) await unlink(join(versionsDir, name)).catch(() => undefined);
    }
  }
}

function pick(index: SecretIndex, selector: SecretSelector): VersionRecord {
  if (selector.versionId !== undefined) {
    const version = index.versions.find((v) => v.versionId === selector.versionId);
    if (!version || (selector.stage !== undefined && !version.stages.includes(selector.stage))) {
      throw new NotFoundError(
        `secret '${index.secretId}' has no version ${selector.versionId}${selector.stage ? ` labelled ${selector.stage}` : ''}`,
      );
    }
    return version;
  }
  const stage = selector.stage ?? Stage.Current;
  const version = stageHolder(index, stage);
  if (!version) throw new NotFoundError(`secret '${index.secretId}' has no version labelled ${stage}`);
  return version;
}

function serialise(index: SecretIndex): string {
  return `${JSON.stringify(index, null, 2)}\n`;
}
