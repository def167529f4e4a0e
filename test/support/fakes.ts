/**
 * In-memory stand-ins for the fleet, the sidecars and the event bus, for control-plane tests.
 * The fake sidecars "serve" what they were nudged to by reading the real store, so a test
 * sees the same version/stage effects a real fleet would, with switches for the failures the
 * state machines must handle.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { CertificateNotReady, TaskUnreachable, ValidationError } from '../../lib/errors.ts';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { LocalAuthority, type LocalAuthorityOptions } from '../../lib/local/local-authority.ts';
import {
  type CertificateAuthority,
  type Fleet,
  type FleetTask,
  type IssuedCertificate,
  type IssueRequest,
  type Notifier,
  type NudgeRequest,
  type RevocationReason,
  type RollOptions,
  type RolloutState,
  type SecretStore,
  Stage,
  type TaskClient,
  type TaskStatus,
} from '../../lib/ports.ts';
import type { ControlPlanePorts } from '../../lib/workflows/ports.ts';

/** Which secrets a fake sidecar serves, and under which certificate names. */
export interface FakeSecretsLayout {
  certificates: { name: string; secretId: string; dns: string[] }[];
  allowlistSecretId?: string;
  trustSecretId?: string;
}

/** How one fake task behaves. */
export interface FakeTaskBehaviour {
  /** Nudge, status and handshake all fail with `TaskUnreachable`. */
  unreachable?: boolean;
  /** Nudges are refused as the sidecar's 422 (`ValidationError`). */
  rejectNudges?: boolean;
  /** Nudges are acknowledged but nothing changes (a sidecar stuck on the old version). */
  ignoreNudges?: boolean;
  /** Status reports `ready: false` (still starting). */
  notReady?: boolean;
  /** Status reports `ready: false` this many more times, then ready. */
  notReadyPolls?: number;
}

interface Served {
  versionId: string;
  serial?: string;
  notAfter?: string;
  size?: number;
}

export class FakeTask {
  readonly task: FleetTask;
  behaviour: FakeTaskBehaviour;
  readonly served = new Map<string, Served>();
  readonly nudges: NudgeRequest[] = [];

  constructor(taskId: string, behaviour: FakeTaskBehaviour = {}) {
    this.task = {
      taskId,
      address: '127.0.0.1',
      adminPort: 9901,
      tlsAddress: '127.0.0.1',
      tlsPort: 443,
      lastStatus: 'RUNNING',
    };
    this.behaviour = behaviour;
  }
}

/** The fleet and its sidecars in one object: `Fleet` + `TaskClient`. */
export class FakeGateway implements Fleet, TaskClient {
  readonly tasks: FakeTask[] = [];
  readonly rolls: string[] = [];
  /** The options of every `roll` call. */
  readonly rollOptions: RollOptions[] = [];
  /**
   * Called after every nudge was applied (before its answer): a test runs another execution
   * here, while the one nudging is between its NudgeTask and VerifyTask.
   */
  afterNudge: ((task: FleetTask, request: NudgeRequest) => Promise<void>) | undefined;
  /** Rollout states returned in turn by `rolloutState` (the last repeats). Default: completed at once. */
  rolloutStates: RolloutState[] = ['COMPLETED'];
  readonly #store: SecretStore;
  readonly #layout: FakeSecretsLayout;
  #counter = 0;
  #rolloutPolls = 0;

  constructor(store: SecretStore, layout: FakeSecretsLayout) {
    this.#store = store;
    this.#layout = layout;
  }

  /** Starts a task that loads `AWSCURRENT` of every fleet secret, like a sidecar at boot. */
  async startTask(behaviour: FakeTaskBehaviour = {}): Promise<FakeTask> {
    this.#counter += 1;
    const fake = new FakeTask(`task-${this.#counter}`, behaviour);
    for (const secretId of this.#secretIds()) {
      await this.#apply(fake, secretId, undefined).catch(() => undefined);
    }
    this.tasks.push(fake);
    return fake;
  }

  task(taskId: string): FakeTask {
    const fake = this.tasks.find((t) => t.task.taskId === taskId);
    if (fake === undefined) throw new TaskUnreachable(`no task ${taskId}`);
    return fake;
  }

  // Fleet

  async listTasks(): Promise<FleetTask[]> {
    return this.tasks.map((t) => ({ ...t.task }));
  }

  async roll(options: RollOptions = {}): Promise<{ deploymentId: string }> {
    this.rollOptions.push(options);
    const deploymentId = `deployment-${this.rolls.length + 1}`;
    this.rolls.push(deploymentId);
    this.#rolloutPolls = 0;
    return { deploymentId };
  }

  async rolloutState(deploymentId: string): Promise<RolloutState> {
    if (!this.rolls.includes(deploymentId)) throw new ValidationError(`unknown deployment ${deploymentId}`);
    const state =
      this.rolloutStates[Math.min(this.#rolloutPolls, this.rolloutStates.length - 1)] ?? 'COMPLETED';
    this.#rolloutPolls += 1;
    if (state === 'COMPLETED') {
      // ECS replaced every task; the new ones boot from AWSCURRENT.
      const count = this.tasks.length;
      this.tasks.splice(0, count);
      for (let i = 0; i < count; i++) await this.startTask();
    }
    return state;
  }

  // TaskClient

  async nudge(task: FleetTask, request: NudgeRequest): Promise<TaskStatus> {
    const fake = this.#reachable(task);
    fake.nudges.push({ ...request });
    if (fake.behaviour.rejectNudges)
      throw new ValidationError(`task ${task.taskId} rejected ${request.secretId}`);
    if (!fake.behaviour.ignoreNudges) await this.#apply(fake, request.secretId, request.versionId);
    await this.afterNudge?.(task, request);
    return this.#status(fake);
  }

  async status(task: FleetTask): Promise<TaskStatus> {
    const fake = this.#reachable(task);
    if ((fake.behaviour.notReadyPolls ?? 0) > 0) {
      fake.behaviour.notReadyPolls = (fake.behaviour.notReadyPolls ?? 0) - 1;
      return { ...this.#status(fake), ready: false };
    }
    return this.#status(fake);
  }

  async servedCertificate(
    task: FleetTask,
    serverName: string,
  ): Promise<{ serial: string; fingerprint256: string; notAfter: string }> {
    const fake = this.#reachable(task);
    const spec = this.#layout.certificates.find((c) =>
      c.dns.some((d) => d === serverName || (d.startsWith('*.') && serverName.endsWith(d.slice(1)))),
    );
    const served = spec && fake.served.get(spec.secretId);
    if (served?.serial === undefined)
      throw new TaskUnreachable(`task ${task.taskId}: no certificate for ${serverName}`);
    return { serial: served.serial, fingerprint256: 'AA:BB', notAfter: served.notAfter ?? '' };
  }

  #secretIds(): string[] {
    const ids = this.#layout.certificates.map((c) => c.secretId);
    if (this.#layout.allowlistSecretId) ids.push(this.#layout.allowlistSecretId);
    if (this.#layout.trustSecretId) ids.push(this.#layout.trustSecretId);
    return ids;
  }

  #reachable(task: FleetTask): FakeTask {
    const fake = this.tasks.find((t) => t.task.taskId === task.taskId);
    if (fake === undefined || fake.behaviour.unreachable)
      throw new TaskUnreachable(`task ${task.taskId} does not answer`);
    return fake;
  }

  async #apply(fake: FakeTask, secretId: string, versionId: string | undefined): Promise<void> {
    const secret = await this.#store.get(secretId, versionId ? { versionId } : { stage: Stage.Current });
    const served: Served = { versionId: secret.versionId };
    try {
      const doc = JSON.parse(secret.value) as { serial?: string; notAfter?: string; cidrs?: string[] };
      if (typeof doc.serial === 'string') served.serial = doc.serial;
      if (typeof doc.notAfter === 'string') served.notAfter = doc.notAfter;
      if (Array.isArray(doc.cidrs)) served.size = doc.cidrs.length;
    } catch {
      // Not JSON: served as an opaque version.
    }
    fake.served.set(secretId, served);
  }

  #status(fake: FakeTask): TaskStatus {
    const certificates: TaskStatus['certificates'] = {};
    for (const spec of this.#layout.certificates) {
      const served = fake.served.get(spec.secretId);
      if (served?.serial !== undefined) {
        certificates[spec.name] = {
          versionId: served.versionId,
          serial: served.serial,
          notAfter: served.notAfter ?? '',
        };
      }
    }
    const status: TaskStatus = { ready: !fake.behaviour.notReady, certificates };
    const allowlist = this.#layout.allowlistSecretId && fake.served.get(this.#layout.allowlistSecretId);
    if (allowlist) status.allowlist = { versionId: allowlist.versionId, size: allowlist.size ?? 0 };
    const trust = this.#layout.trustSecretId && fake.served.get(this.#layout.trustSecretId);
    if (trust) status.trust = { versionId: trust.versionId };
    return status;
  }
}

/** Collects published events. */
export class RecordingNotifier implements Notifier {
  readonly events: { detailType: string; detail: Record<string, unknown> }[] = [];
  async publish(detailType: string, detail: Record<string, unknown>): Promise<void> {
    this.events.push({ detailType, detail: structuredClone(detail) });
  }
}

/** Switches over a real CA: count requests, fail issuing or reading. */
export interface AuthorityFaults {
  /** `issue` throws this. */
  issueError?: Error;
  /** The next `n` calls to `get` throw `getError` (default a `CertificateNotReady`). */
  failGets?: number;
  getError?: Error;
  /** `revoke` revokes, then throws this: a call that went through but whose answer was lost. */
  revokeErrorAfterRevoking?: Error;
}

/** Wraps a `CertificateAuthority` to count calls and inject failures. */
export class InstrumentedAuthority implements CertificateAuthority {
  readonly issued: IssueRequest[] = [];
  readonly revoked: { certificateId: string; serial: string; reason: RevocationReason }[] = [];
  faults: AuthorityFaults;
  readonly #inner: CertificateAuthority;

  constructor(inner: CertificateAuthority, faults: AuthorityFaults = {}) {
    this.#inner = inner;
    this.faults = faults;
  }

  async issue(request: IssueRequest): Promise<{ certificateId: string }> {
    this.issued.push(request);
    if (this.faults.issueError) throw this.faults.issueError;
    return this.#inner.issue(request);
  }

  async get(certificateId: string): Promise<IssuedCertificate> {
    if ((this.faults.failGets ?? 0) > 0) {
      this.faults.failGets = (this.faults.failGets ?? 0) - 1;
      throw this.faults.getError ?? new CertificateNotReady(`certificate ${certificateId} is not ready`);
    }
    return this.#inner.get(certificateId);
  }

  async revoke(certificateId: string, serial: string, reason: RevocationReason): Promise<void> {
    this.revoked.push({ certificateId, serial, reason });
    await this.#inner.revoke(certificateId, serial, reason);
    if (this.faults.revokeErrorAfterRevoking) throw this.faults.revokeErrorAfterRevoking;
  }

  caCertificates(): Promise<string> {
    return this.#inner.caCertificates();
  }
}

/** A control plane on real local adapters (file store, file CA) and the fakes above, in `dir`. */
export interface ControlPlaneFixture {
  ports: ControlPlanePorts;
  store: FileSecretStore;
  ca: LocalAuthority;
  authority: InstrumentedAuthority;
  gateway: FakeGateway;
  notifier: RecordingNotifier;
  fleetConfig: Record<string, unknown>;
}

export const fixtureSecrets = {
  fleetConfig: 'demo/fleet-config',
  api: 'demo/cert/api',
  client: 'demo/cert/client',
  trust: 'demo/trust',
  allowlist: 'demo/allowlist',
  nudgeKey: 'demo/nudge-key',
} as const;

export async function createControlPlaneFixture(
  dir: string,
  options: {
    tasks?: number;
    authority?: LocalAuthorityOptions;
    allowAll0?: boolean;
    /** Fleet name (default `demo`); the secret ids stay those of {@link fixtureSecrets}. */
    fleet?: string;
    /** A CA shared with another fixture (two fleets of one CA), instead of one in `dir`. */
    ca?: LocalAuthority;
  } = {},
): Promise<ControlPlaneFixture> {
  const fleetName = options.fleet ?? 'demo';
  const store = await FileSecretStore.open(join(dir, 'store'));
  const ca = options.ca ?? (await LocalAuthority.open(join(dir, 'ca'), options.authority));
  const authority = new InstrumentedAuthority(ca);
  const fleetConfig = {
    fleet: fleetName,
    certificates: [
      {
        name: 'api',
        secretId: fixtureSecrets.api,
        commonName: 'api.demo.internal',
        dns: ['api.demo.internal'],
        usage: 'server',
      },
      {
        name: 'client',
        secretId: fixtureSecrets.client,
        commonName: 'gateway',
        dns: ['gateway.demo.internal'],
        usage: 'client',
      },
    ],
    trust: { secretId: fixtureSecrets.trust },
    nudgeKey: { secretId: fixtureSecrets.nudgeKey },
    allowlist: {
      source: { secretId: fixtureSecrets.allowlist },
      allowAll0: options.allowAll0 ?? false,
      maxEntries: 100,
    },
  };
  const create = (id: string, value: unknown) =>
    store.create(id, JSON.stringify(value), { clientRequestToken: randomUUID() });
  await create(fixtureSecrets.fleetConfig, fleetConfig);
  await create(fixtureSecrets.trust, { caBundlePem: await ca.trustAnchorPem() });
  await create(fixtureSecrets.allowlist, { cidrs: ['10.0.0.0/8'], reason: 'initial' });
  const gateway = new FakeGateway(store, {
    certificates: fleetConfig.certificates.map((c) => ({ name: c.name, secretId: c.secretId, dns: c.dns })),
    allowlistSecretId: fixtureSecrets.allowlist,
    trustSecretId: fixtureSecrets.trust,
  });
  for (let i = 0; i < (options.tasks ?? 2); i++) await gateway.startTask();
  const notifier = new RecordingNotifier();
  const ports: ControlPlanePorts = {
    fleetName,
    fleetConfigSecretId: fixtureSecrets.fleetConfig,
    store,
    authority,
    fleet: gateway,
    taskClient: gateway,
    notifier,
  };
  return { ports, store, ca, authority, gateway, notifier, fleetConfig };
}
