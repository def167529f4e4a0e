/**
 * Errors of the allowlist storage. Their `name` is a contract (statemachines/README.md): the
 * update-allowlist machine fails with it, the sidecar reports it in its status.
 */
import { PortcullisError, ValidationError } from '../errors.ts';

/**
 * The object a manifest pins does not hold what the manifest promises: its SHA-256 or its entry
 * count differ (a truncated or replaced object, a wrong version). Nothing is applied from it; the
 * list in force stays. Not retryable: the same version holds the same bytes.
 */
export class AllowlistDigestMismatch extends PortcullisError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'AllowlistDigestMismatch';
  }
}

/**
 * A list larger than the store can hold (entries or bytes), refused before anything is staged.
 * `limit` names the limit (`AllowlistLimits.maxEntries`, `secret value 65536 bytes`, …).
 */
export class AllowlistTooLarge extends ValidationError {
  readonly limit: string;
  constructor(message: string, options: ErrorOptions & { limit: string; path?: string }) {
    super(message, options);
    this.name = 'AllowlistTooLarge';
    this.limit = options.limit;
  }
}
