import { Stage } from '../ports.ts';

/** The version/stage map of a secret, as `SecretStore.describe` returns it. */
export interface VersionStages {
  versions: readonly { versionId: string; stages: readonly string[] }[];
}

/** Staging label that marks the version holding a private key while its certificate is issued. */
export const IssuingStage = 'PORTCULLIS_ISSUING';
/** Staging label that marks the record of an accepted issue request (the CA's certificate id). */
export const IssuedStage = 'PORTCULLIS_ISSUED';

function holder(view: VersionStages | undefined, stage: string): string | undefined {
  return view?.versions.find((v) => v.stages.includes(stage))?.versionId;
}

export interface RotationRollbackInput {
  /** The certificate secret now; `undefined` when it does not exist. */
  secret: VersionStages | undefined;
  /** The bundle version this execution stages (derived token; it may not exist yet). */
  newVersionId: string;
  /** `AWSCURRENT` before this execution staged anything, when known. */
  previousVersionId: string | null;
  /** The certificate this execution obtained from the CA, when it got that far. */
  newCertificate: { certificateId: string; serial: string | null } | null;
  /**
   * The superseded certificate may be revoked already (its revocation was attempted and
   * failed, possibly after it went through): `AWSCURRENT` must not go back to it.
   */
  previousMayBeRevoked?: boolean;
}

export interface RotationRollbackPlan {
  /** Move `AWSCURRENT` back onto this version (it had moved to the new one). */
  restoreCurrentTo: string | null;
  /** Remove `AWSPENDING` (it is on the new version). */
  dropPending: boolean;
  /** Remove these working labels. */
  dropLabels: string[];
  /** Revoke the new certificate (reason SUPERSEDED); `null` when there is none or it must stay. */
  revoke: { certificateId: string; serial: string | null } | null;
  /** Nudge every task back to `AWSCURRENT` (some may serve the staged version). */
  nudgeTasks: boolean;
  /** Why something that would normally be undone is left alone. */
  notes: string[];
}

/**
 * What undoing a failed rotation takes, from what the secret looks like now. Invariant: the
 * certificate left under `AWSCURRENT` is never revoked — if `AWSCURRENT` cannot be moved back
 * (no previous version, or the previous certificate may be revoked already), the new
 * certificate stays valid and the plan says so.
 */
export function decideRotationRollback(input: RotationRollbackInput): RotationRollbackPlan {
  const notes: string[] = [];
  const current = holder(input.secret, Stage.Current);
  const pending = holder(input.secret, Stage.Pending);
  const staged = input.secret?.versions.some((v) => v.versionId === input.newVersionId) ?? false;
  // Promoted, then replaced by another execution's rotation (possible once promotion released
  // the lease): the new certificate is that execution's way back, its tasks are being nudged to
  // its own version. Undoing anything here would revoke its fallback or pull its tasks away.
  const superseded =
    staged &&
    current !== undefined &&
    current !== input.newVersionId &&
    (holder(input.secret, Stage.Previous) === input.newVersionId ||
      (input.previousVersionId !== null && current !== input.previousVersionId));
  if (superseded) {
    return {
      restoreCurrentTo: null,
      dropPending: false,
      dropLabels: [],
      revoke: null,
      nudgeTasks: false,
      notes: [
        `AWSCURRENT moved on to ${current} (another rotation) after this one was promoted; nothing is undone`,
      ],
    };
  }
  let restoreCurrentTo: string | null = null;
  let newStaysCurrent = false;
  if (current !== undefined && current === input.newVersionId) {
    const target = input.previousVersionId ?? holder(input.secret, Stage.Previous);
    if (input.previousMayBeRevoked === true) {
      newStaysCurrent = true;
      notes.push('the previous certificate may already be revoked; the new certificate stays current');
    } else if (target !== undefined && target !== input.newVersionId) restoreCurrentTo = target;
    else {
      newStaysCurrent = true;
      notes.push('AWSCURRENT has no previous version to return to; the new certificate stays current');
    }
  }
  const dropLabels = [IssuingStage, IssuedStage].filter((stage) => holder(input.secret, stage) !== undefined);
  let revoke = input.newCertificate;
  if (revoke !== null && newStaysCurrent) {
    notes.push('the new certificate is not revoked because it is still AWSCURRENT');
    revoke = null;
  }
  return {
    restoreCurrentTo,
    dropPending: pending !== undefined && pending === input.newVersionId,
    dropLabels,
    revoke,
    nudgeTasks: staged,
    notes,
  };
}

export interface AllowlistRollbackInput {
  /** `stage`: this execution staged a new version; `converge`: it only pushed `AWSCURRENT`. */
  mode: 'stage' | 'converge';
  secret: VersionStages | undefined;
  newVersionId: string | null;
  baseVersionId: string | null;
}

export interface AllowlistRollbackPlan {
  restoreCurrentTo: string | null;
  dropPending: boolean;
  nudgeTasks: boolean;
}

/**
 * What undoing a failed allowlist update takes. A converge run changed no labels, so there is
 * nothing to undo: tasks that rejected `AWSCURRENT` keep serving their previous state.
 */
export function decideAllowlistRollback(input: AllowlistRollbackInput): AllowlistRollbackPlan {
  if (input.mode === 'converge' || input.newVersionId === null) {
    return { restoreCurrentTo: null, dropPending: false, nudgeTasks: false };
  }
  const current = holder(input.secret, Stage.Current);
  const pending = holder(input.secret, Stage.Pending);
  const staged = input.secret?.versions.some((v) => v.versionId === input.newVersionId) ?? false;
  const restoreCurrentTo =
    current === input.newVersionId &&
    input.baseVersionId !== null &&
    input.baseVersionId !== input.newVersionId
      ? input.baseVersionId
      : null;
  return { restoreCurrentTo, dropPending: pending === input.newVersionId, nudgeTasks: staged };
}
