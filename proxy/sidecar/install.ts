/**
 * Installing one version, per object kind: certificate, allowlist, nudge key here; trust
 * bundle and CRL in `install-trust.ts`; fleet config in `fleet-change.ts`. A version is checked
 * (`checks.ts`) against what is applied, then installed; each returns the public facts the state
 * keeps, or throws a `Rejection` (validation: the version is refused) or another error (HAProxy
 * could not apply it: the previous state is kept).
 */
import { renewalTime } from '../../lib/rotation/due.ts';
import { installAllowlist, installCertificate } from './apply.ts';
import { appliedBasis, type CheckedObject, checkObject } from './checks.ts';
import { applyTarget, type SidecarContext } from './context.ts';
import { installFleet } from './fleet-change.ts';
import { loadedCertificates } from './gateway-files.ts';
import { installTrust } from './install-trust.ts';
import type { AppliedFacts, ObjectRef } from './state.ts';
import type { CheckedAllowlist, CheckedCertificate } from './validate.ts';

async function installCertificateObject(
  ctx: SidecarContext,
  ref: ObjectRef,
  checked: CheckedCertificate,
): Promise<AppliedFacts> {
  const fleet = ctx.material.fleet;
  const name = ref.name;
  if (fleet === undefined || name === undefined) throw new TypeError('a certificate needs a fleet config');
  await installCertificate(
    applyTarget(ctx),
    ref.secretId,
    name,
    checked.pem,
    checked.serial,
    loadedCertificates(fleet).has(name),
  );
  ctx.material.certificates.set(name, checked);
  const renewBeforeDays = fleet.certificates.find((c) => c.name === name)?.renewBeforeDays;
  return {
    serial: checked.serial,
    notAfter: checked.notAfter,
    renewAt: renewalTime(checked.info, renewBeforeDays).toISOString(),
  };
}

async function installAllowlistObject(
  ctx: SidecarContext,
  ref: ObjectRef,
  versionId: string,
  checked: CheckedAllowlist,
): Promise<AppliedFacts> {
  const fleet = ctx.material.fleet;
  if (fleet === undefined) throw new TypeError('an allowlist needs a fleet config');
  const previous = ctx.material.allowlist;
  const { cut } = await installAllowlist(applyTarget(ctx), ref.secretId, checked.cidrs, previous, {
    cutRemovedSessions: fleet.allowlist.cutRemovedSessions,
  });
  ctx.material.allowlist = checked.cidrs;
  if (cut > 0)
    ctx.log.info('cut sessions of removed sources', { secretId: ref.secretId, versionId, sessions: cut });
  return { size: checked.cidrs.length };
}

/** Installs a version already checked against the material it is installed with. */
export async function installChecked(
  ctx: SidecarContext,
  ref: ObjectRef,
  versionId: string,
  checked: CheckedObject,
): Promise<AppliedFacts> {
  switch (checked.kind) {
    case 'nudgeKey':
      ctx.material.nudgeKey = checked.value;
      return {};
    case 'trust':
      return installTrust(ctx, ref, checked.value);
    case 'certificate':
      return installCertificateObject(ctx, ref, checked.value);
    case 'allowlist':
      return installAllowlistObject(ctx, ref, versionId, checked.value);
  }
}

/** Validates one version of `ref` against what is applied and installs it; returns public facts for the state. */
export async function installObject(
  ctx: SidecarContext,
  ref: ObjectRef,
  versionId: string,
  text: string,
): Promise<AppliedFacts> {
  if (ref.kind === 'fleet') {
    await installFleet(ctx, text);
    return {};
  }
  return installChecked(ctx, ref, versionId, await checkObject(ctx, appliedBasis(ctx.material), ref, text));
}
