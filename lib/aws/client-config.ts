/**
 * Network limits for every AWS SDK v3 client the adapters create.
 *
 * Without them the SDK waits for the operating system: a subnet with no route to a service
 * endpoint (no NAT gateway, no VPC endpoint) leaves each TCP connect hanging for minutes, so a
 * Lambda function ends in its own timeout (`Sandbox.Timedout`, no error name a state machine can
 * route) and the sidecar's poll stalls. With them the call fails within seconds as
 * `AwsEndpointUnreachable` or `AwsRequestTimeout` (`lib/aws/errors.ts`).
 *
 * Budget: the SDK makes up to {@link AWS_MAX_ATTEMPTS} attempts, each bounded by the request
 * timeout (which includes the connect), plus its own short backoff: at most about
 * 3 × 5 s = 15 s for a call that never gets an answer, and 3 × 3 s = 9 s for an endpoint that
 * cannot be reached, both inside the 30 s the shortest Lambda function has.
 */
import { ValidationError } from '../errors.ts';

/** Time to establish the TCP connection to a service endpoint (ms). In-region APIs connect in milliseconds. */
export const AWS_CONNECT_TIMEOUT_MS = 3000;
/** Time for one whole attempt, connect included, until the response head arrives (ms). */
export const AWS_REQUEST_TIMEOUT_MS = 5000;
/** Attempts per call, the first included (the SDK's standard retry mode retries timeouts and 5xx). */
export const AWS_MAX_ATTEMPTS = 3;

export interface AwsClientLimits {
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  maxAttempts?: number;
}

/**
 * The part of an SDK client's configuration that bounds its network waits. `requestHandler`
 * is given as options, so each client builds its own `NodeHttpHandler` from them (the clients
 * bundle different `@smithy/node-http-handler` versions). `throwOnRequestTimeout` makes newer
 * handlers fail the attempt at `requestTimeout` instead of only logging a warning.
 *
 * @example
 * const client = new SecretsManagerClient({ ...awsClientConfig(), region: 'eu-west-1' });
 */
export function awsClientConfig(limits: AwsClientLimits = {}): {
  maxAttempts: number;
  requestHandler: { connectionTimeout: number; requestTimeout: number; throwOnRequestTimeout: true };
} {
  const connectionTimeout = positive('connectTimeoutMs', limits.connectTimeoutMs ?? AWS_CONNECT_TIMEOUT_MS);
  const requestTimeout = positive('requestTimeoutMs', limits.requestTimeoutMs ?? AWS_REQUEST_TIMEOUT_MS);
  const maxAttempts = positive('maxAttempts', limits.maxAttempts ?? AWS_MAX_ATTEMPTS);
  return { maxAttempts, requestHandler: { connectionTimeout, requestTimeout, throwOnRequestTimeout: true } };
}

function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0) {
    throw new ValidationError(`${name} must be a positive integer, got ${value}`, { path: name });
  }
  return value;
}
