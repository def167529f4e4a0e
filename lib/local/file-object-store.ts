/**
 * The embedded mode's `ObjectStore`: a directory with the semantics of a versioned S3 bucket.
 * Every `put` creates a new version with a fresh opaque id and never touches an older one; a
 * `get` names the exact version. It lives inside the file secret store's root, so every local
 * process that opens the store (control plane, sidecars, CLI) finds the same objects:
 *
 * ```
 * <store root>/objects/<encoded bucket>/<encoded key>/<version id>.object   mode 0600
 * ```
 *
 * A version file is written to a temporary name, fsynced and renamed into place, so a reader
 * sees a whole version or none.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { NotFoundError, ValidationError } from '../errors.ts';
import {
  allowlistPrefix,
  type ObjectLocation,
  type ObjectStore,
  sha256Hex,
} from '../secrets/allowlist-storage.ts';
import { AllowlistDigestMismatch } from '../secrets/errors.ts';
import { encodePathSegment } from './file-secret-store.ts';
import { isCode, writeFileAtomic } from './files.ts';

const SUFFIX = '.object';
const VERSION_ID = /^[0-9a-f]{32}$/;

/** The directory of the objects under a file secret store's root. */
export function objectsRoot(storeRoot: string): string {
  return join(storeRoot, 'objects');
}

export class FileObjectStore implements ObjectStore {
  readonly bucket: string;
  readonly #dir: string;

  /** The bucket `bucket` of the object store rooted at `root` (see {@link objectsRoot}). */
  constructor(root: string, bucket: string) {
    if (bucket === '' || bucket.length > 255) {
      throw new ValidationError('bucket must be 1–255 characters', { path: 'bucket' });
    }
    this.bucket = bucket;
    this.#dir = join(root, encodePathSegment(bucket));
  }

  async put(key: string, body: Uint8Array, options: { sha256: string }): Promise<ObjectLocation> {
    checkKey(key);
    // S3 refuses a body whose ChecksumSHA256 differs (BadDigest); so does this store.
    const digest = sha256Hex(body);
    if (digest !== options.sha256) {
      throw new AllowlistDigestMismatch(
        `object ${this.bucket}/${key}: body SHA-256 ${digest}, expected ${options.sha256}`,
      );
    }
    const dir = join(this.#dir, encodePathSegment(key));
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const versionId = randomBytes(16).toString('hex');
    const path = join(dir, `${versionId}${SUFFIX}`);
    await writeFileAtomic(path, body, { mode: 0o600, syncDirectory: true });
    return { bucket: this.bucket, key, versionId };
  }

  async get(
    location: { key: string; versionId: string },
    options: { maxBytes?: number } = {},
  ): Promise<Buffer> {
    checkKey(location.key);
    const where = `object ${this.bucket}/${location.key} version ${location.versionId}`;
    if (!VERSION_ID.test(location.versionId)) throw new NotFoundError(`${where}: no such version`);
    const path = join(this.#dir, encodePathSegment(location.key), `${location.versionId}${SUFFIX}`);
    try {
      if (options.maxBytes !== undefined && (await stat(path)).size > options.maxBytes) {
        throw new NotFoundError(`${where} is larger than ${options.maxBytes} bytes`);
      }
      return await readFile(path);
    } catch (error) {
      if (isCode(error, 'ENOENT')) throw new NotFoundError(`${where}: no such version`, { cause: error });
      throw error;
    }
  }
}

function checkKey(key: string): void {
  if (key === '' || Buffer.byteLength(key, 'utf8') > 1024) {
    throw new ValidationError('object key must be 1–1024 bytes', { path: 'key' });
  }
}

/** The bucket name local fleets keep their allowlist objects in. */
export const LOCAL_BUCKET = 'portcullis-local';

/** The control plane's allowlist object store for a local fleet whose file store is at `storeRoot`. */
export function localAllowlistObjects(
  storeRoot: string,
  fleet: string,
): { store: FileObjectStore; prefix: string } {
  return { store: new FileObjectStore(objectsRoot(storeRoot), LOCAL_BUCKET), prefix: allowlistPrefix(fleet) };
}
