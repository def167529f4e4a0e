/**
 * Which version of an object to serve, given what the store says (pure; the rules are listed
 * at the top of `state.ts`).
 */
import type { DesiredVersion, ObjectState, Origin, StoreView } from './state.ts';

/**
 * The version a poll should apply, or `undefined` to leave things as they are.
 * @example pollTarget({ applied: { versionId: 'P', origin: 'explicit', currentAtApply: 'C', … } }, { current: 'C', versions: [{ versionId: 'P', stages: ['AWSPENDING'] }, …] }) // undefined
 */
export function pollTarget(
  object: Pick<ObjectState, 'applied' | 'rejected'>,
  view: StoreView,
): string | undefined {
  const current = view.current;
  if (current === undefined) return undefined;
  const applied = object.applied;
  if (applied?.versionId === current) return undefined;
  if (object.rejected?.versionId === current) return undefined;
  if (applied?.origin === 'explicit') {
    const staged = view.versions.some((v) => v.versionId === applied.versionId && v.stages.length > 0);
    if (staged && applied.currentAtApply === current) return undefined;
  }
  return current;
}

/** The version a nudge asks for (`AWSCURRENT` when it names none) and whether that is an explicit choice. */
export function nudgeTarget(
  versionId: string | undefined,
  view: StoreView,
): { versionId: string; origin: Origin } | undefined {
  if (versionId !== undefined)
    return { versionId, origin: versionId === view.current ? 'current' : 'explicit' };
  return view.current === undefined ? undefined : { versionId: view.current, origin: 'current' };
}

/**
 * What the store still asks for, once a poll found nothing to apply: a version named by a nudge
 * stays desired while it is labelled (the rotation's `AWSPENDING`); one whose label was dropped
 * (a rollback) or an `AWSCURRENT` that moved back gives way to the current `AWSCURRENT`, so a
 * refused version the store no longer asks for does not keep the object out of sync.
 */
export function stillDesired(
  desired: DesiredVersion | undefined,
  view: StoreView,
): DesiredVersion | undefined {
  if (desired === undefined || view.current === undefined) return desired;
  const wanted =
    desired.origin === 'explicit'
      ? view.versions.some((v) => v.versionId === desired.versionId && v.stages.length > 0)
      : desired.versionId === view.current;
  return wanted ? desired : { versionId: view.current, origin: 'current' };
}
