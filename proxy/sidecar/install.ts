/**
 * Installing one validated version, per object kind: certificate, allowlist, nudge key here;
 * trust bundle and CRL in `install-trust.ts`; fleet config in `fleet-change.ts`. Each returns
 * the public facts the state keeps, or throws a `Rejection` (validation: the version is refused)
 * or another error (HAProxy could not apply it: the previous state is kept).
 */
import { renewalTime } from '../../lib/rotation/due.ts';
import { loadAllowlist } from './allowlist-source.ts';
import { installAllowlist, installCertificate } from './apply.ts';
import { applyTarget, type SidecarContext } from './context.ts';
import { installFleet } from './fleet-change.ts';
import { hostnamesFor, loadedCertificates } from './gateway-files.ts';
import { installTrust } from './install-trust.ts';
import type { AppliedFacts, ObjectRef } from './state.ts';
import { type CheckedCertificate, checkCertificateDocument, checkNudgeKeyDocument } from './validate.ts';

/** A version refused by validation, with its check code (`validate.ts`). */
export class Rejection extends Error {
  readonly code: string;
  constructor(code: string, reason: string) {
    super(reason);
    this.name = 'Rejection';
    this.code = code;
  }
}

/** Validates a certificate document against the applied trust bundle and the routes serving it. */
export function checkCertificate(ctx: SidecarContext, name: string, text: string): CheckedCertificate {
  const fleet = ctx.material.fleet;
  const trust = ctx.material.trust;
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

async function installCertificateObject(
  ctx: SidecarContext,
  ref: ObjectRef,
  text: string,
): Promise<AppliedFacts> {
  const fleet = ctx.material.fleet;
  if (fleet === undefined || ref.name === undefined) throw new Rejection('config-invalid', 'no fleet config');
  const checked = checkCertificate(ctx, ref.name, text);
  await installCertificate(
    applyTarget(ctx),
    ref.secretId,
    ref.name,
    checked.pem,
    checked.serial,
    loadedCertificates(fleet).has(ref.name),
  );
  ctx.material.certificates.set(ref.name, checked);
  const renewBeforeDays = fleet.certificates.find((c) => c.name === ref.name)?.renewBeforeDays;
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
  text: string,
): Promise<AppliedFacts> {
  const fleet = ctx.material.fleet;
  if (fleet === undefined) throw new Rejection('config-invalid', 'no fleet config');
  const checked = await loadAllowlist(text, fleet.allowlist, ctx.objects);
  if (checked.kind === 'invalid') throw new Rejection(checked.code, checked.reason);
  const previous = ctx.material.allowlist;
  const { cut } = await installAllowlist(applyTarget(ctx), ref.secretId, checked.value.cidrs, previous, {
    cutRemovedSessions: fleet.allowlist.cutRemovedSessions,
  });
  ctx.material.allowlist = checked.value.cidrs;
  if (cut > 0)
    ctx.log.info('cut sessions of removed sources', { secretId: ref.secretId, versionId, sessions: cut });
  return { size: checked.value.cidrs.length };
}

/** Validates and installs one version of `ref`; returns public facts for the state. */
export async function installObject(
  ctx: SidecarContext,
  ref: ObjectRef,
  versionId: string,
  text: string,
): Promise<AppliedFacts> {
  switch (ref.kind) {
    case 'fleet':
      await installFleet(ctx, text);
      return {};
    case 'nudgeKey': {
      const checked = checkNudgeKeyDocument(text);
      if (checked.kind === 'invalid') throw new Rejection(checked.code, checked.reason);
      ctx.material.nudgeKey = checked.value;
      return {};
    }
    case 'trust':
      return installTrust(ctx, ref, text);
    case 'certificate':
      return installCertificateObject(ctx, ref, text);
    case 'allowlist':
      return installAllowlistObject(ctx, ref, versionId, text);
  }
}
