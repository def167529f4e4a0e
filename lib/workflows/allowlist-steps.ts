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
import {
  AllowlistDocument,
  chooseStorage,
  fetchEntries,
  type ObjectStoreFor,
  type ResolvedAllowlist,
  resolveAllowlist,
  storeAllowlist,
} from '../secrets/allowlist-storage.ts';
import { parseSecret } from '../secrets/formats.ts';
import {
  assertFleet,
  nudgeTasksBack,
  requireStageHolder,
  stageHolder,
  tryDescribe,
  tryGetVersion,
  undoStaging,
} from './common.ts';
import { allowlistSecretId, type ControlPlaneFleet, loadControlPlaneFleet } from './fleet-config.ts';
import type { ControlPlanePorts } from './ports.ts';
import {
  ALLOWLIST_SAMPLE_ENTRIES,
  type AllowlistRequest,
  type AllowlistState,
  type RollbackAllowlistInput,
  type SecretChangeEvent,
  type StageAllowlistInput,
  type ValidateAllowlistInput,
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

/** The object store a manifest may name: the control plane's own bucket only. */
function objectsOf(ports: ControlPlanePorts): ObjectStoreFor | undefined {
  const objects = ports.allowlistObjects;
  if (objects === undefined) return undefined;
  return (bucket) => {
    if (bucket !== objects.store.bucket) {
      throw new ValidationError(
        `the allowlist manifest names bucket '${bucket}', this control plane keeps allowlists in '${objects.store.bucket}'`,
        { path: 'object.bucket' },
      );
    }
    return objects.store;
  };
}

/** The list a version of the allowlist secret stands for (its object fetched and verified). */
async function readList(
  ports: ControlPlanePorts,
  secretId: string,
  text: string,
): Promise<ResolvedAllowlist> {
  return resolveAllowlist(parseSecret(AllowlistDocument, secretId, text), objectsOf(ports));
}

// Validate and Stage both derive the change and the policy from these two, so that what is
// staged is exactly what was validated.
async function changeOf(ports: ControlPlanePorts, request: AllowlistRequest): Promise<AllowlistChange> {
  if (request.change !== undefined) {
    const entries = await fetchEntries(objectsOf(ports), request.change);
    return request.change.action === 'set' ? { set: entries } : { [request.change.action]: entries };
  }
  return request.set !== undefined ? { set: request.set } : { add: request.add, remove: request.remove };
}

/** Who the staged document names as its author; Validate measures the same document Stage writes. */
function authorOf(request: AllowlistRequest, executionName: string): string {
  return request.updatedBy ?? `stepfunctions:${executionName}`;
}

/** The state's view of a diff: exact counts, a bounded sample of each side. */
function diffOf(result: { added: string[]; removed: string[] }) {
  return {
    added: result.added.slice(0, ALLOWLIST_SAMPLE_ENTRIES),
    removed: result.removed.slice(0, ALLOWLIST_SAMPLE_ENTRIES),
    addedCount: result.added.length,
    removedCount: result.removed.length,
  };
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
          addedCount: 0,
          removedCount: 0,
        };
      }
    } else {
      assertFleet(ports, input.fleet);
    }
    const current = await ports.store.get(secretId, { stage: Stage.Current });
    const document = await readList(ports, secretId, current.value);
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
        addedCount: 0,
        removedCount: 0,
      };
    }
    const result = applyAllowlistChange(document.cidrs, await changeOf(ports, input), policy);
    // The store's limits (entries, bytes; the secret value's 64 KiB without an object store),
    // checked on the very document Stage would write, before anything is staged.
    if (result.changed) {
      chooseStorage(
        { cidrs: result.cidrs, reason: input.reason, updatedBy: authorOf(input, event.executionName) },
        { objectStore: ports.allowlistObjects !== undefined },
      );
    }
    return {
      mode: result.changed ? 'stage' : 'converge',
      secretId,
      baseVersionId: current.versionId,
      versionId: result.changed ? null : current.versionId,
      size: result.cidrs.length,
      ...diffOf(result),
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
      (await readList(ports, state.secretId, base.value)).cidrs,
      await changeOf(ports, request),
      policyOf(config),
    );
    const versionId = deriveToken(event.executionName, state.secretId, TokenStep.Allowlist);
    // A re-run after a timeout finds its version already stored: a second object write would
    // give the manifest another object version id, and the secret would refuse it as a conflict.
    const existing = await tryGetVersion(ports.store, state.secretId, versionId);
    if (existing === undefined) {
      const objects = ports.allowlistObjects;
      const { value } = await storeAllowlist(
        { cidrs: result.cidrs, reason: request.reason, updatedBy: authorOf(request, event.executionName) },
        objects === undefined
          ? undefined
          : { store: objects.store, key: `${objects.prefix}lists/${versionId}.cidrs` },
      );
      await ports.store.put(state.secretId, value, {
        clientRequestToken: versionId,
        stages: [Stage.Pending],
      });
    } else {
      const now = await ports.store.describe(state.secretId);
      const holders = [stageHolder(now, Stage.Current), stageHolder(now, Stage.Pending)];
      if (!holders.includes(versionId)) await ports.store.moveStage(state.secretId, Stage.Pending, versionId);
    }
    return { ...state, versionId, size: result.cidrs.length, ...diffOf(result) };
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
