/**
 * Installing a trust bundle (CA certificates, optional CRL). HAProxy up to 3.2.0 mishandles
 * `commit ssl ca-file` (see apply.ts): the files are written and HAProxy reloads seamlessly;
 * established connections finish on the previous worker. While HAProxy is not live, or a fleet
 * change stages objects, only the files are written and a reload is noted as pending.
 * The bundle comes checked against the certificates in service (`checks.ts`).
 */
import { readFile } from 'node:fs/promises';
import { terminatePaths, trustReferenced } from '../haproxy/render-terminate.ts';
import { writeTrustFiles } from './apply.ts';
import { live, message, type SidecarContext } from './context.ts';
import { ApplyFailed } from './errors.ts';
import { mayServeOldFiles } from './gateway-state.ts';
import { rerender } from './haproxy-sync.ts';
import { type AppliedFacts, type ObjectRef, Phase } from './state.ts';
import type { CheckedTrust } from './validate.ts';

export async function installTrust(
  ctx: SidecarContext,
  ref: ObjectRef,
  trust: CheckedTrust,
): Promise<AppliedFacts> {
  const { material, layout } = ctx;
  const fleet = material.fleet;
  const crl = trust.crlPem !== undefined;
  const facts = { caCount: trust.caCount, crl };
  if (fleet === undefined || !trustReferenced(fleet) || ctx.state.gateway.filesOnly || !live(ctx)) {
    const paths = terminatePaths(layout);
    const before = await Promise.all(
      [paths.trust, paths.crl].map((path) => readFile(path, 'utf8').catch(() => undefined)),
    );
    await writeTrustFiles(layout, trust);
    const trustChanged =
      before[0] !== trust.caPem || (trust.crlPem !== undefined && before[1] !== trust.crlPem);
    if (trustChanged && fleet !== undefined && trustReferenced(fleet) && mayServeOldFiles(ctx.state.gateway))
      ctx.dispatch({ type: 'reloadNeeded' });
    material.trust = trust;
    const crlNow = crl && fleet !== undefined && trustReferenced(fleet);
    const rerenderNow =
      crlNow !== ctx.state.gateway.renderedCrl &&
      fleet !== undefined &&
      !ctx.state.gateway.filesOnly &&
      ctx.state.phase !== Phase.Starting;
    ctx.dispatch({ type: 'crlRendered', crl: crlNow });
    if (rerenderNow) await rerender(ctx, fleet);
    return facts;
  }
  const previous = { trust: material.trust, crl: ctx.state.gateway.renderedCrl };
  await writeTrustFiles(layout, trust);
  material.trust = trust;
  ctx.dispatch({ type: 'crlRendered', crl });
  try {
    await rerender(ctx, fleet, { reload: true });
  } catch (error) {
    material.trust = previous.trust;
    ctx.dispatch({ type: 'crlRendered', crl: previous.crl });
    if (previous.trust !== undefined) await writeTrustFiles(layout, previous.trust);
    await rerender(ctx, fleet, { reload: true }).catch(() => undefined);
    throw new ApplyFailed(ref.secretId, `trust bundle: ${message(error)}`, { cause: error });
  }
  return facts;
}
