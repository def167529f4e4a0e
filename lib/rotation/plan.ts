import { RotationInProgress, ValidationError } from '../errors.ts';
import type { BackoffState } from './backoff.ts';
import type { CertificateSpec } from './certificate-spec.ts';
import { type CurrentCertificate, type DueReason, renewalDecision } from './due.ts';

/** One certificate in a rotation plan; small and secret-free (it travels in execution history). */
export interface PlannedCertificate {
  name: string;
  secretId: string;
  /**
   * Why it is rotated or skipped; `rotation-in-progress`: another execution holds its lease;
   * `backing-off`: due, but its last rotations failed and the back-off has not run out.
   */
  reason: DueReason | 'rotation-in-progress' | 'backing-off';
  /** The back-off after failed rotations, when there is one (rotated or skipped). */
  backoff?: BackoffState;
  /** For `rotation-in-progress`: the other execution's marks (version ids and labels). */
  lease?: string;
  currentSerial: string | null;
  renewAt: string | null;
}

export interface RotationPlan {
  rotate: PlannedCertificate[];
  skip: PlannedCertificate[];
}

export interface PlanInput {
  specs: readonly CertificateSpec[];
  /** Restrict the plan to these names; every name must exist. Default: all. */
  selected?: readonly string[];
  /** Renew every selected certificate, due or not. */
  force?: boolean;
  now: Date;
  /** `AWSCURRENT` of each certificate by name: `undefined` missing, `'unreadable'` unparsable. */
  current: ReadonlyMap<string, CurrentCertificate | 'unreadable' | undefined>;
  /** The back-off of each certificate whose last rotations failed, by name. */
  backoff?: ReadonlyMap<string, BackoffState>;
}

/**
 * Which certificates to rotate now. Order follows the fleet config so runs are reproducible.
 * @throws ValidationError when `selected` names a certificate the fleet does not have.
 */
export function planRotation(input: PlanInput): RotationPlan {
  const known = new Set(input.specs.map((spec) => spec.name));
  const unknown = (input.selected ?? []).filter((name) => !known.has(name));
  if (unknown.length > 0) {
    throw new ValidationError(`unknown certificate(s): ${unknown.join(', ')}`, { path: 'certificates' });
  }
  const selected = input.selected === undefined ? undefined : new Set(input.selected);
  const plan: RotationPlan = { rotate: [], skip: [] };
  for (const spec of input.specs) {
    if (selected !== undefined && !selected.has(spec.name)) continue;
    const current = input.current.get(spec.name);
    const decision = renewalDecision(current, input.now, {
      force: input.force === true,
      renewBeforeDays: spec.renewBeforeDays,
    });
    const backoff = input.backoff?.get(spec.name);
    const entry: PlannedCertificate = {
      name: spec.name,
      secretId: spec.secretId,
      reason: decision.reason,
      ...(backoff === undefined ? {} : { backoff }),
      currentSerial: typeof current === 'object' ? current.serial : null,
      renewAt: decision.renewAt?.toISOString() ?? null,
    };
    // Forced runs ignore the back-off: the operator asked for this certificate now.
    if (decision.due && backoff?.waiting === true && input.force !== true) {
      plan.skip.push({ ...entry, reason: 'backing-off' });
      continue;
    }
    (decision.due ? plan.rotate : plan.skip).push(entry);
  }
  return plan;
}

/**
 * Takes the certificates another execution is rotating out of the plan. The hourly schedule
 * (`due`) skips them with reason `rotation-in-progress` and still succeeds: the next run picks
 * them up if they are still due. A manual run fails before writing anything: the operator asked
 * for these certificates and must learn they were not rotated.
 * @param leased certificate name → the other execution's marks ({@link describeLease})
 * @throws RotationInProgress in `manual` mode when a planned certificate is leased.
 */
export function deferLeased(
  plan: RotationPlan,
  leased: ReadonlyMap<string, string>,
  mode: 'due' | 'manual',
): RotationPlan {
  const busy = plan.rotate.filter((entry) => leased.has(entry.name));
  if (busy.length === 0) return plan;
  if (mode === 'manual') {
    throw new RotationInProgress(
      busy
        .map((entry) => `certificate '${entry.name}' is being rotated (${leased.get(entry.name)})`)
        .join('; '),
    );
  }
  return {
    rotate: plan.rotate.filter((entry) => !leased.has(entry.name)),
    skip: [
      ...plan.skip,
      ...busy.map((entry) => ({
        ...entry,
        reason: 'rotation-in-progress' as const,
        lease: leased.get(entry.name)!,
      })),
    ],
  };
}
