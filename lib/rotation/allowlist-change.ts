import { type AllowlistPolicy, normaliseAllowlist } from '../allowlist/index.ts';
import { ValidationError } from '../errors.ts';

/** A manual allowlist change: replace the whole list, or add and/or remove entries. */
export type AllowlistChange =
  | { set: readonly string[] }
  | { add?: readonly string[]; remove?: readonly string[] };

export interface AllowlistChangeResult {
  /** The normalised, de-duplicated, sorted list to stage. */
  cidrs: string[];
  added: string[];
  removed: string[];
  changed: boolean;
}

function normalised(entries: readonly string[], policy: AllowlistPolicy, field: string): string[] {
  const result = normaliseAllowlist(entries, policy);
  if (result.kind === 'invalid') {
    throw new ValidationError(`allowlist ${field}: ${result.issues.join('; ')}`, { path: field });
  }
  return result.cidrs.map((cidr) => cidr.text);
}

/**
 * Applies a change to the current list and validates the result with the fleet's policy
 * (`/0` refused unless allowed, bounded count). Removing an entry that is not there is a
 * no-op, so a re-run of the same change gives the same list.
 * @throws ValidationError naming the bad entries (by position) or the exceeded limit.
 */
export function applyAllowlistChange(
  current: readonly string[],
  change: AllowlistChange,
  policy: AllowlistPolicy = {},
): AllowlistChangeResult {
  // The current list is normalised leniently: it was valid when it was staged, and a policy
  // tightened since must not block removing entries from it.
  const before = normalised(current, { allowAll0: true, maxEntries: Number.MAX_SAFE_INTEGER }, 'current');
  let next: string[];
  if ('set' in change) {
    next = normalised(change.set, policy, 'set');
  } else {
    const add = normalised(change.add ?? [], { ...policy, maxEntries: Number.MAX_SAFE_INTEGER }, 'add');
    const remove = new Set(normalised(change.remove ?? [], { allowAll0: true }, 'remove'));
    next = normalised(
      [...before, ...add].filter((cidr) => !remove.has(cidr)),
      policy,
      'result',
    );
  }
  const beforeSet = new Set(before);
  const nextSet = new Set(next);
  const added = next.filter((cidr) => !beforeSet.has(cidr));
  const removed = before.filter((cidr) => !nextSet.has(cidr));
  return { cidrs: next, added, removed, changed: added.length > 0 || removed.length > 0 };
}
