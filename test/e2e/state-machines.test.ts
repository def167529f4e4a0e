import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ServiceUnavailable } from '../../lib/aws/errors.ts';
import type { LocalAuthorityOptions } from '../../lib/local/local-authority.ts';
import {
  listStates,
  loadDefinition,
  localHandler,
  type RunStateMachineResult,
  runStateMachine,
  StartExecutionSync,
  type StateMachineName,
  StateMachineNames,
  type StateProgressEvent,
} from '../../lib/local/state-machine-runner.ts';
import { Stage } from '../../lib/ports.ts';
import { readRotationBackoff } from '../../lib/rotation/backoff.ts';
import { ROTATION_LEASE_STALE_AFTER_MS, ROTATION_MACHINE_TIMEOUT_SECONDS } from '../../lib/rotation/lease.ts';
import { IssuingStage } from '../../lib/rotation/rollback.ts';
import { functionKeys } from '../../lib/workflows/registry.ts';
import { type ControlPlaneFixture, createControlPlaneFixture, fixtureSecrets } from '../support/fakes.ts';

// asl-validator ships no types; this is the one function it exports.
const aslValidator = createRequire(import.meta.url)('asl-validator') as (definition: unknown) => {
  isValid: boolean;
  errors: unknown[];
};

let dir: string;
let fx: ControlPlaneFixture;

async function setUp(options: { authority?: LocalAuthorityOptions; tasks?: number } = {}) {
  fx = await createControlPlaneFixture(dir, options);
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-sfn-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function run(
  name: StateMachineName,
  input: unknown,
  options: { executionName?: string; events?: StateProgressEvent[] } = {},
): Promise<RunStateMachineResult> {
  return runStateMachine(name, input, fx.ports, {
    instant: true,
    executionName: options.executionName ?? `e2e-${randomUUID()}`,
    onStateEvent: (event) => options.events?.push(event),
  });
}

const rotateApi = (extra: Record<string, unknown> = {}) => ({
  certificates: ['api'],
  graceSeconds: 0,
  rolloutPollSeconds: 0,
  rolloutMaxPolls: 3,
  ...extra,
});

function succeeded(result: RunStateMachineResult): Record<string, unknown> {
  if (result.status !== 'SUCCEEDED')
    throw new Error(`expected success, got ${result.error}: ${result.cause}`);
  return result.output as Record<string, unknown>;
}

async function currentBundle(secretId: string = fixtureSecrets.api) {
  const current = await fx.store.get(secretId, { stage: Stage.Current });
  return {
    versionId: current.versionId,
    ...(JSON.parse(current.value) as { serial: string; certificateId: string }),
  };
}

async function pendingHolder(secretId: string) {
  return (await fx.store.describe(secretId)).versions.find((v) => v.stages.includes(Stage.Pending))
    ?.versionId;
}

/** A first rotation, so that an "old" certificate is current and served. */
async function bootstrap() {
  succeeded(await run('rotate-certificates', rotateApi(), { executionName: 'bootstrap' }));
  fx.notifier.events.length = 0;
  return currentBundle();
}

function servedSerials(secretId: string = fixtureSecrets.api): (string | undefined)[] {
  return fx.gateway.tasks.map((t) => t.served.get(secretId)?.serial);
}

describe('statemachines', () => {
  it('are valid ASL and every Task names a known function, each function used somewhere', async () => {
    const used = new Set<string>();
    for (const name of StateMachineNames) {
      const text = await readFile(
        join(import.meta.dirname, '..', '..', 'statemachines', `${name}.asl.json`),
        'utf8',
      );
      const { isValid, errors } = aslValidator(JSON.parse(text));
      expect({ name, isValid, errors }).toEqual({ name, isValid: true, errors: [] });
      for (const state of listStates(await loadDefinition(name))) {
        if (state.type !== 'Task') continue;
        if (state.resource === StartExecutionSync) {
          expect(state.childMachine, `${name}/${state.name}`).toBeDefined();
          continue;
        }
        expect(state.functionKey, `${name}/${state.name}`).toBeDefined();
        used.add(state.functionKey!);
      }
    }
    expect([...used].sort()).toEqual([...functionKeys].sort());
  });
  it('give rotate-certificate (which holds the lease) the time limit the rotation lease is bounded by', async () => {
    const child = (await loadDefinition('rotate-certificate')) as { TimeoutSeconds?: number };
    expect(child.TimeoutSeconds).toBe(ROTATION_MACHINE_TIMEOUT_SECONDS);
    expect(ROTATION_LEASE_STALE_AFTER_MS).toBe(2 * ROTATION_MACHINE_TIMEOUT_SECONDS * 1000);
    // The parent waits a little longer than the child may run, so it sees the child time out
    // (and rolls it back) rather than timing out its own wait first.
    const parent = (await loadDefinition('rotate-certificates')) as unknown as {
      TimeoutSeconds: number;
      States: {
        RotateCertificates: { ItemProcessor: { States: { RotateCertificate: { TimeoutSeconds: number } } } };
      };
    };
    const wait = parent.States.RotateCertificates.ItemProcessor.States.RotateCertificate.TimeoutSeconds;
    expect(wait).toBeGreaterThan(ROTATION_MACHINE_TIMEOUT_SECONDS);
    expect(parent.TimeoutSeconds).toBeGreaterThan(wait);
  });
});

describe('rotate-certificates', () => {
  it('issues, stages, verifies on every task, promotes, revokes the superseded certificate and notifies', async () => {
    await setUp();
    const old = await bootstrap();
    const result = succeeded(await run('rotate-certificates', rotateApi({ force: true })));
    const [rotated] = result.rotated as Record<string, unknown>[];
    const now = await currentBundle();
    expect(rotated).toMatchObject({
      certificate: 'api',
      serial: now.serial,
      previousSerial: old.serial,
      previousRevoked: true,
      rolledTasks: [],
      rolledTaskCount: 0,
      updatedTasks: 2,
    });
    expect(servedSerials()).toEqual([now.serial, now.serial]);
    expect(await pendingHolder(fixtureSecrets.api)).toBeUndefined();
    const previous = await fx.store.get(fixtureSecrets.api, { stage: Stage.Previous });
    expect(previous.versionId).toBe(old.versionId);
    const records = await fx.ca.list();
    expect(records.find((r) => r.serial === old.serial)?.revocation?.reason).toBe('SUPERSEDED');
    expect(records.find((r) => r.serial === now.serial)?.revocation).toBeUndefined();
    expect(fx.notifier.events).toEqual([
      {
        detailType: 'CertificateRotated',
        detail: expect.objectContaining({
          fleet: 'demo',
          certificate: 'api',
          previousSerial: old.serial,
          newSerial: now.serial,
        }),
      },
    ]);
  });

  it('rotates every due certificate side by side, in one child execution each, checking client certificates through the sidecar status', async () => {
    await setUp();
    const result = succeeded(await run('rotate-certificates', { graceSeconds: 0, rolloutPollSeconds: 0 }));
    const rotated = result.rotated as {
      certificate: string;
      serial: string;
      previousSerial: string | null;
    }[];
    expect(rotated.map((r) => [r.certificate, r.previousSerial])).toEqual([
      ['api', null],
      ['client', null],
    ]);
    const client = await currentBundle(fixtureSecrets.client);
    expect(rotated[1]?.serial).toBe(client.serial);
    expect(servedSerials(fixtureSecrets.client)).toEqual([client.serial, client.serial]);
    expect(fx.notifier.events.map((e) => [e.detailType, e.detail.certificate]).sort()).toEqual([
      ['CertificateRotated', 'api'],
      ['CertificateRotated', 'client'],
    ]);
  });

  it('keeps polling while the CA has not issued the certificate yet', async () => {
    await setUp({ authority: { readyAfterPolls: 3 } });
    const events: StateProgressEvent[] = [];
    const result = await run('rotate-certificates', rotateApi(), { events });
    succeeded(result);
    const retries = events.filter((e) => e.type === 'StateRetried' && e.stateName === 'GetCertificate');
    expect(retries).toHaveLength(3);
    expect(servedSerials()).toEqual([(await currentBundle()).serial, (await currentBundle()).serial]);
  });

  it('rolls back, revokes the new certificate and reports the failure when the CA fails after issuing', async () => {
    await setUp();
    const old = await bootstrap();
    fx.authority.faults = { failGets: 1, getError: new ServiceUnavailable('the CA is down') };
    const result = await run('rotate-certificates', rotateApi({ force: true }));
    expect(result).toMatchObject({ status: 'FAILED', error: 'ServiceUnavailable' });
    if (result.status === 'FAILED')
      expect((result.executionError.cause as Error).name).toBe('ServiceUnavailable');
    expect((await currentBundle()).versionId).toBe(old.versionId);
    const records = await fx.ca.list();
    expect(records).toHaveLength(2);
    expect(records.find((r) => r.serial !== old.serial)?.revocation?.reason).toBe('SUPERSEDED');
    expect(records.find((r) => r.serial === old.serial)?.revocation).toBeUndefined();
    expect(fx.notifier.events.map((e) => [e.detailType, e.detail.error])).toEqual([
      ['CertificateRotationFailed', 'ServiceUnavailable'],
    ]);
  });

  it('rolls the service for a task that cannot be reached and still succeeds', async () => {
    await setUp();
    await bootstrap();
    fx.gateway.tasks[1]!.behaviour.unreachable = true;
    fx.gateway.rolloutStates = ['IN_PROGRESS', 'COMPLETED'];
    const started = new Date();
    const result = succeeded(await run('rotate-certificates', rotateApi({ force: true })));
    const [rotated] = result.rotated as Record<string, unknown>[];
    expect(rotated).toMatchObject({ updatedTasks: 1, rolledTasks: ['task-2'], rolledTaskCount: 1 });
    expect(fx.gateway.rolls).toHaveLength(1);
    // The roll may follow a deployment started since the promote (another certificate's roll),
    // never an older one: PromoteSecret's time reaches RollService.
    const reuseSince = fx.gateway.rollOptions[0]?.reuseSince;
    expect(reuseSince).toBeInstanceOf(Date);
    expect(reuseSince!.getTime()).toBeGreaterThanOrEqual(started.getTime());
    expect(reuseSince!.getTime()).toBeLessThanOrEqual(Date.now());
    const now = await currentBundle();
    expect(servedSerials()).toEqual([now.serial, now.serial]);
  });

  it('rolls back when the service roll fails', async () => {
    await setUp();
    const old = await bootstrap();
    fx.gateway.tasks[1]!.behaviour.unreachable = true;
    fx.gateway.rolloutStates = ['IN_PROGRESS', 'FAILED'];
    const result = await run('rotate-certificates', rotateApi({ force: true }));
    expect(result).toMatchObject({ status: 'FAILED', error: 'RolloutFailed' });
    expect((await currentBundle()).versionId).toBe(old.versionId);
    expect(await pendingHolder(fixtureSecrets.api)).toBeUndefined();
    expect(servedSerials()[0]).toBe(old.serial);
    const revoked = (await fx.ca.list()).filter((r) => r.revocation !== undefined);
    expect(revoked.map((r) => r.serial)).not.toContain(old.serial);
    expect(revoked).toHaveLength(1);
  });

  it('rolls back and revokes the new certificate when a task serves the old serial', async () => {
    await setUp();
    const old = await bootstrap();
    fx.gateway.tasks[0]!.behaviour.ignoreNudges = true;
    const result = await run('rotate-certificates', rotateApi({ force: true }));
    expect(result).toMatchObject({ status: 'FAILED', error: 'ServedVersionMismatch' });
    expect((await currentBundle()).versionId).toBe(old.versionId);
    expect(await pendingHolder(fixtureSecrets.api)).toBeUndefined();
    expect(servedSerials()).toEqual([old.serial, old.serial]);
    const failed = fx.notifier.events.find((e) => e.detailType === 'CertificateRotationFailed');
    expect(failed?.detail).toMatchObject({
      error: 'ServedVersionMismatch',
      rollback: { revokedSerial: expect.any(String) },
    });
  });

  it('keeps the new certificate current when revoking the superseded one fails after it went through', async () => {
    await setUp();
    const old = await bootstrap();
    fx.authority.faults = { revokeErrorAfterRevoking: new ServiceUnavailable('the answer was lost') };
    const result = await run('rotate-certificates', rotateApi({ force: true }));
    expect(result).toMatchObject({ status: 'FAILED', error: 'ServiceUnavailable' });
    const now = await currentBundle();
    const revoked = (await fx.ca.list()).filter((r) => r.revocation !== undefined).map((r) => r.serial);
    expect(revoked).toEqual([old.serial]);
    expect(now.serial).not.toBe(old.serial);
    expect(servedSerials()).toEqual([now.serial, now.serial]);
    const failed = fx.notifier.events.find((e) => e.detailType === 'CertificateRotationFailed');
    expect(failed?.detail).toMatchObject({ error: 'ServiceUnavailable', rollback: { revokedSerial: null } });
  });

  it('issues one certificate when the same execution runs twice', async () => {
    await setUp();
    await bootstrap();
    const first = succeeded(
      await run('rotate-certificates', rotateApi({ force: true }), { executionName: 'twice' }),
    );
    const second = succeeded(
      await run('rotate-certificates', rotateApi({ force: true }), { executionName: 'twice' }),
    );
    expect((second.rotated as { serial: string }[])[0]?.serial).toBe(
      (first.rotated as { serial: string }[])[0]?.serial,
    );
    expect(await fx.ca.list()).toHaveLength(2);
    expect(fx.authority.issued).toHaveLength(2);
  });

  it('issues each fleet its own certificate when two fleets of one CA run executions of the same name', async () => {
    await setUp();
    const other = await createControlPlaneFixture(join(dir, 'other'), { fleet: 'edge', ca: fx.ca });
    const executionName = 'rotate-api-now';
    const mine = succeeded(await run('rotate-certificates', rotateApi(), { executionName }));
    const theirs = succeeded(
      await runStateMachine('rotate-certificates', rotateApi(), other.ports, {
        instant: true,
        executionName,
      }),
    );
    const serialOf = (output: Record<string, unknown>) => (output.rotated as { serial: string }[])[0]?.serial;
    expect(serialOf(theirs)).not.toBe(serialOf(mine));
    expect(other.authority.issued[0]?.idempotencyToken).not.toBe(fx.authority.issued[0]?.idempotencyToken);
    expect((await fx.ca.list()).filter((r) => r.revocation !== undefined)).toEqual([]);
  });

  it('repairs a certificate whose current key is not its leaf’s (invalid-current), and backs off one whose rotations keep failing', async () => {
    await setUp();
    await bootstrap();
    // AWSCURRENT of api gets the client certificate's key: the sidecar would refuse it.
    succeeded(await run('rotate-certificates', rotateApi({ certificates: ['client'] })));
    const api = await fx.store.get(fixtureSecrets.api, { stage: Stage.Current });
    const client = JSON.parse((await fx.store.get(fixtureSecrets.client, { stage: Stage.Current })).value);
    await fx.store.put(
      fixtureSecrets.api,
      JSON.stringify({ ...JSON.parse(api.value), privateKeyPem: client.privateKeyPem }),
      { clientRequestToken: randomUUID(), stages: [Stage.Current] },
    );
    const due = { ...rotateApi(), mode: 'due' };
    const plan = succeeded(await run('rotate-certificates', { ...due, dryRun: true }));
    expect(plan.rotate).toEqual([expect.objectContaining({ name: 'api', reason: 'invalid-current' })]);

    fx.gateway.tasks[0]!.behaviour.ignoreNudges = true;
    expect(await run('rotate-certificates', due)).toMatchObject({
      status: 'FAILED',
      error: 'ServedVersionMismatch',
    });
    expect(await readRotationBackoff(fx.store, fixtureSecrets.api)).toMatchObject({
      failures: 1,
      lastError: 'ServedVersionMismatch',
      waiting: true,
    });
    // The schedule leaves it alone for an hour, and the dry run says why and until when.
    const issued = fx.authority.issued.length;
    const skipped = succeeded(await run('rotate-certificates', due));
    expect(skipped).toMatchObject({
      rotated: [],
      skipped: [expect.objectContaining({ name: 'api', reason: 'backing-off' })],
    });
    expect(fx.authority.issued).toHaveLength(issued);
    const dry = succeeded(await run('rotate-certificates', { ...due, dryRun: true }));
    expect(dry.skip).toEqual([
      expect.objectContaining({
        name: 'api',
        reason: 'backing-off',
        backoff: expect.objectContaining({ failures: 1 }),
      }),
    ]);
    // --force still tries; another failure doubles the wait.
    expect(await run('rotate-certificates', rotateApi({ force: true }))).toMatchObject({ status: 'FAILED' });
    const second = await readRotationBackoff(fx.store, fixtureSecrets.api);
    expect(second).toMatchObject({ failures: 2, waiting: true });
    expect(new Date(second!.retryAt).getTime() - new Date(second!.lastFailureAt).getTime()).toBe(
      2 * 3_600_000,
    );
    // After the hour … two hours, the schedule tries again and a success ends the back-off.
    fx.gateway.tasks[0]!.behaviour.ignoreNudges = false;
    const later = new Date(Date.now() + 2 * 3_600_000 + 60_000);
    const result = await runStateMachine(
      'rotate-certificates',
      due,
      { ...fx.ports, now: () => later },
      { instant: true },
    );
    expect(result.status === 'SUCCEEDED' && (result.output as { rotated: unknown[] }).rotated).toHaveLength(
      1,
    );
    expect(await readRotationBackoff(fx.store, fixtureSecrets.api, later)).toBeUndefined();
  });

  it('rolls back a certificate whose child execution timed out, from the parent, freeing its lease at once', async () => {
    await setUp();
    const old = await bootstrap();
    // The same definitions, the child's limit cut to 1 s; it times out in its 3 s grace period.
    const defs = join(dir, 'statemachines');
    await mkdir(defs);
    for (const name of StateMachineNames) {
      const definition = (await loadDefinition(name)) as unknown as Record<string, unknown>;
      if (name === 'rotate-certificate') definition.TimeoutSeconds = 1;
      await writeFile(join(defs, `${name}.asl.json`), JSON.stringify(definition));
    }
    const result = await runStateMachine(
      'rotate-certificates',
      rotateApi({ force: true, graceSeconds: 3 }),
      fx.ports,
      {
        definitionsDir: defs,
      },
    );
    expect(result).toMatchObject({ status: 'FAILED', error: 'States.Timeout' });
    // The child had promoted the new certificate: the parent's rollback put the old one back,
    // revoked the new one, dropped every mark and nudged the tasks back.
    expect((await currentBundle()).versionId).toBe(old.versionId);
    expect(await pendingHolder(fixtureSecrets.api)).toBeUndefined();
    expect(servedSerials()).toEqual([old.serial, old.serial]);
    const revoked = (await fx.ca.list()).filter((r) => r.revocation !== undefined).map((r) => r.serial);
    expect(revoked).toHaveLength(1);
    expect(revoked).not.toContain(old.serial);
    expect(fx.notifier.events).toEqual([
      {
        detailType: 'CertificateRotationFailed',
        detail: expect.objectContaining({
          certificate: 'api',
          error: 'TIMED_OUT',
          rollback: expect.objectContaining({ nudged: 2 }),
        }),
      },
    ]);
    expect(await readRotationBackoff(fx.store, fixtureSecrets.api)).toMatchObject({
      failures: 1,
      lastError: 'TIMED_OUT',
    });
    // Nothing is left for the next run to wait out.
    succeeded(await run('rotate-certificates', rotateApi({ force: true })));
  }, 30_000);

  it('changes nothing on a dry run and answers with the plan', async () => {
    await setUp();
    const before = await fx.store.listVersions(fixtureSecrets.api).catch(() => []);
    const result = succeeded(await run('rotate-certificates', { dryRun: true }));
    expect(result).toMatchObject({
      dryRun: true,
      rotate: [
        { name: 'api', reason: 'missing' },
        { name: 'client', reason: 'missing' },
      ],
    });
    expect(await fx.store.listVersions(fixtureSecrets.api).catch(() => [])).toEqual(before);
    expect(await fx.ca.list()).toHaveLength(0);
    expect(fx.notifier.events).toEqual([]);
  });
});

describe('update-allowlist', () => {
  it('stages, verifies on every task, promotes and notifies', async () => {
    await setUp();
    const result = succeeded(
      await run('update-allowlist', { add: ['192.0.2.0/24'], reason: 'partner office' }),
    );
    const current = await fx.store.get(fixtureSecrets.allowlist);
    expect(JSON.parse(current.value)).toMatchObject({
      cidrs: ['10.0.0.0/8', '192.0.2.0/24'],
      reason: 'partner office',
    });
    expect(result).toMatchObject({
      mode: 'stage',
      versionId: current.versionId,
      size: 2,
      added: ['192.0.2.0/24'],
    });
    expect(fx.gateway.tasks.map((t) => t.served.get(fixtureSecrets.allowlist)?.versionId)).toEqual([
      current.versionId,
      current.versionId,
    ]);
    expect(fx.notifier.events.map((e) => e.detailType)).toEqual(['AllowlistUpdated']);
  });

  it('fails with ValidationError and stages nothing for an invalid CIDR', async () => {
    await setUp();
    const before = await fx.store.listVersions(fixtureSecrets.allowlist);
    const result = await run('update-allowlist', { add: ['192.0.2.0/33'], reason: 'typo' });
    expect(result).toMatchObject({ status: 'FAILED', error: 'ValidationError' });
    expect(await fx.store.listVersions(fixtureSecrets.allowlist)).toEqual(before);
    expect(fx.notifier.events.map((e) => e.detailType)).toEqual(['AllowlistUpdateFailed']);
  });

  it('rolls back when a task rejects the new list', async () => {
    await setUp();
    const base = await fx.store.get(fixtureSecrets.allowlist);
    fx.gateway.tasks[1]!.behaviour.rejectNudges = true;
    const result = await run('update-allowlist', { set: ['198.51.100.0/24'], reason: 'move' });
    expect(result).toMatchObject({ status: 'FAILED', error: 'ValidationError' });
    expect((await fx.store.get(fixtureSecrets.allowlist)).versionId).toBe(base.versionId);
    expect(await pendingHolder(fixtureSecrets.allowlist)).toBeUndefined();
    expect(fx.gateway.tasks[0]!.served.get(fixtureSecrets.allowlist)?.versionId).toBe(base.versionId);
  });

  it('only pushes AWSCURRENT to the tasks for a secret-change event', async () => {
    await setUp();
    const { versionId } = await fx.store.put(
      fixtureSecrets.allowlist,
      JSON.stringify({ cidrs: ['203.0.113.0/24'], reason: 'console edit' }),
      { clientRequestToken: randomUUID() },
    );
    const event = {
      'detail-type': 'AWS API Call via CloudTrail',
      source: 'aws.secretsmanager',
      detail: { eventName: 'PutSecretValue', requestParameters: { secretId: fixtureSecrets.allowlist } },
    };
    const result = succeeded(await run('update-allowlist', event));
    expect(result).toMatchObject({ mode: 'converge', versionId, previousVersionId: expect.any(String) });
    expect(fx.gateway.tasks.map((t) => t.served.get(fixtureSecrets.allowlist)?.versionId)).toEqual([
      versionId,
      versionId,
    ]);
  });
});

describe('converge-task', () => {
  it('nudges a task that serves a stale version, after waiting for its sidecar to start', async () => {
    await setUp();
    await bootstrap();
    const { versionId } = await fx.store.put(
      fixtureSecrets.allowlist,
      JSON.stringify({ cidrs: ['10.0.0.0/8', '192.0.2.0/24'], reason: 'edit' }),
      { clientRequestToken: randomUUID() },
    );
    const fake = fx.gateway.tasks[0]!;
    fake.behaviour.notReadyPolls = 2;
    const event = {
      'detail-type': 'ECS Task State Change',
      source: 'aws.ecs',
      detail: {
        taskArn: `arn:aws:ecs:eu-west-1:123456789012:task/demo/${fake.task.taskId}`,
        lastStatus: 'RUNNING',
      },
    };
    const events: StateProgressEvent[] = [];
    const result = succeeded(await run('converge-task', event, { events }));
    expect(result).toEqual({
      taskId: fake.task.taskId,
      outcome: 'converged',
      nudged: [fixtureSecrets.allowlist],
    });
    expect(fake.served.get(fixtureSecrets.allowlist)?.versionId).toBe(versionId);
    expect(events.filter((e) => e.type === 'StateRetried')).toHaveLength(2);
  });
});

describe('rotation lease', () => {
  /** Runs `during` once, when the first task has been nudged to the staged version of `secretId`. */
  function whileStaged(secretId: string, during: () => Promise<void>) {
    let done = false;
    fx.gateway.afterNudge = async (_task, request) => {
      if (done || request.secretId !== secretId || request.versionId === undefined) return;
      done = true;
      await during();
    };
    return () => done;
  }

  /** Another execution's working label, as a crashed or running one leaves it. */
  async function foreignMark(secretId: string, stages: string[]) {
    await fx.store
      .create(secretId, JSON.stringify({ kind: 'portcullis/placeholder' }), {
        clientRequestToken: randomUUID(),
      })
      .catch(() => undefined);
    const versionId = randomUUID();
    await fx.store.put(secretId, JSON.stringify({ kind: 'portcullis/issued', certificateId: 'elsewhere' }), {
      clientRequestToken: versionId,
      stages,
    });
    return versionId;
  }

  const failure = (result: RunStateMachineResult) =>
    result.status === 'FAILED' ? { status: result.status, error: result.error } : { status: result.status };

  async function stagesOf(secretId: string, versionId: string) {
    return (await fx.store.describe(secretId)).versions.find((v) => v.versionId === versionId)?.stages ?? [];
  }

  it('refuses a manual run and skips the certificate in a scheduled run while another execution rotates it, leaving that rotation undisturbed', async () => {
    await setUp();
    const old = await bootstrap();
    const outcomes: Record<string, unknown>[] = [];
    const ran = whileStaged(fixtureSecrets.api, async () => {
      const manual = await run('rotate-certificates', rotateApi({ force: true }));
      outcomes.push(failure(manual));
      const scheduled = succeeded(await run('rotate-certificates', rotateApi({ force: true, mode: 'due' })));
      outcomes.push({ rotated: scheduled.rotated, skipped: scheduled.skipped });
    });
    const result = succeeded(await run('rotate-certificates', rotateApi({ force: true })));
    expect(ran()).toBe(true);
    expect(outcomes).toEqual([
      { status: 'FAILED', error: 'RotationInProgress' },
      {
        rotated: [],
        skipped: [expect.objectContaining({ name: 'api', reason: 'rotation-in-progress' })],
      },
    ]);
    const now = await currentBundle();
    expect((result.rotated as { serial: string }[])[0]?.serial).toBe(now.serial);
    expect(servedSerials()).toEqual([now.serial, now.serial]);
    // Only the bootstrap's and the first execution's certificates were issued; only the old one revoked.
    expect(fx.authority.issued).toHaveLength(2);
    expect(fx.authority.revoked.map((r) => r.serial)).toEqual([old.serial]);
    expect(fx.notifier.events.map((e) => e.detailType)).toEqual(['CertificateRotated']);
  });

  it('lets a re-run of the same execution through its own lease', async () => {
    await setUp();
    await bootstrap();
    const outcomes: string[] = [];
    whileStaged(fixtureSecrets.api, async () => {
      const again = await run('rotate-certificates', rotateApi({ force: true }), { executionName: 'rerun' });
      outcomes.push(again.status);
    });
    const result = succeeded(
      await run('rotate-certificates', rotateApi({ force: true }), { executionName: 'rerun' }),
    );
    expect(outcomes).toEqual(['SUCCEEDED']);
    expect((result.rotated as { serial: string }[])[0]?.serial).toBe((await currentBundle()).serial);
    expect(fx.authority.issued).toHaveLength(2);
  });

  it('fails a certificate whose lease was taken after the plan without rolling back anything of the other execution', async () => {
    await setUp();
    let foreign = '';
    // Another execution takes the client certificate's lease between the plan and the children.
    const plan = localHandler('planRotation', fx.ports);
    const result = await runStateMachine(
      'rotate-certificates',
      { graceSeconds: 0, rolloutPollSeconds: 0 },
      fx.ports,
      {
        instant: true,
        overrides: {
          taskResourceLocalHandlers: {
            PlanRotation: async (input) => {
              const planned = await plan(input);
              foreign = await foreignMark(fixtureSecrets.client, [IssuingStage]);
              return planned;
            },
          },
        },
      },
    );
    expect(failure(result)).toEqual({
      status: 'FAILED',
      error: 'RotationInProgress',
    });
    expect(await stagesOf(fixtureSecrets.client, foreign)).toEqual([IssuingStage]);
    expect(await pendingHolder(fixtureSecrets.client)).toBeUndefined();
    // The other certificate of the run stands; the refused one was never asked of the CA.
    expect(fx.authority.issued).toHaveLength(1);
    expect(fx.authority.revoked).toEqual([]);
    expect(fx.notifier.events.map((e) => [e.detailType, e.detail.certificate]).sort()).toEqual([
      ['CertificateRotated', 'api'],
      ['CertificateRotationFailed', 'client'],
    ]);
    expect(fx.notifier.events.find((e) => e.detail.certificate === 'client')?.detail).toMatchObject({
      error: 'RotationInProgress',
      rollback: { revokedSerial: null, nudged: 0 },
    });
  });

  it('takes over the lease of an execution that stopped longer ago than the bound', async () => {
    await setUp();
    await bootstrap();
    const foreign = await foreignMark(fixtureSecrets.api, [IssuingStage, Stage.Pending]);
    const refused = await run('rotate-certificates', rotateApi({ force: true }));
    expect(failure(refused)).toEqual({ status: 'FAILED', error: 'RotationInProgress' });
    expect(fx.authority.issued).toHaveLength(1);

    const later = new Date(Date.now() + ROTATION_LEASE_STALE_AFTER_MS + 60_000);
    const result = await runStateMachine(
      'rotate-certificates',
      rotateApi({ force: true }),
      { ...fx.ports, now: () => later },
      { instant: true, executionName: 'takeover' },
    );
    if (result.status !== 'SUCCEEDED')
      throw new Error(`expected success, got ${result.error}: ${result.cause}`);
    expect(await stagesOf(fixtureSecrets.api, foreign)).toEqual([]);
    const now = await currentBundle();
    expect((result.output as { rotated: { serial: string }[] }).rotated[0]?.serial).toBe(now.serial);
    expect(servedSerials()).toEqual([now.serial, now.serial]);
  });

  it('leaves a task on the staged version when converge-task runs during the rotation', async () => {
    await setUp();
    await bootstrap();
    let converged: unknown;
    let served: string | undefined;
    whileStaged(fixtureSecrets.api, async () => {
      const task = fx.gateway.tasks[0]!;
      converged = succeeded(await run('converge-task', { taskId: task.task.taskId }));
      served = task.served.get(fixtureSecrets.api)?.versionId;
    });
    const result = succeeded(await run('rotate-certificates', rotateApi({ force: true })));
    const now = await currentBundle();
    expect(converged).toEqual({ taskId: 'task-1', outcome: 'converged', nudged: [] });
    expect(served).toBe(now.versionId);
    expect((result.rotated as { serial: string }[])[0]?.serial).toBe(now.serial);
    expect(servedSerials()).toEqual([now.serial, now.serial]);
  });

  it('nudges a task back from a pending version an execution left behind longer ago than the bound', async () => {
    await setUp();
    const current = await bootstrap();
    const task = fx.gateway.tasks[0]!;
    const before = (await fx.store.get(fixtureSecrets.api, { stage: Stage.Current })).value;
    const abandoned = randomUUID();
    await fx.store.put(fixtureSecrets.api, before, {
      clientRequestToken: abandoned,
      stages: [Stage.Pending],
    });
    await fx.gateway.nudge(task.task, { secretId: fixtureSecrets.api, versionId: abandoned });
    const later = new Date(Date.now() + ROTATION_LEASE_STALE_AFTER_MS + 60_000);
    const result = await runStateMachine(
      'converge-task',
      { taskId: task.task.taskId },
      { ...fx.ports, now: () => later },
      { instant: true },
    );
    expect(result.status === 'SUCCEEDED' && result.output).toEqual({
      taskId: 'task-1',
      outcome: 'converged',
      nudged: [fixtureSecrets.api],
    });
    expect(task.served.get(fixtureSecrets.api)?.versionId).toBe(current.versionId);
  });
});
