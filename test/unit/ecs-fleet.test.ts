import {
  AccessDeniedException,
  ClientException,
  ClusterNotFoundException,
  type Deployment,
  DescribeServicesCommand,
  DescribeTasksCommand,
  ECSClient,
  ECSServiceException,
  InvalidParameterException,
  ListTasksCommand,
  ServerException,
  ServiceNotActiveException,
  ServiceNotFoundException,
  type Task,
  UpdateServiceCommand,
} from '@aws-sdk/client-ecs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  EcsFleet,
  type EcsFleetOptions,
  reusableDeployment,
  rolloutStateOf,
  taskPrivateAddress,
} from '../../lib/aws/ecs-fleet.ts';
import { mockAwsClient, sdkError } from '../support/aws-mock.ts';

const ecs = mockAwsClient(ECSClient);
const cluster = 'portcullis-prod';
const service = 'gateway';

beforeEach(() => ecs.reset());
afterEach(() => ecs.reset());

function fleet(): EcsFleet {
  return new EcsFleet({ client: new ECSClient({}), cluster, service, adminPort: 9901, verifyPort: 8444 });
}

function taskArn(id: string): string {
  return `arn:aws:ecs:eu-west-1:111122223333:task/${cluster}/${id}`;
}

function runningTask(id: string, ip: string | undefined, startedAt = new Date('2026-11-23T10:00:00Z')): Task {
  return {
    taskArn: taskArn(id),
    lastStatus: 'RUNNING',
    startedAt,
    attachments: [
      {
        id: `eni-attachment-${id}`,
        type: 'ElasticNetworkInterface',
        status: 'ATTACHED',
        details: [
          { name: 'subnetId', value: 'subnet-0abc' },
          { name: 'networkInterfaceId', value: `eni-${id}` },
          ...(ip ? [{ name: 'privateIPv4Address', value: ip }] : []),
        ],
      },
    ],
  };
}

describe('EcsFleet.listTasks', () => {
  it('lists the running tasks of the service across pages and describes them in batches of 100', async () => {
    const ids = Array.from({ length: 150 }, (_, i) => `t${String(i).padStart(3, '0')}`);
    ecs
      .on(ListTasksCommand)
      .resolvesOnce({ taskArns: ids.slice(0, 100).map(taskArn), nextToken: 'page-2' })
      .resolvesOnce({ taskArns: ids.slice(100).map(taskArn) });
    ecs.on(DescribeTasksCommand).callsFake((input: { tasks: string[] }) => ({
      tasks: input.tasks.map((arn) => {
        const id = arn.slice(arn.lastIndexOf('/') + 1);
        return runningTask(id, `10.0.${Number(id.slice(1)) >> 8}.${Number(id.slice(1)) & 255}`);
      }),
    }));

    const tasks = await fleet().listTasks();

    expect(tasks).toHaveLength(150);
    expect(ecs.commandCalls(ListTasksCommand).map((c) => c.args[0].input)).toEqual([
      { cluster, serviceName: service, desiredStatus: 'RUNNING' },
      { cluster, serviceName: service, desiredStatus: 'RUNNING', nextToken: 'page-2' },
    ]);
    const batches = ecs.commandCalls(DescribeTasksCommand).map((c) => c.args[0].input);
    expect(batches.map((b) => b.tasks?.length)).toEqual([100, 50]);
    expect(batches.every((b) => b.cluster === cluster)).toBe(true);
    expect(tasks[1]).toEqual({
      taskId: 't001',
      address: '10.0.0.1',
      adminPort: 9901,
      // VerifyTask handshakes with the task's own verification listener.
      tlsAddress: '10.0.0.1',
      tlsPort: 8444,
      lastStatus: 'RUNNING',
      startedAt: new Date('2026-11-23T10:00:00Z'),
    });
  });

  it('describes only the tasks a batch selects by id, one DescribeTasks per 100 of them', async () => {
    const ids = Array.from({ length: 250 }, (_, i) => `t${String(i).padStart(3, '0')}`);
    ecs
      .on(ListTasksCommand)
      .resolvesOnce({ taskArns: ids.slice(0, 100).map(taskArn), nextToken: 'p2' })
      .resolvesOnce({ taskArns: ids.slice(100, 200).map(taskArn), nextToken: 'p3' })
      .resolvesOnce({ taskArns: ids.slice(200).map(taskArn) });
    ecs.on(DescribeTasksCommand).callsFake((input: { tasks: string[] }) => ({
      tasks: input.tasks.map((arn) => runningTask(arn.slice(arn.lastIndexOf('/') + 1), '10.0.0.9')),
    }));

    const tasks = await fleet().listTasks({ select: (id) => Number(id.slice(1)) % 5 === 0 });

    expect(tasks.map((t) => t.taskId)).toEqual(ids.filter((_, i) => i % 5 === 0));
    const described = ecs.commandCalls(DescribeTasksCommand).map((c) => c.args[0].input.tasks ?? []);
    expect(described).toEqual([ids.filter((_, i) => i % 5 === 0).map(taskArn)]);
  });

  it('leaves out tasks whose network interface has no address yet and tasks that vanished meanwhile', async () => {
    ecs.on(ListTasksCommand).resolves({ taskArns: ['a', 'b', 'c'].map(taskArn) });
    ecs.on(DescribeTasksCommand).resolves({
      tasks: [runningTask('a', '10.0.0.5'), { ...runningTask('b', undefined), lastStatus: 'PROVISIONING' }],
      failures: [{ arn: taskArn('c'), reason: 'MISSING' }],
    });

    const tasks = await fleet().listTasks();

    expect(tasks.map((t) => t.taskId)).toEqual(['a']);
  });

  it('returns no tasks and makes no DescribeTasks call for an empty service', async () => {
    ecs.on(ListTasksCommand).resolves({ taskArns: [] });

    await expect(fleet().listTasks()).resolves.toEqual([]);
    expect(ecs.commandCalls(DescribeTasksCommand)).toHaveLength(0);
  });

  it.each([
    ['ClusterNotFoundException', () => sdkError(ClusterNotFoundException), 'NotFoundError'],
    ['ServiceNotFoundException', () => sdkError(ServiceNotFoundException), 'NotFoundError'],
    ['InvalidParameterException', () => sdkError(InvalidParameterException), 'ValidationError'],
    ['ClientException', () => sdkError(ClientException), 'ValidationError'],
    ['AccessDeniedException', () => sdkError(AccessDeniedException), 'AccessDenied'],
    [
      'ThrottlingException',
      () =>
        new ECSServiceException({
          name: 'ThrottlingException',
          $fault: 'client',
          message: 'Rate exceeded',
          $metadata: { httpStatusCode: 400 },
        }),
      'Throttled',
    ],
    [
      'ServerException',
      () => new ServerException({ message: 'boom', $metadata: { httpStatusCode: 500 } }),
      'ServiceUnavailable',
    ],
  ])('maps %s from ListTasks to %s', async (_code, make, expected) => {
    ecs.on(ListTasksCommand).rejects(make());

    await expect(fleet().listTasks()).rejects.toMatchObject({ name: expected });
  });
});

describe('EcsFleet.listTasks and task status', () => {
  it('keeps only tasks whose lastStatus is RUNNING, though ListTasks(desiredStatus RUNNING) returns starting ones', async () => {
    const statuses = ['PROVISIONING', 'PENDING', 'ACTIVATING', 'RUNNING', 'DEACTIVATING', 'STOPPING'];
    ecs.on(ListTasksCommand).resolves({ taskArns: statuses.map((_, i) => taskArn(`s${i}`)) });
    ecs.on(DescribeTasksCommand).resolves({
      // Every one of them has its ENI address already: the address alone says nothing.
      tasks: statuses.map((lastStatus, i) => ({ ...runningTask(`s${i}`, `10.0.1.${i + 1}`), lastStatus })),
    });

    const tasks = await fleet().listTasks();

    expect(tasks.map((t) => [t.taskId, t.lastStatus])).toEqual([['s3', 'RUNNING']]);
  });
});

describe('EcsFleet.describeTask', () => {
  const id = '0123456789abcdef0123456789abcdef';

  it('describes only that task, with its desired status and version', async () => {
    ecs.on(DescribeTasksCommand).resolves({
      tasks: [
        { ...runningTask(id, '10.0.2.7'), group: `service:${service}`, desiredStatus: 'RUNNING', version: 4 },
      ],
    });

    const task = await fleet().describeTask(taskArn(id));

    expect(ecs.commandCalls(DescribeTasksCommand).map((c) => c.args[0].input)).toEqual([
      { cluster, tasks: [taskArn(id)] },
    ]);
    expect(ecs.commandCalls(ListTasksCommand)).toHaveLength(0);
    expect(task).toMatchObject({
      taskId: id,
      address: '10.0.2.7',
      lastStatus: 'RUNNING',
      desiredStatus: 'RUNNING',
      version: 4,
    });
  });

  it('reports a task that is not RUNNING as it is, for the caller to decide', async () => {
    ecs.on(DescribeTasksCommand).resolves({
      tasks: [
        {
          ...runningTask(id, '10.0.2.7'),
          group: `service:${service}`,
          lastStatus: 'DEACTIVATING',
          desiredStatus: 'STOPPED',
        },
      ],
    });
    await expect(fleet().describeTask(id)).resolves.toMatchObject({
      lastStatus: 'DEACTIVATING',
      desiredStatus: 'STOPPED',
    });
  });

  it('says undefined for a task of another service, a standalone task, or one ECS no longer knows', async () => {
    ecs
      .on(DescribeTasksCommand)
      .resolvesOnce({ tasks: [{ ...runningTask(id, '10.0.2.7'), group: 'service:other' }] })
      .resolvesOnce({ tasks: [{ ...runningTask(id, '10.0.2.7'), group: 'family:portcullis-gateway' }] })
      .resolvesOnce({ tasks: [], failures: [{ arn: taskArn(id), reason: 'MISSING' }] });
    for (let i = 0; i < 3; i++) await expect(fleet().describeTask(id)).resolves.toBeUndefined();
  });

  it('matches the group on the service name when the fleet is configured with the service ARN', async () => {
    const byArn = new EcsFleet({
      client: new ECSClient({}),
      cluster,
      service: `arn:aws:ecs:eu-west-1:111122223333:service/${cluster}/${service}`,
      adminPort: 9901,
      verifyPort: 8444,
    });
    ecs
      .on(DescribeTasksCommand)
      .resolves({ tasks: [{ ...runningTask(id, '10.0.2.7'), group: `service:${service}` }] });
    await expect(byArn.describeTask(id)).resolves.toMatchObject({ taskId: id });
  });

  it.each([[''], ['not a task'], ['arn:aws:ecs:eu-west-1:111122223333:service/x/y'], [`${id}/../x`]])(
    'refuses %j with ValidationError before calling ECS',
    async (bad) => {
      await expect(fleet().describeTask(bad)).rejects.toMatchObject({ name: 'ValidationError' });
      expect(ecs.commandCalls(DescribeTasksCommand)).toHaveLength(0);
    },
  );

  it('maps ECS errors as every other call does', async () => {
    ecs.on(DescribeTasksCommand).rejects(sdkError(AccessDeniedException));
    await expect(fleet().describeTask(id)).rejects.toMatchObject({ name: 'AccessDenied' });
  });
});

describe('taskPrivateAddress', () => {
  it('falls back to the container network interface when the task has no ENI attachment details', () => {
    expect(
      taskPrivateAddress({ containers: [{ networkInterfaces: [{ privateIpv4Address: '10.1.2.3' }] }] }),
    ).toBe('10.1.2.3');
    expect(taskPrivateAddress({ attachments: [], containers: [] })).toBeUndefined();
  });
});

describe('EcsFleet.roll', () => {
  it('forces a new deployment and returns the id of the PRIMARY deployment', async () => {
    ecs.on(UpdateServiceCommand).resolves({
      service: {
        deployments: [
          { id: 'ecs-svc/1111', status: 'ACTIVE', rolloutState: 'COMPLETED' },
          { id: 'ecs-svc/2222', status: 'PRIMARY', rolloutState: 'IN_PROGRESS' },
        ],
      },
    });

    await expect(fleet().roll()).resolves.toEqual({ deploymentId: 'ecs-svc/2222' });
    expect(ecs.commandCalls(UpdateServiceCommand)[0]!.args[0].input).toEqual({
      cluster,
      service,
      forceNewDeployment: true,
    });
  });

  it('maps an inactive service to NotFoundError', async () => {
    ecs.on(UpdateServiceCommand).rejects(sdkError(ServiceNotActiveException));

    await expect(fleet().roll()).rejects.toMatchObject({ name: 'NotFoundError' });
  });

  it('with reuseSince, follows a deployment rolling out since then instead of forcing another', async () => {
    const since = new Date('2026-12-03T10:00:00Z');
    const answer = (createdAt: Date, rolloutState: Deployment['rolloutState']) => {
      ecs.reset();
      ecs.on(DescribeServicesCommand).resolves({
        services: [
          {
            status: 'ACTIVE',
            deployments: [
              { id: 'ecs-svc/old', status: 'ACTIVE', rolloutState: 'COMPLETED', createdAt: new Date(0) },
              { id: 'ecs-svc/fresh', status: 'PRIMARY', rolloutState, createdAt },
            ],
          },
        ],
      });
      ecs.on(UpdateServiceCommand).resolves({
        service: { deployments: [{ id: 'ecs-svc/new', status: 'PRIMARY', rolloutState: 'IN_PROGRESS' }] },
      });
    };
    // Started after the promote, still rolling: its tasks all read the current secrets.
    answer(new Date('2026-12-03T10:00:05Z'), 'IN_PROGRESS');
    await expect(fleet().roll({ reuseSince: since })).resolves.toEqual({
      deploymentId: 'ecs-svc/fresh',
      reused: true,
    });
    expect(ecs.commandCalls(UpdateServiceCommand)).toHaveLength(0);
    expect(ecs.commandCalls(DescribeServicesCommand)[0]!.args[0].input).toEqual({
      cluster,
      services: [service],
    });
    // Started before the promote: some of its tasks may hold the old version.
    answer(new Date('2026-12-03T09:59:59Z'), 'IN_PROGRESS');
    await expect(fleet().roll({ reuseSince: since })).resolves.toEqual({ deploymentId: 'ecs-svc/new' });
    expect(ecs.commandCalls(UpdateServiceCommand)).toHaveLength(1);
    // Finished already: the task that could not be reached outlived it, so a new one is needed.
    answer(new Date('2026-12-03T10:00:05Z'), 'COMPLETED');
    await expect(fleet().roll({ reuseSince: since })).resolves.toEqual({ deploymentId: 'ecs-svc/new' });
  });
});

describe('reusableDeployment', () => {
  it('is the PRIMARY deployment only when it is in progress and no older than the given time', () => {
    const at = new Date('2026-12-03T10:00:00Z');
    const primary = (
      createdAt: Date | undefined,
      rolloutState: Deployment['rolloutState'] = 'IN_PROGRESS',
    ) => [{ id: 'p', status: 'PRIMARY', rolloutState, ...(createdAt === undefined ? {} : { createdAt }) }];
    expect(reusableDeployment(primary(at), at)).toBe('p');
    expect(reusableDeployment(primary(new Date(at.getTime() - 1)), at)).toBeUndefined();
    expect(reusableDeployment(primary(at, 'FAILED'), at)).toBeUndefined();
    expect(reusableDeployment(primary(undefined), at)).toBeUndefined();
    expect(reusableDeployment([], at)).toBeUndefined();
  });
});

describe('EcsFleet.rolloutState', () => {
  it('reads the rollout state of the deployment with that id', async () => {
    ecs.on(DescribeServicesCommand).resolves({
      services: [
        {
          status: 'ACTIVE',
          deployments: [
            { id: 'ecs-svc/2222', status: 'PRIMARY', rolloutState: 'FAILED' },
            { id: 'ecs-svc/1111', status: 'ACTIVE', rolloutState: 'COMPLETED' },
          ],
        },
      ],
    });

    await expect(fleet().rolloutState('ecs-svc/2222')).resolves.toBe('FAILED');
    expect(ecs.commandCalls(DescribeServicesCommand)[0]!.args[0].input).toEqual({
      cluster,
      services: [service],
    });
  });

  it('reports a missing service as NotFoundError', async () => {
    ecs
      .on(DescribeServicesCommand)
      .resolves({ services: [], failures: [{ arn: service, reason: 'MISSING' }] });

    await expect(fleet().rolloutState('ecs-svc/2222')).rejects.toMatchObject({
      name: 'NotFoundError',
      message: expect.stringContaining('MISSING'),
    });
  });
});

describe('rolloutStateOf', () => {
  const primary = (rolloutState: Deployment['rolloutState']): Deployment => ({
    id: 'ecs-svc/3333',
    status: 'PRIMARY',
    rolloutState,
  });

  it.each([
    [
      'its own state while it is listed',
      [primary('COMPLETED'), { id: 'ecs-svc/2222', status: 'ACTIVE', rolloutState: 'FAILED' }],
      'FAILED',
    ],
    ['the PRIMARY state once it was replaced and dropped', [primary('IN_PROGRESS')], 'IN_PROGRESS'],
    ['the PRIMARY state of a completed replacement', [primary('COMPLETED')], 'COMPLETED'],
    [
      'the PRIMARY state while a superseded in-progress deployment drains',
      [primary('COMPLETED'), { id: 'ecs-svc/2222', status: 'ACTIVE', rolloutState: 'IN_PROGRESS' }],
      'COMPLETED',
    ],
    [
      'its own COMPLETED state after a later deployment superseded it',
      [primary('IN_PROGRESS'), { id: 'ecs-svc/2222', status: 'ACTIVE', rolloutState: 'COMPLETED' }],
      'COMPLETED',
    ],
    ['FAILED when the service has no deployment at all', [], 'FAILED'],
    [
      'counts when ECS gives no rolloutState (steady)',
      [{ id: 'ecs-svc/2222', status: 'PRIMARY', desiredCount: 3, runningCount: 3 }],
      'COMPLETED',
    ],
    [
      'counts when ECS gives no rolloutState (old tasks still running)',
      [
        { id: 'ecs-svc/2222', status: 'PRIMARY', desiredCount: 3, runningCount: 3 },
        { id: 'ecs-svc/1111', status: 'ACTIVE', desiredCount: 3, runningCount: 1 },
      ],
      'IN_PROGRESS',
    ],
  ] as [string, Deployment[], string][])('gives %s', (_what, deployments, expected) => {
    expect(rolloutStateOf(deployments, 'ecs-svc/2222')).toBe(expected);
  });
});

describe('EcsFleet options', () => {
  const client = new ECSClient({});

  it('refuses ports outside 1–65535', () => {
    expect(() => new EcsFleet({ client, cluster, service, adminPort: 0, verifyPort: 8444 })).toThrow(
      /adminPort/,
    );
    expect(() => new EcsFleet({ client, cluster, service, adminPort: 9901, verifyPort: 65_536 })).toThrow(
      /verifyPort/,
    );
    // What `Number(process.env.VERIFY_PORT)` gives for a garbled value.
    expect(
      () => new EcsFleet({ client, cluster, service, adminPort: 9901, verifyPort: Number('x') }),
    ).toThrow(/verifyPort must be a TCP port, got NaN/);
  });

  it('needs the verification port (a JavaScript caller may leave it out)', () => {
    expect(() => new EcsFleet({ client, cluster, service, adminPort: 9901 } as EcsFleetOptions)).toThrow(
      /verifyPort must be a TCP port/,
    );
  });
});
