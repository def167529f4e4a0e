/**
 * `SecretStore` over AWS Secrets Manager (SDK v3). Secrets Manager itself enforces the version
 * and staging-label rules; this adapter maps the port onto its commands and its errors onto
 * Portcullis' typed errors.
 */
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  type GetSecretValueCommandOutput,
  ListSecretVersionIdsCommand,
  type ListSecretVersionIdsCommandOutput,
  PutSecretValueCommand,
  SecretsManagerClient,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import { ConflictError, NotFoundError, type PortcullisError, ValidationError } from '../errors.ts';
import {
  type SecretDescription,
  type SecretSelector,
  type SecretStore,
  type SecretValue,
  Stage,
  type StageName,
} from '../ports.ts';
import { awsClientConfig } from './client-config.ts';
import { isAwsErrorCode, mapAwsError } from './errors.ts';

let sharedClient: SecretsManagerClient | undefined;

/** The module-scope client used when none is injected (created on first use, reused across invocations). */
export function defaultSecretsManagerClient(): SecretsManagerClient {
  // Bounded network waits: a missing route fails fast and typed (client-config.ts).
  sharedClient ??= new SecretsManagerClient(awsClientConfig());
  return sharedClient;
}

/** Secrets Manager's `ClientRequestToken` length limits; checked here so a bad token fails before any call. */
const TOKEN_MIN = 32;
const TOKEN_MAX = 64;
// ListSecretVersionIds pages while looking for an existing token: Secrets Manager keeps about
// 100 versions (plus those of the last 24 hours), so a handful of pages covers any real secret.
const MAX_VERSION_PAGES = 20;
// A stage can move between our DescribeSecret and UpdateSecretVersionStage; re-read a few times.
const MOVE_ATTEMPTS = 3;

export interface SecretsManagerStoreOptions {
  /** Injected client (tests, other regions); defaults to {@link defaultSecretsManagerClient}. */
  client?: SecretsManagerClient;
}

/**
 * Secrets Manager adapter for the `SecretStore` port.
 *
 * Commands used: `GetSecretValue`, `PutSecretValue`, `CreateSecret`, `UpdateSecretVersionStage`,
 * `DescribeSecret`, `ListSecretVersionIds`. IAM needs the matching `secretsmanager:` actions on
 * the fleet's secrets (and `kms:Decrypt`/`kms:GenerateDataKey` on a customer managed key).
 *
 * @example
 * const store = new SecretsManagerStore();
 * const { value, versionId } = await store.get('portcullis/prod/cert/api', { stage: 'AWSPENDING' });
 */
export class SecretsManagerStore implements SecretStore {
  readonly #client: SecretsManagerClient;

  constructor(options: SecretsManagerStoreOptions = {}) {
    this.#client = options.client ?? defaultSecretsManagerClient();
  }

  /**
   * `CreateSecret` with `ClientRequestToken` as the first version's id. When the secret already
   * exists and its version with that token holds the same value, this is the retry of an earlier
   * success: `created: false`. Any other existing secret is a `ConflictError`.
   */
  async create(
    secretId: string,
    value: string,
    options: { clientRequestToken: string; description?: string },
  ): Promise<{ versionId: string; created: boolean }> {
    checkToken(options.clientRequestToken);
    try {
      const out = await this.#client.send(
        new CreateSecretCommand({
          Name: secretId,
          SecretString: value,
          ClientRequestToken: options.clientRequestToken,
          ...(options.description === undefined ? {} : { Description: options.description }),
        }),
      );
      return { versionId: out.VersionId ?? options.clientRequestToken, created: true };
    } catch (error) {
      if (!isAwsErrorCode(error, 'ResourceExistsException')) throw this.#map(error, 'CreateSecret', secretId);
    }
    let existing: string | undefined;
    try {
      const out = await this.#client.send(
        new GetSecretValueCommand({ SecretId: secretId, VersionId: options.clientRequestToken }),
      );
      existing = out.SecretString;
    } catch (error) {
      const mapped = this.#map(error, 'GetSecretValue', secretId);
      if (mapped instanceof NotFoundError) {
        throw new ConflictError(
          `secret '${secretId}' already exists without a version for this request token`,
          {
            cause: error,
          },
        );
      }
      throw mapped;
    }
    if (existing !== value) {
      throw new ConflictError(
        `secret '${secretId}' already exists and its version ${options.clientRequestToken} holds a different value`,
      );
    }
    return { versionId: options.clientRequestToken, created: false };
  }

  /** `GetSecretValue` by `VersionId` and/or `VersionStage` (default `AWSCURRENT`). */
  async get(secretId: string, selector: SecretSelector = {}): Promise<SecretValue> {
    const input =
      selector.versionId === undefined
        ? { SecretId: secretId, VersionStage: selector.stage ?? Stage.Current }
        : {
            SecretId: secretId,
            VersionId: selector.versionId,
            ...(selector.stage === undefined ? {} : { VersionStage: selector.stage }),
          };
    let out: GetSecretValueCommandOutput;
    try {
      out = await this.#client.send(new GetSecretValueCommand(input));
    } catch (error) {
      throw this.#map(error, 'GetSecretValue', secretId);
    }
    if (out.SecretString === undefined) {
      throw new ValidationError(
        `secret '${secretId}' version ${out.VersionId ?? '?'} holds binary data; Portcullis stores text (SecretString)`,
      );
    }
    return {
      secretId,
      versionId: out.VersionId ?? selector.versionId ?? '',
      stages: [...(out.VersionStages ?? [])],
      value: out.SecretString,
      createdAt: out.CreatedDate ?? new Date(0),
    };
  }

  /**
   * `PutSecretValue` with `VersionStages` (default `[AWSCURRENT]`). Secrets Manager ignores a
   * retry with the same token and value and rejects the token with another value
   * (`ResourceExistsException` → `ConflictError`). `created` comes from a metadata-only
   * `ListSecretVersionIds` look-up first; two concurrent first calls with one token may both
   * report `created: true`.
   */
  async put(
    secretId: string,
    value: string,
    options: { clientRequestToken: string; stages?: StageName[] },
  ): Promise<{ versionId: string; created: boolean }> {
    checkToken(options.clientRequestToken);
    const stages = options.stages ?? [Stage.Current];
    if (stages.length === 0) throw new ValidationError('put needs at least one stage', { path: 'stages' });
    const existed = await this.#versionExists(secretId, options.clientRequestToken);
    let versionId: string | undefined;
    try {
      const out = await this.#client.send(
        new PutSecretValueCommand({
          SecretId: secretId,
          SecretString: value,
          ClientRequestToken: options.clientRequestToken,
          VersionStages: [...stages],
        }),
      );
      versionId = out.VersionId;
    } catch (error) {
      if (isAwsErrorCode(error, 'ResourceExistsException')) {
        throw new ConflictError(
          `secret '${secretId}' already has a version ${options.clientRequestToken} with a different value`,
          { cause: error },
        );
      }
      throw this.#map(error, 'PutSecretValue', secretId);
    }
    return { versionId: versionId ?? options.clientRequestToken, created: !existed };
  }

  /**
   * `UpdateSecretVersionStage`. Without `fromVersionId` the current holder comes from
   * `DescribeSecret` (and is re-read if the stage moves meanwhile); with it, the call is a
   * compare-and-swap and a stage found elsewhere is a `ConflictError`. Moving a stage onto the
   * version that already holds it is a no-op; so is removing a stage that is nowhere.
   * `AWSCURRENT` can only be moved, never removed.
   */
  async moveStage(
    secretId: string,
    stage: StageName,
    toVersionId: string | undefined,
    options: { fromVersionId?: string } = {},
  ): Promise<void> {
    if (toVersionId === undefined && stage === Stage.Current) {
      throw new ValidationError(`AWSCURRENT cannot be removed from secret '${secretId}', only moved`);
    }
    for (let attempt = 1; ; attempt++) {
      const holder =
        options.fromVersionId === undefined || toVersionId === undefined
          ? await this.#holder(secretId, stage)
          : undefined;
      if (toVersionId !== undefined && holder === toVersionId) return;
      if (
        options.fromVersionId !== undefined &&
        toVersionId === undefined &&
        holder !== options.fromVersionId
      ) {
        if (holder === undefined) return; // already removed: the retry of an earlier success
        throw new ConflictError(
          `stage ${stage} of secret '${secretId}' is on version ${holder}, not ${options.fromVersionId}`,
        );
      }
      const removeFrom = options.fromVersionId ?? holder;
      if (toVersionId === undefined && removeFrom === undefined) return;
      try {
        await this.#client.send(
          new UpdateSecretVersionStageCommand({
            SecretId: secretId,
            VersionStage: stage,
            ...(toVersionId === undefined ? {} : { MoveToVersionId: toVersionId }),
            ...(removeFrom === undefined ? {} : { RemoveFromVersionId: removeFrom }),
          }),
        );
        return;
      } catch (error) {
        const mapped = this.#map(error, 'UpdateSecretVersionStage', secretId);
        if (!(mapped instanceof ValidationError)) throw mapped;
        // Secrets Manager says InvalidParameter when RemoveFromVersionId is not where the stage
        // is: tell a stage that moved under us (conflict, or re-read and retry) from a bad call.
        const now = await this.#holder(secretId, stage);
        if (toVersionId !== undefined && now === toVersionId) return;
        if (now === removeFrom) throw mapped;
        if (options.fromVersionId !== undefined || attempt >= MOVE_ATTEMPTS) {
          throw new ConflictError(
            `stage ${stage} of secret '${secretId}' moved to ${now ?? 'no version'} while being updated`,
            { cause: error },
          );
        }
      }
    }
  }

  /**
   * `DescribeSecret`: the labelled versions from `VersionIdsToStages` (`createdAt` is not set:
   * DescribeSecret does not carry it, and the sidecar polls this often enough that a second
   * call per poll is not worth it). A secret scheduled for deletion is `NotFoundError`.
   */
  async describe(secretId: string): Promise<SecretDescription> {
    const out = await this.#describe(secretId);
    if (out.DeletedDate !== undefined) {
      throw new NotFoundError(`secret '${secretId}' is scheduled for deletion`);
    }
    const versions = Object.entries(out.VersionIdsToStages ?? {})
      .filter(([, stages]) => stages.length > 0)
      .map(([versionId, stages]) => ({ versionId, stages: [...stages] }))
      .sort((a, b) => a.versionId.localeCompare(b.versionId));
    return { secretId, versions };
  }

  async #describe(secretId: string) {
    try {
      return await this.#client.send(new DescribeSecretCommand({ SecretId: secretId }));
    } catch (error) {
      throw this.#map(error, 'DescribeSecret', secretId);
    }
  }

  async #holder(secretId: string, stage: StageName): Promise<string | undefined> {
    const out = await this.#describe(secretId);
    for (const [versionId, stages] of Object.entries(out.VersionIdsToStages ?? {})) {
      if (stages.includes(stage)) return versionId;
    }
    return undefined;
  }

  async #versionExists(secretId: string, versionId: string): Promise<boolean> {
    let nextToken: string | undefined;
    for (let page = 0; page < MAX_VERSION_PAGES; page++) {
      let out: ListSecretVersionIdsCommandOutput;
      try {
        out = await this.#client.send(
          new ListSecretVersionIdsCommand({
            SecretId: secretId,
            IncludeDeprecated: true,
            MaxResults: 100,
            ...(nextToken === undefined ? {} : { NextToken: nextToken }),
          }),
        );
      } catch (error) {
        throw this.#map(error, 'ListSecretVersionIds', secretId);
      }
      if (out.Versions?.some((v) => v.VersionId === versionId)) return true;
      nextToken = out.NextToken;
      if (!nextToken) return false;
    }
    return false;
  }

  #map(error: unknown, operation: string, secretId: string): PortcullisError {
    return mapAwsError(error, { service: 'SecretsManager', operation, resource: secretId });
  }
}

function checkToken(token: string): void {
  if (token.length < TOKEN_MIN || token.length > TOKEN_MAX) {
    throw new ValidationError(
      `client request token must be ${TOKEN_MIN}–${TOKEN_MAX} characters (got ${token.length})`,
      { path: 'clientRequestToken' },
    );
  }
}
