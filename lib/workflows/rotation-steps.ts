/**
 * The certificate rotation steps (rotate-certificates). Each factory takes the ports and
 * returns the step; every step is idempotent on its input: tokens derive from the execution
 * name and the certificate name, and each write is preceded by a look-up of what an earlier
 * attempt may already have written.
 */
import type { z } from 'zod';
import { ConflictError, RotationInProgress } from '../errors.ts';
import { createCsr, generateKey, keyPairFromPrivateKey } from '../pki/index.ts';
import { sameSerial } from '../pki/serial.ts';
import { certificateInfo, coversHostnames, keyMatchesCertificate } from '../pki/validate.ts';
import { RevocationReason, type SecretStore, Stage } from '../ports.ts';
import { BackoffStage, type BackoffState, nextBackoff, readRotationBackoff } from '../rotation/backoff.ts';
import { checkedIssuedBundle } from '../rotation/certificate-bundle.ts';
import type { CertificateSpec } from '../rotation/certificate-spec.ts';
import type { CurrentCertificate } from '../rotation/due.ts';
import {
  describeLease,
  LeaseStages,
  type LeaseVersion,
  type RotationLease,
  rotationLease,
} from '../rotation/lease.ts';
import { deferLeased, type PlannedCertificate, planRotation } from '../rotation/plan.ts';
import { decideRotationRollback, IssuedStage, IssuingStage } from '../rotation/rollback.ts';
import { UNREACHABLE_SAMPLE } from '../rotation/tasks.ts';
import { certificateTokenSubject, deriveToken, TokenStep } from '../rotation/tokens.ts';
import { CertificateSecret, parseSecret, TrustSecret } from '../secrets/formats.ts';
import {
  assertFleet,
  currentBefore,
  errorName,
  findSpec,
  nowOf,
  nudgeTasksBack,
  readDocument,
  stageHolder,
  tryDescribe,
  tryGetVersion,
  undoStaging,
} from './common.ts';
import { IssuedDocument, IssuingKeyDocument, PlaceholderDocument } from './documents.ts';
import { type ControlPlaneFleet, loadControlPlaneFleet } from './fleet-config.ts';
import type { ControlPlanePorts } from './ports.ts';
import type {
  GetCertificateInput,
  IssueCertificateInput,
  PlanRotationInput,
  RevokeCertificateInput,
  RollbackRotationInput,
  StageCertificateInput,
} from './schemas.ts';

export interface PlanRotationResult {
  fleet: string;
  executionName: string;
  mode: 'due' | 'manual';
  dryRun: boolean;
  settings: {
    graceSeconds: number;
    rolloutPollSeconds: number;
    rolloutMaxPolls: number;
    taskBatches: number;
  };
  rotate: PlannedCertificate[];
  skip: PlannedCertificate[];
}

/**
 * `AWSCURRENT` of a certificate secret as the plan needs it: `undefined` when there is none
 * (or the first rotation's placeholder), `'unreadable'` when it is not a usable bundle — not
 * parsable, its private key is not the leaf's, its recorded serial is not the leaf's, or (given
 * the spec) the leaf does not cover the spec's DNS names. Such a version is due
 * (`invalid-current`): the sidecar would refuse it, so only a rotation repairs it.
 */
export async function readCurrentCertificate(
  store: SecretStore,
  secretId: string,
  spec?: Pick<CertificateSpec, 'dns'>,
): Promise<CurrentCertificate | 'unreadable' | undefined> {
  let text: string;
  try {
    text = (await store.get(secretId, { stage: Stage.Current })).value;
  } catch (error) {
    if (errorName(error) === 'NotFoundError') return undefined;
    throw error;
  }
  if (readDocument(PlaceholderDocument, text) !== undefined) return undefined;
  const doc = readDocument(CertificateSecret, text);
  if (doc === undefined) return 'unreadable';
  try {
    const info = certificateInfo(doc.certificatePem);
    if (!sameSerial(info.serial, doc.serial)) return 'unreadable';
    if (!keyMatchesCertificate(doc.privateKeyPem, doc.certificatePem)) return 'unreadable';
    if (spec !== undefined && !coversHostnames(doc.certificatePem, spec.dns).covered) return 'unreadable';
    return { serial: info.serial, notBefore: info.notBefore, notAfter: info.notAfter };
  } catch {
    return 'unreadable';
  }
}

/** Certificates PlanRotation reads at a time. */
const PLAN_READ_CONCURRENCY = 10;

/** Runs `work` on every item, `limit` at a time; the first failure is thrown once all have ended. */
async function eachLimited<T>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await work(item).catch((error: unknown) => {
        errors.push(error);
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (errors.length > 0) throw errors[0];
}

/** PlanRotation: which certificates are due (or forced); nothing is written. */
export function makePlanRotation(ports: ControlPlanePorts) {
  return async function planRotationStep(
    event: z.output<typeof PlanRotationInput>,
  ): Promise<PlanRotationResult> {
    const request = event.input;
    const fleet = assertFleet(ports, request.fleet);
    const config = await loadControlPlaneFleet(ports.store, ports.fleetConfigSecretId);
    const selected = request.certificates === undefined ? undefined : new Set(request.certificates);
    const current = new Map<string, CurrentCertificate | 'unreadable' | undefined>();
    const backoff = new Map<string, BackoffState>();
    const specs = config.certificates.filter((spec) => selected === undefined || selected.has(spec.name));
    // A hundred certificates read one after the other would use up the step's 30 s.
    await eachLimited(specs, PLAN_READ_CONCURRENCY, async (spec) => {
      current.set(spec.name, await readCurrentCertificate(ports.store, spec.secretId, spec));
      const state = await readRotationBackoff(ports.store, spec.secretId, nowOf(ports));
      if (state !== undefined) backoff.set(spec.name, state);
    });
    const planned = planRotation({
      specs: config.certificates,
      selected: request.certificates,
      force: request.force,
      now: nowOf(ports),
      current,
      backoff,
    });
    // A dry run reports the leases too (as skips) but never fails on one: it writes nothing.
    const leased = new Map<string, string>();
    await eachLimited(planned.rotate, PLAN_READ_CONCURRENCY, async (entry) => {
      const own = ownVersionIds(ports, entry.secretId, entry.name, event.executionName);
      const lease = await readLease(ports, entry.secretId, own);
      if (lease.held.length > 0) leased.set(entry.name, describeLease(lease.held));
    });
    const plan = deferLeased(planned, leased, request.dryRun ? 'due' : request.mode);
    return {
      fleet,
      executionName: event.executionName,
      mode: request.mode,
      dryRun: request.dryRun,
      settings: {
        graceSeconds: request.graceSeconds,
        rolloutPollSeconds: request.rolloutPollSeconds,
        rolloutMaxPolls: request.rolloutMaxPolls,
        taskBatches: request.taskBatches,
      },
      rotate: plan.rotate,
      skip: plan.skip,
    };
  };
}

const LeaseStageSet = new Set<string>(LeaseStages);
/** The writes whose versions carry lease marks (the CA request and the placeholder carry none). */
const LeaseTokenSteps = [TokenStep.Key, TokenStep.Issued, TokenStep.Bundle] as const;

/** The versions this execution's derived tokens name for one certificate: its own lease marks. */
function ownVersionIds(
  ports: ControlPlanePorts,
  secretId: string,
  name: string,
  executionName: string,
): Set<string> {
  const subject = certificateTokenSubject(ports.fleetName, secretId, name);
  return new Set(LeaseTokenSteps.map((step) => deriveToken(executionName, subject, step)));
}

/**
 * The certificate's rotation lease as the store shows it now. `describe` does not give version
 * ages on AWS (DescribeSecret has none), so the age of each foreign mark is read from the
 * version itself (its value is read, never kept or logged).
 */
async function readLease(
  ports: ControlPlanePorts,
  secretId: string,
  own: ReadonlySet<string>,
): Promise<RotationLease> {
  const secret = await tryDescribe(ports.store, secretId);
  if (secret === undefined) return { held: [], stale: [] };
  const versions: LeaseVersion[] = [];
  for (const version of secret.versions) {
    const marked = version.stages.some((stage) => LeaseStageSet.has(stage));
    if (!marked || own.has(version.versionId) || version.createdAt !== undefined) {
      versions.push(version);
      continue;
    }
    const value = await tryGetVersion(ports.store, secretId, version.versionId);
    if (value !== undefined) versions.push({ ...version, createdAt: value.createdAt });
  }
  return rotationLease({ versions, ownVersionIds: own, now: nowOf(ports) });
}

/** What every per-certificate step starts from: the fleet config, the spec and its token deriver. */
interface CertificateStep {
  config: ControlPlaneFleet;
  spec: CertificateSpec;
  /** The idempotency token of one sub-step of this execution for this certificate. */
  token: (step: TokenStep) => string;
}

async function certificateStep(
  ports: ControlPlanePorts,
  event: { fleet?: string | undefined; certificate: string; executionName: string },
): Promise<CertificateStep> {
  assertFleet(ports, event.fleet);
  const config = await loadControlPlaneFleet(ports.store, ports.fleetConfigSecretId);
  const spec = findSpec(config, event.certificate);
  const subject = certificateTokenSubject(ports.fleetName, spec.secretId, spec.name);
  return { config, spec, token: (step) => deriveToken(event.executionName, subject, step) };
}

/**
 * Refuses when another execution holds this certificate's lease. Marks of an execution that
 * stopped (older than the bound) are taken over: their labels are removed from their versions
 * (only from those: a label another execution moved since is left alone).
 * @returns the version ids taken over.
 */
async function acquireLease(
  ports: ControlPlanePorts,
  spec: CertificateSpec,
  own: Set<string>,
): Promise<string[]> {
  const lease = await readLease(ports, spec.secretId, own);
  if (lease.held.length > 0) {
    throw new RotationInProgress(
      `certificate '${spec.name}' is being rotated by another execution (${describeLease(lease.held)})`,
    );
  }
  for (const mark of lease.stale) {
    await ports.store.moveStage(spec.secretId, mark.stage, undefined, { fromVersionId: mark.versionId });
  }
  return lease.stale.map((mark) => mark.versionId);
}

export interface IssueCertificateResult {
  certificateId: string;
  /** Versions of a stopped execution whose lease marks were removed (stale lease taken over). */
  tookOver: string[];
  /** What an earlier attempt had already done: `none`, the `key` only, the `issue` request, or the whole `bundle`. */
  reused: 'none' | 'key' | 'issue' | 'bundle';
}

async function ensureSecret(store: SecretStore, secretId: string, executionName: string): Promise<void> {
  if ((await tryDescribe(store, secretId)) !== undefined) return;
  // A fleet's first certificate: the secret gets a placeholder as AWSCURRENT (which the sidecar
  // refuses), so the working versions below never become current by accident.
  await store.create(secretId, JSON.stringify({ kind: 'portcullis/placeholder' }), {
    clientRequestToken: deriveToken(executionName, secretId, TokenStep.Placeholder),
    description: 'Portcullis certificate bundle',
  });
}

async function putOnce(
  store: SecretStore,
  secretId: string,
  value: string,
  token: string,
  stages: string[],
): Promise<void> {
  try {
    await store.put(secretId, value, { clientRequestToken: token, stages });
  } catch (error) {
    // A concurrent attempt won the race with its own (random) key: its version stands.
    if (!(error instanceof ConflictError)) throw error;
  }
}

/**
 * IssueCertificate: generates the key (stored first, in a version of its own labelled
 * `PORTCULLIS_ISSUING`), sends a CSR to the CA with a derived idempotency token, and records
 * the CA's certificate id (`PORTCULLIS_ISSUED`). A re-run finds the bundle, the record or the
 * key of the earlier attempt and never issues a second certificate.
 */
export function makeIssueCertificate(ports: ControlPlanePorts) {
  return async function issueCertificateStep(
    event: z.output<typeof IssueCertificateInput>,
  ): Promise<IssueCertificateResult> {
    const { spec, token } = await certificateStep(ports, event);
    const { store } = ports;

    // Before anything is written: this execution's own marks (a re-run) do not count.
    const tookOver = await acquireLease(ports, spec, new Set(LeaseTokenSteps.map(token)));
    await ensureSecret(store, spec.secretId, event.executionName);
    const bundle = await tryGetVersion(store, spec.secretId, token(TokenStep.Bundle));
    const staged = bundle && readDocument(CertificateSecret, bundle.value);
    if (staged?.certificateId !== undefined)
      return { certificateId: staged.certificateId, reused: 'bundle', tookOver };
    const issuedVersion = await tryGetVersion(store, spec.secretId, token(TokenStep.Issued));
    const issued = issuedVersion && readDocument(IssuedDocument, issuedVersion.value);
    if (issued !== undefined) return { certificateId: issued.certificateId, reused: 'issue', tookOver };

    let reused: IssueCertificateResult['reused'] = 'key';
    let keyVersion = await tryGetVersion(store, spec.secretId, token(TokenStep.Key));
    if (keyVersion === undefined) {
      reused = 'none';
      const fresh = await generateKey(spec.key);
      const document: IssuingKeyDocument = {
        kind: 'portcullis/issuing-key',
        privateKeyPem: fresh.privateKeyPem,
      };
      await putOnce(store, spec.secretId, JSON.stringify(document), token(TokenStep.Key), [IssuingStage]);
      keyVersion = await store.get(spec.secretId, { versionId: token(TokenStep.Key) });
    }
    const key = parseSecret(IssuingKeyDocument, `${spec.secretId}@${token(TokenStep.Key)}`, keyVersion.value);
    const sans = { dns: spec.dns, ...(spec.uri === undefined ? {} : { uri: spec.uri }) };
    const csrPem = await createCsr(keyPairFromPrivateKey(key.privateKeyPem), {
      commonName: spec.commonName,
      ...sans,
    });
    const { certificateId } = await ports.authority.issue({
      csrPem,
      commonName: spec.commonName,
      sans,
      validityDays: spec.validityDays,
      idempotencyToken: token(TokenStep.Issue),
      usage: spec.usage,
    });
    const record: IssuedDocument = { kind: 'portcullis/issued', certificateId };
    await putOnce(store, spec.secretId, JSON.stringify(record), token(TokenStep.Issued), [IssuedStage]);
    return { certificateId, reused, tookOver };
  };
}

export interface GetCertificateResult {
  certificateId: string;
  serial: string;
  notAfter: string;
}

/** GetCertificate: polls the CA (`CertificateNotReady` until issued); returns facts, not PEM. */
export function makeGetCertificate(ports: ControlPlanePorts) {
  return async function getCertificateStep(
    event: z.output<typeof GetCertificateInput>,
  ): Promise<GetCertificateResult> {
    assertFleet(ports, event.fleet);
    const issued = await ports.authority.get(event.certificateId);
    const info = certificateInfo(issued.certificatePem);
    return { certificateId: event.certificateId, serial: info.serial, notAfter: info.notAfter.toISOString() };
  };
}

export interface StageCertificateResult {
  secretId: string;
  versionId: string;
  serial: string;
  notAfter: string;
  /** `AWSCURRENT` before this rotation (what a rollback returns to, what is revoked after the grace period). */
  previousVersionId: string | null;
  previousSerial: string | null;
  previousCertificateId: string | null;
}

async function trustBundle(ports: ControlPlanePorts, trustSecretId: string | undefined): Promise<string> {
  if (trustSecretId === undefined) return ports.authority.caCertificates();
  const trust = await ports.store.get(trustSecretId, { stage: Stage.Current });
  return parseSecret(TrustSecret, trustSecretId, trust.value).caBundlePem;
}

/** Builds the bundle document and checks it the way the sidecar will, before anyone sees it. */
async function buildBundle(
  ports: ControlPlanePorts,
  spec: CertificateSpec,
  certificateId: string,
  keyVersionId: string,
  trustSecretId: string | undefined,
): Promise<CertificateSecret> {
  const issued = await ports.authority.get(certificateId);
  const keyVersion = await ports.store.get(spec.secretId, { versionId: keyVersionId });
  const key = parseSecret(IssuingKeyDocument, `${spec.secretId}@${keyVersionId}`, keyVersion.value);
  return checkedIssuedBundle({
    certificateId,
    issued,
    privateKeyPem: key.privateKeyPem,
    trustBundlePem: await trustBundle(ports, trustSecretId),
    dns: spec.dns,
    at: nowOf(ports),
  });
}

/**
 * StageCertificate: validates key ↔ leaf, the chain to the trust bundle and the names, then
 * puts the bundle as `AWSPENDING` (derived token) and drops the working labels.
 */
export function makeStageCertificate(ports: ControlPlanePorts) {
  return async function stageCertificateStep(
    event: z.output<typeof StageCertificateInput>,
  ): Promise<StageCertificateResult> {
    const { config, spec, token } = await certificateStep(ports, event);
    const { store } = ports;
    const versionId = token(TokenStep.Bundle);

    // Checked again before AWSPENDING is written: two executions that both passed
    // IssueCertificate's check at the same moment each find the other's working labels here
    // (a label is on one version at a time), so at most one of them stages; the other rolls
    // back only what it wrote itself.
    const lease = await readLease(ports, spec.secretId, new Set(LeaseTokenSteps.map(token)));
    if (lease.held.length > 0) {
      throw new RotationInProgress(
        `certificate '${spec.name}' is being rotated by another execution (${describeLease(lease.held)})`,
      );
    }

    const existing = await tryGetVersion(store, spec.secretId, versionId);
    const bundle = existing
      ? parseSecret(CertificateSecret, `${spec.secretId}@${versionId}`, existing.value)
      : await buildBundle(ports, spec, event.certificateId, token(TokenStep.Key), config.trust?.secretId);

    const before = await store.describe(spec.secretId);
    const current = stageHolder(before, Stage.Current);
    const previousVersionId = currentBefore(before, versionId);
    if (existing === undefined) {
      await store.put(spec.secretId, JSON.stringify(bundle), {
        clientRequestToken: versionId,
        stages: [Stage.Pending],
      });
    } else if (current !== versionId && stageHolder(before, Stage.Pending) !== versionId) {
      await store.moveStage(spec.secretId, Stage.Pending, versionId);
    }
    for (const [stage, holder] of [
      [IssuingStage, token(TokenStep.Key)],
      [IssuedStage, token(TokenStep.Issued)],
    ] as const) {
      if (stageHolder(before, stage) === holder) {
        await store.moveStage(spec.secretId, stage, undefined, { fromVersionId: holder });
      }
    }

    let previous: CertificateSecret | undefined;
    if (previousVersionId !== null) {
      const version = await tryGetVersion(store, spec.secretId, previousVersionId);
      previous = version && readDocument(CertificateSecret, version.value);
    }
    return {
      secretId: spec.secretId,
      versionId,
      serial: bundle.serial,
      notAfter: bundle.notAfter,
      previousVersionId,
      previousSerial: previous?.serial ?? null,
      previousCertificateId: previous?.certificateId ?? null,
    };
  };
}

export interface RevokeCertificateResult {
  revoked: boolean;
  certificateId: string | null;
  serial: string | null;
  reason: string;
}

/** RevokeCertificate: revokes a superseded certificate; skips when there is none (first rotation, placeholder). */
export function makeRevokeCertificate(ports: ControlPlanePorts) {
  return async function revokeCertificateStep(
    event: z.output<typeof RevokeCertificateInput>,
  ): Promise<RevokeCertificateResult> {
    assertFleet(ports, event.fleet);
    if (event.certificateId === null || event.serial === null) {
      return {
        revoked: false,
        certificateId: event.certificateId,
        serial: event.serial,
        reason: event.reason,
      };
    }
    await ports.authority.revoke(event.certificateId, event.serial, event.reason);
    return { revoked: true, certificateId: event.certificateId, serial: event.serial, reason: event.reason };
  };
}

export interface RollbackRotationResult {
  restoredCurrentTo: string | null;
  droppedPending: boolean;
  revokedSerial: string | null;
  /** How many tasks were nudged back. */
  nudged: number;
  /** Tasks that could not be nudged back (at most {@link UNREACHABLE_SAMPLE}; the poll backstop returns them). */
  unreachable: string[];
  unreachableCount: number;
  /** What could not be undone, at most {@link ROLLBACK_NOTES} lines (the last says how many were left out). */
  notes: string[];
}

/** Lines of notes a rollback returns at most: one per unreachable task would grow with the fleet. */
export const ROLLBACK_NOTES = 20;

function boundedNotes(notes: readonly string[]): string[] {
  if (notes.length <= ROLLBACK_NOTES) return [...notes];
  return [...notes.slice(0, ROLLBACK_NOTES - 1), `… and ${notes.length - (ROLLBACK_NOTES - 1)} more`];
}

/**
 * Counts one more failed rotation in the certificate's back-off record (a version labelled
 * `PORTCULLIS_BACKOFF`, written with this execution's token, so a re-run of the rollback does
 * not count twice). A failure to write it is a note: the rollback itself has happened.
 */
async function recordFailure(
  ports: ControlPlanePorts,
  secretId: string,
  versionId: string,
  error: string,
  notes: string[],
): Promise<void> {
  try {
    if ((await tryGetVersion(ports.store, secretId, versionId)) !== undefined) return;
    const previous = await readRotationBackoff(ports.store, secretId, nowOf(ports));
    const record = nextBackoff(previous, error, nowOf(ports));
    await ports.store.put(secretId, JSON.stringify(record), {
      clientRequestToken: versionId,
      stages: [BackoffStage],
    });
  } catch (failure) {
    notes.push(`back-off not recorded: ${errorName(failure)}`);
  }
}

/**
 * RollbackRotation: puts `AWSCURRENT` back if it moved, drops `AWSPENDING` and the working
 * labels, nudges every task back to `AWSCURRENT`, revokes the new certificate (SUPERSEDED) and
 * keeps the old one. Everything it needs is derived from the execution and certificate names,
 * so it works from any failure point; it does as much as it can and reports what it could not.
 */
export function makeRollbackRotation(ports: ControlPlanePorts) {
  return async function rollbackRotationStep(
    event: z.output<typeof RollbackRotationInput>,
  ): Promise<RollbackRotationResult> {
    const { spec, token } = await certificateStep(ports, event);
    const { store } = ports;
    const newVersionId = token(TokenStep.Bundle);
    const notes: string[] = [];

    const secret = await tryDescribe(store, spec.secretId);
    let newCertificate: { certificateId: string; serial: string | null } | null = null;
    const bundleVersion = secret && (await tryGetVersion(store, spec.secretId, newVersionId));
    const bundle = bundleVersion && readDocument(CertificateSecret, bundleVersion.value);
    if (bundle?.certificateId !== undefined) {
      newCertificate = { certificateId: bundle.certificateId, serial: bundle.serial };
    } else {
      const recordVersion = secret && (await tryGetVersion(store, spec.secretId, token(TokenStep.Issued)));
      const record = recordVersion && readDocument(IssuedDocument, recordVersion.value);
      const certificateId = record?.certificateId ?? event.issued?.certificateId;
      if (certificateId !== undefined) newCertificate = { certificateId, serial: null };
    }
    if (newCertificate !== null && newCertificate.serial === null) {
      try {
        const issued = await ports.authority.get(newCertificate.certificateId);
        newCertificate.serial = certificateInfo(issued.certificatePem).serial;
      } catch (error) {
        notes.push(`could not read certificate ${newCertificate.certificateId}: ${errorName(error)}`);
      }
    }

    const plan = decideRotationRollback({
      secret,
      newVersionId,
      previousVersionId: event.staged?.previousVersionId ?? null,
      newCertificate,
      previousMayBeRevoked: event.previousRevocationAttempted === true,
    });
    notes.push(...plan.notes);
    await undoStaging(store, spec.secretId, newVersionId, plan);
    for (const stage of plan.dropLabels) {
      const holder = stageHolder(secret, stage);
      if (holder === token(TokenStep.Key) || holder === token(TokenStep.Issued)) {
        await store.moveStage(spec.secretId, stage, undefined, { fromVersionId: holder });
      }
    }

    const { nudged, unreachable } = plan.nudgeTasks
      ? await nudgeTasksBack(ports, spec.secretId, notes)
      : { nudged: [] as string[], unreachable: [] as string[] };

    let revokedSerial: string | null = null;
    if (plan.revoke !== null) {
      if (plan.revoke.serial === null) {
        notes.push(`certificate ${plan.revoke.certificateId} not revoked: its serial is unknown`);
      } else {
        try {
          await ports.authority.revoke(
            plan.revoke.certificateId,
            plan.revoke.serial,
            RevocationReason.Superseded,
          );
          revokedSerial = plan.revoke.serial;
        } catch (error) {
          notes.push(`certificate ${plan.revoke.certificateId} not revoked: ${errorName(error)}`);
        }
      }
    }
    await recordFailure(ports, spec.secretId, token(TokenStep.Backoff), event.error?.Error ?? 'Error', notes);
    return {
      restoredCurrentTo: plan.restoreCurrentTo,
      droppedPending: plan.dropPending,
      revokedSerial,
      nudged: nudged.length,
      unreachable: unreachable.slice(0, UNREACHABLE_SAMPLE),
      unreachableCount: unreachable.length,
      notes: boundedNotes(notes),
    };
  };
}
