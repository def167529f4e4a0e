/**
 * The ports between Portcullis' domain code and the outside world. `lib/aws/` implements them
 * over AWS SDK v3, `lib/local/` for the embedded mode; everything else depends only on these.
 */

/** Secrets Manager's staging labels, kept with the same meaning by every store. */
export const Stage = {
  Current: 'AWSCURRENT',
  Pending: 'AWSPENDING',
  Previous: 'AWSPREVIOUS',
} as const;
export type StageName = (typeof Stage)[keyof typeof Stage] | (string & {});

/** One stored version of a secret. `value` is secret material: never log it. */
export interface SecretValue {
  secretId: string;
  versionId: string;
  stages: string[];
  value: string;
  createdAt: Date;
}

export interface SecretVersionInfo {
  versionId: string;
  stages: string[];
  createdAt?: Date;
}

export interface SecretDescription {
  secretId: string;
  /** Versions that carry at least one stage (deprecated, unlabelled versions are left out). */
  versions: SecretVersionInfo[];
}

/** Which version to read: a stage (default `AWSCURRENT`) or an exact version id. */
export type SecretSelector = { stage?: StageName; versionId?: string };

/**
 * A secret store with Secrets Manager's version and staging-label semantics.
 * Errors: `NotFoundError` (secret or version), `ConflictError` (token reused with other
 * content), `Throttled` (retry), `ValidationError` (bad name or value).
 */
export interface SecretStore {
  /** Creates the secret with a first version labelled `AWSCURRENT`; a no-op returning the existing version when the same token was used. */
  create(
    secretId: string,
    value: string,
    options: { clientRequestToken: string; description?: string },
  ): Promise<{ versionId: string; created: boolean }>;
  get(secretId: string, selector?: SecretSelector): Promise<SecretValue>;
  /**
   * Stores a new version whose id is `clientRequestToken` (idempotent: the same token with the
   * same value returns `created: false`). `stages` defaults to `[AWSCURRENT]`; moving
   * `AWSCURRENT` labels the version it left `AWSPREVIOUS`.
   */
  put(
    secretId: string,
    value: string,
    options: { clientRequestToken: string; stages?: StageName[] },
  ): Promise<{ versionId: string; created: boolean }>;
  /** Moves `stage` onto `toVersionId` (from wherever it is), or removes it when `toVersionId` is undefined. */
  moveStage(
    secretId: string,
    stage: StageName,
    toVersionId: string | undefined,
    options?: { fromVersionId?: string },
  ): Promise<void>;
  describe(secretId: string): Promise<SecretDescription>;
}

/** Subject alternative names requested for a certificate. */
export interface SubjectAltNames {
  dns: string[];
  uri?: string[];
}

export interface IssueRequest {
  /** PEM PKCS#10 request; the CA takes only its public key, names come from `sans`/`commonName`. */
  csrPem: string;
  commonName: string;
  sans: SubjectAltNames;
  validityDays: number;
  /** Deterministic per (execution, certificate): the same token never issues a second certificate. */
  idempotencyToken: string;
  /** `server` (serverAuth) or `client` (clientAuth) usage. */
  usage: 'server' | 'client';
}

export interface IssuedCertificate {
  certificatePem: string;
  /** Intermediates up to (not including) the root, PEM; empty when the issuer is the root. */
  chainPem: string;
}

/** A certificate authority (AWS Private CA, or the embedded file-backed CA). */
export interface CertificateAuthority {
  /** Returns an id (the certificate ARN on AWS) to poll with `get`. Errors: `Throttled`, `ValidationError`. */
  issue(request: IssueRequest): Promise<{ certificateId: string }>;
  /** Errors: `CertificateNotReady` (poll again), `NotFoundError`, `Throttled`. */
  get(certificateId: string): Promise<IssuedCertificate>;
  /** Idempotent: revoking an already revoked certificate succeeds. `serial` is lowercase hex without separators. */
  revoke(certificateId: string, serial: string, reason: RevocationReason): Promise<void>;
  /** The CA's own certificate chain (trust anchor last), PEM. */
  caCertificates(): Promise<string>;
}

export const RevocationReason = {
  Superseded: 'SUPERSEDED',
  KeyCompromise: 'KEY_COMPROMISE',
  CessationOfOperation: 'CESSATION_OF_OPERATION',
  Unspecified: 'UNSPECIFIED',
} as const;
export type RevocationReason = (typeof RevocationReason)[keyof typeof RevocationReason];

/** A running gateway task as the control plane sees it. */
export interface FleetTask {
  taskId: string;
  /** Address the sidecar's admin API listens on (task private IP on AWS, loopback locally). */
  address: string;
  adminPort: number;
  /**
   * Address and port of the task's verification listener (`listeners.verify`): it serves the same
   * certificates as the TLS listener to the control plane's subnets only, without PROXY protocol
   * and without forwarding anything, so a handshake shows what clients are served.
   */
  tlsAddress: string;
  tlsPort: number;
  lastStatus: string;
  startedAt?: Date;
  /** ECS `desiredStatus` (`RUNNING`, or `STOPPED` once the task is being stopped), where known. */
  desiredStatus?: string;
  /**
   * ECS task `version`: raised on every state change of the task, and carried by each
   * `ECS Task State Change` event as `detail.version`. An event older than the task is stale.
   */
  version?: number;
}

export type RolloutState = 'IN_PROGRESS' | 'COMPLETED' | 'FAILED';

export interface ListTasksOptions {
  select?: (taskId: string) => boolean;
}

/** The set of gateway tasks of one fleet (an ECS service, or local processes). */
export interface Fleet {
  /**
   * The tasks that run now (ECS `lastStatus` RUNNING): those a nudge can reach. With `select`,
   * only the tasks whose id it accepts (a batch of the fleet): a fleet that can tell ids before
   * describing the tasks describes only those.
   */
  listTasks(options?: ListTasksOptions): Promise<FleetTask[]>;
  /**
   * One task of the fleet by id or ARN, whatever its status; `undefined` when it is not (or no
   * longer) one of the fleet's. Optional: a fleet without a cheap look-up is searched through
   * `listTasks` instead (which sees running tasks only).
   */
  describeTask?(taskId: string): Promise<FleetTask | undefined>;
  /**
   * Starts a fresh deployment of the service (ECS `forceNewDeployment`). With `reuseSince`, a
   * deployment still in progress that started at or after that time is followed instead: its
   * tasks all start later and read the secrets' current versions, so another one would only
   * restart them (several certificates' rotations rolling for the same unreachable task).
   */
  roll(options?: RollOptions): Promise<{ deploymentId: string; reused?: boolean }>;
  rolloutState(deploymentId: string): Promise<RolloutState>;
}

export interface RollOptions {
  /** Follow an in-progress deployment started at or after this time instead of starting one. */
  reuseSince?: Date;
}

/** What a sidecar reports about itself (`GET /v1/status`). */
export interface TaskStatus {
  ready: boolean;
  /** `renewAt`: when the control plane renews it (sidecars that know the fleet's renewal rule). */
  certificates: Record<string, { versionId: string; serial: string; notAfter: string; renewAt?: string }>;
  trust?: { versionId: string };
  allowlist?: { versionId: string; size: number };
  /** The fleet config's version (a file-backed config: a digest of the file). */
  fleetConfig?: { versionId: string };
  lastApply?: { at: string; ok: boolean; error?: string };
}

export interface NudgeRequest {
  secretId: string;
  /** Serve this version (for example the one labelled `AWSPENDING`) before it is promoted. */
  versionId?: string;
  /**
   * How long to wait for the sidecar's answer, which comes once the version is applied; default
   * the client's timeout. Longer for a large allowlist, whose apply is a 100 000-entry ACL swap.
   */
  timeoutMs?: number;
}

/** Talks to one task's sidecar and verification listener. */
export interface TaskClient {
  /** Errors: `TaskUnreachable`, `ValidationError` (the sidecar rejected the content). */
  nudge(task: FleetTask, request: NudgeRequest): Promise<TaskStatus>;
  status(task: FleetTask): Promise<TaskStatus>;
  /** A real TLS handshake with `serverName`; returns the served leaf. Errors: `TaskUnreachable`. */
  servedCertificate(
    task: FleetTask,
    serverName: string,
  ): Promise<{ serial: string; fingerprint256: string; notAfter: string }>;
}

/** Publishes control-plane events (EventBridge on AWS, a log sink locally). */
export interface Notifier {
  publish(detailType: string, detail: Record<string, unknown>): Promise<void>;
}
