/**
 * Maps AWS SDK v3 service errors onto Portcullis' typed errors, for every adapter in `lib/aws/`.
 *
 * Step Functions `Retry`/`Catch` match on error names, so the mapping decides what the state
 * machines retry: `Throttled` and `ServiceUnavailable` are retryable, the rest are not.
 * Names defined here (a contract, like those in `lib/errors.ts`): `AccessDenied`,
 * `EncryptionKeyError`, `ServiceUnavailable`, `AwsEndpointUnreachable`, `AwsRequestTimeout`,
 * `AwsServiceError`.
 */
import { ConflictError, NotFoundError, PortcullisError, Throttled, ValidationError } from '../errors.ts';

/** The caller lacks IAM permission, or its credentials are invalid or expired. Not retryable. */
export class AccessDenied extends PortcullisError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'AccessDenied';
  }
}

/**
 * The service could not use the KMS key protecting the data (Secrets Manager `DecryptionFailure`,
 * `EncryptionFailure`, KMS key disabled or not accessible). Not retryable until someone fixes
 * the key or its policy.
 */
export class EncryptionKeyError extends PortcullisError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'EncryptionKeyError';
  }
}

/**
 * A server-side or network failure (HTTP 5xx, timeouts, resets) that outlasted the SDK's own
 * retries. The state machines do not retry it again: they roll back (statemachines/README.md).
 */
export class ServiceUnavailable extends PortcullisError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ServiceUnavailable';
  }
}

/**
 * No connection to the service endpoint: the connect timed out (`AWS_CONNECT_TIMEOUT_MS`), was
 * refused, or the name did not resolve, on every attempt. In a VPC this is a missing network
 * path, not a busy service: the subnet has neither a NAT gateway nor a VPC endpoint for the
 * service (docs/deploy.md, `vpcEndpoints`), or a security group or network ACL drops the
 * traffic. A `ServiceUnavailable` for code that only cares that AWS did not answer.
 */
export class AwsEndpointUnreachable extends ServiceUnavailable {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'AwsEndpointUnreachable';
  }
}

/**
 * Connected, but no answer within the request timeout (`AWS_REQUEST_TIMEOUT_MS`) on every
 * attempt: the path or the service is stalling. A `ServiceUnavailable` too.
 */
export class AwsRequestTimeout extends ServiceUnavailable {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'AwsRequestTimeout';
  }
}

/** Any other AWS error; `code` is the service's error code. Not retryable. */
export class AwsServiceError extends PortcullisError {
  readonly code: string;
  readonly httpStatusCode: number | undefined;
  constructor(message: string, options: ErrorOptions & { code: string; httpStatusCode?: number }) {
    super(message, options);
    this.name = 'AwsServiceError';
    this.code = options.code;
    this.httpStatusCode = options.httpStatusCode;
  }
}

/** Where an error happened, for the message; never put secret material in here. */
export interface AwsErrorContext {
  /** Service name for messages, for example `SecretsManager`. */
  service: string;
  /** API operation, for example `GetSecretValue`. */
  operation: string;
  /** The resource the call was about (secret name or ARN, certificate ARN, cluster). */
  resource?: string;
  /**
   * Per-code overrides that win over the generic table, for codes whose meaning depends on the
   * service (ACM PCA `RequestInProgressException` → `CertificateNotReady`).
   */
  overrides?: Readonly<Record<string, (message: string, cause: unknown) => PortcullisError>>;
}

const NOT_FOUND = new Set([
  'ResourceNotFoundException',
  'NotFoundException',
  'NoSuchEntity',
  'ClusterNotFoundException',
  'ServiceNotFoundException',
  'TargetNotFoundException',
  'ExecutionDoesNotExist',
  'StateMachineDoesNotExist',
  'ActivityDoesNotExist',
]);

// The SDK's own throttling classification (@smithy/service-error-classification), plus codes
// that mean "someone else is changing this right now": retrying shortly is the cure for both.
const THROTTLED = new Set([
  'BandwidthLimitExceeded',
  'EC2ThrottledException',
  'LimitExceededException',
  'PriorRequestNotComplete',
  'ProvisionedThroughputExceededException',
  'RequestLimitExceeded',
  'RequestThrottled',
  'RequestThrottledException',
  'SlowDown',
  'ThrottledException',
  'Throttling',
  'ThrottlingException',
  'TooManyRequestsException',
  'TransactionInProgressException',
  'KMSThrottlingException',
  'ConcurrentModificationException',
  'RequestInProgressException',
]);

const INVALID = new Set([
  'InvalidParameterException',
  'InvalidRequestException',
  'InvalidParameterValue',
  'InvalidParameterValueException',
  'InvalidParameterCombination',
  'MissingParameter',
  'ValidationException',
  'MalformedPolicyDocumentException',
  'MalformedCSRException',
  'MalformedCertificateException',
  'InvalidArgsException',
  'InvalidArnException',
  'InvalidNextTokenException',
  'InvalidPolicyException',
  'InvalidStateException',
  'InvalidDefinition',
  'InvalidName',
  'InvalidExecutionInput',
  'InvalidArn',
  'ClientException',
  'PreconditionNotMetException',
]);

const CONFLICT = new Set([
  'ResourceExistsException',
  'ResourceAlreadyExistsException',
  'ConflictException',
  'IdempotentParameterMismatch',
  'ExecutionAlreadyExists',
  'RequestAlreadyProcessedException',
  'LockoutPreventedException',
]);

const ACCESS = new Set([
  'AccessDeniedException',
  'AccessDenied',
  'UnauthorizedOperation',
  'UnrecognizedClientException',
  'InvalidClientTokenId',
  'ExpiredTokenException',
  'ExpiredToken',
  'InvalidSignatureException',
  'SignatureDoesNotMatch',
  'MissingAuthenticationToken',
]);

const KEY = new Set([
  'DecryptionFailure',
  'EncryptionFailure',
  'KMSAccessDeniedException',
  'KMSDisabledException',
  'KMSInvalidStateException',
  'KMSNotFoundException',
  'KMSKeyNotAccessibleException',
  'KMSInvalidKeyUsageException',
]);

const UNAVAILABLE = new Set([
  'InternalServiceError',
  'InternalServiceErrorException',
  'InternalFailure',
  'InternalServerException',
  'InternalException',
  'ServerException',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'ServiceException',
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeoutException',
]);

const NETWORK_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN']);

// Node's codes for "never got a connection": refused, no route, name not resolved.
const CONNECT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
// @smithy/node-http-handler's connect-timeout messages: "Socket timed out without establishing a
// connection within N ms" (2.x) and "… did not establish a connection with the server within the
// configured timeout of N ms" (4.x). Its request timeouts say "Connection timed out after N ms",
// "… exceeded the configured N ms requestTimeout" or "… timed out after N ms of inactivity".
const CONNECT_TIMEOUT_MESSAGE = /establish(?:ing)? a connection/i;

/**
 * Whether a thrown value is a transport failure before any answer: `connect` (no connection
 * was made), `timeout` (connected, no answer in time), or `undefined` (something else).
 */
export function transportFailure(error: unknown): 'connect' | 'timeout' | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const e = error as { name?: unknown; code?: unknown; message?: unknown };
  const message = typeof e.message === 'string' ? e.message : '';
  if (e.name === 'TimeoutError') return CONNECT_TIMEOUT_MESSAGE.test(message) ? 'connect' : 'timeout';
  if (typeof e.code === 'string' && CONNECT_CODES.has(e.code)) return 'connect';
  // The kernel's own connect timeout (SYN never answered) when no connect timeout is set.
  if (e.code === 'ETIMEDOUT' && /\bconnect\b/.test(message)) return 'connect';
  return undefined;
}

const MAX_SERVICE_MESSAGE = 300;

/** What `mapAwsError` reads from an SDK v3 exception (or any thrown value). */
export interface AwsErrorShape {
  code: string;
  message: string;
  httpStatusCode: number | undefined;
  requestId: string | undefined;
  throttling: boolean;
  fault: 'client' | 'server' | undefined;
}

/** Reads code, status and request id from whatever was thrown; never throws. */
export function describeAwsError(error: unknown): AwsErrorShape {
  const e = (typeof error === 'object' && error !== null ? error : {}) as Record<string, unknown>;
  const metadata = (typeof e.$metadata === 'object' && e.$metadata !== null ? e.$metadata : {}) as Record<
    string,
    unknown
  >;
  const retryable = (typeof e.$retryable === 'object' && e.$retryable !== null ? e.$retryable : {}) as Record<
    string,
    unknown
  >;
  // SDK v3 puts the service's error code in `name`; some protocols also fill `Code`, and Node
  // network errors carry theirs in `code`.
  const nodeCode = typeof e.code === 'string' ? e.code : undefined;
  const code =
    (typeof e.Code === 'string' && e.Code) ||
    (nodeCode && NETWORK_CODES.has(nodeCode) ? nodeCode : undefined) ||
    (typeof e.name === 'string' && e.name !== 'Error' ? e.name : undefined) ||
    nodeCode ||
    'UnknownError';
  const message =
    typeof e.message === 'string' ? e.message : typeof error === 'string' ? error : String(error ?? '');
  return {
    code,
    message: message.length > MAX_SERVICE_MESSAGE ? `${message.slice(0, MAX_SERVICE_MESSAGE)}…` : message,
    httpStatusCode: typeof metadata.httpStatusCode === 'number' ? metadata.httpStatusCode : undefined,
    requestId: typeof metadata.requestId === 'string' ? metadata.requestId : undefined,
    throttling: retryable.throttling === true,
    fault: e.$fault === 'client' || e.$fault === 'server' ? e.$fault : undefined,
  };
}

/**
 * Turns an AWS SDK v3 error into a typed Portcullis error; the original stays as `cause`.
 * An error that already is a `PortcullisError` is returned unchanged.
 *
 * | AWS | Portcullis |
 * | --- | --- |
 * | `ResourceNotFoundException` and other *NotFound*, HTTP 404 | `NotFoundError` |
 * | throttling codes, HTTP 429, `$retryable.throttling`, concurrent modification, request in progress | `Throttled` |
 * | `InvalidParameterException`, `InvalidRequestException`, `ValidationException`, … | `ValidationError` |
 * | `ResourceExistsException`, `ConflictException`, … | `ConflictError` |
 * | `AccessDeniedException`, bad or expired credentials, HTTP 403 | `AccessDenied` |
 * | `DecryptionFailure`, `EncryptionFailure`, `KMS*` | `EncryptionKeyError` |
 * | no connection: connect timeout, refused, no route, name not resolved | `AwsEndpointUnreachable` (a `ServiceUnavailable`) |
 * | connected, no answer within the request timeout | `AwsRequestTimeout` (a `ServiceUnavailable`) |
 * | internal errors, HTTP 5xx, connection resets | `ServiceUnavailable` |
 * | anything else | `AwsServiceError` |
 *
 * @example
 * try { await client.send(new GetSecretValueCommand(input)); }
 * catch (error) { throw mapAwsError(error, { service: 'SecretsManager', operation: 'GetSecretValue', resource: id }); }
 */
export function mapAwsError(error: unknown, context: AwsErrorContext): PortcullisError {
  if (error instanceof PortcullisError) return error;
  const shape = describeAwsError(error);
  const where = `${context.service} ${context.operation}${context.resource ? ` on '${context.resource}'` : ''}`;
  const request = shape.requestId ? ` (request ${shape.requestId})` : '';
  const message = `${where} failed: ${shape.code}${shape.message ? `: ${shape.message}` : ''}${request}`;
  const options = { cause: error };

  const override = context.overrides?.[shape.code];
  if (override) return override(message, error);

  const transport = transportFailure(error);
  if (transport !== undefined) {
    const attempts = attemptsOf(error);
    const tries = attempts === undefined ? '' : ` (${attempts} attempt${attempts === 1 ? '' : 's'})`;
    if (transport === 'connect') {
      return new AwsEndpointUnreachable(
        `${where} failed: no connection to the ${context.service} endpoint${tries}: ${shape.message || shape.code}. ` +
          `In a VPC the subnet needs a route to it: a NAT gateway or a VPC endpoint (docs/deploy.md, vpcEndpoints)`,
        options,
      );
    }
    return new AwsRequestTimeout(
      `${where} failed: no answer from the ${context.service} endpoint in time${tries}: ${shape.message || shape.code}`,
      options,
    );
  }

  const { code, httpStatusCode: status } = shape;
  if (NOT_FOUND.has(code)) return new NotFoundError(message, options);
  if (KEY.has(code)) return new EncryptionKeyError(message, options);
  if (THROTTLED.has(code) || status === 429 || shape.throttling) return new Throttled(message, options);
  if (CONFLICT.has(code)) return new ConflictError(message, options);
  if (ACCESS.has(code) || status === 403) return new AccessDenied(message, options);
  if (INVALID.has(code)) return new ValidationError(message, options);
  if (UNAVAILABLE.has(code) || NETWORK_CODES.has(code) || (status !== undefined && status >= 500)) {
    return new ServiceUnavailable(message, options);
  }
  if (status === 404) return new NotFoundError(message, options);
  if (status === 409) return new ConflictError(message, options);
  return new AwsServiceError(message, {
    ...options,
    code,
    ...(status === undefined ? {} : { httpStatusCode: status }),
  });
}

/** The SDK's attempt count on a failed call (`$metadata.attempts`), if it recorded one. */
function attemptsOf(error: unknown): number | undefined {
  const metadata = (error as { $metadata?: { attempts?: unknown } } | null)?.$metadata;
  return typeof metadata?.attempts === 'number' ? metadata.attempts : undefined;
}

/** Whether `error` is an AWS error with this code (`ResourceExistsException`, …). */
export function isAwsErrorCode(error: unknown, code: string): boolean {
  return !(error instanceof PortcullisError) && describeAwsError(error).code === code;
}
