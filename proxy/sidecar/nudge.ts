/**
 * `POST /v1/nudge`: a signed request (`lib/secrets/nudge.ts`) to apply a secret now, at
 * `AWSCURRENT` or at a named version. Answers after applying: 200 status; 401 bad, stale or
 * replayed signature; 404 secret or version unknown; 422 content refused; 503 HAProxy could not
 * apply it (previous state kept) or no nudge key loaded yet.
 */
import { NotFoundError } from '../../lib/errors.ts';
import { verifyNudge } from '../../lib/secrets/index.ts';
import { runEffects } from './apply-object.ts';
import { message, type SidecarContext } from './context.ts';
import { ContentRejected, NudgeUnauthorized, SidecarNotReady } from './errors.ts';
import { errorReply, type Reply } from './server.ts';
import { Phase, type StoreView, toTaskStatus } from './state.ts';

export interface NudgeHeaders {
  timestamp: string | undefined;
  signature: string | undefined;
}

/**
 * The nudge handler. `replay` remembers signatures seen inside the window; `startAttempt` runs
 * a start attempt when the sidecar is still starting (a nudge for a secret that was missing).
 */
export function nudgeHandler(
  ctx: SidecarContext,
  startAttempt: () => Promise<void>,
  replay: Map<string, number> = new Map(),
): (headers: NudgeHeaders, body: string) => Promise<Reply> {
  const { log } = ctx;
  return async (headers, body) => {
    const key = ctx.material.nudgeKey;
    if (key === undefined) {
      const error = new SidecarNotReady(
        'no nudge key loaded (fleet config nudgeKey, or the start is blocked)',
      );
      return errorReply(503, error.name, error.message);
    }
    const check = verifyNudge(key, headers, body, ctx.now().getTime(), replay);
    if (check.kind === 'invalid') {
      log.warn('nudge refused', { reason: check.reason });
      const error = new NudgeUnauthorized(`nudge refused: ${check.reason}`, { reason: check.reason });
      return errorReply(401, error.name, error.message);
    }
    let request: { secretId?: unknown; versionId?: unknown };
    try {
      request = JSON.parse(body) as typeof request;
    } catch {
      return errorReply(400, 'ValidationError', 'the nudge body is not JSON');
    }
    if (
      typeof request.secretId !== 'string' ||
      (request.versionId !== undefined && typeof request.versionId !== 'string')
    ) {
      return errorReply(
        400,
        'ValidationError',
        'the nudge body needs secretId (and optionally versionId) as strings',
      );
    }
    const secretId = request.secretId;
    const versionId = request.versionId as string | undefined;
    log.info('nudge', { secretId, ...(versionId ? { versionId } : {}) });
    return ctx.exclusive(async () => {
      const keys = Object.values(ctx.state.objects)
        .filter((o) => o.ref.secretId === secretId)
        .map((o) => o.ref.key);
      if (keys.length === 0) {
        return errorReply(404, 'NotFoundError', `secret ${secretId} is not one this sidecar serves`);
      }
      let view: StoreView;
      try {
        view = await ctx.store.describe(secretId);
      } catch (error) {
        const name = error instanceof Error ? error.name : 'Error';
        return errorReply(name === 'NotFoundError' ? 404 : 503, name, message(error));
      }
      if (versionId !== undefined && !view.versions.some((v) => v.versionId === versionId)) {
        return errorReply(404, 'NotFoundError', `secret ${secretId} has no labelled version ${versionId}`);
      }
      const errors: Error[] = [];
      for (const key of keys)
        errors.push(
          ...(await runEffects(
            ctx,
            ctx.dispatch({ type: 'nudged', key, ...(versionId ? { versionId } : {}), view }),
          )),
        );
      if (ctx.state.phase === Phase.Starting) await startAttempt();
      const error = errors[0];
      if (error instanceof ContentRejected) return errorReply(422, error.name, error.message);
      if (error instanceof NotFoundError) return errorReply(404, error.name, error.message);
      if (error !== undefined) return errorReply(503, error.name, error.message);
      return { statusCode: 200, body: toTaskStatus(ctx.state) };
    });
  };
}
