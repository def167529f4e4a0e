/**
 * AWS adapters for the ports in `lib/ports.ts` (SDK v3). Each takes an injectable client and
 * otherwise uses one created at module scope, reused across Lambda invocations.
 */
export {
  AcmPcaAuthority,
  type AcmPcaAuthorityOptions,
  apiPassthroughFor,
  chainBelowRoot,
  defaultAcmPcaClient,
  defaultTemplateArn,
  pcaIdempotencyToken,
  pcaSerial,
} from './acm-pca-authority.ts';
export {
  AWS_CONNECT_TIMEOUT_MS,
  AWS_MAX_ATTEMPTS,
  AWS_REQUEST_TIMEOUT_MS,
  type AwsClientLimits,
  awsClientConfig,
} from './client-config.ts';
export {
  defaultEcsClient,
  EcsFleet,
  type EcsFleetOptions,
  rolloutStateOf,
  taskIdOf,
  taskPrivateAddress,
} from './ecs-fleet.ts';
export {
  AccessDenied,
  AwsEndpointUnreachable,
  type AwsErrorContext,
  type AwsErrorShape,
  AwsRequestTimeout,
  AwsServiceError,
  describeAwsError,
  EncryptionKeyError,
  isAwsErrorCode,
  mapAwsError,
  ServiceUnavailable,
  transportFailure,
} from './errors.ts';
export {
  defaultEventBridgeClient,
  EventBridgeNotifier,
  type EventBridgeNotifierOptions,
  entryError,
} from './eventbridge-notifier.ts';
export {
  defaultSecretsManagerClient,
  SecretsManagerStore,
  type SecretsManagerStoreOptions,
} from './secrets-manager-store.ts';
