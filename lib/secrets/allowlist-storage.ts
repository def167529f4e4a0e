/**
 * Where an allowlist lives. A Secrets Manager value holds at most 65 536 bytes (about 3 500
 * IPv4 host entries), so a list that does not fit is kept in a versioned, KMS-encrypted object
 * (S3, or the file-backed object store locally) and the allowlist secret holds a small manifest
 * that pins that object by version id, with the entry count and the SHA-256 of its bytes:
 *
 * ```
 * secret portcullis/<fleet>/allowlist   AWSPENDING / AWSCURRENT / AWSPREVIOUS, as before
 *   { "manifest": 1, "entries": 100000, "bytes": 2437120, "sha256": "…",
 *     "object": { "bucket": "…", "key": "allowlists/<fleet>/lists/<version>.cidrs", "versionId": "…" },
 *     "reason": "…", "updatedBy": "…" }
 * object allowlists/<fleet>/lists/<version>.cidrs   one canonical CIDR a line
 * ```
 *
 * The staging labels stay on the secret, so staging, promotion and rollback are unchanged: the
 * object is written (a new object version, never overwritten in place) before the manifest that
 * names it, and a task applies a manifest only once the bytes it fetched match the digest and the
 * count, in one `prepare/commit acl` transaction, so it serves the old list or the new one.
 * A list whose inline document fits the secret stays inline (`{ "cidrs": [...] }`), which every
 * reader still accepts.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ValidationError } from '../errors.ts';
import { AllowlistDigestMismatch, AllowlistTooLarge } from './errors.ts';
import { AllowlistSecret } from './formats.ts';

/** The limits of allowlist storage, from the AWS documented quotas they derive from. */
export const AllowlistLimits = {
  /** Secrets Manager `SecretString` quota: an inline document (list, reason, author) must fit. */
  secretValueMaxBytes: 65_536,
  /**
   * Entries one list may hold. `allowlist.maxEntries` in the fleet config can never exceed it.
   * Bounded by the sidecar and the Lambda functions, which hold the whole list in memory, not by
   * S3 (5 GiB per PUT).
   */
  maxEntries: 200_000,
  /**
   * Bytes of one entries object: 200 000 of the longest canonical CIDR
   * (`ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128`, 43 characters and a newline) fit.
   */
  objectMaxBytes: 10 * 1024 * 1024,
} as const;

/** One version of one object: what a manifest pins. */
export const ObjectLocationSchema = z
  .object({
    bucket: z.string().min(1).max(255),
    key: z.string().min(1).max(1024),
    versionId: z.string().min(1).max(1024),
  })
  .strict();
export type ObjectLocation = z.output<typeof ObjectLocationSchema>;

/**
 * A versioned object store (an S3 bucket with versioning and SSE-KMS, or the file-backed one).
 * Errors: `NotFoundError` (no such key or version), `AccessDenied`, `EncryptionKeyError`,
 * `Throttled`, `ServiceUnavailable`, `AllowlistDigestMismatch` (the store saw other bytes than
 * the digest given to `put`).
 */
export interface ObjectStore {
  readonly bucket: string;
  /** Stores a new version of `key` (never replacing an older one) and returns where it is. */
  put(
    key: string,
    body: Uint8Array,
    options: { sha256: string; contentType?: string },
  ): Promise<ObjectLocation>;
  /** The bytes of one exact version; `NotFoundError` when there are none, or more than `maxBytes`. */
  get(location: { key: string; versionId: string }, options?: { maxBytes?: number }): Promise<Buffer>;
}

/** The object store of a bucket a manifest names (the sidecar reads whichever bucket its manifest pins). */
export type ObjectStoreFor = (bucket: string) => ObjectStore;

/** The manifest an allowlist secret holds when the entries live in an object. */
export const AllowlistManifest = z
  .object({
    manifest: z.literal(1),
    entries: z.number().int().min(0).max(AllowlistLimits.maxEntries),
    bytes: z.number().int().min(0).max(AllowlistLimits.objectMaxBytes),
    sha256: z.string().regex(/^[0-9a-f]{64}$/, 'lowercase hex SHA-256'),
    object: ObjectLocationSchema,
    reason: z.string().default(''),
    updatedBy: z.string().optional(),
  })
  .strict();
export type AllowlistManifest = z.output<typeof AllowlistManifest>;

/** What an allowlist secret may hold: a manifest, or the inline list of earlier releases. */
export const AllowlistDocument = z.union([AllowlistManifest, AllowlistSecret]);
export type AllowlistDocument = z.output<typeof AllowlistDocument>;

/** A list as the control plane and the sidecar use it, wherever it was stored. */
export interface ResolvedAllowlist {
  cidrs: string[];
  reason: string;
  updatedBy?: string;
  /** Set when the entries came from an object. */
  manifest?: AllowlistManifest;
}

export function isManifest(document: AllowlistDocument): document is AllowlistManifest {
  return 'manifest' in document;
}

/** Lowercase hex SHA-256 of `body`. */
export function sha256Hex(body: Uint8Array): string {
  return createHash('sha256').update(body).digest('hex');
}

/** The object body of a list: one entry a line, each line ending in a newline. Pure. */
export function encodeEntries(entries: readonly string[]): Buffer {
  return Buffer.from(entries.length === 0 ? '' : `${entries.join('\n')}\n`, 'utf8');
}

/** The entries of an object body (empty lines ignored). Pure. */
export function decodeEntries(body: Uint8Array): string[] {
  return Buffer.from(body)
    .toString('utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
}

/**
 * Checks fetched bytes against what the manifest promises (size, SHA-256, entry count) and
 * returns the entries. Pure. @throws AllowlistDigestMismatch
 */
export function verifyEntries(
  expected: { bytes?: number; sha256: string; entries: number; object: ObjectLocation },
  body: Uint8Array,
): string[] {
  const where = `${expected.object.bucket}/${expected.object.key} version ${expected.object.versionId}`;
  if (expected.bytes !== undefined && body.length !== expected.bytes) {
    throw new AllowlistDigestMismatch(
      `allowlist object ${where} holds ${body.length} bytes, the manifest promises ${expected.bytes}`,
    );
  }
  const digest = sha256Hex(body);
  if (digest !== expected.sha256) {
    throw new AllowlistDigestMismatch(
      `allowlist object ${where} has SHA-256 ${digest}, the manifest promises ${expected.sha256}`,
    );
  }
  const entries = decodeEntries(body);
  if (entries.length !== expected.entries) {
    throw new AllowlistDigestMismatch(
      `allowlist object ${where} holds ${entries.length} entries, the manifest promises ${expected.entries}`,
    );
  }
  return entries;
}

function storeFor(objects: ObjectStoreFor | undefined, location: ObjectLocation): ObjectStore {
  if (objects === undefined) {
    throw new ValidationError(
      `the allowlist is kept in object ${location.bucket}/${location.key}, and no object store is configured here`,
      { path: 'object' },
    );
  }
  return objects(location.bucket);
}

/** Fetches and verifies the object `expected` pins. @throws AllowlistDigestMismatch, NotFoundError */
export async function fetchEntries(
  objects: ObjectStoreFor | undefined,
  expected: { bytes?: number; sha256: string; entries: number; object: ObjectLocation },
): Promise<string[]> {
  const body = await storeFor(objects, expected.object).get(expected.object, {
    maxBytes: AllowlistLimits.objectMaxBytes,
  });
  return verifyEntries(expected, body);
}

/** The list a stored document stands for, its object fetched and verified when it has one. */
export async function resolveAllowlist(
  document: AllowlistDocument,
  objects: ObjectStoreFor | undefined,
): Promise<ResolvedAllowlist> {
  if (!isManifest(document)) {
    return {
      cidrs: document.cidrs,
      reason: document.reason,
      ...(document.updatedBy === undefined ? {} : { updatedBy: document.updatedBy }),
    };
  }
  const cidrs = await fetchEntries(objects, document);
  return {
    cidrs,
    reason: document.reason,
    ...(document.updatedBy === undefined ? {} : { updatedBy: document.updatedBy }),
    manifest: document,
  };
}

/** The inline document for a list: what an allowlist secret held before manifests. */
export function inlineDocument(list: {
  cidrs: readonly string[];
  reason: string;
  updatedBy?: string;
}): string {
  return JSON.stringify({
    cidrs: list.cidrs,
    reason: list.reason,
    ...(list.updatedBy === undefined ? {} : { updatedBy: list.updatedBy }),
  });
}

export type StorageChoice =
  | { kind: 'inline'; value: string }
  | { kind: 'object'; body: Buffer; sha256: string; entries: number };

/**
 * Where a list goes: inline when its document fits the secret, otherwise into an object (which
 * needs an object store). Checks every storage limit, so a list refused here is refused before
 * anything is written. Pure.
 * @throws AllowlistTooLarge naming the limit that was exceeded
 */
export function chooseStorage(
  list: { cidrs: readonly string[]; reason: string; updatedBy?: string },
  options: { objectStore: boolean },
): StorageChoice {
  checkEntryCount(list.cidrs.length, 'allowlist entries', 'cidrs');
  const value = inlineDocument(list);
  if (Buffer.byteLength(value, 'utf8') <= AllowlistLimits.secretValueMaxBytes)
    return { kind: 'inline', value };
  if (!options.objectStore) {
    throw new AllowlistTooLarge(
      `the allowlist document is ${Buffer.byteLength(value, 'utf8')} bytes (${list.cidrs.length} entries), over the Secrets Manager secret value limit of ${AllowlistLimits.secretValueMaxBytes} bytes, and no allowlist bucket is configured to hold it (ALLOWLIST_BUCKET)`,
      { limit: 'Secrets Manager secret value 65536 bytes', path: 'cidrs' },
    );
  }
  const body = encodeBounded(list.cidrs, 'the allowlist object would be', 'cidrs');
  return { kind: 'object', body, sha256: sha256Hex(body), entries: list.cidrs.length };
}

/** `AllowlistTooLarge` when `count` entries exceed the store's limit. */
function checkEntryCount(count: number, noun: string, path: string): void {
  if (count > AllowlistLimits.maxEntries) {
    throw new AllowlistTooLarge(
      `${count} ${noun} exceed the store's limit of ${AllowlistLimits.maxEntries} entries (AllowlistLimits.maxEntries)`,
      { limit: 'AllowlistLimits.maxEntries', path },
    );
  }
}

/** The object body of `entries`, or `AllowlistTooLarge` when it exceeds the store's object limit. */
function encodeBounded(entries: readonly string[], subject: string, path: string): Buffer {
  const body = encodeEntries(entries);
  if (body.length > AllowlistLimits.objectMaxBytes) {
    throw new AllowlistTooLarge(
      `${subject} ${body.length} bytes, over the store's limit of ${AllowlistLimits.objectMaxBytes} bytes (AllowlistLimits.objectMaxBytes)`,
      { limit: 'AllowlistLimits.objectMaxBytes', path },
    );
  }
  return body;
}

/**
 * Stores a list the way {@link chooseStorage} decides and returns the secret value to stage:
 * the inline document, or the manifest of the object just written at `key`.
 */
export async function storeAllowlist(
  list: { cidrs: readonly string[]; reason: string; updatedBy?: string },
  target: { store: ObjectStore; key: string } | undefined,
): Promise<{ value: string; manifest?: AllowlistManifest }> {
  const choice = chooseStorage(list, { objectStore: target !== undefined });
  if (choice.kind === 'inline') return { value: choice.value };
  const location = await target!.store.put(target!.key, choice.body, {
    sha256: choice.sha256,
    contentType: 'text/plain; charset=utf-8',
  });
  const manifest: AllowlistManifest = {
    manifest: 1,
    entries: choice.entries,
    bytes: choice.body.length,
    sha256: choice.sha256,
    object: location,
    reason: list.reason,
    ...(list.updatedBy === undefined ? {} : { updatedBy: list.updatedBy }),
  };
  return { value: JSON.stringify(manifest), manifest };
}

/**
 * A change too large for a Step Functions input (256 KiB): the entries are uploaded as an
 * object first and the execution input names it, with the digest and the count to check.
 */
export const AllowlistChangeObjectSchema = z
  .object({
    action: z.enum(['set', 'add', 'remove']),
    object: ObjectLocationSchema,
    sha256: z.string().regex(/^[0-9a-f]{64}$/, 'lowercase hex SHA-256'),
    entries: z.number().int().min(0).max(AllowlistLimits.maxEntries),
  })
  .strict();
export type AllowlistChangeObject = z.output<typeof AllowlistChangeObjectSchema>;

/** Uploads the entries of a change and returns the reference an execution input carries. */
export async function uploadChange(
  store: ObjectStore,
  prefix: string,
  action: AllowlistChangeObject['action'],
  entries: readonly string[],
): Promise<AllowlistChangeObject> {
  checkEntryCount(entries.length, 'entries', action);
  const body = encodeBounded(entries, 'the change is', action);
  const sha256 = sha256Hex(body);
  const object = await store.put(`${prefix}changes/${sha256}.cidrs`, body, {
    sha256,
    contentType: 'text/plain; charset=utf-8',
  });
  return { action, object, sha256, entries: entries.length };
}

/** The default key prefix of a fleet's allowlist objects (the IAM policies are scoped to it). */
export function allowlistPrefix(fleet: string): string {
  return `allowlists/${fleet}/`;
}
