/**
 * The store as the sidecar reads it: a secret's labelled versions (`describe`) and one version's
 * text (`fetchVersion`). A fleet config or allowlist read from a file (`file:<path>`) stands in
 * for a secret with one version, named by the digest of its content.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { NotFoundError } from '../../lib/errors.ts';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { type SecretStore, Stage } from '../../lib/ports.ts';
import type { SidecarConfig } from './config.ts';
import type { StoreView } from './state.ts';

/** Secret ids of objects read from a file: `file:<path>`. */
export const FILE_PREFIX = 'file:';

export interface StoreReader {
  /** The secret's `AWSCURRENT` and labelled versions; `NotFoundError` when it does not exist. */
  describe(secretId: string): Promise<StoreView>;
  /** One version's text; `NotFoundError` when the secret no longer holds it. */
  fetchVersion(secretId: string, versionId: string): Promise<string>;
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 32);
}

/** Reads `store`, and `file:` ids from the file system. */
export function storeReader(store: SecretStore): StoreReader {
  return {
    async describe(secretId) {
      if (secretId.startsWith(FILE_PREFIX)) {
        const version = digest(await readFile(secretId.slice(FILE_PREFIX.length), 'utf8'));
        return { current: version, versions: [{ versionId: version, stages: [Stage.Current] }] };
      }
      const description = await store.describe(secretId);
      return {
        current: description.versions.find((v) => v.stages.includes(Stage.Current))?.versionId,
        versions: description.versions.map((v) => ({ versionId: v.versionId, stages: v.stages })),
      };
    },
    async fetchVersion(secretId, versionId) {
      if (secretId.startsWith(FILE_PREFIX)) {
        const text = await readFile(secretId.slice(FILE_PREFIX.length), 'utf8');
        if (digest(text) !== versionId)
          throw new NotFoundError(`${secretId} no longer holds version ${versionId}`);
        return text;
      }
      return (await store.get(secretId, { versionId })).value;
    },
  };
}

/** The store `config.store` names: a `FileSecretStore` directory, or Secrets Manager. */
export async function defaultStore(config: SidecarConfig): Promise<SecretStore> {
  if (config.store.kind === 'file') return FileSecretStore.open(config.store.dir);
  // The adapter's shared client takes its region from the environment (ECS sets AWS_REGION);
  // an explicit region in the sidecar config wins. Only lib/aws/ talks to the SDK itself.
  if (config.store.region !== undefined) process.env.AWS_REGION = config.store.region;
  // Loaded here, not at the top: a sidecar on the file store (every local and demo task runs
  // one) never uses the SDK's ~100 modules (~5 MiB of RSS each).
  const { SecretsManagerStore } = await import('../../lib/aws/secrets-manager-store.ts');
  return new SecretsManagerStore();
}
