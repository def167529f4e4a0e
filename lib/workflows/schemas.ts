/**
 * Input schemas of the control-plane steps (one per Lambda function). The Lambda entries parse
 * with them through the Powertools parser middleware, the local runner with `safeParse`; both
 * turn a failure into `ValidationError`. State payloads are small and secret-free: Step
 * Functions keeps every one of them in the execution history.
 */
import { z } from 'zod';
import { RevocationReason } from '../ports.ts';
import { AllowlistChangeObjectSchema } from '../secrets/allowlist-storage.ts';

const fleet = z.string().min(1).optional();
const executionName = z.string().min(1).max(256);
const certificate = z.string().min(1);
const nullableString = z.string().min(1).nullable();

/** A task as it travels between states (`FleetTask` without dates). */
export const TaskRefSchema = z.object({
  taskId: z.string().min(1),
  address: z.string().min(1),
  adminPort: z.number().int().min(1).max(65535),
  tlsAddress: z.string().min(1),
  tlsPort: z.number().int().min(1).max(65535),
  lastStatus: z.string().default('RUNNING'),
});
export type TaskRef = z.output<typeof TaskRefSchema>;

export const TaskOutcomeSchema = z.object({ taskId: z.string().min(1), needsRoll: z.boolean() });

/** What a task must serve after its nudge. */
export const VerifyTargetSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('certificate'),
    name: certificate,
    secretId: z.string().min(1),
    versionId: z.string().min(1),
    serial: z.string().min(1),
  }),
  z.object({ kind: z.literal('allowlist'), secretId: z.string().min(1), versionId: z.string().min(1) }),
]);
export type VerifyTarget = z.output<typeof VerifyTargetSchema>;

/** The input of rotate-certificates (manual, or `{ mode: 'due' }` from the schedule). */
export const RotationRequestSchema = z.looseObject({
  fleet,
  certificates: z.array(certificate).min(1).optional(),
  force: z.boolean().default(false),
  dryRun: z.boolean().default(false),
  mode: z.enum(['due', 'manual']).default('manual'),
  /** Between promotion and revoking the superseded certificate. Default 300. */
  graceSeconds: z.number().int().min(0).max(86_400).default(300),
  /** Between two rollout checks after a service roll. Default 30. */
  rolloutPollSeconds: z.number().int().min(0).max(3600).default(30),
  /** Rollout checks before the roll counts as failed. Default 40 (20 minutes at 30 s). */
  rolloutMaxPolls: z.number().int().min(1).max(1000).default(40),
  /**
   * How many UpdateTasks invocations share a certificate's fleet (each nudges and verifies
   * its part side by side). Default 10: 100 tasks each at 1 000 tasks.
   */
  taskBatches: z.number().int().min(1).max(100).default(10),
});
export type RotationRequest = z.output<typeof RotationRequestSchema>;

export const PlanRotationInput = z.object({ input: RotationRequestSchema, executionName });
export const IssueCertificateInput = z.object({ fleet, executionName, certificate });
export const GetCertificateInput = z.object({ fleet, certificate, certificateId: z.string().min(1) });
export const StageCertificateInput = z.object({
  fleet,
  executionName,
  certificate,
  certificateId: z.string().min(1),
});
export const NudgeTaskInput = z.object({
  fleet,
  task: TaskRefSchema,
  secretId: z.string().min(1),
  /** Serve this version (staged, not yet current); absent or null: `AWSCURRENT`. */
  versionId: nullableString.optional(),
  /** How long to wait for the sidecar to answer (it answers once applied); default the client's. */
  timeoutMs: z.number().int().positive().optional(),
});
/** One part of the fleet: the tasks whose id hashes to `index` of `of` (see `taskBatchOf`). */
export const TaskBatchSchema = z.object({
  index: z.number().int().min(0),
  of: z.number().int().min(1).max(100),
});
export const UpdateTasksInput = z
  .object({ fleet, batch: TaskBatchSchema, target: VerifyTargetSchema })
  .refine((event) => event.batch.index < event.batch.of, {
    message: 'batch index must be below the number of batches',
    path: ['batch', 'index'],
  });
/** What UpdateTasks returns: counts, and the tasks a hot update could not reach (bounded). */
export const TaskBatchResultSchema = z.object({
  updated: z.number().int().min(0),
  unreachable: z.array(z.string().min(1)),
  unreachableCount: z.number().int().min(0),
});
export type TaskBatchResult = z.output<typeof TaskBatchResultSchema>;
export const PromoteSecretInput = z.object({
  fleet,
  secretId: z.string().min(1),
  versionId: z.string().min(1),
  tasks: z.array(TaskOutcomeSchema).default([]),
  /** The UpdateTasks results, instead of per-task outcomes (rotate-certificate). */
  batches: z.array(TaskBatchResultSchema).optional(),
});
export const RollServiceInput = z.object({
  fleet,
  /**
   * When the secret became current (PromoteSecret's `promotedAt`): a deployment still rolling
   * out that started since then is followed rather than a new one started.
   */
  notBefore: z.iso.datetime().optional(),
});
export const CheckRolloutInput = z.object({
  fleet,
  deploymentId: z.string().min(1),
  poll: z.number().int().min(0).default(0),
  maxPolls: z.number().int().min(1),
});
export const RevokeCertificateInput = z.object({
  fleet,
  certificate,
  certificateId: nullableString,
  serial: nullableString,
  reason: z
    .enum(Object.values(RevocationReason) as [RevocationReason, ...RevocationReason[]])
    .default('SUPERSEDED'),
});

const ErrorInfoSchema = z.looseObject({ Error: z.string(), Cause: z.string().optional() });

export const RollbackRotationInput = z.looseObject({
  fleet,
  executionName,
  certificate,
  error: ErrorInfoSchema.optional(),
  issued: z.looseObject({ certificateId: z.string().min(1) }).optional(),
  staged: z.looseObject({ previousVersionId: nullableString }).optional(),
  /** Set when RevokeCertificate failed: the superseded certificate may already be revoked. */
  previousRevocationAttempted: z.boolean().optional(),
});

/** Every event the control plane publishes. */
export const DetailType = {
  CertificateRotated: 'CertificateRotated',
  CertificateRotationFailed: 'CertificateRotationFailed',
  AllowlistUpdated: 'AllowlistUpdated',
  AllowlistUpdateFailed: 'AllowlistUpdateFailed',
  TaskConvergeFailed: 'TaskConvergeFailed',
} as const;
export type DetailType = (typeof DetailType)[keyof typeof DetailType];

export const NotifyInput = z.object({
  detailType: z.enum(Object.values(DetailType) as [DetailType, ...DetailType[]]),
  detail: z.record(z.string(), z.unknown()),
});

/**
 * A manual allowlist change. `set` replaces the list; `add`/`remove` edit it; `change` names an
 * uploaded object holding the entries of one of those, for a change too large for the 256 KiB
 * Step Functions input (the CLI uploads above {@link INLINE_REQUEST_MAX_BYTES}).
 */
export const AllowlistRequestSchema = z
  .object({
    fleet,
    set: z.array(z.string()).optional(),
    add: z.array(z.string()).optional(),
    remove: z.array(z.string()).optional(),
    change: AllowlistChangeObjectSchema.optional(),
    reason: z.string().min(1).max(512),
    updatedBy: z.string().min(1).max(256).optional(),
  })
  .refine(
    (r) =>
      [r.set !== undefined, r.add !== undefined || r.remove !== undefined, r.change !== undefined].filter(
        Boolean,
      ).length === 1,
    { message: 'give either set, or add and/or remove, or change' },
  );

/**
 * The largest request the CLI passes inline. Step Functions takes 256 KiB of execution input
 * and of state payload; the input travels in several states' payloads, so a change above this
 * goes through the object store instead.
 */
export const INLINE_REQUEST_MAX_BYTES = 32 * 1024;
/** How many added and removed entries a state payload or an event lists; the counts are always exact. */
export const ALLOWLIST_SAMPLE_ENTRIES = 20;
export type AllowlistRequest = z.output<typeof AllowlistRequestSchema>;

/** The EventBridge event of a change to a secret (CloudTrail `PutSecretValue`, `UpdateSecretVersionStage`, …). */
export const SecretChangeEventSchema = z.looseObject({
  'detail-type': z.string(),
  source: z.string(),
  detail: z.looseObject({
    eventName: z.string().optional(),
    requestParameters: z.looseObject({ secretId: z.string().optional() }).nullish(),
  }),
});
export type SecretChangeEvent = z.output<typeof SecretChangeEventSchema>;

export const ValidateAllowlistInput = z.object({
  input: z.union([SecretChangeEventSchema, AllowlistRequestSchema]),
  executionName,
});

/** The allowlist update as it travels between states. */
export const AllowlistStateSchema = z.object({
  mode: z.enum(['stage', 'converge', 'ignore']),
  secretId: nullableString,
  baseVersionId: nullableString,
  versionId: nullableString,
  size: z.number().int().min(0),
  /** At most {@link ALLOWLIST_SAMPLE_ENTRIES} of each: a 100 000-entry diff does not fit a state payload. */
  added: z.array(z.string()).max(ALLOWLIST_SAMPLE_ENTRIES),
  removed: z.array(z.string()).max(ALLOWLIST_SAMPLE_ENTRIES),
  addedCount: z.number().int().min(0).default(0),
  removedCount: z.number().int().min(0).default(0),
});
export type AllowlistState = z.output<typeof AllowlistStateSchema>;

export const StageAllowlistInput = z.object({
  fleet,
  executionName,
  allowlist: AllowlistStateSchema,
  request: AllowlistRequestSchema,
});
export const RollbackAllowlistInput = z.looseObject({
  fleet,
  executionName,
  allowlist: AllowlistStateSchema,
  error: ErrorInfoSchema.optional(),
});

/** EventBridge `ECS Task State Change`, or `{ taskId }` by hand. */
export const ConvergeTaskInput = z.union([
  z.looseObject({
    'detail-type': z.literal('ECS Task State Change'),
    detail: z.looseObject({
      taskArn: z.string().min(1),
      lastStatus: z.string().optional(),
      // ECS raises a task's version on every change; EventBridge may deliver an event twice.
      version: z.number().int().nonnegative().optional(),
    }),
  }),
  z.object({ fleet, taskId: z.string().min(1) }),
]);
