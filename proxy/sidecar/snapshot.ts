/**
 * A fleet config and the objects it adds, checked together before anything is applied (as
 * go-control-plane's `Snapshot.Consistent()`): every secret the new config references must
 * exist, and every certificate a route loads must have an `AWSCURRENT` version. Pure: the store
 * views come in, the first inconsistency (in the config's order) comes out.
 */
import type { ObjectRef, StoreView } from './state.ts';

/** One referenced object as the store described it: its view, or the error `describe` threw. */
export type SnapshotEntry = { ref: ObjectRef; view: StoreView } | { ref: ObjectRef; error: unknown };

export type SnapshotCheck =
  | { kind: 'consistent'; current: { ref: ObjectRef; versionId: string }[] }
  /** A referenced secret is missing: the fleet config is refused with this code and reason. */
  | { kind: 'inconsistent'; code: 'missing'; reason: string }
  /** The store could not be read (not a refusal: the next poll tries again). */
  | { kind: 'unavailable'; error: unknown };

/**
 * Checks the entries in order. Objects without `AWSCURRENT` that no route loads are skipped
 * (they are applied once a version appears); the others are what the fleet change installs.
 * @example checkSnapshot([{ ref: certRef, error: new NotFoundError('…') }], new Set(['api'])) // { kind: 'inconsistent', code: 'missing', … }
 */
export function checkSnapshot(entries: readonly SnapshotEntry[], loaded: ReadonlySet<string>): SnapshotCheck {
  const current: { ref: ObjectRef; versionId: string }[] = [];
  for (const entry of entries) {
    const { ref } = entry;
    if ('error' in entry) {
      const error = entry.error;
      if (error instanceof Error && error.name === 'NotFoundError')
        return {
          kind: 'inconsistent',
          code: 'missing',
          reason: `${ref.key}: ${ref.secretId} does not exist`,
        };
      return { kind: 'unavailable', error };
    }
    if (entry.view.current === undefined) {
      if (ref.kind === 'certificate' && ref.name !== undefined && loaded.has(ref.name))
        return {
          kind: 'inconsistent',
          code: 'missing',
          reason: `${ref.key}: ${ref.secretId} has no AWSCURRENT version`,
        };
      continue;
    }
    current.push({ ref, versionId: entry.view.current });
  }
  return { kind: 'consistent', current };
}
