import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalAuthority } from '../../lib/local/local-authority.ts';
import { type Fleet, Stage, type TaskClient } from '../../lib/ports.ts';
import {
  certificateTokenSubject,
  deriveToken,
  IssuedStage,
  IssuingStage,
  TokenStep,
} from '../../lib/rotation/index.ts';
import {
  convergeDecision,
  makeCheckRollout,
  makeConvergeTask,
  makeGetCertificate,
  makeIssueCertificate,
  makePlanRotation,
  makePromoteSecret,
  makeRollbackRotation,
  makeStageCertificate,
  makeUpdateTasks,
  makeValidateAllowlist,
  schemas,
} from '../../lib/workflows/index.ts';
import { ALLOWLIST_NUDGE_TIMEOUT_MS } from '../../lib/workflows/task-steps.ts';
import { type ControlPlaneFixture, createControlPlaneFixture, fixtureSecrets } from '../support/fakes.ts';

const apiSubject = certificateTokenSubject('demo', fixtureSecrets.api, 'api');

const execution = 'exec-handlers';

let dir: string;
let fx: ControlPlaneFixture;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-handlers-'));
  fx = await createControlPlaneFixture(dir);
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const plan = (input: Record<string, unknown>) =>
  makePlanRotation(fx.ports)(schemas.PlanRotationInput.parse({ input, executionName: execution }));
const issue = (certificate = 'api', executionName = execution) =>
  makeIssueCertificate(fx.ports)({ executionName, certificate });
const stage = (certificateId: string, certificate = 'api', executionName = execution) =>
  makeStageCertificate(fx.ports)({ executionName, certificate, certificateId });

async function versionsOf(secretId: string) {
  return (await fx.store.listVersions(secretId)).map((v) => ({ versionId: v.versionId, stages: v.stages }));
}

describe('PlanRotation', () => {
  it('plans every certificate without a current one, and carries the settings with defaults', async () => {
    const result = await plan({ dryRun: true });
    expect(result.rotate.map((c) => [c.name, c.reason])).toEqual([
      ['api', 'missing'],
      ['client', 'missing'],
    ]);
    expect(result).toMatchObject({
      fleet: 'demo',
      dryRun: true,
      settings: { graceSeconds: 300, rolloutMaxPolls: 40 },
    });
  });

  it('refuses an input naming another fleet with ValidationError', async () => {
    await expect(plan({ fleet: 'other' })).rejects.toMatchObject({ name: 'ValidationError' });
  });
});

describe('IssueCertificate', () => {
  it('stores the key under its own label before issuing, and issues once', async () => {
    const result = await issue();
    expect(result.reused).toBe('none');
    expect(fx.authority.issued).toHaveLength(1);
    const keyVersion = await fx.store.get(fixtureSecrets.api, {
      versionId: deriveToken(execution, apiSubject, TokenStep.Key),
    });
    expect(keyVersion.stages).toEqual([IssuingStage]);
    const current = await fx.store.get(fixtureSecrets.api);
    expect(JSON.parse(current.value)).toEqual({ kind: 'portcullis/placeholder' });
  });

  it('re-run with the same execution returns the same certificate without asking the CA again', async () => {
    const first = await issue();
    const second = await issue();
    expect(second).toEqual({ certificateId: first.certificateId, reused: 'issue', tookOver: [] });
    expect(fx.authority.issued).toHaveLength(1);
    expect(await fx.ca.list()).toHaveLength(1);
  });

  it('reuses the stored key when the CA call failed the first time', async () => {
    fx.authority.faults.issueError = Object.assign(new Error('throttled'), { name: 'Throttled' });
    await expect(issue()).rejects.toMatchObject({ name: 'Throttled' });
    fx.authority.faults.issueError = undefined;
    const result = await issue();
    expect(result.reused).toBe('key');
    expect(await fx.ca.list()).toHaveLength(1);
  });

  it('refuses an unknown certificate with ValidationError', async () => {
    await expect(issue('nope')).rejects.toMatchObject({ name: 'ValidationError' });
  });
  it('refuses with RotationInProgress while another execution holds the key label, writing nothing', async () => {
    await issue('api', 'other-execution');
    const before = await versionsOf(fixtureSecrets.api);
    await expect(issue()).rejects.toMatchObject({ name: 'RotationInProgress' });
    expect(await versionsOf(fixtureSecrets.api)).toEqual(before);
    expect(fx.authority.issued).toHaveLength(1);
  });
});

describe('GetCertificate', () => {
  it('says CertificateNotReady while the CA has not issued yet', async () => {
    const { certificateId } = await issue();
    fx.authority.faults.failGets = 1;
    const get = makeGetCertificate(fx.ports);
    await expect(get({ certificate: 'api', certificateId })).rejects.toMatchObject({
      name: 'CertificateNotReady',
    });
    const result = await get({ certificate: 'api', certificateId });
    expect(result.serial).toMatch(/^[0-9a-f]+$/);
  });
});

describe('StageCertificate', () => {
  it('stages the validated bundle as AWSPENDING, keeps AWSCURRENT and drops the working labels', async () => {
    const { certificateId } = await issue();
    const staged = await stage(certificateId);
    expect(staged.versionId).toBe(deriveToken(execution, apiSubject, TokenStep.Bundle));
    const pending = await fx.store.get(fixtureSecrets.api, { stage: Stage.Pending });
    expect(pending.versionId).toBe(staged.versionId);
    expect(JSON.parse(pending.value)).toMatchObject({ serial: staged.serial, certificateId });
    const labelled = (await fx.store.describe(fixtureSecrets.api)).versions.flatMap((v) => v.stages);
    expect(labelled.sort()).toEqual([Stage.Current, Stage.Pending]);
    expect(staged.previousSerial).toBeNull();
  });

  it('refuses with RotationInProgress when another execution wrote its working labels after this one issued', async () => {
    const { certificateId } = await issue();
    // The other execution passed its own check at the same moment and has issued since.
    const foreign = randomUUID();
    await fx.store.put(
      fixtureSecrets.api,
      JSON.stringify({ kind: 'portcullis/issued', certificateId: 'x' }),
      {
        clientRequestToken: foreign,
        stages: [IssuedStage],
      },
    );
    await expect(stage(certificateId)).rejects.toMatchObject({ name: 'RotationInProgress' });
    const labelled = (await fx.store.describe(fixtureSecrets.api)).versions;
    expect(labelled.find((v) => v.stages.includes(Stage.Pending))).toBeUndefined();
    const rollback = await makeRollbackRotation(fx.ports)({ executionName: execution, certificate: 'api' });
    expect(rollback.nudged).toBe(0);
    expect(
      (await fx.store.describe(fixtureSecrets.api)).versions.find((v) => v.versionId === foreign)?.stages,
    ).toEqual([IssuedStage]);
  });

  it('is a no-op when re-run: no second version, the same answer', async () => {
    const { certificateId } = await issue();
    const first = await stage(certificateId);
    const before = await versionsOf(fixtureSecrets.api);
    const second = await stage(certificateId);
    expect(second).toEqual(first);
    expect(await versionsOf(fixtureSecrets.api)).toEqual(before);
  });

  it('refuses a certificate that does not chain to the fleet trust bundle', async () => {
    const other = await LocalAuthority.open(join(dir, 'other-ca'), { commonName: 'Another CA' });
    await fx.store.put(fixtureSecrets.trust, JSON.stringify({ caBundlePem: await other.trustAnchorPem() }), {
      clientRequestToken: randomUUID(),
    });
    const { certificateId } = await issue();
    await expect(stage(certificateId)).rejects.toMatchObject({
      name: 'CertificateValidationError',
      code: 'untrusted-chain',
    });
    await expect(fx.store.get(fixtureSecrets.api, { stage: Stage.Pending })).rejects.toMatchObject({
      name: 'NotFoundError',
    });
  });
});

describe('UpdateTasks', () => {
  /** A first certificate, promoted and served by every task, so that there is an "old" one. */
  async function bootstrap() {
    const first = await issue('api', 'bootstrap');
    const s = await stage(first.certificateId, 'api', 'bootstrap');
    await makePromoteSecret(fx.ports)({ secretId: s.secretId, versionId: s.versionId, tasks: [] });
    for (const task of await fx.gateway.listTasks()) await fx.gateway.nudge(task, { secretId: s.secretId });
  }

  async function staged() {
    await bootstrap();
    const { certificateId } = await issue();
    const s = await stage(certificateId);
    const target = {
      kind: 'certificate' as const,
      name: 'api',
      secretId: s.secretId,
      versionId: s.versionId,
      serial: s.serial,
    };
    return { s, target };
  }
  const wholeFleet = { index: 0, of: 1 };

  it('nudges every task to the staged version and verifies the served serial by a handshake', async () => {
    const { s, target } = await staged();
    const tasks = await fx.gateway.listTasks();
    expect(await makeUpdateTasks(fx.ports)({ batch: wholeFleet, target })).toEqual({
      updated: tasks.length,
      unreachable: [],
      unreachableCount: 0,
    });
    for (const fake of fx.gateway.tasks) expect(fake.served.get(s.secretId)?.versionId).toBe(s.versionId);
  });

  it('says ServedVersionMismatch when a task keeps serving something else after its nudge', async () => {
    const { target } = await staged();
    fx.gateway.tasks[0]!.behaviour.ignoreNudges = true;
    await expect(makeUpdateTasks(fx.ports)({ batch: wholeFleet, target })).rejects.toMatchObject({
      name: 'ServedVersionMismatch',
    });
  });

  it('marks a task that does not answer for a roll instead of failing', async () => {
    const { target } = await staged();
    fx.gateway.tasks[0]!.behaviour.unreachable = true;
    const result = await makeUpdateTasks(fx.ports)({ batch: wholeFleet, target });
    expect(result).toMatchObject({ unreachable: [fx.gateway.tasks[0]!.task.taskId], unreachableCount: 1 });
    expect(result.updated).toBe(fx.gateway.tasks.length - 1);
  });

  it('verifies an allowlist by the sidecar status, marking a sidecar not ready yet for a roll', async () => {
    const current = await fx.store.get(fixtureSecrets.allowlist);
    fx.gateway.tasks[0]!.behaviour.notReady = true;
    const target = { kind: 'allowlist' as const, secretId: current.secretId, versionId: current.versionId };
    const result = await makeUpdateTasks(fx.ports)({ batch: wholeFleet, target });
    expect(result).toMatchObject({ unreachable: [fx.gateway.tasks[0]!.task.taskId], unreachableCount: 1 });
    expect(result.updated).toBe(fx.gateway.tasks.length - 1);
    // An allowlist apply (up to 100 000 entries) gets longer than the client's default to answer.
    for (const fake of fx.gateway.tasks) {
      expect(fake.nudges.at(-1)).toMatchObject({
        secretId: current.secretId,
        timeoutMs: ALLOWLIST_NUDGE_TIMEOUT_MS,
      });
    }
  });

  it('nudges certificates with the client default timeout', async () => {
    const { target } = await staged();
    await makeUpdateTasks(fx.ports)({ batch: wholeFleet, target });
    for (const fake of fx.gateway.tasks) expect(fake.nudges.at(-1)?.timeoutMs).toBeUndefined();
  });
});

describe('PromoteSecret', () => {
  it('moves AWSCURRENT, drops AWSPENDING and reports the tasks that need a roll; re-running changes nothing', async () => {
    const { certificateId } = await issue();
    const s = await stage(certificateId);
    const promote = makePromoteSecret(fx.ports);
    const input = {
      secretId: s.secretId,
      versionId: s.versionId,
      tasks: [
        { taskId: 'task-1', needsRoll: false },
        { taskId: 'task-2', needsRoll: true },
      ],
    };
    const result = await promote(input);
    expect(result).toMatchObject({
      previousVersionId: s.previousVersionId,
      needsRoll: true,
      unreachable: ['task-2'],
    });
    const current = await fx.store.get(fixtureSecrets.api);
    expect(current.versionId).toBe(s.versionId);
    const before = await versionsOf(fixtureSecrets.api);
    expect(await promote(input)).toMatchObject({ previousVersionId: s.previousVersionId });
    expect(await versionsOf(fixtureSecrets.api)).toEqual(before);
  });

  it('refuses a secret that is not the fleet’s with ValidationError', async () => {
    await expect(
      makePromoteSecret(fx.ports)({ secretId: 'someone/else', versionId: randomUUID(), tasks: [] }),
    ).rejects.toMatchObject({
      name: 'ValidationError',
    });
  });
});

describe('CheckRollout', () => {
  it('says RolloutFailed for a FAILED deployment and for one that never finishes', async () => {
    const { deploymentId } = await fx.gateway.roll();
    const check = makeCheckRollout(fx.ports);
    fx.gateway.rolloutStates = ['IN_PROGRESS'];
    expect(await check({ deploymentId, poll: 0, maxPolls: 2 })).toMatchObject({
      state: 'IN_PROGRESS',
      poll: 1,
    });
    await expect(check({ deploymentId, poll: 1, maxPolls: 2 })).rejects.toMatchObject({
      name: 'RolloutFailed',
    });
    fx.gateway.rolloutStates = ['FAILED'];
    await expect(check({ deploymentId, poll: 0, maxPolls: 5 })).rejects.toMatchObject({
      name: 'RolloutFailed',
    });
  });
});

describe('RollbackRotation', () => {
  it('puts AWSCURRENT back, revokes the new certificate and nudges the tasks back after a promotion', async () => {
    const { certificateId } = await issue();
    const s = await stage(certificateId);
    await makePromoteSecret(fx.ports)({ secretId: s.secretId, versionId: s.versionId, tasks: [] });
    const result = await makeRollbackRotation(fx.ports)({
      executionName: execution,
      certificate: 'api',
      staged: { previousVersionId: s.previousVersionId },
    });
    expect(result).toMatchObject({ restoredCurrentTo: s.previousVersionId, revokedSerial: s.serial });
    expect(result).toMatchObject({ nudged: 2, unreachable: [], unreachableCount: 0 });
    expect((await fx.store.get(fixtureSecrets.api)).versionId).toBe(s.previousVersionId);
    const [record] = await fx.ca.list();
    expect(record?.revocation?.reason).toBe('SUPERSEDED');
  });
  it('still restores and revokes when the tasks cannot be listed, and says so', async () => {
    const { certificateId } = await issue();
    const s = await stage(certificateId);
    await makePromoteSecret(fx.ports)({ secretId: s.secretId, versionId: s.versionId, tasks: [] });
    const denied = Object.assign(new Error('not allowed to list tasks'), { name: 'AccessDenied' });
    const fleet: Fleet = {
      listTasks: async () => Promise.reject(denied),
      roll: () => fx.gateway.roll(),
      rolloutState: (id) => fx.gateway.rolloutState(id),
    };
    const result = await makeRollbackRotation({ ...fx.ports, fleet })({
      executionName: execution,
      certificate: 'api',
      staged: { previousVersionId: s.previousVersionId },
    });
    expect(result).toMatchObject({
      restoredCurrentTo: s.previousVersionId,
      revokedSerial: s.serial,
      nudged: 0,
    });
    expect(result.notes.join('\n')).toContain('AccessDenied');
  });

  it('nudges the tasks back side by side, so tasks that do not answer cannot add up past its time limit', async () => {
    for (let i = 0; i < 3; i++) await fx.gateway.startTask();
    const { certificateId } = await issue();
    const s = await stage(certificateId);
    await makePromoteSecret(fx.ports)({ secretId: s.secretId, versionId: s.versionId, tasks: [] });
    let inFlight = 0;
    let most = 0;
    const taskClient: TaskClient = {
      status: (task) => fx.gateway.status(task),
      servedCertificate: (task, serverName) => fx.gateway.servedCertificate(task, serverName),
      nudge: async (task, request) => {
        inFlight++;
        most = Math.max(most, inFlight);
        await new Promise((resolve) => setImmediate(resolve));
        inFlight--;
        return fx.gateway.nudge(task, request);
      },
    };
    const result = await makeRollbackRotation({ ...fx.ports, taskClient })({
      executionName: execution,
      certificate: 'api',
      staged: { previousVersionId: s.previousVersionId },
    });
    expect(result.nudged).toBe(5);
    expect(most).toBe(5);
  });
});

describe('ValidateAllowlist', () => {
  const validate = (input: unknown) =>
    makeValidateAllowlist(fx.ports)(
      schemas.ValidateAllowlistInput.parse({ input, executionName: execution }),
    );

  it('refuses an invalid CIDR and a /0 the fleet does not allow with ValidationError', async () => {
    await expect(validate({ add: ['10.0.0.300/8'], reason: 'typo' })).rejects.toMatchObject({
      name: 'ValidationError',
    });
    await expect(validate({ set: ['::/0'], reason: 'open up' })).rejects.toMatchObject({
      name: 'ValidationError',
    });
  });

  it('asks only to converge when the change changes nothing, and ignores events about other secrets', async () => {
    expect(
      await validate({ add: ['10.1.0.0/16'], reason: 'inside 10/8 already? no: new entry' }),
    ).toMatchObject({
      mode: 'stage',
      added: ['10.1.0.0/16'],
    });
    expect(await validate({ remove: ['192.0.2.0/24'], reason: 'absent' })).toMatchObject({
      mode: 'converge',
    });
    const event = {
      'detail-type': 'AWS API Call via CloudTrail',
      source: 'aws.secretsmanager',
      detail: { eventName: 'PutSecretValue', requestParameters: { secretId: 'unrelated' } },
    };
    expect(await validate(event)).toMatchObject({ mode: 'ignore' });
  });
});

describe('ConvergeTask', () => {
  it('says TaskUnreachable while the sidecar is still starting', async () => {
    const fake = fx.gateway.tasks[0]!;
    fake.behaviour.notReady = true;
    await expect(makeConvergeTask(fx.ports)({ taskId: fake.task.taskId })).rejects.toMatchObject({
      name: 'TaskUnreachable',
    });
  });

  it('ignores a task that is not in the fleet', async () => {
    const event = {
      'detail-type': 'ECS Task State Change' as const,
      detail: { taskArn: 'arn:aws:ecs:eu-west-1:123456789012:task/other/abc', lastStatus: 'RUNNING' },
    };
    expect(await makeConvergeTask(fx.ports)(event)).toMatchObject({ outcome: 'not-in-fleet' });
  });

  it('describes only the event task, and leaves it alone when the event is older than the task', async () => {
    const fake = fx.gateway.tasks[0]!;
    const described: string[] = [];
    const fleet: Fleet = {
      listTasks: () => Promise.reject(new Error('converge-task must not list the whole service')),
      describeTask: async (taskId) => {
        described.push(taskId);
        return { ...fake.task, lastStatus: 'RUNNING', desiredStatus: 'RUNNING', version: 5 };
      },
      roll: () => fx.gateway.roll(),
      rolloutState: (id) => fx.gateway.rolloutState(id),
    };
    const event = (version: number) => ({
      'detail-type': 'ECS Task State Change' as const,
      detail: { taskArn: `arn:aws:ecs:eu-west-1:123456789012:task/demo/${fake.task.taskId}`, version },
    });
    const nudged: string[] = [];
    const taskClient: TaskClient = {
      status: (task) => fx.gateway.status(task),
      servedCertificate: (task, name) => fx.gateway.servedCertificate(task, name),
      nudge: (task, request) => {
        nudged.push(request.secretId);
        return fx.gateway.nudge(task, request);
      },
    };
    const converge = makeConvergeTask({ ...fx.ports, fleet, taskClient });

    expect(await converge(event(4))).toEqual({ taskId: fake.task.taskId, outcome: 'superseded', nudged: [] });
    expect(nudged).toEqual([]);
    expect(await converge(event(5))).toMatchObject({ taskId: fake.task.taskId, outcome: 'converged' });
    expect(described).toEqual([event(4).detail.taskArn, event(5).detail.taskArn]);
  });
});

describe('convergeDecision', () => {
  const task = {
    taskId: 't1',
    address: '10.0.0.1',
    adminPort: 9901,
    tlsAddress: '10.0.0.1',
    tlsPort: 8444,
    lastStatus: 'RUNNING',
    desiredStatus: 'RUNNING',
    version: 3,
  };
  it.each([
    ['an unknown task', undefined, 3, 'not-in-fleet'],
    ['a task not running yet', { ...task, lastStatus: 'PENDING' }, 3, 'not-running'],
    ['a task being stopped', { ...task, desiredStatus: 'STOPPED' }, 3, 'not-running'],
    ['a task that changed after the event', task, 2, 'superseded'],
    ['the event of the current version (or its duplicate)', task, 3, 'converge'],
    ['an event newer than what DescribeTasks read', task, 4, 'converge'],
    ['a manual run (no event version)', task, undefined, 'converge'],
    ['a fleet that reports no version', { ...task, version: undefined }, 1, 'converge'],
  ] as const)('decides for %s', (_, fleetTask, version, expected) => {
    expect(convergeDecision(fleetTask, version)).toBe(expected);
  });
});
