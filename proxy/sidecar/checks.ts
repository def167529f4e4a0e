/**
 * Validation of one object version against a basis — the fleet config, trust bundle and
 * certificates it is judged with — without installing anything. The install modules check
 * against what is applied; a fleet change checks every object it adds against the new config
 * (and a trust bundle it adds) before the first one is installed, so one rule serves both.
 */
import type { FleetConfig } from '../../lib/config/index.ts';
import { loadAllowlist } from './allowlist-source.ts';
import type { Material, SidecarContext } from './context.ts';
import { hostnamesFor } from './gateway-files.ts';
import type { ObjectRef } from './state.ts';
import {
  type CheckedAllowlist,
  type CheckedCertificate,
  type CheckedTrust,
  checkCertificateDocument,
  checkNudgeKeyDocument,
  checkTrustDocument,
} from './validate.ts';

/** A version refused by validation, with its check code (`validate.ts`). */
export class Rejection extends Error {
  readonly code: string;
  constructor(code: string, reason: string) {
    super(reason);
    this.name = 'Rejection';
    this.code = code;
  }
}

/** What a version is judged against. */
export interface Basis {
  fleet: FleetConfig | undefined;
  trust: CheckedTrust | undefined;
  certificates: ReadonlyMap<string, CheckedCertificate>;
}

/** The applied material as a basis. */
export function appliedBasis(material: Material): Basis {
  return { fleet: material.fleet, trust: material.trust, certificates: material.certificates };
}

/** A validated version of a certificate, trust bundle, allowlist or nudge key. */
export type CheckedObject =
  | { kind: 'certificate'; value: CheckedCertificate }
  | { kind: 'trust'; value: CheckedTrust }
  | { kind: 'allowlist'; value: CheckedAllowlist }
  | { kind: 'nudgeKey'; value: Buffer };

/** Validates a certificate document against the basis' trust bundle and the routes serving it. */
export function checkCertificate(
  ctx: Pick<SidecarContext, 'now' | 'config'>,
  basis: Basis,
  name: string,
  text: string,
): CheckedCertificate {
  const { fleet, trust } = basis;
  if (fleet === undefined) throw new Rejection('config-invalid', 'no fleet config');
  if (trust === undefined)
    throw new Rejection('untrusted-chain', 'no trust bundle applied to verify the chain against');
  const spec = fleet.certificates.find((c) => c.name === name);
  const checked = checkCertificateDocument(text, {
    hostnames: spec?.usage === 'client' ? [] : hostnamesFor(fleet, name),
    trustPem: trust.caPem,
    usage: spec?.usage === 'client' ? 'client' : 'server',
    at: ctx.now(),
    skewSeconds: ctx.config.clockSkewSeconds,
  });
  if (checked.kind === 'invalid') throw new Rejection(checked.code, checked.reason);
  return checked.value;
}

/** Validates one version of `ref` (not a fleet config) against `basis`; throws a `Rejection`. */
export async function checkObject(
  ctx: Pick<SidecarContext, 'now' | 'config' | 'objects'>,
  basis: Basis,
  ref: ObjectRef,
  text: string,
): Promise<CheckedObject> {
  switch (ref.kind) {
    case 'nudgeKey': {
      const checked = checkNudgeKeyDocument(text);
      if (checked.kind === 'invalid') throw new Rejection(checked.code, checked.reason);
      return { kind: 'nudgeKey', value: checked.value };
    }
    case 'trust': {
      // Only certificates the fleet config still declares: one whose route and entry were
      // removed stays in memory but is served by nobody, and must not hold back a CA rollover.
      const declared = new Set(basis.fleet?.certificates.map((c) => c.name) ?? []);
      const serving = [...basis.certificates.entries()]
        .filter(([name]) => declared.has(name))
        .map(([name, c]) => ({ name, chainPem: c.pem }));
      const checked = await checkTrustDocument(text, {
        at: ctx.now(),
        skewSeconds: ctx.config.clockSkewSeconds,
        serving,
      });
      if (checked.kind === 'invalid') throw new Rejection(checked.code, checked.reason);
      return { kind: 'trust', value: checked.value };
    }
    case 'certificate': {
      if (basis.fleet === undefined || ref.name === undefined)
        throw new Rejection('config-invalid', 'no fleet config');
      return { kind: 'certificate', value: checkCertificate(ctx, basis, ref.name, text) };
    }
    case 'allowlist': {
      if (basis.fleet === undefined) throw new Rejection('config-invalid', 'no fleet config');
      const checked = await loadAllowlist(text, basis.fleet.allowlist, ctx.objects);
      if (checked.kind === 'invalid') throw new Rejection(checked.code, checked.reason);
      return { kind: 'allowlist', value: checked.value };
    }
    case 'fleet':
      throw new TypeError('a fleet config is checked and installed by fleet-change.ts');
  }
}
