/**
 * Errors of the task client. Their `name` is a contract (Step Functions match on it), like
 * those in `lib/errors.ts`; the task client also throws `TaskUnreachable`, `ValidationError`,
 * `NotFoundError` and `NudgeUnauthorized` (the sidecar's own error, re-exported) from there.
 */
import { PortcullisError } from '../errors.ts';

export { NudgeUnauthorized } from '../errors.ts';

/** Something answered on the sidecar's port, but not as a sidecar does (status or body). Not retryable. */
export class TaskProtocolError extends PortcullisError {
  readonly statusCode: number | undefined;
  constructor(message: string, options?: ErrorOptions & { statusCode?: number }) {
    super(message, options);
    this.name = 'TaskProtocolError';
    this.statusCode = options?.statusCode;
  }
}
