import {
  CreateSecretCommand,
  DecryptionFailure,
  DescribeSecretCommand,
  GetSecretValueCommand,
  InvalidParameterException,
  InvalidRequestException,
  ListSecretVersionIdsCommand,
  PutSecretValueCommand,
  ResourceExistsException,
  ResourceNotFoundException,
  SecretsManagerClient,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EncryptionKeyError } from '../../lib/aws/errors.ts';
import { SecretsManagerStore } from '../../lib/aws/secrets-manager-store.ts';
import { ConflictError, NotFoundError, Throttled, ValidationError } from '../../lib/errors.ts';
import { mockAwsClient } from '../support/aws-mock.ts';
import { pemBegin, pemEnd } from '../support/pem.ts';

const SECRET = 'portcullis/test/cert/api.example.com';
const TOKEN = 'a1b2c3d4-0000-4000-8000-000000000001';
const OTHER = 'a1b2c3d4-0000-4000-8000-000000000002';
const VALUE = `${pemBegin('PRIVATE KEY')}\nnot-really-a-key\n${pemEnd('PRIVATE KEY')}`;
const meta = { $metadata: { httpStatusCode: 400, requestId: 'req-1' } };

function throttling(): Error {
  return Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException', ...meta });
}

describe('SecretsManagerStore', () => {
  const client = new SecretsManagerClient({ region: 'eu-west-1' });
  const sm = mockAwsClient(client);
  let store: SecretsManagerStore;

  beforeEach(() => {
    sm.reset();
    store = new SecretsManagerStore({ client });
  });
  afterEach(() => {
    sm.reset();
  });

  describe('get', () => {
    it('reads AWSCURRENT by default with exactly SecretId and VersionStage', async () => {
      const created = new Date('2026-01-02T03:04:05Z');
      sm.on(GetSecretValueCommand).resolves({
        VersionId: TOKEN,
        SecretString: VALUE,
        VersionStages: ['AWSCURRENT'],
        CreatedDate: created,
      });

      const got = await store.get(SECRET);

      expect(sm.commandCalls(GetSecretValueCommand)[0]!.args[0].input).toEqual({
        SecretId: SECRET,
        VersionStage: 'AWSCURRENT',
      });
      expect(got).toEqual({
        secretId: SECRET,
        versionId: TOKEN,
        stages: ['AWSCURRENT'],
        value: VALUE,
        createdAt: created,
      });
    });

    it('reads a stage or an exact version id as asked', async () => {
      sm.on(GetSecretValueCommand).resolves({ VersionId: TOKEN, SecretString: VALUE, VersionStages: [] });

      await store.get(SECRET, { stage: 'AWSPENDING' });
      await store.get(SECRET, { versionId: TOKEN });

      const inputs = sm.commandCalls(GetSecretValueCommand).map((c) => c.args[0].input);
      expect(inputs).toEqual([
        { SecretId: SECRET, VersionStage: 'AWSPENDING' },
        { SecretId: SECRET, VersionId: TOKEN },
      ]);
    });

    it('maps a missing secret to NotFoundError', async () => {
      sm.on(GetSecretValueCommand).rejects(
        new ResourceNotFoundException({
          message: "Secrets Manager can't find the specified secret.",
          ...meta,
        }),
      );

      await expect(store.get(SECRET)).rejects.toBeInstanceOf(NotFoundError);
    });

    it('reports a KMS decryption failure clearly without the secret value', async () => {
      sm.on(GetSecretValueCommand).rejects(
        new DecryptionFailure({ message: 'Access to KMS is not allowed', ...meta }),
      );

      const error = await store.get(SECRET).catch((e: unknown) => e);

      expect(error).toBeInstanceOf(EncryptionKeyError);
      expect((error as Error).name).toBe('EncryptionKeyError');
      expect((error as Error).message).toContain('DecryptionFailure');
      expect((error as Error).message).toContain(SECRET);
      expect((error as Error).message).not.toContain('PRIVATE KEY');
    });

    it('maps a secret scheduled for deletion (InvalidRequestException) to ValidationError', async () => {
      sm.on(GetSecretValueCommand).rejects(
        new InvalidRequestException({ message: 'marked for deletion', ...meta }),
      );

      await expect(store.get(SECRET)).rejects.toBeInstanceOf(ValidationError);
    });

    it('refuses a binary secret with ValidationError', async () => {
      sm.on(GetSecretValueCommand).resolves({ VersionId: TOKEN, SecretBinary: new Uint8Array([1, 2]) });

      await expect(store.get(SECRET)).rejects.toThrow(/binary/);
    });
  });

  describe('put', () => {
    it('sends PutSecretValue with the token and AWSCURRENT by default, and reports a new version', async () => {
      sm.on(ListSecretVersionIdsCommand).resolves({ Versions: [{ VersionId: OTHER }] });
      sm.on(PutSecretValueCommand).resolves({ VersionId: TOKEN, VersionStages: ['AWSCURRENT'] });

      const result = await store.put(SECRET, VALUE, { clientRequestToken: TOKEN });

      expect(result).toEqual({ versionId: TOKEN, created: true });
      expect(sm.commandCalls(PutSecretValueCommand)[0]!.args[0].input).toEqual({
        SecretId: SECRET,
        SecretString: VALUE,
        ClientRequestToken: TOKEN,
        VersionStages: ['AWSCURRENT'],
      });
      expect(sm.commandCalls(ListSecretVersionIdsCommand)[0]!.args[0].input).toEqual({
        SecretId: SECRET,
        IncludeDeprecated: true,
        MaxResults: 100,
      });
    });

    it('passes the requested stages through', async () => {
      sm.on(ListSecretVersionIdsCommand).resolves({ Versions: [] });
      sm.on(PutSecretValueCommand).resolves({ VersionId: TOKEN });

      await store.put(SECRET, VALUE, { clientRequestToken: TOKEN, stages: ['AWSPENDING'] });

      expect(sm.commandCalls(PutSecretValueCommand)[0]!.args[0].input.VersionStages).toEqual(['AWSPENDING']);
    });

    it('reports created: false when the token is already a version, even a deprecated one on a later page', async () => {
      sm.on(ListSecretVersionIdsCommand)
        .resolvesOnce({ Versions: [{ VersionId: OTHER }], NextToken: 'page-2' })
        .resolvesOnce({ Versions: [{ VersionId: TOKEN, VersionStages: [] }] });
      sm.on(PutSecretValueCommand).resolves({ VersionId: TOKEN });

      const result = await store.put(SECRET, VALUE, { clientRequestToken: TOKEN });

      expect(result).toEqual({ versionId: TOKEN, created: false });
      expect(sm.commandCalls(ListSecretVersionIdsCommand)[1]!.args[0].input.NextToken).toBe('page-2');
    });

    it('turns ResourceExistsException (token reused with another value) into ConflictError without the value', async () => {
      sm.on(ListSecretVersionIdsCommand).resolves({ Versions: [{ VersionId: TOKEN }] });
      sm.on(PutSecretValueCommand).rejects(
        new ResourceExistsException({ message: 'You can’t modify an existing version', ...meta }),
      );

      const error = await store.put(SECRET, VALUE, { clientRequestToken: TOKEN }).catch((e: unknown) => e);

      expect(error).toBeInstanceOf(ConflictError);
      expect((error as Error).message).not.toContain('not-really-a-key');
    });

    it('maps throttling to Throttled', async () => {
      sm.on(ListSecretVersionIdsCommand).resolves({ Versions: [] });
      sm.on(PutSecretValueCommand).rejects(throttling());

      await expect(store.put(SECRET, VALUE, { clientRequestToken: TOKEN })).rejects.toBeInstanceOf(Throttled);
    });

    it('refuses a token Secrets Manager would refuse before calling it', async () => {
      await expect(store.put(SECRET, VALUE, { clientRequestToken: 'short' })).rejects.toBeInstanceOf(
        ValidationError,
      );
      expect(sm.calls()).toHaveLength(0);
    });
  });

  describe('create', () => {
    it('sends CreateSecret with name, value, token and description', async () => {
      sm.on(CreateSecretCommand).resolves({ VersionId: TOKEN });

      const result = await store.create(SECRET, VALUE, {
        clientRequestToken: TOKEN,
        description: 'api cert',
      });

      expect(result).toEqual({ versionId: TOKEN, created: true });
      expect(sm.commandCalls(CreateSecretCommand)[0]!.args[0].input).toEqual({
        Name: SECRET,
        SecretString: VALUE,
        ClientRequestToken: TOKEN,
        Description: 'api cert',
      });
    });

    it('treats an existing secret whose version with this token holds the same value as a retry', async () => {
      sm.on(CreateSecretCommand).rejects(new ResourceExistsException({ message: 'exists', ...meta }));
      sm.on(GetSecretValueCommand, { SecretId: SECRET, VersionId: TOKEN }).resolves({
        VersionId: TOKEN,
        SecretString: VALUE,
      });

      const result = await store.create(SECRET, VALUE, { clientRequestToken: TOKEN });

      expect(result).toEqual({ versionId: TOKEN, created: false });
    });

    it('refuses an existing secret whose version with this token holds another value', async () => {
      sm.on(CreateSecretCommand).rejects(new ResourceExistsException({ message: 'exists', ...meta }));
      sm.on(GetSecretValueCommand).resolves({ VersionId: TOKEN, SecretString: 'something else' });

      await expect(store.create(SECRET, VALUE, { clientRequestToken: TOKEN })).rejects.toBeInstanceOf(
        ConflictError,
      );
    });

    it('refuses an existing secret that has no version with this token', async () => {
      sm.on(CreateSecretCommand).rejects(new ResourceExistsException({ message: 'exists', ...meta }));
      sm.on(GetSecretValueCommand).rejects(new ResourceNotFoundException({ message: 'no version', ...meta }));

      await expect(store.create(SECRET, VALUE, { clientRequestToken: TOKEN })).rejects.toBeInstanceOf(
        ConflictError,
      );
    });
  });

  describe('moveStage', () => {
    it('finds the current holder with DescribeSecret and moves the stage from it', async () => {
      sm.on(DescribeSecretCommand).resolves({
        VersionIdsToStages: { [OTHER]: ['AWSCURRENT'], [TOKEN]: ['AWSPENDING'] },
      });
      sm.on(UpdateSecretVersionStageCommand).resolves({});

      await store.moveStage(SECRET, 'AWSCURRENT', TOKEN);

      expect(sm.commandCalls(DescribeSecretCommand)[0]!.args[0].input).toEqual({ SecretId: SECRET });
      expect(sm.commandCalls(UpdateSecretVersionStageCommand)[0]!.args[0].input).toEqual({
        SecretId: SECRET,
        VersionStage: 'AWSCURRENT',
        MoveToVersionId: TOKEN,
        RemoveFromVersionId: OTHER,
      });
    });

    it('attaches a stage that is nowhere yet without RemoveFromVersionId', async () => {
      sm.on(DescribeSecretCommand).resolves({ VersionIdsToStages: { [OTHER]: ['AWSCURRENT'] } });
      sm.on(UpdateSecretVersionStageCommand).resolves({});

      await store.moveStage(SECRET, 'AWSPENDING', TOKEN);

      expect(sm.commandCalls(UpdateSecretVersionStageCommand)[0]!.args[0].input).toEqual({
        SecretId: SECRET,
        VersionStage: 'AWSPENDING',
        MoveToVersionId: TOKEN,
      });
    });

    it('does nothing when the stage is already on the target version', async () => {
      sm.on(DescribeSecretCommand).resolves({ VersionIdsToStages: { [TOKEN]: ['AWSCURRENT'] } });

      await store.moveStage(SECRET, 'AWSCURRENT', TOKEN);

      expect(sm.commandCalls(UpdateSecretVersionStageCommand)).toHaveLength(0);
    });

    it('uses fromVersionId as given without looking the holder up', async () => {
      sm.on(UpdateSecretVersionStageCommand).resolves({});

      await store.moveStage(SECRET, 'AWSCURRENT', TOKEN, { fromVersionId: OTHER });

      expect(sm.commandCalls(DescribeSecretCommand)).toHaveLength(0);
      expect(sm.commandCalls(UpdateSecretVersionStageCommand)[0]!.args[0].input).toEqual({
        SecretId: SECRET,
        VersionStage: 'AWSCURRENT',
        MoveToVersionId: TOKEN,
        RemoveFromVersionId: OTHER,
      });
    });

    it('removes a stage with RemoveFromVersionId only', async () => {
      sm.on(DescribeSecretCommand).resolves({
        VersionIdsToStages: { [OTHER]: ['AWSCURRENT'], [TOKEN]: ['AWSPENDING'] },
      });
      sm.on(UpdateSecretVersionStageCommand).resolves({});

      await store.moveStage(SECRET, 'AWSPENDING', undefined);

      expect(sm.commandCalls(UpdateSecretVersionStageCommand)[0]!.args[0].input).toEqual({
        SecretId: SECRET,
        VersionStage: 'AWSPENDING',
        RemoveFromVersionId: TOKEN,
      });
    });

    it('treats removing a stage that is nowhere as done', async () => {
      sm.on(DescribeSecretCommand).resolves({ VersionIdsToStages: { [OTHER]: ['AWSCURRENT'] } });

      await store.moveStage(SECRET, 'AWSPENDING', undefined, { fromVersionId: TOKEN });

      expect(sm.commandCalls(UpdateSecretVersionStageCommand)).toHaveLength(0);
    });

    it('refuses to remove AWSCURRENT', async () => {
      await expect(store.moveStage(SECRET, 'AWSCURRENT', undefined)).rejects.toBeInstanceOf(ValidationError);
      expect(sm.calls()).toHaveLength(0);
    });

    it('re-reads the holder and retries when the stage moved between describe and update', async () => {
      const third = 'a1b2c3d4-0000-4000-8000-000000000003';
      sm.on(DescribeSecretCommand)
        .resolvesOnce({ VersionIdsToStages: { [OTHER]: ['AWSPENDING'] } })
        .resolves({ VersionIdsToStages: { [third]: ['AWSPENDING'] } });
      sm.on(UpdateSecretVersionStageCommand, { RemoveFromVersionId: OTHER }).rejects(
        new InvalidParameterException({ message: 'label is not attached to that version', ...meta }),
      );
      sm.on(UpdateSecretVersionStageCommand, { RemoveFromVersionId: third }).resolves({});

      await store.moveStage(SECRET, 'AWSPENDING', TOKEN);

      const removed = sm
        .commandCalls(UpdateSecretVersionStageCommand)
        .map((c) => c.args[0].input.RemoveFromVersionId);
      expect(removed).toEqual([OTHER, third]);
    });

    it('reports ConflictError when the stage is not on the expected fromVersionId', async () => {
      const third = 'a1b2c3d4-0000-4000-8000-000000000003';
      sm.on(UpdateSecretVersionStageCommand).rejects(
        new InvalidParameterException({ message: 'label is not attached to that version', ...meta }),
      );
      sm.on(DescribeSecretCommand).resolves({ VersionIdsToStages: { [third]: ['AWSCURRENT'] } });

      await expect(
        store.moveStage(SECRET, 'AWSCURRENT', TOKEN, { fromVersionId: OTHER }),
      ).rejects.toBeInstanceOf(ConflictError);
    });

    it('keeps a genuinely invalid request a ValidationError', async () => {
      sm.on(DescribeSecretCommand).resolves({ VersionIdsToStages: { [OTHER]: ['AWSCURRENT'] } });
      sm.on(UpdateSecretVersionStageCommand).rejects(
        new InvalidParameterException({ message: 'no such version', ...meta }),
      );

      await expect(store.moveStage(SECRET, 'AWSCURRENT', TOKEN)).rejects.toBeInstanceOf(ValidationError);
    });

    it('maps throttling on UpdateSecretVersionStage to Throttled', async () => {
      sm.on(UpdateSecretVersionStageCommand).rejects(throttling());

      await expect(
        store.moveStage(SECRET, 'AWSCURRENT', TOKEN, { fromVersionId: OTHER }),
      ).rejects.toBeInstanceOf(Throttled);
    });
  });

  describe('describe', () => {
    it('lists labelled versions from VersionIdsToStages and leaves deprecated ones out', async () => {
      sm.on(DescribeSecretCommand).resolves({
        VersionIdsToStages: { [TOKEN]: ['AWSCURRENT'], [OTHER]: ['AWSPREVIOUS', 'custom'], deprecated: [] },
      });

      const description = await store.describe(SECRET);

      expect(description).toEqual({
        secretId: SECRET,
        versions: [
          { versionId: TOKEN, stages: ['AWSCURRENT'] },
          { versionId: OTHER, stages: ['AWSPREVIOUS', 'custom'] },
        ],
      });
    });

    it('treats a secret scheduled for deletion as not found', async () => {
      sm.on(DescribeSecretCommand).resolves({ DeletedDate: new Date(), VersionIdsToStages: {} });

      await expect(store.describe(SECRET)).rejects.toBeInstanceOf(NotFoundError);
    });

    it('maps HTTP 429 to Throttled', async () => {
      sm.on(DescribeSecretCommand).rejects(
        Object.assign(new Error('slow down'), { name: 'SomethingElse', $metadata: { httpStatusCode: 429 } }),
      );

      await expect(store.describe(SECRET)).rejects.toBeInstanceOf(Throttled);
    });
  });
});
