import { ValidationError } from '../errors.ts';
import type { CertificateSpec } from './certificate-spec.ts';
import { type CurrentCertificate, type DueReason, renewalDecision } from './due.ts';

/** One certificate in a rotation plan; small and secret-free (it travels in execution history). */
export interface PlannedCertificate {
  name: string;
  secretId: string;
  reason: DueReason;
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
    const entry: PlannedCertificate = {
      name: spec.name,
      secretId: spec.secretId,
      reason: decision.reason,
      currentSerial: typeof current === 'object' ? current.serial : null,
      renewAt: decision.renewAt?.toISOString() ?? null,
    };
    (decision.due ? plan.rotate : plan.skip).push(entry);
  }
  return plan;
}
