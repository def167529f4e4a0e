/**
 * `Fleet` over one Amazon ECS service (SDK v3): the running gateway tasks of the service, a
 * forced new deployment to replace them, and that deployment's rollout state.
 */
import {
  type Deployment,
  DescribeServicesCommand,
  type DescribeServicesCommandOutput,
  DescribeTasksCommand,
  ECSClient,
  ListTasksCommand,
  type Task,
  UpdateServiceCommand,
} from '@aws-sdk/client-ecs';
import { NotFoundError, type PortcullisError, ValidationError } from '../errors.ts';
import type { Fleet, FleetTask, ListTasksOptions, RollOptions, RolloutState } from '../ports.ts';
import { awsClientConfig } from './client-config.ts';
import { AwsServiceError, mapAwsError } from './errors.ts';

let sharedClient: ECSClient | undefined;

/** The module-scope client used when none is injected (created on first use, reused across invocations). */
export function defaultEcsClient(): ECSClient {
  // Bounded network waits: a missing route fails fast and typed (client-config.ts).
  sharedClient ??= new ECSClient(awsClientConfig());
  return sharedClient;
}

export interface EcsFleetOptions {
  /** Injected client (tests, other regions); defaults to {@link defaultEcsClient}. */
  client?: ECSClient;
  /** Cluster name or ARN. */
  cluster: string;
  /** Service name or ARN. */
  service: string;
  /** The sidecar's admin API port inside each task (default in the contract: 9901). */
  adminPort: number;
  /**
   * The gateway's verification listener inside each task (the fleet config's `listeners.verify`,
   * default 8444): listed tasks carry it as `FleetTask.tlsPort`, where UpdateTasks verifies by a handshake.
   */
  verifyPort: number;
}

function tcpPort(key: string, port: number | undefined): number {
  if (port === undefined || !Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new ValidationError(`${key} must be a TCP port, got ${port}`, { path: key });
  }
  return port;
}

/**
 * An ECS task id (32 hex digits; older tasks: a UUID) or a task ARN
 * (`arn:<partition>:ecs:<region>:<account>:task/<cluster>/<id>`, or the old `task/<id>` form).
 */
const TASK_REF =
  /^(?:arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:task\/(?:[A-Za-z0-9_-]{1,255}\/)?)?[0-9a-f-]{32,36}$/;

/** `DescribeTasks` takes at most 100 task ARNs per call. */
const DESCRIBE_BATCH = 100;
/** A service has at most a few thousand tasks; this bounds the pagination loop, not the fleet. */
const MAX_LIST_PAGES = 100;

/**
 * The task's private IPv4 address: the `privateIPv4Address` detail of its ENI attachment
 * (awsvpc networking, which Fargate always uses), or the first container's interface address.
 * `undefined` while the ENI is not attached yet.
 */
export function taskPrivateAddress(task: Task): string | undefined {
  for (const attachment of task.attachments ?? []) {
    if (attachment.type !== undefined && attachment.type !== 'ElasticNetworkInterface') continue;
    const detail = attachment.details?.find((d) => d.name === 'privateIPv4Address' && d.value);
    if (detail?.value) return detail.value;
  }
  for (const container of task.containers ?? []) {
    const address = container.networkInterfaces?.find((n) => n.privateIpv4Address)?.privateIpv4Address;
    if (address) return address;
  }
  return undefined;
}

/** The task id: the last segment of its ARN (`arn:aws:ecs:…:task/<cluster>/<id>` → `<id>`). */
export function taskIdOf(taskArn: string): string {
  return taskArn.slice(taskArn.lastIndexOf('/') + 1);
}

/**
 * The PRIMARY deployment when it is still rolling out and was created at or after `since`
 * (pure; see {@link EcsFleet.roll}).
 */
export function reusableDeployment(deployments: Deployment[], since: Date): string | undefined {
  const primary = deployments.find((d) => d.status === 'PRIMARY');
  if (primary?.id === undefined || primary.createdAt === undefined) return undefined;
  if (primary.rolloutState !== 'IN_PROGRESS') return undefined;
  return primary.createdAt.getTime() >= since.getTime() ? primary.id : undefined;
}

/**
 * The rollout state of `deploymentId` among a service's deployments (pure; see
 * {@link EcsFleet.rolloutState} for why a vanished deployment follows the PRIMARY one).
 */
export function rolloutStateOf(deployments: Deployment[], deploymentId: string): RolloutState {
  const own = deployments.find((d) => d.id === deploymentId);
  const primary = deployments.find((d) => d.status === 'PRIMARY');
  // A superseded deployment that was still in progress stays ACTIVE and IN_PROGRESS while it
  // drains and will never complete: what happens next is the PRIMARY deployment's business.
  const superseded = own !== undefined && own.status === 'ACTIVE' && own.rolloutState === 'IN_PROGRESS';
  const deployment = own && !(superseded && primary) ? own : primary;
  if (!deployment) return 'FAILED';
  if (deployment.rolloutState) return deployment.rolloutState;
  // rolloutState is only filled in for the ECS deployment controller; otherwise judge by
  // counts: done when the PRIMARY runs its desired count and nothing else is left running.
  const steady =
    deployment.status === 'PRIMARY' &&
    deployment.runningCount === deployment.desiredCount &&
    deployments.every((d) => d === deployment || d.status === 'INACTIVE');
  return steady ? 'COMPLETED' : 'IN_PROGRESS';
}

/**
 * ECS adapter for the `Fleet` port.
 *
 * Commands: `ListTasks` (the service's tasks with desired status RUNNING, paginated),
 * `DescribeTasks` (batches of 100), `UpdateService` (`forceNewDeployment`) and
 * `DescribeServices`. IAM: `ecs:ListTasks`, `ecs:DescribeTasks` (condition on the cluster),
 * `ecs:UpdateService` and `ecs:DescribeServices` on the service.
 *
 * `listTasks` keeps only tasks whose `lastStatus` is RUNNING. `ListTasks` with
 * `desiredStatus: RUNNING` also returns tasks still PROVISIONING, PENDING or ACTIVATING (their
 * ENI often has an address already): their sidecar is not up, so a nudge would fail and mark
 * the task for a roll of the whole service. They read the current secrets when they start, and
 * the converge-task state machine checks each of them once it is RUNNING. Tasks without a
 * private address yet are left out too.
 *
 * @example
 * const fleet = new EcsFleet({ cluster: 'portcullis', service: 'gateway', adminPort: 9901, verifyPort: 8444 });
 * const { deploymentId } = await fleet.roll();
 * await fleet.rolloutState(deploymentId); // 'IN_PROGRESS' | 'COMPLETED' | 'FAILED'
 */
export class EcsFleet implements Fleet {
  readonly #client: ECSClient;
  readonly #cluster: string;
  readonly #service: string;
  /** The service's name (the last segment when configured by ARN), as in a task's `group`. */
  readonly #serviceName: string;
  readonly #adminPort: number;
  readonly #verifyPort: number;

  constructor(options: EcsFleetOptions) {
    if (!options.cluster) throw new ValidationError('cluster is required', { path: 'cluster' });
    if (!options.service) throw new ValidationError('service is required', { path: 'service' });
    this.#adminPort = tcpPort('adminPort', options.adminPort);
    this.#verifyPort = tcpPort('verifyPort', options.verifyPort);
    this.#client = options.client ?? defaultEcsClient();
    this.#cluster = options.cluster;
    this.#service = options.service;
    this.#serviceName = options.service.slice(options.service.lastIndexOf('/') + 1);
  }

  async listTasks(options: ListTasksOptions = {}): Promise<FleetTask[]> {
    const arns: string[] = [];
    let nextToken: string | undefined;
    let pages = 0;
    try {
      do {
        const page = await this.#client.send(
          new ListTasksCommand({
            cluster: this.#cluster,
            serviceName: this.#service,
            desiredStatus: 'RUNNING',
            ...(nextToken ? { nextToken } : {}),
          }),
        );
        arns.push(...(page.taskArns ?? []));
        nextToken = page.nextToken;
        pages += 1;
      } while (nextToken && pages < MAX_LIST_PAGES);
    } catch (error) {
      throw this.#map(error, 'ListTasks', this.#service);
    }
    // A batch of the fleet: only its tasks are described (one DescribeTasks per 100 of them).
    const select = options.select;
    if (select !== undefined) arns.splice(0, arns.length, ...arns.filter((arn) => select(taskIdOf(arn))));

    const tasks: FleetTask[] = [];
    for (let i = 0; i < arns.length; i += DESCRIBE_BATCH) {
      const batch = arns.slice(i, i + DESCRIBE_BATCH);
      let described: Task[];
      try {
        const output = await this.#client.send(
          new DescribeTasksCommand({ cluster: this.#cluster, tasks: batch }),
        );
        // A task can stop between ListTasks and DescribeTasks; ECS then reports it under
        // `failures` (reason MISSING), and it is simply no longer part of the fleet.
        described = output.tasks ?? [];
      } catch (error) {
        throw this.#map(error, 'DescribeTasks', this.#cluster);
      }
      for (const task of described) {
        if (task.lastStatus !== 'RUNNING') continue;
        const fleetTask = this.#toFleetTask(task);
        if (fleetTask) tasks.push(fleetTask);
      }
    }
    return tasks;
  }

  /**
   * One task by id or ARN (`DescribeTasks` of that task only), whatever its `lastStatus`, with
   * its `desiredStatus` and `version`. `undefined` when ECS no longer knows it (stopped tasks
   * are described for about an hour), when it belongs to another service or a standalone run
   * of the task definition (`group` is not `service:<service>`), or when its ENI has no address.
   *
   * Errors: `ValidationError` for an id that cannot name a task; AWS errors as for the rest.
   */
  async describeTask(taskId: string): Promise<FleetTask | undefined> {
    if (!TASK_REF.test(taskId)) {
      throw new ValidationError(`'${taskId.slice(0, 200)}' is not an ECS task id or task ARN`, {
        path: 'taskId',
      });
    }
    let task: Task | undefined;
    try {
      const output = await this.#client.send(
        new DescribeTasksCommand({ cluster: this.#cluster, tasks: [taskId] }),
      );
      task = output.tasks?.[0];
    } catch (error) {
      throw this.#map(error, 'DescribeTasks', taskId);
    }
    if (task === undefined || task.group !== `service:${this.#serviceName}`) return undefined;
    return this.#toFleetTask(task);
  }

  async roll(options: RollOptions = {}): Promise<{ deploymentId: string; reused?: boolean }> {
    if (options.reuseSince !== undefined) {
      const fresh = reusableDeployment(await this.#deployments(), options.reuseSince);
      if (fresh !== undefined) return { deploymentId: fresh, reused: true };
    }
    let deployments: Deployment[];
    try {
      const output = await this.#client.send(
        new UpdateServiceCommand({
          cluster: this.#cluster,
          service: this.#service,
          forceNewDeployment: true,
        }),
      );
      deployments = output.service?.deployments ?? [];
    } catch (error) {
      throw this.#map(error, 'UpdateService', this.#service);
    }
    const primary = deployments.find((d) => d.status === 'PRIMARY');
    if (!primary?.id) {
      throw new AwsServiceError(`ECS UpdateService on '${this.#service}' returned no PRIMARY deployment`, {
        code: 'EmptyResponse',
      });
    }
    return { deploymentId: primary.id };
  }

  /**
   * The rollout state of a deployment started by {@link roll}.
   *
   * ECS lists only the PRIMARY deployment and the ACTIVE ones still draining; a deployment
   * that has been replaced disappears. That happens when a later deployment supersedes ours
   * (another roll, a task-definition update) or when the circuit breaker rolls ours back to
   * the last completed deployment, which becomes PRIMARY again. In both cases the PRIMARY
   * deployment started after ours and launches fresh tasks, and every fresh task reads the
   * secrets' current versions at start — so it carries our intent, and its rollout state is
   * the honest answer to "has the service converged on fresh tasks". A failed rollback shows
   * as FAILED on that PRIMARY deployment. An id that never existed is indistinguishable from a
   * superseded one; callers only pass ids returned by `roll`.
   *
   * Errors: `NotFoundError` when the service does not exist or is no longer active.
   */
  async rolloutState(deploymentId: string): Promise<RolloutState> {
    return rolloutStateOf(await this.#deployments(), deploymentId);
  }

  /** The service's deployments (DescribeServices). @throws NotFoundError for a missing or inactive service */
  async #deployments(): Promise<Deployment[]> {
    let output: DescribeServicesCommandOutput;
    try {
      output = await this.#client.send(
        new DescribeServicesCommand({ cluster: this.#cluster, services: [this.#service] }),
      );
    } catch (error) {
      throw this.#map(error, 'DescribeServices', this.#service);
    }
    const service = output.services?.[0];
    if (!service || service.status === 'INACTIVE' || service.status === 'DRAINING') {
      const reason = output.failures?.[0]?.reason ?? service?.status ?? 'MISSING';
      throw new NotFoundError(`ECS service '${this.#service}' in cluster '${this.#cluster}' is ${reason}`);
    }
    return service.deployments ?? [];
  }

  #toFleetTask(task: Task): FleetTask | undefined {
    const address = taskPrivateAddress(task);
    if (!task.taskArn || !address) return undefined;
    return {
      taskId: taskIdOf(task.taskArn),
      address,
      adminPort: this.#adminPort,
      // Verification handshakes go to the task itself, on the listener that admits the control plane.
      tlsAddress: address,
      tlsPort: this.#verifyPort,
      lastStatus: task.lastStatus ?? 'UNKNOWN',
      ...(task.startedAt ? { startedAt: task.startedAt } : {}),
      ...(task.desiredStatus ? { desiredStatus: task.desiredStatus } : {}),
      ...(task.version === undefined ? {} : { version: task.version }),
    };
  }

  #map(error: unknown, operation: string, resource: string): PortcullisError {
    return mapAwsError(error, {
      service: 'ECS',
      operation,
      resource,
      overrides: {
        ServiceNotActiveException: (message, cause) => new NotFoundError(message, { cause }),
      },
    });
  }
}
