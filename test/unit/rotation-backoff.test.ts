import { describe, expect, it } from 'vitest';
import { dryRunReport } from '../../cli/commands/rotate.ts';
import { backoffDelayMs, backoffState, nextBackoff } from '../../lib/rotation/backoff.ts';
import { CertificateSpec } from '../../lib/rotation/certificate-spec.ts';
import type { CurrentCertificate } from '../../lib/rotation/due.ts';
import { planRotation } from '../../lib/rotation/plan.ts';

const HOUR = 3_600_000;
const t0 = new Date('2026-01-10T12:00:00Z');

describe('rotation back-off', () => {
  it('waits 1 h, 2 h, 4 h … after each failure in a row, never more than 32 h', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 20].map((n) => backoffDelayMs(n) / HOUR)).toEqual([
      1, 2, 4, 8, 16, 32, 32, 32,
    ]);
  });

  it('counts failures until the current certificate changes', () => {
    const first = nextBackoff(undefined, 'ServedVersionMismatch', t0);
    expect(first).toMatchObject({ failures: 1, lastError: 'ServedVersionMismatch' });
    const state = backoffState(first, new Date(t0.getTime() - HOUR), new Date(t0.getTime() + 30 * 60_000));
    expect(state).toMatchObject({ failures: 1, waiting: true, retryAt: '2026-01-10T13:00:00.000Z' });
    expect(nextBackoff(state, 'RolloutFailed', t0).failures).toBe(2);
    expect(backoffState(first, undefined, new Date(t0.getTime() + HOUR))?.waiting).toBe(false);
    // A newer AWSCURRENT (rotated since, by the schedule or by hand) ends it.
    expect(backoffState(first, new Date(t0.getTime() + 1000), t0)).toBeUndefined();
  });

  it('skips a due certificate that is backing off, unless forced; one not due stays not-due', () => {
    const specs = ['a', 'b'].map((name) =>
      CertificateSpec.parse({
        name,
        secretId: `s/${name}`,
        commonName: name,
        dns: [`${name}.x`],
        usage: 'server',
      }),
    );
    const waiting = backoffState(nextBackoff(undefined, 'X', t0), undefined, t0)!;
    const input = {
      specs,
      now: t0,
      current: new Map<string, CurrentCertificate | 'unreadable'>([
        ['a', 'unreadable'],
        ['b', { serial: '01', notBefore: t0, notAfter: new Date(t0.getTime() + 30 * 24 * HOUR) }],
      ]),
      backoff: new Map([
        ['a', waiting],
        ['b', waiting],
      ]),
    };
    const plan = planRotation(input);
    expect(plan.rotate).toEqual([]);
    expect(plan.skip.map((e) => [e.name, e.reason])).toEqual([
      ['a', 'backing-off'],
      ['b', 'not-due'],
    ]);
    expect(plan.skip[0]?.backoff).toMatchObject({ failures: 1, waiting: true });
    const forced = planRotation({ ...input, force: true });
    expect(forced.rotate.map((e) => [e.name, e.reason])).toEqual([
      ['a', 'invalid-current'],
      ['b', 'forced'],
    ]);
  });
});

describe('rotate --dry-run report', () => {
  it('names what would rotate and why, and what waits until when', () => {
    const backoff = {
      failures: 2,
      lastError: 'ServedVersionMismatch',
      retryAt: '2026-01-10T14:00:00.000Z',
      waiting: true,
    };
    expect(
      dryRunReport({
        rotate: [{ name: 'api', reason: 'invalid-current' }],
        skip: [
          { name: 'edge', reason: 'backing-off', backoff },
          { name: 'client', reason: 'not-due', renewAt: '2026-02-01T00:00:00.000Z' },
          { name: 'mtls', reason: 'rotation-in-progress', lease: 'AWSPENDING on v1' },
        ],
      }),
    ).toEqual([
      'would rotate api: invalid-current',
      'skip edge: backing off after 2 failed rotations (last ServedVersionMismatch) until 2026-01-10T14:00:00.000Z',
      'skip client: not-due, renews at 2026-02-01T00:00:00.000Z',
      'skip mtls: being rotated by another execution (AWSPENDING on v1)',
    ]);
    expect(dryRunReport({ rotated: [] })).toEqual([]);
  });
});
