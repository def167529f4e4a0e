/**
 * The allowlist object store in the packaged stack (`sls package`, offline): a versioned bucket
 * under the fleet's own KMS key, and IAM that reaches it only on the fleet's prefix and the key
 * only through S3 — reads for the validation, the staging and the tasks, writes for the staging
 * only, under `lists/`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allStatements, list, type Statement } from '../deploy/iam.ts';
import { type CfnTemplate, type PackagedService, packageService } from '../deploy/package.ts';

const STAGE = 'ci';
const FLEET = 'main';

/** `Fn::Join` of the bucket ARN and a path under it, as the stack writes object ARNs. */
const objectsUnder = (path: string) => ({
  'Fn::Join': ['', [{ 'Fn::GetAtt': ['AllowlistBucket', 'Arn'] }, `/allowlists/${FLEET}/${path}`]],
});
const keyArn = { 'Fn::GetAtt': ['AllowlistKey', 'Arn'] };
// biome-ignore lint/suspicious/noTemplateCurlyInString: a CloudFormation Fn::Sub string
const viaS3 = { StringEquals: { 'kms:ViaService': { 'Fn::Sub': 's3.${AWS::Region}.amazonaws.com' } } };

describe('the allowlist object store in the packaged stack', () => {
  let packaged: PackagedService;
  let template: CfnTemplate;

  beforeAll(async () => {
    packaged = await packageService({ stage: STAGE, timeoutMs: 150_000 });
    template = packaged.template;
  }, 180_000);
  afterAll(async () => {
    await packaged?.cleanup();
  });

  it('keeps allowlist objects in a versioned, non-public bucket encrypted with the fleet key, retained with the stack gone', () => {
    const bucket = template.Resources.AllowlistBucket!;
    expect(bucket.Type).toBe('AWS::S3::Bucket');
    expect((bucket as { DeletionPolicy?: string }).DeletionPolicy).toBe('Retain');
    expect(bucket.Properties).toMatchObject({
      VersioningConfiguration: { Status: 'Enabled' },
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          {
            ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: keyArn },
            BucketKeyEnabled: true,
          },
        ],
      },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
    });
    expect(template.Resources.AllowlistKey?.Properties).toMatchObject({ EnableKeyRotation: true });
    const policy = template.Resources.AllowlistBucketPolicy!.Properties as {
      PolicyDocument: { Statement: Statement[] };
    };
    const sids = policy.PolicyDocument.Statement.map((s) => `${s.Effect}:${s.Sid}`);
    expect(sids).toEqual(['Deny:DenyInsecureTransport', 'Deny:DenyOtherKmsKey', 'Deny:DenySseS3']);
    expect(template.Outputs?.AllowlistBucketName).toMatchObject({ Value: { Ref: 'AllowlistBucket' } });
  });

  it('scopes every S3 action to the fleet prefix, and lets only stageAllowlist write, under lists/ only', () => {
    const s3 = allStatements(template).filter(({ statement }) =>
      list(statement.Action).some((a) => a.startsWith('s3:')),
    );
    const byOwner = Object.fromEntries(
      s3.map(({ owner, statement }) => [`${owner}:${list(statement.Action).join(',')}`, statement.Resource]),
    );
    expect(byOwner).toEqual({
      'ValidateAllowlistRole:s3:GetObject,s3:GetObjectVersion': objectsUnder('*'),
      'StageAllowlistRole:s3:GetObject,s3:GetObjectVersion': objectsUnder('*'),
      'StageAllowlistRole:s3:PutObject': objectsUnder('lists/*'),
      'TaskRole:s3:GetObject,s3:GetObjectVersion': objectsUnder('lists/*'),
    });
  });

  it('grants the fleet key only through S3, and only to those roles: Decrypt to read, GenerateDataKey to write', () => {
    const kms = allStatements(template).filter(({ statement }) =>
      list(statement.Action).some((a) => a.startsWith('kms:')),
    );
    expect(kms.map(({ owner, statement }) => `${owner}:${list(statement.Action).join(',')}`).sort()).toEqual([
      'StageAllowlistRole:kms:GenerateDataKey,kms:Decrypt',
      'TaskRole:kms:Decrypt',
      'ValidateAllowlistRole:kms:Decrypt',
    ]);
    for (const { owner, statement } of kms) {
      expect(statement.Resource, owner).toEqual(keyArn);
      expect(statement.Condition, owner).toEqual(viaS3);
    }
  });

  it('tells only the allowlist steps where the bucket is', () => {
    const functions = Object.entries(template.Resources).filter(
      ([, r]) => r.Type === 'AWS::Lambda::Function',
    );
    const withBucket = functions
      .filter(([, r]) => JSON.stringify(r.Properties).includes('ALLOWLIST_BUCKET'))
      .map(([id]) => id)
      .sort();
    expect(withBucket).toEqual(['StageAllowlistLambdaFunction', 'ValidateAllowlistLambdaFunction']);
    const env = (
      template.Resources.StageAllowlistLambdaFunction!.Properties as {
        Environment: { Variables: Record<string, unknown> };
      }
    ).Environment.Variables;
    expect(env).toMatchObject({
      ALLOWLIST_BUCKET: { Ref: 'AllowlistBucket' },
      ALLOWLIST_KMS_KEY_ARN: keyArn,
      ALLOWLIST_PREFIX: `allowlists/${FLEET}/`,
      FLEET_NAME: FLEET,
    });
  });
});
