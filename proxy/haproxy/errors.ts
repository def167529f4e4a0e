/**
 * Errors of the HAProxy runtime-API client. Their `name` is a contract (Step Functions
 * `Retry`/`Catch` and the sidecar's status match on it); never rename one.
 *
 * Messages carry the command verb (`add acl`, `set ssl cert`) and HAProxy's own answer, never
 * the command's arguments in full or a payload: payloads are certificates and private keys.
 */
import { PortcullisError } from '../../lib/errors.ts';

/** Why HAProxy refused a command, derived from its text answer. */
export const RuntimeErrorReason = {
  UnknownCommand: 'unknown-command',
  PermissionDenied: 'permission-denied',
  UnknownIdentifier: 'unknown-identifier',
  NotFound: 'not-found',
  InvalidArgument: 'invalid-argument',
  VersionConflict: 'version-conflict',
  NoTransaction: 'no-transaction',
  AlreadyExists: 'already-exists',
  Rejected: 'rejected',
  ReloadFailed: 'reload-failed',
  Unexpected: 'unexpected',
} as const;
export type RuntimeErrorReason = (typeof RuntimeErrorReason)[keyof typeof RuntimeErrorReason];

/** HAProxy answered, and the answer says the command failed. Retrying the same input will not help. */
export class RuntimeApiError extends PortcullisError {
  /** The command verb without arguments, for example `commit ssl cert`. */
  readonly command: string;
  /** HAProxy's answer, trimmed and bounded; never contains a payload. */
  readonly haproxyMessage: string;
  readonly reason: RuntimeErrorReason;
  constructor(command: string, haproxyMessage: string, reason: RuntimeErrorReason, options?: ErrorOptions) {
    super(`HAProxy refused '${command}': ${haproxyMessage || '(empty answer)'}`, options);
    this.name = 'RuntimeApiError';
    this.command = command;
    this.haproxyMessage = haproxyMessage;
    this.reason = reason;
  }
}

/** The runtime socket could not be reached (missing, refused, closed before answering). Retryable. */
export class RuntimeUnavailable extends PortcullisError {
  readonly socketPath: string;
  /** The system error code when there is one (`ENOENT`, `ECONNREFUSED`, `EPIPE`). */
  readonly code: string | undefined;
  constructor(socketPath: string, message: string, options?: ErrorOptions & { code?: string }) {
    super(`HAProxy runtime socket ${socketPath}: ${message}`, options);
    this.name = 'RuntimeUnavailable';
    this.socketPath = socketPath;
    this.code = options?.code;
  }
}

/** The socket accepted the connection but the answer did not arrive in time. Retryable. */
export class RuntimeTimeout extends RuntimeUnavailable {
  readonly timeoutMs: number;
  constructor(socketPath: string, timeoutMs: number, options?: ErrorOptions) {
    super(socketPath, `no complete answer within ${timeoutMs} ms`, { ...options, code: 'ETIMEDOUT' });
    this.name = 'RuntimeTimeout';
    this.timeoutMs = timeoutMs;
  }
}

/**
 * HAProxy's answer could not be understood: truncated, fewer answers than commands in a batch,
 * or a format this client does not know. Usually a version mismatch or a connection cut mid-answer.
 */
export class RuntimeProtocolError extends PortcullisError {
  readonly command: string;
  constructor(command: string, message: string, options?: ErrorOptions) {
    super(`Unexpected answer to '${command}': ${message}`, options);
    this.name = 'RuntimeProtocolError';
    this.command = command;
  }
}
