/** The sidecar's state as the port's `TaskStatus` (pure), what `GET /v1/status` answers. */
import type { TaskStatus } from '../../lib/ports.ts';
import { Phase, type SidecarState } from './state.ts';

/** The `TaskStatus` of the port (certificates keyed by name), plus sidecar details. */
export function toTaskStatus(state: SidecarState): TaskStatus & Record<string, unknown> {
  const certificates: Record<
    string,
    { secretId: string; versionId: string; serial: string; notAfter: string; renewAt?: string }
  > = {};
  const objects: Record<string, unknown> = {};
  let trust: { versionId: string } | undefined;
  let allowlist: { versionId: string; size: number } | undefined;
  let fleetConfig: { versionId: string } | undefined;
  for (const object of Object.values(state.objects)) {
    const { ref, applied, rejected } = object;
    objects[ref.key] = {
      kind: ref.kind,
      secretId: ref.secretId,
      ...(object.desired ? { desired: object.desired } : {}),
      ...(applied ? { versionId: applied.versionId, origin: applied.origin, appliedAt: applied.at } : {}),
      ...(rejected ? { rejected } : {}),
    };
    if (applied === undefined) continue;
    if (ref.kind === 'certificate' && ref.name !== undefined) {
      certificates[ref.name] = {
        secretId: ref.secretId,
        versionId: applied.versionId,
        serial: applied.facts.serial ?? '',
        notAfter: applied.facts.notAfter ?? '',
        ...(applied.facts.renewAt === undefined ? {} : { renewAt: applied.facts.renewAt }),
      };
    } else if (ref.kind === 'trust') {
      trust = { versionId: applied.versionId };
    } else if (ref.kind === 'allowlist') {
      allowlist = { versionId: applied.versionId, size: applied.facts.size ?? 0 };
    } else if (ref.kind === 'fleet') {
      fleetConfig = { versionId: applied.versionId };
    }
  }
  return {
    ready: state.phase === Phase.Ready,
    phase: state.phase,
    certificates,
    ...(trust ? { trust } : {}),
    ...(allowlist ? { allowlist } : {}),
    ...(fleetConfig ? { fleetConfig } : {}),
    ...(state.lastApply
      ? {
          lastApply: {
            at: state.lastApply.at,
            ok: state.lastApply.ok,
            ...(state.lastApply.error === undefined ? {} : { error: state.lastApply.error }),
            ...(state.lastApply.code === undefined ? {} : { code: state.lastApply.code }),
            ...(state.lastApply.key === undefined ? {} : { object: state.lastApply.key }),
            ...(state.lastApply.versionId === undefined ? {} : { versionId: state.lastApply.versionId }),
          },
        }
      : {}),
    ...(state.startError ? { startError: state.startError } : {}),
    ...(state.haproxyPid === undefined ? {} : { haproxyPid: state.haproxyPid }),
    objects,
  };
}
