/**
 * An in-memory Secrets Manager behind `aws-sdk-client-mock`, for tests that run the real
 * `SecretsManagerStore` (and everything above it) against the service's semantics.
 */
import type { ACMPCAServiceException } from '@aws-sdk/client-acm-pca';
import {
  CreateSecretCommand,
  type CreateSecretCommandInput,
  DescribeSecretCommand,
  type DescribeSecretCommandInput,
  GetSecretValueCommand,
  type GetSecretValueCommandInput,
  ListSecretVersionIdsCommand,
  type ListSecretVersionIdsCommandInput,
  PutSecretValueCommand,
  type PutSecretValueCommandInput,
  ResourceExistsException,
  ResourceNotFoundException,
  SecretsManagerServiceException,
  UpdateSecretVersionStageCommand,
  type UpdateSecretVersionStageCommandInput,
} from '@aws-sdk/client-secrets-manager';
import { type AwsClientMock, sdkError } from './aws-mock.ts';

/** Secrets Manager's `SecretString` limit (API reference: 65 536 bytes). */
export const SECRET_STRING_MAX_BYTES = 65_536;

function checkSize(value: string): void {
  if (Buffer.byteLength(value, 'utf8') > SECRET_STRING_MAX_BYTES) {
    throw serviceError(
      SecretsManagerServiceException,
      'ValidationException',
      `1 validation error detected: Value at 'secretString' failed to satisfy constraint: Member must have length less than or equal to ${SECRET_STRING_MAX_BYTES}`,
    );
  }
}

/** An SDK service exception the client has no class for (AccessDenied, throttling, InvalidParameter). */
export function serviceError(
  Base: typeof SecretsManagerServiceException | typeof ACMPCAServiceException,
  name: string,
  message: string,
): Error {
  return new Base({
    name,
    $fault: 'client',
    message,
    $metadata: { httpStatusCode: 400, requestId: 'req-7' },
    ...(name === 'ThrottlingException' ? { $retryable: { throttling: true } } : {}),
  });
}

interface StoredVersion {
  value: string;
  stages: string[];
  created: Date;
}

/**
 * Secrets Manager as far as the store adapter uses it: versions, staging labels, tokens, with
 * the service's documented refusals — a `SecretString` over 65 536 bytes (`ValidationException`),
 * a token reused with another value (`ResourceExistsException`), moving a label that another
 * version holds without naming it in `RemoveFromVersionId`, or naming a version that does not
 * hold it (`InvalidParameterException`).
 */
export class FakeSecretsManager {
  readonly secrets = new Map<string, Map<string, StoredVersion>>();
  /** Refusals to answer with, by operation and (optionally) secret name. */
  readonly refusals: { operation: string; secretId?: string; error: Error }[] = [];

  install(mock: AwsClientMock): void {
    mock.on(CreateSecretCommand).callsFake((input: CreateSecretCommandInput) => this.create(input));
    mock.on(GetSecretValueCommand).callsFake((input: GetSecretValueCommandInput) => this.get(input));
    mock.on(PutSecretValueCommand).callsFake((input: PutSecretValueCommandInput) => this.put(input));
    mock.on(DescribeSecretCommand).callsFake((input: DescribeSecretCommandInput) => this.describe(input));
    mock
      .on(UpdateSecretVersionStageCommand)
      .callsFake((input: UpdateSecretVersionStageCommandInput) => this.updateStage(input));
    mock
      .on(ListSecretVersionIdsCommand)
      .callsFake((input: ListSecretVersionIdsCommandInput) => this.listVersions(input));
  }

  /** The `AWSCURRENT` value of a secret, for assertions (never printed). */
  current(secretId: string): { versionId: string; value: string } {
    for (const [versionId, version] of this.#secret(secretId)) {
      if (version.stages.includes('AWSCURRENT')) return { versionId, value: version.value };
    }
    throw new Error(`${secretId} has no AWSCURRENT`);
  }

  #check(operation: string, secretId: string | undefined): void {
    const refusal = this.refusals.find(
      (r) => r.operation === operation && (r.secretId === undefined || r.secretId === secretId),
    );
    if (refusal) throw refusal.error;
  }

  #secret(secretId: string | undefined): Map<string, StoredVersion> {
    const secret = secretId === undefined ? undefined : this.secrets.get(secretId);
    if (!secret) {
      throw sdkError(ResourceNotFoundException, "Secrets Manager can't find the specified secret.");
    }
    return secret;
  }

  /** Puts `stage` on `versionId` alone; AWSCURRENT leaving a version labels it AWSPREVIOUS. */
  #label(secret: Map<string, StoredVersion>, stage: string, versionId: string): void {
    for (const [id, version] of secret) {
      if (id === versionId || !version.stages.includes(stage)) continue;
      version.stages = version.stages.filter((s) => s !== stage);
      if (stage === 'AWSCURRENT') {
        for (const other of secret.values()) other.stages = other.stages.filter((s) => s !== 'AWSPREVIOUS');
        version.stages.push('AWSPREVIOUS');
      }
    }
    const target = secret.get(versionId)!;
    if (!target.stages.includes(stage)) target.stages.push(stage);
  }

  create(input: CreateSecretCommandInput) {
    this.#check('CreateSecret', input.Name);
    if (!input.Name || !input.ClientRequestToken || input.SecretString === undefined) {
      throw new Error('CreateSecret without Name, ClientRequestToken or SecretString');
    }
    checkSize(input.SecretString);
    if (this.secrets.has(input.Name)) {
      throw sdkError(ResourceExistsException, `the secret ${input.Name} already exists.`);
    }
    const version = { value: input.SecretString, stages: ['AWSCURRENT'], created: new Date() };
    this.secrets.set(input.Name, new Map([[input.ClientRequestToken, version]]));
    return {
      ARN: `arn:aws:secretsmanager:eu-west-1:111122223333:secret:${input.Name}-AbCdEf`,
      Name: input.Name,
      VersionId: input.ClientRequestToken,
    };
  }

  get(input: GetSecretValueCommandInput) {
    this.#check('GetSecretValue', input.SecretId);
    const secret = this.#secret(input.SecretId);
    const stage = input.VersionStage ?? (input.VersionId === undefined ? 'AWSCURRENT' : undefined);
    for (const [versionId, version] of secret) {
      if (input.VersionId !== undefined && versionId !== input.VersionId) continue;
      if (stage !== undefined && !version.stages.includes(stage)) continue;
      return {
        Name: input.SecretId,
        VersionId: versionId,
        SecretString: version.value,
        VersionStages: [...version.stages],
        CreatedDate: version.created,
      };
    }
    throw sdkError(ResourceNotFoundException, "Secrets Manager can't find the specified secret value.");
  }

  put(input: PutSecretValueCommandInput) {
    this.#check('PutSecretValue', input.SecretId);
    const secret = this.#secret(input.SecretId);
    const token = input.ClientRequestToken!;
    checkSize(input.SecretString ?? '');
    const existing = secret.get(token);
    if (existing) {
      if (existing.value !== input.SecretString) {
        throw sdkError(ResourceExistsException, 'a version with this token holds another value');
      }
      return { Name: input.SecretId, VersionId: token, VersionStages: [...existing.stages] };
    }
    secret.set(token, { value: input.SecretString ?? '', stages: [], created: new Date() });
    for (const stage of input.VersionStages ?? ['AWSCURRENT']) this.#label(secret, stage, token);
    return { Name: input.SecretId, VersionId: token, VersionStages: [...secret.get(token)!.stages] };
  }

  describe(input: DescribeSecretCommandInput) {
    this.#check('DescribeSecret', input.SecretId);
    const secret = this.#secret(input.SecretId);
    const stages: Record<string, string[]> = {};
    for (const [versionId, version] of secret) {
      if (version.stages.length > 0) stages[versionId] = [...version.stages];
    }
    return { Name: input.SecretId, VersionIdsToStages: stages };
  }

  updateStage(input: UpdateSecretVersionStageCommandInput) {
    this.#check('UpdateSecretVersionStage', input.SecretId);
    const secret = this.#secret(input.SecretId);
    const stage = input.VersionStage!;
    const holder = [...secret].find(([, v]) => v.stages.includes(stage))?.[0];
    if (input.MoveToVersionId !== undefined && !secret.has(input.MoveToVersionId)) {
      throw sdkError(ResourceNotFoundException, "Secrets Manager can't find the specified secret value.");
    }
    if (input.RemoveFromVersionId !== undefined) {
      const from = secret.get(input.RemoveFromVersionId);
      if (!from?.stages.includes(stage)) {
        throw serviceError(
          SecretsManagerServiceException,
          'InvalidParameterException',
          `The parameter RemoveFromVersionId can't be ${input.RemoveFromVersionId}: the label ${stage} is not attached to it.`,
        );
      }
      from.stages = from.stages.filter((s) => s !== stage);
      if (
        stage === 'AWSCURRENT' &&
        input.MoveToVersionId !== undefined &&
        input.MoveToVersionId !== input.RemoveFromVersionId
      ) {
        // Secrets Manager labels the version AWSCURRENT left AWSPREVIOUS.
        for (const other of secret.values()) other.stages = other.stages.filter((s) => s !== 'AWSPREVIOUS');
        from.stages.push('AWSPREVIOUS');
      }
    } else if (holder !== undefined && holder !== input.MoveToVersionId) {
      throw serviceError(
        SecretsManagerServiceException,
        'InvalidParameterException',
        `The parameter RemoveFromVersionId must be specified: ${stage} is attached to version ${holder}.`,
      );
    }
    if (input.MoveToVersionId !== undefined) this.#label(secret, stage, input.MoveToVersionId);
    return { Name: input.SecretId };
  }

  listVersions(input: ListSecretVersionIdsCommandInput) {
    this.#check('ListSecretVersionIds', input.SecretId);
    const secret = this.#secret(input.SecretId);
    return {
      Name: input.SecretId,
      Versions: [...secret].map(([VersionId, v]) => ({ VersionId, VersionStages: [...v.stages] })),
    };
  }
}
