/**
 * Errors shared across ports. Their `name` is a contract: Step Functions `Retry`/`Catch`
 * clauses match on it, so never rename one without updating `statemachines/`.
 */

/** Base class: every Portcullis error carries a stable `name` and keeps its `cause`. */
export class PortcullisError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'PortcullisError';
  }
}

/** Input that can never succeed as given (bad CIDR, bad config, bad PEM). Not retryable. */
export class ValidationError extends PortcullisError {
  /** Dotted path of the offending field, when there is one (`routes.0.serverName`). */
  readonly path: string | undefined;
  constructor(message: string, options?: ErrorOptions & { path?: string }) {
    super(message, options);
    this.name = 'ValidationError';
    this.path = options?.path;
  }
}

/** A named object (secret, version, certificate, task) does not exist. */
export class NotFoundError extends PortcullisError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'NotFoundError';
  }
}

/**
 * `work`'s result, or `undefined` when it fails with `NotFoundError` (by name, so errors of
 * every adapter count); any other error is thrown.
 * @example const pending = await unlessNotFound(store.get(secretId, { stage: Stage.Pending }));
 */
export async function unlessNotFound<T>(work: Promise<T>): Promise<T | undefined> {
  try {
    return await work;
  } catch (error) {
    if (error instanceof Error && error.name === 'NotFoundError') return undefined;
    throw error;
  }
}

/** The operation conflicts with the current state (token reused with other content, stage moved). */
export class ConflictError extends PortcullisError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ConflictError';
  }
}

/** A backing service refused for rate reasons; retry with backoff. */
export class Throttled extends PortcullisError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'Throttled';
  }
}

/** The CA accepted the request but the certificate is not issued yet; poll again. */
export class CertificateNotReady extends PortcullisError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'CertificateNotReady';
  }
}

/** A gateway task could not be reached (nudge, status or handshake). */
export class TaskUnreachable extends PortcullisError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TaskUnreachable';
  }
}

/**
 * A nudge whose signature the sidecar refused (HTTP 401): signed with another key than the task
 * verifies with, outside the nudge window (clocks apart), or a replay. The sidecar throws it with
 * the failed check as `reason`; the task client when a sidecar answers 401. Not retryable as
 * such: fix the nudge-key secret (or the clock) first.
 */
export class NudgeUnauthorized extends PortcullisError {
  /** `bad-signature`, `stale`, `replay`, … when the sidecar named the check. */
  readonly reason: string | undefined;
  constructor(message: string, options?: ErrorOptions & { reason?: string }) {
    super(message, options);
    this.name = 'NudgeUnauthorized';
    this.reason = options?.reason;
  }
}

/** A task answered, but serves something other than what was asked of it. */
export class ServedVersionMismatch extends PortcullisError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ServedVersionMismatch';
  }
}

/** An ECS deployment ended FAILED or did not finish in the allowed time. */
export class RolloutFailed extends PortcullisError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RolloutFailed';
  }
}

/**
 * Another execution is rotating the same certificate (its working labels or `AWSPENDING` are
 * on the secret and younger than the lease bound). Nothing was written; not retried.
 */
export class RotationInProgress extends PortcullisError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RotationInProgress';
  }
}

/**
 * A local run of a state machine went past a limit Step Functions enforces on one execution
 * (25 000 history events, 262 144 bytes of state input or output). On AWS the execution would
 * fail there (`States.DataLimitExceeded` is not even catchable by `States.ALL`), so the local
 * runner stops and names the limit: the machine's shape, not the work, has to change.
 */
export class ExecutionLimitExceeded extends PortcullisError {
  readonly limit: 'historyEvents' | 'payloadBytes';
  readonly value: number;
  readonly max: number;
  constructor(
    message: string,
    details: { limit: 'historyEvents' | 'payloadBytes'; value: number; max: number },
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'ExecutionLimitExceeded';
    this.limit = details.limit;
    this.value = details.value;
    this.max = details.max;
  }
}
