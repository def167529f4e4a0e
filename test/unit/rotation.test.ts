import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { TaskStatus } from '../../lib/ports.ts';
import {
  acceptedVersions,
  applyAllowlistChange,
  CertificateSpec,
  certificateTokenSubject,
  decideAllowlistRollback,
  decideRotationRollback,
  deferLeased,
  deriveToken,
  describeLease,
  IssuedStage,
  IssuingStage,
  type PlannedCertificate,
  planRotation,
  ROTATION_LEASE_STALE_AFTER_MS,
  renewalDecision,
  renewalTime,
  rolloutStep,
  rotationLease,
  staleSecrets,
  summariseTasks,
  TokenStep,
} from '../../lib/rotation/index.ts';

const DAY = 86_400_000;
const at = (iso: string) => new Date(iso);

describe('renewalTime', () => {
  it('falls at two thirds of the lifetime without renewBeforeDays', () => {
    expect(
      renewalTime({ notBefore: at('2026-01-01T00:00:00Z'), notAfter: at('2026-01-31T00:00:00Z') }),
    ).toEqual(at('2026-01-21T00:00:00Z'));
  });

  it('falls renewBeforeDays before notAfter when set', () => {
    expect(
      renewalTime({ notBefore: at('2026-01-01T00:00:00Z'), notAfter: at('2026-01-31T00:00:00Z') }, 3),
    ).toEqual(at('2026-01-28T00:00:00Z'));
  });

  it('always lies inside the validity window', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 40 }),
        fc.integer({ min: 1, max: 2 ** 36 }),
        (start, life) => {
          const renewAt = renewalTime({
            notBefore: new Date(start),
            notAfter: new Date(start + life),
          }).getTime();
          return renewAt >= start && renewAt <= start + life;
        },
      ),
    );
  });
});

describe('renewalDecision', () => {
  const current = {
    serial: 'ab',
    notBefore: at('2026-01-01T00:00:00Z'),
    notAfter: at('2026-01-31T00:00:00Z'),
  };
  const table = [
    {
      name: 'a missing certificate',
      current: undefined,
      now: '2026-01-02T00:00:00Z',
      force: false,
      due: true,
      reason: 'missing',
    },
    {
      name: 'an unreadable certificate',
      current: 'unreadable' as const,
      now: '2026-01-02T00:00:00Z',
      force: false,
      due: true,
      reason: 'invalid-current',
    },
    {
      name: 'a fresh certificate',
      current,
      now: '2026-01-10T00:00:00Z',
      force: false,
      due: false,
      reason: 'not-due',
    },
    {
      name: 'a fresh certificate when forced',
      current,
      now: '2026-01-10T00:00:00Z',
      force: true,
      due: true,
      reason: 'forced',
    },
    {
      name: 'a certificate past two thirds',
      current,
      now: '2026-01-21T00:00:00Z',
      force: false,
      due: true,
      reason: 'due',
    },
    {
      name: 'an expired certificate',
      current,
      now: '2026-02-01T00:00:00Z',
      force: false,
      due: true,
      reason: 'expired',
    },
  ];
  for (const row of table) {
    it(`says ${row.reason} for ${row.name}`, () => {
      const decision = renewalDecision(row.current, at(row.now), { force: row.force });
      expect({ due: decision.due, reason: decision.reason }).toEqual({ due: row.due, reason: row.reason });
    });
  }
});

describe('deriveToken', () => {
  it('gives the same UUID-shaped token for the same execution, subject and step', () => {
    const token = deriveToken('exec-1', 'api', TokenStep.Bundle);
    expect(token).toBe(deriveToken('exec-1', 'api', TokenStep.Bundle));
    expect(token).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('separates every part, so different inputs never share a token', () => {
    const steps = Object.values(TokenStep);
    fc.assert(
      fc.property(
        fc.tuple(fc.string(), fc.string(), fc.constantFrom(...steps)),
        fc.tuple(fc.string(), fc.string(), fc.constantFrom(...steps)),
        (a, b) => {
          fc.pre(a[0] !== b[0] || a[1] !== b[1] || a[2] !== b[2]);
          return deriveToken(...a) !== deriveToken(...b);
        },
      ),
    );
  });

  it('fits Secrets Manager (32–64) and Private CA (≤ 36) token limits', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (execution, subject) => {
        const token = deriveToken(execution, subject, TokenStep.Key);
        return token.length === 36;
      }),
    );
  });
});

describe('certificateTokenSubject', () => {
  it('differs between fleets and secrets holding a certificate of the same name', () => {
    fc.assert(
      fc.property(
        fc.tuple(fc.string(), fc.string(), fc.string()),
        fc.tuple(fc.string(), fc.string(), fc.string()),
        (a, b) => {
          fc.pre(a[0] !== b[0] || a[1] !== b[1] || a[2] !== b[2]);
          return certificateTokenSubject(...a) !== certificateTokenSubject(...b);
        },
      ),
    );
  });
});

describe('planRotation', () => {
  const specs = [
    CertificateSpec.parse({
      name: 'api',
      secretId: 's/api',
      commonName: 'api.example',
      dns: ['api.example'],
      usage: 'server',
    }),
    CertificateSpec.parse({ name: 'client', secretId: 's/client', commonName: 'gw', usage: 'client' }),
  ];
  const now = at('2026-01-10T00:00:00Z');
  const fresh = {
    serial: '1f',
    notBefore: at('2026-01-09T00:00:00Z'),
    notAfter: new Date(now.getTime() + 29 * DAY),
  };

  it('rotates only the due certificates, in fleet order', () => {
    const plan = planRotation({
      specs,
      now,
      current: new Map([
        ['api', fresh],
        ['client', undefined],
      ]),
    });
    expect(plan.rotate.map((c) => [c.name, c.reason])).toEqual([['client', 'missing']]);
    expect(plan.skip.map((c) => [c.name, c.currentSerial])).toEqual([['api', '1f']]);
  });

  it('rotates every selected certificate when forced', () => {
    const plan = planRotation({
      specs,
      now,
      force: true,
      selected: ['api'],
      current: new Map([['api', fresh]]),
    });
    expect(plan.rotate.map((c) => c.name)).toEqual(['api']);
    expect(plan.skip).toEqual([]);
  });

  it('refuses a selection naming an unknown certificate', () => {
    expect(() => planRotation({ specs, now, selected: ['nope'], current: new Map() })).toThrow(
      expect.objectContaining({ name: 'ValidationError' }),
    );
  });
});

describe('decideRotationRollback', () => {
  const v = (versionId: string, ...stages: string[]) => ({ versionId, stages });

  it('moves AWSCURRENT back, drops labels and revokes the new certificate after a promotion', () => {
    const plan = decideRotationRollback({
      secret: { versions: [v('old', 'AWSPREVIOUS'), v('new', 'AWSCURRENT')] },
      newVersionId: 'new',
      previousVersionId: 'old',
      newCertificate: { certificateId: 'c1', serial: 'aa' },
    });
    expect(plan).toMatchObject({
      restoreCurrentTo: 'old',
      dropPending: false,
      revoke: { certificateId: 'c1' },
      nudgeTasks: true,
    });
  });

  it('undoes nothing once another rotation promoted a successor of the new version', () => {
    for (const secret of [
      { versions: [v('new', 'AWSPREVIOUS'), v('next', 'AWSCURRENT')] },
      { versions: [v('old'), v('new'), v('next', 'AWSCURRENT'), v('after', 'AWSPENDING')] },
    ]) {
      const plan = decideRotationRollback({
        secret,
        newVersionId: 'new',
        previousVersionId: 'old',
        newCertificate: { certificateId: 'c1', serial: 'aa' },
        previousMayBeRevoked: true,
      });
      expect(plan).toMatchObject({
        restoreCurrentTo: null,
        dropPending: false,
        dropLabels: [],
        revoke: null,
        nudgeTasks: false,
      });
      expect(plan.notes.join()).toContain('next');
    }
  });

  it('only drops AWSPENDING and the issuing label when the new version was staged but not promoted', () => {
    const plan = decideRotationRollback({
      secret: { versions: [v('old', 'AWSCURRENT'), v('new', 'AWSPENDING'), v('key', IssuingStage)] },
      newVersionId: 'new',
      previousVersionId: 'old',
      newCertificate: { certificateId: 'c1', serial: 'aa' },
    });
    expect(plan).toMatchObject({ restoreCurrentTo: null, dropPending: true, dropLabels: [IssuingStage] });
  });

  it('keeps the new certificate current and unrevoked when the previous one may be revoked already', () => {
    const plan = decideRotationRollback({
      secret: { versions: [v('old', 'AWSPREVIOUS'), v('new', 'AWSCURRENT')] },
      newVersionId: 'new',
      previousVersionId: 'old',
      newCertificate: { certificateId: 'c1', serial: 'aa' },
      previousMayBeRevoked: true,
    });
    expect(plan).toMatchObject({ restoreCurrentTo: null, revoke: null });
    expect(plan.notes).toContain(
      'the previous certificate may already be revoked; the new certificate stays current',
    );
  });

  it('has nothing to restore or nudge when the CA failed before anything was staged', () => {
    const plan = decideRotationRollback({
      secret: { versions: [v('old', 'AWSCURRENT')] },
      newVersionId: 'new',
      previousVersionId: null,
      newCertificate: null,
    });
    expect(plan).toMatchObject({
      restoreCurrentTo: null,
      dropPending: false,
      revoke: null,
      nudgeTasks: false,
    });
  });

  it('never revokes the certificate that stays AWSCURRENT', () => {
    const ids = fc.constantFrom('a', 'b', 'c');
    const stages = fc.subarray(['AWSCURRENT', 'AWSPENDING', 'AWSPREVIOUS']);
    fc.assert(
      fc.property(
        fc.array(fc.record({ versionId: ids, stages }), { maxLength: 3 }),
        ids,
        fc.option(ids),
        (versions, newVersionId, previousVersionId) => {
          // A stage sits on one version at most: keep the first holder of each.
          const seen = new Set<string>();
          const secret = {
            versions: versions.map((x) => ({
              versionId: x.versionId,
              stages: x.stages.filter((s) => {
                if (seen.has(s)) return false;
                seen.add(s);
                return true;
              }),
            })),
          };
          const plan = decideRotationRollback({
            secret,
            newVersionId,
            previousVersionId,
            newCertificate: { certificateId: 'new-cert', serial: 'aa' },
          });
          const current = secret.versions.find((x) => x.stages.includes('AWSCURRENT'))?.versionId;
          const currentAfter = plan.restoreCurrentTo ?? current;
          return !(plan.revoke !== null && currentAfter === newVersionId);
        },
      ),
    );
  });
});

describe('decideAllowlistRollback', () => {
  it('restores the base version when the new allowlist was promoted', () => {
    expect(
      decideAllowlistRollback({
        mode: 'stage',
        secret: {
          versions: [
            { versionId: 'base', stages: ['AWSPREVIOUS'] },
            { versionId: 'new', stages: ['AWSCURRENT'] },
          ],
        },
        newVersionId: 'new',
        baseVersionId: 'base',
      }),
    ).toEqual({ restoreCurrentTo: 'base', dropPending: false, nudgeTasks: true });
  });

  it('undoes nothing for a converge run', () => {
    expect(
      decideAllowlistRollback({
        mode: 'converge',
        secret: undefined,
        newVersionId: 'cur',
        baseVersionId: null,
      }),
    ).toEqual({ restoreCurrentTo: null, dropPending: false, nudgeTasks: false });
  });
});

describe('applyAllowlistChange', () => {
  it('normalises, de-duplicates and sorts a set', () => {
    expect(applyAllowlistChange([], { set: ['10.0.0.1/8', '10.0.0.0/8', '192.0.2.1'] }).cidrs).toEqual([
      '10.0.0.0/8',
      '192.0.2.1/32',
    ]);
  });

  it('adds and removes, ignoring the removal of an absent entry', () => {
    const result = applyAllowlistChange(['10.0.0.0/8', '192.0.2.0/24'], {
      add: ['198.51.100.0/24'],
      remove: ['192.0.2.0/24', '203.0.113.0/24'],
    });
    expect(result).toMatchObject({
      cidrs: ['10.0.0.0/8', '198.51.100.0/24'],
      added: ['198.51.100.0/24'],
      removed: ['192.0.2.0/24'],
      changed: true,
    });
  });

  it('refuses an invalid CIDR and a /0 the fleet does not allow', () => {
    expect(() => applyAllowlistChange([], { set: ['10.0.0.0/33'] })).toThrow(
      expect.objectContaining({ name: 'ValidationError' }),
    );
    expect(() => applyAllowlistChange([], { add: ['0.0.0.0/0'] })).toThrow(
      expect.objectContaining({ name: 'ValidationError' }),
    );
    expect(applyAllowlistChange([], { add: ['0.0.0.0/0'] }, { allowAll0: true }).cidrs).toEqual([
      '0.0.0.0/0',
    ]);
  });

  it('refuses a list longer than the policy bound', () => {
    expect(() => applyAllowlistChange([], { set: ['10.0.0.1', '10.0.0.2'] }, { maxEntries: 1 })).toThrow(
      expect.objectContaining({ name: 'ValidationError' }),
    );
  });

  it('is idempotent: applying the same change twice changes nothing the second time', () => {
    const octet = fc.integer({ min: 0, max: 255 });
    const cidr = fc
      .tuple(octet, octet, fc.integer({ min: 8, max: 32 }))
      .map(([a, b, p]) => `10.${a}.${b}.0/${p}`);
    fc.assert(
      fc.property(
        fc.array(cidr, { maxLength: 8 }),
        fc.array(cidr, { maxLength: 4 }),
        fc.array(cidr, { maxLength: 4 }),
        (start, add, remove) => {
          const once = applyAllowlistChange(start, { add, remove });
          const twice = applyAllowlistChange(once.cidrs, { add, remove });
          return !twice.changed && JSON.stringify(twice.cidrs) === JSON.stringify(once.cidrs);
        },
      ),
    );
  });
});

describe('summariseTasks and rolloutStep', () => {
  it('asks for a roll only when some task could not be updated in place', () => {
    expect(
      summariseTasks([
        { taskId: 'a', needsRoll: false },
        { taskId: 'b', needsRoll: true },
      ]),
    ).toEqual({
      needsRoll: true,
      updated: ['a'],
      unreachable: ['b'],
      updatedCount: 1,
      unreachableCount: 1,
    });
    expect(summariseTasks([]).needsRoll).toBe(false);
  });

  it('waits while a rollout is in progress and gives up after the last poll', () => {
    expect(rolloutStep('IN_PROGRESS', 1, 3)).toBe('wait');
    expect(rolloutStep('IN_PROGRESS', 3, 3)).toBe('exhausted');
    expect(rolloutStep('FAILED', 0, 3)).toBe('failed');
    expect(rolloutStep('COMPLETED', 0, 3)).toBe('done');
  });
});

describe('staleSecrets', () => {
  it('lists every secret the task serves in another version or not at all', () => {
    const status = {
      ready: true,
      certificates: { api: { versionId: 'v2', serial: 'aa', notAfter: '2026-01-01T00:00:00Z' } },
      allowlist: { versionId: 'a1', size: 3 },
    };
    const stale = staleSecrets(status, [
      { kind: 'certificate', name: 'api', secretId: 's/api', versionId: 'v2' },
      { kind: 'allowlist', secretId: 's/allow', versionId: 'a2' },
      { kind: 'trust', secretId: 's/trust', versionId: 't1' },
    ]);
    expect(stale.map((s) => s.secretId)).toEqual(['s/allow', 's/trust']);
  });
});

describe('staleSecrets during a rotation', () => {
  const status = (versionId: string | undefined): TaskStatus => ({
    ready: true,
    certificates:
      versionId === undefined ? {} : { api: { versionId, serial: 'aa', notAfter: '2026-01-01T00:00:00Z' } },
  });
  const api = { kind: 'certificate' as const, name: 'api', secretId: 's/api', versionId: 'cur' };

  it('leaves a task serving the pending version of a rotation in flight', () => {
    expect(staleSecrets(status('pend'), [{ ...api, rotatingTo: 'pend' }])).toEqual([]);
    expect(staleSecrets(status('cur'), [{ ...api, rotatingTo: 'pend' }])).toEqual([]);
  });

  it('nudges a task serving any other version, or none, to AWSCURRENT', () => {
    expect(staleSecrets(status('older'), [{ ...api, rotatingTo: 'pend' }])).toEqual([
      { ...api, rotatingTo: 'pend' },
    ]);
    expect(staleSecrets(status(undefined), [{ ...api, rotatingTo: 'pend' }])).toHaveLength(1);
    expect(staleSecrets(status('pend'), [api])).toEqual([api]);
  });

  it('accepts only AWSCURRENT when no rotation is in flight, for every kind of secret', () => {
    expect(acceptedVersions(api)).toEqual(['cur']);
    expect(acceptedVersions({ ...api, rotatingTo: 'cur' })).toEqual(['cur']);
    expect(acceptedVersions({ ...api, rotatingTo: 'pend' })).toEqual(['cur', 'pend']);
    expect(acceptedVersions({ kind: 'allowlist', secretId: 's/a', versionId: 'a1' })).toEqual(['a1']);
  });
});

describe('rotationLease', () => {
  const now = at('2026-06-01T12:00:00Z');
  const young = new Date(now.getTime() - 60_000);
  const old = new Date(now.getTime() - ROTATION_LEASE_STALE_AFTER_MS - 1);

  it('is held by another execution working labels or AWSPENDING younger than the bound', () => {
    const lease = rotationLease({
      versions: [
        { versionId: 'cur', stages: ['AWSCURRENT'], createdAt: old },
        { versionId: 'k', stages: [IssuingStage], createdAt: young },
        { versionId: 'r', stages: [IssuedStage], createdAt: young },
        { versionId: 'p', stages: ['AWSPENDING'], createdAt: young },
      ],
      ownVersionIds: new Set(),
      now,
    });
    expect(lease.held.map((m) => [m.versionId, m.stage])).toEqual([
      ['k', IssuingStage],
      ['r', IssuedStage],
      ['p', 'AWSPENDING'],
    ]);
    expect(lease.stale).toEqual([]);
  });

  it('ignores the marks of this execution, so a re-run passes', () => {
    const lease = rotationLease({
      versions: [
        { versionId: 'mine-key', stages: [IssuingStage], createdAt: young },
        { versionId: 'mine-bundle', stages: ['AWSPENDING'], createdAt: young },
      ],
      ownVersionIds: new Set(['mine-key', 'mine-bundle']),
      now,
    });
    expect(lease).toEqual({ held: [], stale: [] });
  });

  it('counts marks older than the bound as stale and marks of unknown age as held', () => {
    const lease = rotationLease({
      versions: [
        { versionId: 'gone', stages: [IssuingStage, 'AWSPENDING'], createdAt: old },
        { versionId: 'unknown', stages: [IssuedStage] },
      ],
      ownVersionIds: new Set(),
      now,
    });
    expect(lease.stale.map((m) => [m.versionId, m.stage])).toEqual([
      ['gone', IssuingStage],
      ['gone', 'AWSPENDING'],
    ]);
    expect(lease.held.map((m) => m.versionId)).toEqual(['unknown']);
    expect(describeLease(lease.held)).toBe(`${IssuedStage} on unknown`);
  });

  it('holds exactly up to the bound', () => {
    const versions = (age: number) => [
      { versionId: 'p', stages: ['AWSPENDING'], createdAt: new Date(now.getTime() - age) },
    ];
    const at = (age: number) =>
      rotationLease({ versions: versions(age), ownVersionIds: new Set(), now, staleAfterMs: 1000 });
    expect(at(1000).held).toHaveLength(1);
    expect(at(1001).stale).toHaveLength(1);
  });
});

describe('deferLeased', () => {
  const entry = (name: string): PlannedCertificate => ({
    name,
    secretId: `s/${name}`,
    reason: 'forced',
    currentSerial: null,
    renewAt: null,
  });
  const plan = { rotate: [entry('api'), entry('client')], skip: [] };
  const leased = new Map([['api', 'AWSPENDING on v9']]);

  it('skips a leased certificate with reason rotation-in-progress in a scheduled run', () => {
    expect(deferLeased(plan, leased, 'due')).toEqual({
      rotate: [entry('client')],
      skip: [{ ...entry('api'), reason: 'rotation-in-progress', lease: 'AWSPENDING on v9' }],
    });
  });

  it('refuses a manual run with RotationInProgress naming the certificate', () => {
    expect(() => deferLeased(plan, leased, 'manual')).toThrow(
      expect.objectContaining({ name: 'RotationInProgress', message: expect.stringContaining("'api'") }),
    );
  });

  it('returns the plan unchanged when nothing is leased', () => {
    expect(deferLeased(plan, new Map(), 'manual')).toBe(plan);
  });
});
