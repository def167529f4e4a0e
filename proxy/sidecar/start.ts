/**
 * One start attempt: every object not applied yet is fetched at `AWSCURRENT` (the fleet config
 * first, then the nudge key, the trust bundle before the certificates that must chain to it,
 * the allowlist); all must be valid and every certificate a route loads applied, then the
 * gateway's files are rendered (`/healthz` 200: HAProxy may start). Otherwise `startFailed`
 * says why and the loop tries again with backoff.
 */
import { applyObject } from './apply-object.ts';
import { message, type SidecarContext } from './context.ts';
import { ContentRejected } from './errors.ts';
import { loadedCertificates, render, writeChanged } from './gateway-files.ts';
import { mayServeOldFiles } from './gateway-state.ts';
import { Phase, type StoreView } from './state.ts';

/** Keys in the order a start applies them. */
function startOrder(keys: readonly string[]): string[] {
  return [
    ...keys.filter((k) => k === 'nudgeKey'),
    ...keys.filter((k) => k === 'trust'),
    ...keys.filter((k) => k.startsWith('certificate:')),
    ...keys.filter((k) => k === 'allowlist'),
  ];
}

/** Runs one start attempt; resolves once rendered or blocked (`state.startError`). */
export async function tryStart(ctx: SidecarContext, attempt: number): Promise<void> {
  if (ctx.state.phase !== Phase.Starting) return;
  const { log, material } = ctx;
  const fail = (code: string, text: string) => {
    ctx.dispatch({ type: 'startFailed', code, message: text, at: ctx.now().toISOString() });
    log.error('start blocked', { code, reason: text, attempt });
  };
  if (ctx.state.objects.fleet === undefined) ctx.dispatch({ type: 'configured', refs: [ctx.fleetRef] });
  const applyCurrent = async (key: string): Promise<boolean> => {
    const object = ctx.state.objects[key];
    if (object === undefined || object.applied !== undefined) return true;
    let view: StoreView;
    try {
      view = await ctx.store.describe(object.ref.secretId);
    } catch (error) {
      const missing = error instanceof Error && error.name === 'NotFoundError';
      fail(missing ? 'missing' : 'store-unavailable', `${object.ref.secretId}: ${message(error)}`);
      return false;
    }
    if (view.current === undefined) {
      fail('missing', `${object.ref.secretId} has no AWSCURRENT version`);
      return false;
    }
    const error = await applyObject(ctx, key, view.current, 'current', view.current);
    if (error !== undefined) {
      fail(error instanceof ContentRejected ? error.code : 'apply-failed', `${key}: ${error.message}`);
      return false;
    }
    return true;
  };
  if (!(await applyCurrent('fleet'))) return;
  let ok = true;
  for (const key of startOrder(Object.keys(ctx.state.objects))) ok = (await applyCurrent(key)) && ok;
  if (!ok) return;
  const fleet = material.fleet;
  if (fleet === undefined) return;
  for (const name of loadedCertificates(fleet)) {
    if (!material.certificates.has(name)) {
      fail('missing', `certificate ${name} is used by a route but was not applied`);
      return;
    }
  }
  ctx.dispatch({ type: 'crlRendered', crl: material.trust?.crlPem !== undefined });
  try {
    const written = await writeChanged(ctx, render(ctx, fleet, ctx.state.gateway.renderedCrl));
    log.info('rendered', { files: written, unchanged: written.length === 0 });
    if (written.length > 0 && mayServeOldFiles(ctx.state.gateway)) ctx.dispatch({ type: 'reloadNeeded' });
  } catch (error) {
    fail('render-failed', message(error));
    return;
  }
  ctx.dispatch({ type: 'rendered', at: ctx.now().toISOString() });
}
