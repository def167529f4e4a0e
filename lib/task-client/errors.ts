/**
 * Errors of the task client. Their `name` is a contract (Step Functions match on it), like
 * those in `lib/errors.ts`; the task client also throws `TaskUnreachable`, `ValidationError`
 * and `NotFoundError` from there.
 */
import { PortcullisError } from '../errors.ts';

/**
 * The sidecar refused the nudge's signature (HTTP 401): the key the control plane signs with is
 * not the one the task verifies with, or the two clocks are more than the nudge window apart.
 * Not retryable as such; fix the nudge-key secret (or the clock) first.
 */
export class NudgeUnauthorized extends PortcullisError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'NudgeUnauthorized';
  }
}

/** Something answered on the sidecar's port, but not as a sidecar does (status or body). Not retryable. */
export class TaskProtocolError extends PortcullisError {
  readonly statusCode: number | undefined;
  constructor(message: string, options?: ErrorOptions & { statusCode?: number }) {
    super(message, options);
    this.name = 'TaskProtocolError';
    this.statusCode = options?.statusCode;
  }
}
