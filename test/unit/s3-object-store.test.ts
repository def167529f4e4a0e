import { Readable } from 'node:stream';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { sdkStreamMixin } from '@smithy/util-stream';
import { beforeEach, describe, expect, it } from 'vitest';
import { S3ObjectStore } from '../../lib/aws/s3-object-store.ts';
import { encodeEntries, sha256Hex } from '../../lib/secrets/allowlist-storage.ts';
import { mockAwsClient } from '../support/aws-mock.ts';

const s3 = mockAwsClient(S3Client);
const client = new S3Client({ region: 'eu-west-1' });
const bucket = 'edge-allowlists';
const key = 'allowlists/edge/lists/v1.cidrs';

function awsError(name: string, status: number): Error {
  return Object.assign(new Error(`${name} happened`), {
    name,
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status, requestId: 'req-7' },
  });
}

const body = encodeEntries(['10.0.0.0/8', 'fd00:ec2:80::/64']);
const streamOf = (bytes: Buffer) => sdkStreamMixin(Readable.from([bytes]));

beforeEach(() => s3.reset());

describe('S3ObjectStore', () => {
  it('puts with SSE-KMS under the given key and S3-checked SHA-256, and returns the new version id', async () => {
    s3.on(PutObjectCommand).resolves({ VersionId: 'v-111' });
    const store = new S3ObjectStore({ bucket, kmsKeyId: 'arn:aws:kms:eu-west-1:111122223333:key/k', client });
    const where = await store.put(key, body, { sha256: sha256Hex(body), contentType: 'text/plain' });
    expect(where).toEqual({ bucket, key, versionId: 'v-111' });
    const [call] = s3.commandCalls(PutObjectCommand);
    expect(call!.args[0].input).toEqual({
      Bucket: bucket,
      Key: key,
      Body: body,
      ContentLength: body.length,
      ContentType: 'text/plain',
      ChecksumSHA256: Buffer.from(sha256Hex(body), 'hex').toString('base64'),
      ServerSideEncryption: 'aws:kms',
      SSEKMSKeyId: 'arn:aws:kms:eu-west-1:111122223333:key/k',
    });
  });

  it('leaves encryption to the bucket default (its own KMS key) without kmsKeyId', async () => {
    s3.on(PutObjectCommand).resolves({ VersionId: 'v-1' });
    await new S3ObjectStore({ bucket, client }).put(key, body, { sha256: sha256Hex(body) });
    const input = s3.commandCalls(PutObjectCommand)[0]!.args[0].input;
    // `aws:kms` alone would pick the AWS managed key (aws/s3) over the bucket's own.
    expect('ServerSideEncryption' in input).toBe(false);
    expect('SSEKMSKeyId' in input).toBe(false);
  });

  it('refuses a write to a bucket without versioning: nothing could pin what it wrote', async () => {
    s3.on(PutObjectCommand).resolves({});
    await expect(
      new S3ObjectStore({ bucket, client }).put(key, body, { sha256: sha256Hex(body) }),
    ).rejects.toThrow(/versioning/);
    s3.on(PutObjectCommand).resolves({ VersionId: 'null' });
    await expect(
      new S3ObjectStore({ bucket, client }).put(key, body, { sha256: sha256Hex(body) }),
    ).rejects.toThrow(/versioning/);
  });

  it('reads one exact version', async () => {
    s3.on(GetObjectCommand).resolves({ Body: streamOf(body) as never, ContentLength: body.length });
    const bytes = await new S3ObjectStore({ bucket, client }).get({ key, versionId: 'v-111' });
    expect(bytes.equals(body)).toBe(true);
    expect(s3.commandCalls(GetObjectCommand)[0]!.args[0].input).toEqual({
      Bucket: bucket,
      Key: key,
      VersionId: 'v-111',
    });
  });

  it('refuses an object larger than maxBytes without reading it', async () => {
    s3.on(GetObjectCommand).resolves({ Body: streamOf(body) as never, ContentLength: 20 * 1024 * 1024 });
    await expect(
      new S3ObjectStore({ bucket, client }).get({ key, versionId: 'v' }, { maxBytes: 10 * 1024 * 1024 }),
    ).rejects.toMatchObject({ name: 'NotFoundError' });
  });

  it.each([
    ['NoSuchVersion', 404, 'NotFoundError'],
    ['NoSuchKey', 404, 'NotFoundError'],
    ['NoSuchBucket', 404, 'NotFoundError'],
    ['AccessDenied', 403, 'AccessDenied'],
    ['KMS.DisabledException', 400, 'EncryptionKeyError'],
    ['KMSKeyNotAccessibleException', 400, 'EncryptionKeyError'],
    ['SlowDown', 503, 'Throttled'],
    ['InternalError', 500, 'ServiceUnavailable'],
  ])('maps GetObject %s to %s', async (code, status, name) => {
    s3.on(GetObjectCommand).rejects(awsError(code, status));
    const error = await new S3ObjectStore({ bucket, client }).get({ key, versionId: 'v' }).catch((e) => e);
    expect(error).toMatchObject({ name });
    expect(error.message).toContain(`S3 GetObject on '${bucket}/${key}'`);
  });

  it('maps a body S3 found not to match ChecksumSHA256 (BadDigest) to AllowlistDigestMismatch', async () => {
    s3.on(PutObjectCommand).rejects(awsError('BadDigest', 400));
    await expect(
      new S3ObjectStore({ bucket, client }).put(key, body, { sha256: sha256Hex(Buffer.from('other')) }),
    ).rejects.toMatchObject({ name: 'AllowlistDigestMismatch' });
  });
});
