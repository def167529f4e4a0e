/**
 * `ObjectStore` over one S3 bucket with versioning and SSE-KMS (SDK v3). Objects are written
 * with `PutObject` (S3 checks the body against `ChecksumSHA256`, so what is stored is what was
 * digested) and read back by exact `VersionId`, so a later write to the same key never changes
 * what a manifest pins.
 *
 * IAM: `s3:PutObject` to write; `s3:GetObject` and `s3:GetObjectVersion` to read, on the fleet's
 * prefix only; `kms:GenerateDataKey` (write) and `kms:Decrypt` (read) on the bucket's key.
 */
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { NotFoundError, type PortcullisError } from '../errors.ts';
import type { ObjectLocation, ObjectStore } from '../secrets/allowlist-storage.ts';
import { AllowlistDigestMismatch } from '../secrets/errors.ts';
import { awsClientConfig } from './client-config.ts';
import { EncryptionKeyError, mapAwsError } from './errors.ts';

let sharedClient: S3Client | undefined;

/** The module-scope client used when none is injected (created on first use, reused across invocations). */
export function defaultS3Client(): S3Client {
  sharedClient ??= new S3Client(awsClientConfig());
  return sharedClient;
}

export interface S3ObjectStoreOptions {
  bucket: string;
  /** The KMS key objects are encrypted with (`SSEKMSKeyId`); absent: the bucket's default encryption (SSE-KMS with the fleet's key). */
  kmsKeyId?: string;
  client?: S3Client;
}

/**
 * @example
 * const objects = new S3ObjectStore({ bucket: 'edge-allowlists', kmsKeyId: keyArn });
 * const where = await objects.put('allowlists/edge/lists/v1.cidrs', body, { sha256 });
 */
export class S3ObjectStore implements ObjectStore {
  readonly bucket: string;
  readonly #kmsKeyId: string | undefined;
  readonly #client: S3Client;

  constructor(options: S3ObjectStoreOptions) {
    this.bucket = options.bucket;
    this.#kmsKeyId = options.kmsKeyId;
    this.#client = options.client ?? defaultS3Client();
  }

  async put(
    key: string,
    body: Uint8Array,
    options: { sha256: string; contentType?: string },
  ): Promise<ObjectLocation> {
    let versionId: string | undefined;
    try {
      const answer = await this.#client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ContentLength: body.length,
          ContentType: options.contentType ?? 'application/octet-stream',
          ChecksumSHA256: Buffer.from(options.sha256, 'hex').toString('base64'),
          // `aws:kms` without a key id would mean the AWS managed key (aws/s3), not the
          // bucket's: without a key id the bucket default applies.
          ...(this.#kmsKeyId === undefined
            ? {}
            : { ServerSideEncryption: 'aws:kms' as const, SSEKMSKeyId: this.#kmsKeyId }),
        }),
      );
      versionId = answer.VersionId;
    } catch (error) {
      throw this.#map(error, 'PutObject', key);
    }
    // Without a version id the bucket is not versioned: a later write would change what a
    // manifest names, so the write does not count.
    if (versionId === undefined || versionId === '' || versionId === 'null') {
      throw new NotFoundError(
        `S3 PutObject on '${this.bucket}/${key}' returned no version id: the bucket must have versioning enabled`,
      );
    }
    return { bucket: this.bucket, key, versionId };
  }

  async get(
    location: { key: string; versionId: string },
    options: { maxBytes?: number } = {},
  ): Promise<Buffer> {
    let bytes: Uint8Array;
    try {
      const answer = await this.#client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: location.key, VersionId: location.versionId }),
      );
      if (options.maxBytes !== undefined && (answer.ContentLength ?? 0) > options.maxBytes) {
        answer.Body?.transformToWebStream().cancel();
        throw new NotFoundError(
          `S3 object '${this.bucket}/${location.key}' version ${location.versionId} is larger than ${options.maxBytes} bytes`,
        );
      }
      if (answer.Body === undefined)
        throw new NotFoundError(`S3 object '${this.bucket}/${location.key}' has no body`);
      bytes = await answer.Body.transformToByteArray();
    } catch (error) {
      throw this.#map(error, 'GetObject', location.key);
    }
    return Buffer.from(bytes);
  }

  #map(error: unknown, operation: string, key: string): PortcullisError {
    return mapAwsError(error, {
      service: 'S3',
      operation,
      resource: `${this.bucket}/${key}`,
      overrides: {
        NoSuchKey: (message, cause) => new NotFoundError(message, { cause }),
        NoSuchVersion: (message, cause) => new NotFoundError(message, { cause }),
        NoSuchBucket: (message, cause) => new NotFoundError(message, { cause }),
        // The body S3 received does not match ChecksumSHA256.
        BadDigest: (message, cause) => new AllowlistDigestMismatch(message, { cause }),
        'KMS.DisabledException': (message, cause) => new EncryptionKeyError(message, { cause }),
        'KMS.NotFoundException': (message, cause) => new EncryptionKeyError(message, { cause }),
        KMSKeyNotAccessibleException: (message, cause) => new EncryptionKeyError(message, { cause }),
      },
    });
  }
}
