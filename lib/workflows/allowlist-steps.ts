/**
 * The allowlist update steps (update-allowlist): validate a manual change (or accept the
 * secret-change event of an edit made elsewhere), stage it, and undo a failed update.
 */
import type { z } from 'zod';
import { type AllowlistPolicy, normaliseAllowlist } from '../allowlist/index.ts';
import { ValidationError } from '../errors.ts';
import { Stage } from '../ports.ts';
import { type AllowlistChange, applyAllowlistChange } from '../rotation/allowlist-change.ts';
import { decideAllowlistRollback } from '../rotation/rollback.ts';
import { deriveToken, TokenStep } from '../rotation/tokens.ts';
import { AllowlistSecret, parseSecret } from '../secrets/formats.ts';
import {
  assertFleet,
  nudgeTasksBack,
  requireStageHolder,
  stageHolder,
  tryDescribe,
  undoStaging,
} from './common.ts';
import { allowlistSecretId, type ControlPlaneFleet, loadControlPlaneFleet } from './fleet-config.ts';
import type { ControlPlanePorts } from './ports.ts';
import type {
  AllowlistRequest,
  AllowlistState,
  RollbackAllowlistInput,
  SecretChangeEvent,
  StageAllowlistInput,
  ValidateAllowlistInput,
} from './schemas.ts';

function requireAllowlistSecret(config: ControlPlaneFleet): string {
  const secretId = allowlistSecretId(config);
  if (secretId === undefined) {
    throw new ValidationError(`fleet '${config.fleet}' does not keep its allowlist in a secret`, {
      path: 'allowlist.source',
    });
  }
  return secretId;
}

/**
 * Whether an event's secret id names the configured secret: events carry what the caller
 * passed (a name or an ARN, whose name part ends in Secrets Manager's 6-character suffix).
 */
export function sameSecret(configured: string, fromEvent: string): boolean {
  if (configured === fromEvent) return true;
  const nameOf = (id: string) => {
    const match = /^arn:[^:]+:secretsmanager:[^:]*:[^:]*:secret:(.+)$/.exec(id);
    return match ? match[1]!.replace(/-[A-Za-z0-9]{6}$/, '') : id;
  };
  return nameOf(configured) === nameOf(fromEvent);
}

// Validate and Stage both derive the change and the policy from these two, so that what is
// staged is exactly what was validated.
function changeOf(request: AllowlistRequest): AllowlistChange {
  return request.set !== undefined ? { set: request.set } : { add: request.add, remove: request.remove };
}

function policyOf(config: ControlPlaneFleet): AllowlistPolicy {
  return { allowAll0: config.allowlist.allowAll0, maxEntries: config.allowlist.maxEntries };
}

function isEvent(input: SecretChangeEvent | AllowlistRequest): input is SecretChangeEvent {
  return 'detail-type' in input;
}

/**
 * ValidateAllowlist: for a manual change, applies it to `AWSCURRENT` and validates the result
 * (normalised, de-duplicated, bounded, `/0` only when the fleet allows it) — mode `stage`, or
 * `converge` when nothing changes. For a secret-change event, validates `AWSCURRENT` and asks
 * only to push it to every task (mode `converge`); events about other secrets are `ignore`d.
 */
export function makeValidateAllowlist(ports: ControlPlanePorts) {
  return async function validateAllowlistStep(
    event: z.output<typeof ValidateAllowlistInput>,
  ): Promise<AllowlistState> {
    const config = await loadControlPlaneFleet(ports.store, ports.fleetConfigSecretId);
    const secretId = requireAllowlistSecret(config);
    const policy = policyOf(config);
    const input = event.input;
    if (isEvent(input)) {
      const changed = input.detail.requestParameters?.secretId;
      if (changed === undefined || !sameSecret(secretId, changed)) {
        return {
          mode: 'ignore',
          secretId: null,
          baseVersionId: null,
          versionId: null,
          size: 0,
          added: [],
          removed: [],
        };
      }
    } else {
      assertFleet(ports, input.fleet);
    }
    const current = await ports.store.get(secretId, { stage: Stage.Current });
    const document = parseSecret(AllowlistSecret, secretId, current.value);
    if (isEvent(input)) {
      const result = normaliseAllowlist(document.cidrs, policy);
      if (result.kind === 'invalid') {
        throw new ValidationError(`allowlist ${secretId} (AWSCURRENT): ${result.issues.join('; ')}`, {
          path: 'cidrs',
        });
      }
      return {
        mode: 'converge',
        secretId,
        baseVersionId: current.versionId,
        versionId: current.versionId,
        size: result.cidrs.length,
        added: [],
        removed: [],
      };
    }
    const result = applyAllowlistChange(document.cidrs, changeOf(input), policy);
    return {
      mode: result.changed ? 'stage' : 'converge',
      secretId,
      baseVersionId: current.versionId,
      versionId: result.changed ? null : current.versionId,
      size: result.cidrs.length,
      added: result.added,
      removed: result.removed,
    };
  };
}

/**
 * StageAllowlist: recomputes the list from the base version the validation read (so the
 * staged content is exactly what was validated) and puts it as `AWSPENDING` with a derived token.
 */
export function makeStageAllowlist(ports: ControlPlanePorts) {
  return async function stageAllowlistStep(
    event: z.output<typeof StageAllowlistInput>,
  ): Promise<AllowlistState> {
    assertFleet(ports, event.fleet);
    const state = event.allowlist;
    if (state.mode !== 'stage' || state.secretId === null || state.baseVersionId === null) {
      throw new ValidationError(`nothing to stage for an allowlist update in mode ${state.mode}`, {
        path: 'allowlist.mode',
      });
    }
    const config = await loadControlPlaneFleet(ports.store, ports.fleetConfigSecretId);
    const base = await ports.store.get(state.secretId, { versionId: state.baseVersionId });
    const request = event.request;
    const result = applyAllowlistChange(
      parseSecret(AllowlistSecret, state.secretId, base.value).cidrs,
      changeOf(request),
      policyOf(config),
    );
    const document: AllowlistSecret = {
      cidrs: result.cidrs,
      reason: request.reason,
      updatedBy: request.updatedBy ?? `stepfunctions:${event.executionName}`,
    };
    const versionId = deriveToken(event.executionName, state.secretId, TokenStep.Allowlist);
    const put = await ports.store.put(state.secretId, JSON.stringify(document), {
      clientRequestToken: versionId,
      stages: [Stage.Pending],
    });
    if (!put.created) {
      const now = await ports.store.describe(state.secretId);
      const holders = [stageHolder(now, Stage.Current), stageHolder(now, Stage.Pending)];
      if (!holders.includes(versionId)) await ports.store.moveStage(state.secretId, Stage.Pending, versionId);
    }
    return { ...state, versionId, size: result.cidrs.length, added: result.added, removed: result.removed };
  };
}

export interface RollbackAllowlistResult {
  restoredCurrentTo: string | null;
  droppedPending: boolean;
  nudged: string[];
  notes: string[];
}

/** RollbackAllowlist: `AWSCURRENT` back to the base if it moved, `AWSPENDING` dropped, tasks nudged back. */
export function makeRollbackAllowlist(ports: ControlPlanePorts) {
  return async function rollbackAllowlistStep(
    event: z.output<typeof RollbackAllowlistInput>,
  ): Promise<RollbackAllowlistResult> {
    assertFleet(ports, event.fleet);
    const state = event.allowlist;
    const notes: string[] = [];
    if (state.secretId === null || state.mode === 'ignore') {
      return { restoredCurrentTo: null, droppedPending: false, nudged: [], notes };
    }
    const secretId = state.secretId;
    const newVersionId =
      state.mode === 'stage'
        ? deriveToken(event.executionName, secretId, TokenStep.Allowlist)
        : state.versionId;
    const secret = await tryDescribe(ports.store, secretId);
    const plan = decideAllowlistRollback({
      mode: state.mode,
      secret,
      newVersionId,
      baseVersionId: state.baseVersionId,
    });
    // Without a version id nothing was staged, and the plan has nothing to undo.
    if (newVersionId !== null) await undoStaging(ports.store, secretId, newVersionId, plan);
    let nudged: string[] = [];
    if (plan.nudgeTasks) {
      if (secret !== undefined) requireStageHolder(secret, Stage.Current);
      ({ nudged } = await nudgeTasksBack(ports, secretId, notes));
    }
    return { restoredCurrentTo: plan.restoreCurrentTo, droppedPending: plan.dropPending, nudged, notes };
  };
}
