/**
 * Errors of the sidecar. Their `name` travels in the admin API's error bodies
 * (`{ error: { name, message } }`) and in logs; keep names stable.
 */
import { PortcullisError, ValidationError } from '../../lib/errors.ts';

/**
 * A secret's content was refused before anything was applied (bad PEM, key mismatch, expired,
 * untrusted chain, uncovered names, weak key, bad JSON, bad or too broad CIDR, too many entries).
 * `code` names the check; nothing already serving changed. Answered as HTTP 422.
 */
export class ContentRejected extends ValidationError {
  readonly code: string;
  readonly secretId: string;
  readonly versionId: string;
  constructor(secretId: string, versionId: string, code: string, message: string, options?: ErrorOptions) {
    super(`secret ${secretId} version ${versionId} rejected (${code}): ${message}`, options);
    this.name = 'ContentRejected';
    this.code = code;
    this.secretId = secretId;
    this.versionId = versionId;
  }
}

/**
 * Valid content could not be applied: HAProxy refused it, did not answer, or serves something
 * else afterwards. The previous state keeps serving (the file on disk was restored). HTTP 503.
 */
export class ApplyFailed extends PortcullisError {
  readonly secretId: string;
  constructor(secretId: string, message: string, options?: ErrorOptions) {
    super(`applying ${secretId} failed: ${message}`, options);
    this.name = 'ApplyFailed';
    this.secretId = secretId;
  }
}

/** The nudge was not signed with the fleet's nudge key, is outside the window, or a replay. HTTP 401. */
export { NudgeUnauthorized } from '../../lib/errors.ts';

/** The sidecar cannot act yet (no valid fleet config, nudge key not loaded). HTTP 503. */
export class SidecarNotReady extends PortcullisError {
  constructor(message: string) {
    super(message);
    this.name = 'SidecarNotReady';
  }
}

/** A metric family declared twice differently, or a sample whose labels do not match its family. A bug, not an input error. */
export class MetricsError extends PortcullisError {
  constructor(message: string) {
    super(message);
    this.name = 'MetricsError';
  }
}
