/**
 * Running the reducer's effects: `apply` (fetch a version, validate, install, report the
 * outcome as `applied`, `rejected` or `failed`) and `verifyHaproxy`.
 */
import { NotFoundError } from '../../lib/errors.ts';
import { Rejection } from './checks.ts';
import { message, type SidecarContext } from './context.ts';
import { ApplyFailed, ContentRejected } from './errors.ts';
import { verifyHaproxy } from './haproxy-sync.ts';
import { installObject } from './install.ts';
import type { Origin, SidecarEffect } from './state.ts';

/** Runs one `apply` effect; returns the error (already logged and recorded) when it did not apply. */
export async function applyObject(
  ctx: SidecarContext,
  key: string,
  versionId: string,
  origin: Origin,
  currentAtApply: string | undefined,
): Promise<Error | undefined> {
  const { log } = ctx;
  const ref = ctx.state.objects[key]?.ref;
  if (ref === undefined) return new NotFoundError(`no object ${key}`);
  const at = () => ctx.now().toISOString();
  let text: string;
  try {
    text = await ctx.store.fetchVersion(ref.secretId, versionId);
  } catch (error) {
    log.error('fetch failed', { object: key, secretId: ref.secretId, versionId, error: message(error) });
    ctx.dispatch({ type: 'failed', key, versionId, message: `fetch: ${message(error)}`, at: at() });
    return error instanceof Error ? error : new Error(String(error));
  }
  const fields = { object: key, kind: ref.kind, secretId: ref.secretId, versionId };
  try {
    const facts = await installObject(ctx, ref, versionId, text);
    ctx.dispatch({ type: 'applied', key, versionId, origin, currentAtApply, facts, at: at() });
    log.info('applied', { ...fields, origin, ...facts });
    return undefined;
  } catch (error) {
    if (error instanceof Rejection) {
      ctx.dispatch({ type: 'rejected', key, versionId, code: error.code, message: error.message, at: at() });
      log.warn('rejected', { ...fields, code: error.code, reason: error.message });
      return new ContentRejected(ref.secretId, versionId, error.code, error.message);
    }
    ctx.dispatch({ type: 'failed', key, versionId, message: message(error), at: at() });
    log.error('apply failed', { ...fields, error: message(error) });
    return error instanceof ApplyFailed
      ? error
      : new ApplyFailed(ref.secretId, message(error), { cause: error });
  }
}

/** Runs effects in order; returns the errors of the applies that did not apply. */
export async function runEffects(ctx: SidecarContext, effects: readonly SidecarEffect[]): Promise<Error[]> {
  const errors: Error[] = [];
  for (const effect of effects) {
    if (effect.type === 'apply') {
      const error = await applyObject(
        ctx,
        effect.key,
        effect.versionId,
        effect.origin,
        effect.currentAtApply,
      );
      if (error) errors.push(error);
    } else {
      await verifyHaproxy(ctx, effect.pid);
    }
  }
  return errors;
}
