/**
 * The sidecar's allowlist fetch: an allowlist secret holds the list inline, or a manifest that
 * pins an object by version id (lib/secrets/allowlist-storage.ts). The object is fetched and
 * checked against the manifest's size, SHA-256 and entry count before any entry is validated,
 * so a truncated or replaced object is refused (`digest-mismatch`) and the list in force stays.
 */
import { join } from 'node:path';
import { FileObjectStore, objectsRoot } from '../../lib/local/file-object-store.ts';
import {
  fetchEntries,
  isManifest,
  type ObjectStore,
  type ObjectStoreFor,
} from '../../lib/secrets/allowlist-storage.ts';
import { AllowlistDigestMismatch } from '../../lib/secrets/errors.ts';
import type { SidecarConfig } from './config.ts';
import {
  type Checked,
  type CheckedAllowlist,
  checkAllowlistEntries,
  parseAllowlistDocument,
} from './validate.ts';

/**
 * Checks an allowlist secret's text and returns the entries to apply, or a refusal. A fetch
 * that fails (object store unreachable, version missing) throws: it is retried, not a verdict on
 * the content.
 */
export async function loadAllowlist(
  text: string,
  policy: { allowAll0: boolean; maxEntries: number },
  objects: ObjectStoreFor | undefined,
): Promise<Checked<CheckedAllowlist>> {
  const document = parseAllowlistDocument(text);
  if (document.kind === 'invalid') return document;
  if (!isManifest(document.value)) return checkAllowlistEntries(document.value.cidrs, policy);
  const manifest = document.value;
  // Refused before downloading: the count is part of what the digest will confirm.
  if (manifest.entries > policy.maxEntries) {
    return {
      kind: 'invalid',
      code: 'too-many-entries',
      reason: `${manifest.entries} entries exceed the limit of ${policy.maxEntries} (allowlist.maxEntries)`,
    };
  }
  let entries: string[];
  try {
    entries = await fetchEntries(objects, manifest);
  } catch (error) {
    if (error instanceof AllowlistDigestMismatch) {
      return { kind: 'invalid', code: 'digest-mismatch', reason: `${error.name}: ${error.message}` };
    }
    throw error;
  }
  return checkAllowlistEntries(entries, policy);
}

/**
 * The object stores a sidecar reads manifests' objects from: beside the file store locally
 * (`<store dir>/objects`), S3 on AWS (one adapter per bucket, built on first use).
 */
export function defaultObjectStores(config: SidecarConfig): ObjectStoreFor {
  const cache = new Map<string, Promise<ObjectStore> | ObjectStore>();
  if (config.store.kind === 'file') {
    const root = objectsRoot(join(config.store.dir));
    return (bucket) => {
      let store = cache.get(bucket) as ObjectStore | undefined;
      if (store === undefined) {
        store = new FileObjectStore(root, bucket);
        cache.set(bucket, store);
      }
      return store;
    };
  }
  return (bucket) => lazyS3(bucket, cache);
}

// lib/aws is loaded only by a sidecar on AWS (local tasks never import the SDK).
function lazyS3(bucket: string, cache: Map<string, Promise<ObjectStore> | ObjectStore>): ObjectStore {
  const adapter = async (): Promise<ObjectStore> => {
    let store = cache.get(bucket);
    if (store === undefined) {
      store = import('../../lib/aws/s3-object-store.ts').then(
        ({ S3ObjectStore }) => new S3ObjectStore({ bucket }),
      );
      cache.set(bucket, store);
    }
    return store;
  };
  return {
    bucket,
    put: async (key, body, options) => (await adapter()).put(key, body, options),
    get: async (location, options) => (await adapter()).get(location, options),
  };
}
