/**
 * A fleet config's snapshot (`snapshot.ts`): the objects a new config adds, as the store
 * described them, are consistent only when each exists and each certificate a route loads has
 * an `AWSCURRENT` version; the first problem in the config's order is the reason reported.
 */
import { describe, expect, it } from 'vitest';
import { NotFoundError } from '../../lib/errors.ts';
import { checkSnapshot } from '../../proxy/sidecar/snapshot.ts';
import type { ObjectRef } from '../../proxy/sidecar/state.ts';

const cert = (name: string): ObjectRef => ({
  key: `certificate:${name}`,
  kind: 'certificate',
  secretId: `cert/${name}`,
  name,
});
const trust: ObjectRef = { key: 'trust', kind: 'trust', secretId: 'trust' };
const current = (versionId: string) => ({
  current: versionId,
  versions: [{ versionId, stages: ['AWSCURRENT'] }],
});
const none = { current: undefined, versions: [] };

describe('checkSnapshot', () => {
  it('lists the versions to install when every referenced object is present', () => {
    expect(
      checkSnapshot(
        [
          { ref: trust, view: current('T1') },
          { ref: cert('a'), view: current('A1') },
        ],
        new Set(['a']),
      ),
    ).toEqual({
      kind: 'consistent',
      current: [
        { ref: trust, versionId: 'T1' },
        { ref: cert('a'), versionId: 'A1' },
      ],
    });
  });

  it('refuses with missing when a referenced secret does not exist', () => {
    expect(
      checkSnapshot(
        [
          { ref: trust, view: current('T1') },
          { ref: cert('b'), error: new NotFoundError('cert/b') },
        ],
        new Set(['b']),
      ),
    ).toEqual({ kind: 'inconsistent', code: 'missing', reason: 'certificate:b: cert/b does not exist' });
  });

  it('refuses a loaded certificate without AWSCURRENT, and skips one no route loads', () => {
    expect(checkSnapshot([{ ref: cert('a'), view: none }], new Set(['a']))).toMatchObject({
      kind: 'inconsistent',
      reason: 'certificate:a: cert/a has no AWSCURRENT version',
    });
    expect(checkSnapshot([{ ref: cert('a'), view: none }], new Set())).toEqual({
      kind: 'consistent',
      current: [],
    });
  });

  it('reports the first problem in order, and a store failure as unavailable (not a refusal)', () => {
    const outage = new Error('throttled');
    expect(
      checkSnapshot(
        [
          { ref: trust, error: outage },
          { ref: cert('b'), error: new NotFoundError('cert/b') },
        ],
        new Set(['b']),
      ),
    ).toEqual({ kind: 'unavailable', error: outage });
    expect(
      checkSnapshot(
        [
          { ref: cert('b'), error: new NotFoundError('cert/b') },
          { ref: trust, error: outage },
        ],
        new Set(['b']),
      ),
    ).toMatchObject({ kind: 'inconsistent', code: 'missing' });
  });
});
